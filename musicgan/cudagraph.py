"""The critic phase's draws on a CUDA GPU, recorded once as a CUDA graph and replayed.

Drawing a window of 64 steps is a loop of a few thousand small kernels: at each step an LSTM
step, then each voice's head and its Gumbel-max choice. Each kernel is too small to fill a GPU,
so launched one by one from Python the card waits on the launches (the critic phase kept an
H100 about a quarter busy). A CUDA graph records the loop's kernels once and replays them all in
one launch (NVIDIA's CUDA Programming Guide, "CUDA Graphs"; PyTorch's ``torch.cuda.graph``). On
an H100 the critic step ran 4.5x faster at batch 64 and 2.9x at 512 (``bench/gpu.py``).

A replay runs the same kernels on the same memory: the weights are read where they live, so a
graph stays right while the optimiser updates them in place, and the draw's inputs are copied
into the graph's own tensors first. What picks the loop's path on the host (the shapes, the
parallels penalty, whether a tonal or interval bias is set) is part of the graph's key: when it changes (the
calibration at the switch to the adversarial phase), the draw is recorded again.

On a CPU (or with ``enabled=False``) :class:`Draw` is the generator's own draw, unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import Generator, gumbel_from_normal


class Draw:
    """``draw(z, noise, codes)``: :meth:`Generator.sample`'s Gumbel-max draw without gradients,
    as (tokens (B, T, V), one_hot (B, T, V, K)); replayed from a CUDA graph on a CUDA GPU."""

    def __init__(self, G: Generator, enabled: bool = True):
        self.G = G
        self.enabled = enabled
        self.key = None
        self.graph = None
        self.captures = 0  # how often the draw was recorded (a new key each time)

    def on(self, z: torch.Tensor) -> bool:
        return self.enabled and z.is_cuda

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, noise: torch.Tensor, codes: torch.Tensor):
        if not self.on(z):
            return self.G.sample(z, noise, codes)
        G = self.G
        beta, tonal, harmony = float(G.parallel_bias), bool(G.tonal_bias.any()), bool(G.interval_bias.any())
        key = (tuple(z.shape), tuple(noise.shape), tuple(codes.shape), z.dtype, beta, tonal, harmony)
        if key != self.key:
            self._record(z, noise, codes, beta, tonal, harmony)
            self.key = key
        self.z.copy_(z)
        self.noise.copy_(noise)
        self.codes.copy_(codes)
        self.graph.replay()
        tokens = self.tokens.clone()
        return tokens, F.one_hot(tokens, G.cfg.vocab).float()

    def _draw(self, beta: float, tonal: bool, harmony: bool) -> torch.Tensor:
        return self.G._draw_fast(self.z, gumbel_from_normal(self.noise), self.codes, 1.0,
                                 parallel_bias=beta, tonal=tonal, harmony=harmony)

    def _record(self, z, noise, codes, beta: float, tonal: bool, harmony: bool) -> None:
        self.graph = None  # (frees the last graph's memory first)
        self.z, self.noise, self.codes = z.clone(), noise.clone(), codes.clone()
        # a few eager runs on a side stream first, as torch.cuda.graph asks (libraries set up their
        # workspaces there, not inside the recording)
        side = torch.cuda.Stream(z.device)
        side.wait_stream(torch.cuda.current_stream(z.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._draw(beta, tonal, harmony)
        torch.cuda.current_stream(z.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.tokens = self._draw(beta, tonal, harmony)
        self.captures += 1
