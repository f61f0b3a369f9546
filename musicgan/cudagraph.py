"""The training steps on a CUDA GPU (the likelihood step, the critic phase's draws and the
critic's own step), each recorded once as a CUDA graph and replayed.

Drawing a window of 64 steps is a loop of a few thousand small kernels: at each step an LSTM
step, then each voice's head and its Gumbel-max choice. Each kernel is too small to fill a GPU,
so launched one by one from Python the card waits on the launches (the critic phase kept an
H100 about a quarter busy). A CUDA graph records the loop's kernels once and replays them all in
one launch (NVIDIA's CUDA Programming Guide, "CUDA Graphs"; PyTorch's ``torch.cuda.graph``). On
an H100 the critic step ran 4.5x faster at batch 64 and 2.9x at 512 (``bench/gpu.py``).

A replay runs the same kernels on the same memory: the weights are read where they live, so a
graph stays right while the optimiser updates them in place, and the draw's inputs are copied
into the graph's own tensors first. What picks the loop's path on the host (the shapes, the
parallels penalty, whether a tonal or interval bias is set, the pitch temperature) is part of the graph's key: when it changes (the
calibration at the switch to the adversarial phase), the draw is recorded again.

The likelihood step was bound the same way: after the embedding fix
a step at batch 256 took 20 ms on an H100, of which the card spent 16% in kernels, the rest
waiting on some 550 launches (cuDNN's LSTM launches kernels per time step and layer). Recorded
whole (forward, backward, clipping and a fused Adam) as a :class:`Step` it is one launch, and
nothing in it waits on the host: a step whose gradients are not finite is skipped on the card
(Adam's ``found_inf``, as ``torch.amp.GradScaler`` drives it), and the learning rate is a tensor
the schedule fills. The critic's own step (the discriminator's loss on the music against the
draws, its backward and its Adam) is a :class:`Step` too, replayed after the draw's graph, so
a step of the critic phase replays two graphs.

On a CPU (or with ``enabled=False``) :class:`Draw` is the generator's own draw, unchanged, and
the trainer's steps are its own, launched op by op.
"""
from __future__ import annotations

import torch

from .models import Generator, gumbel_from_normal


class Draw:
    """``draw(z, noise, codes)``: :meth:`Generator.sample`'s Gumbel-max draw without gradients,
    its tokens (B, T, V) (the caller makes their one-hot if it needs it: a critic step replayed
    from its own graph does not); replayed from a CUDA graph on a CUDA GPU."""

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
            return self.G.sample(z, noise, codes)[0]
        G = self.G
        settings = (float(G.parallel_bias), bool(G.tonal_bias.any()), bool(G.interval_bias.any()),
                    float(G.pitch_temperature), float(G.echo_bias))
        key = (tuple(z.shape), tuple(noise.shape), tuple(codes.shape), z.dtype, settings)
        if key != self.key:
            self._record(z, noise, codes, settings)
            self.key = key
        self.z.copy_(z)
        self.noise.copy_(noise)
        self.codes.copy_(codes)
        self.graph.replay()
        return self.tokens.clone()

    def _draw(self, settings: tuple) -> torch.Tensor:
        beta, tonal, harmony, pitch_temperature, echo = settings
        return self.G._draw_fast(self.z, gumbel_from_normal(self.noise), self.codes, 1.0, parallel_bias=beta,
                                 tonal=tonal, harmony=harmony, pitch_temperature=pitch_temperature, echo_bias=echo)

    def _record(self, z, noise, codes, settings: tuple) -> None:
        self.graph = None  # (frees the last graph's memory first)
        self.z, self.noise, self.codes = z.clone(), noise.clone(), codes.clone()
        # a few eager runs on a side stream first, as torch.cuda.graph asks (libraries set up their
        # workspaces there, not inside the recording)
        side = torch.cuda.Stream(z.device)
        side.wait_stream(torch.cuda.current_stream(z.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._draw(settings)
        torch.cuda.current_stream(z.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.tokens = self._draw(settings)
        self.captures += 1


def capturable_adam(params, lr: float, device: torch.device, graphs: bool, betas=(0.9, 0.999)) -> torch.optim.Adam:
    """An Adam a :class:`Step` can record: on CUDA with graphs, fused and capturable, its learning
    rate a tensor on the card (a replay reads it where it lives); elsewhere the plain Adam as before."""
    if graphs and device.type == "cuda":
        return torch.optim.Adam(params, lr=torch.tensor(lr, device=device), betas=betas, fused=True, capturable=True)
    return torch.optim.Adam(params, lr=lr, betas=betas)


def set_rate(opt: torch.optim.Optimizer, rate: float) -> None:
    """Set an optimiser's learning rate, in place where it is a tensor (a recorded step reads it)."""
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(rate)
        else:
            group["lr"] = rate


class Step:
    """``step(*inputs)``: one optimiser step of ``loss(*inputs)`` (forward, backward, gradients
    clipped to ``clip``, ``opt`` steps unless they are not finite), replayed from a CUDA graph.
    ``loss`` returns the loss, or a tuple of the loss and other scalar figures of the step (a
    critic's accuracy). Returns those figures (the loss first) and whether the step was taken,
    read from the card in one go after the replay. ``opt`` must come from :func:`capturable_adam`.
    A new shape of the inputs records the step again; so does :meth:`forget` (call it when the
    optimiser's state is loaded anew)."""

    def __init__(self, loss, params, opt: torch.optim.Adam, clip: float):
        self.loss, self.params, self.opt, self.clip = loss, list(params), opt, clip
        self.captures = 0
        self.forget()

    def forget(self) -> None:
        self.key = self.graph = None

    def __call__(self, *inputs: torch.Tensor) -> tuple[list[float], bool]:
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        if key != self.key:
            self._record(inputs)
            self.key = key
        for into, value in zip(self.inputs, inputs):
            into.copy_(value)
        self.graph.replay()
        *figures, bad = torch.stack([x.float() for x in self.out]).tolist()
        return figures, not bad

    def _body(self) -> list[torch.Tensor]:
        out = self.loss(*self.inputs)
        loss, *figures = out if isinstance(out, tuple) else (out,)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        bad = (~torch.isfinite(norm)).float()
        # skipped on the card: not finite, or (while warming up) told to
        self.opt.found_inf = torch.maximum(bad, self.skip)
        self.opt.step()
        return [loss.detach(), *(f.detach() for f in figures), bad]

    def _record(self, inputs) -> None:
        self.graph = None  # (frees the last graph's memory first)
        self.inputs = [x.clone() for x in inputs]
        device = self.inputs[0].device
        self.skip = torch.ones((), device=device)
        try:
            # warm-up runs on a side stream, as torch.cuda.graph asks (they make Adam's state and the
            # libraries' workspaces); told to skip, they leave the weights and Adam's moments as they were
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.opt.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream(device).wait_stream(side)
            self.skip.zero_()
            self.opt.zero_grad(set_to_none=True)  # the recording makes the gradients' own memory
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.out = self._body()
            self.graph = graph
            self.captures += 1
        finally:
            self.opt.found_inf = None  # (an Adam stepped op by op after a failed recording skips nothing)
