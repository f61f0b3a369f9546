"""Music held out of training, to see whether a model learns the style or memorises its pieces.

A recurrent model learns a small corpus by heart: trained on 20 Bach chorales on 2 CPU cores, the
likelihood loss on 43 other chorales was lowest after 450 steps (0.71) and rose after (1.03 at
1,200 steps) while the loss on the 20 kept falling (0.53 to 0.28). On an H100, 3.5 minutes
on the 387 training chorales ended at 0.13 on them and 0.72 on the held-out ones; its
harmonisations of held-out melodies and basses were further from Bach's than those of the
CPU model, whose losses were 0.35 and 0.44.

With ``TrainConfig.holdout`` a run keeps some whole pieces apart (windows of one piece overlap,
so holding out windows would hold out nothing), measures the teacher-forced loss on a fixed set
of their windows as it trains, keeps the generator's weights from where that loss was lowest, and
ends the warm-up early once it stops falling (see ``Trainer``).

It is asked for, not the default, because it has a price. On those 20 chorales, 2,000 steps
(CLI ``--steps 2000``; the one with pieces held out ended early, after 1,466), scored on 100
pieces of 16 bars against the 43 other chorales:

* held out (2 pieces, weights of step 600): loss on the 43 0.75, two-sample accuracy 0.94;
* none held out: loss 1.28, two-sample 0.86.

The model that had learnt its pieces by heart wrote free pieces a classifier found harder to
tell from the chorales (neither quoted 2 bars of its music: the copy guard). The one kept at its
lowest held-out loss writes busier textures (4.6 notes a beat against the chorales' 4.3; the
other 4.1). So for free pieces a run without held-out pieces sounds more like its music. Where
a model meets music it has not seen, learning by heart showed its cost: the GPU model above
harmonised the held-out melodies and basses further from Bach than the CPU model did (README,
"On a GPU"), though it continued their openings closer.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .batches import Batch, batches_for

MIN_PIECES = 20  # fewer pieces than this: none is held out (each is too much of the music)
WINDOWS = 256  # the held-out windows the loss is measured on (all of them when there are fewer)


def split(rolls: list, share: float, seed: int) -> tuple[list, list]:
    """(the pieces to train on, the pieces held out): ``share`` of them (rounded, at least one),
    chosen by ``seed``; none when there are fewer than :data:`MIN_PIECES` or ``share`` is 0."""
    n = len(rolls)
    if share <= 0 or n < MIN_PIECES:
        return list(rolls), []
    held = set(np.random.default_rng(seed).permutation(n)[:max(1, round(share * n))].tolist())
    return [r for i, r in enumerate(rolls) if i not in held], [r for i, r in enumerate(rolls) if i in held]


class HeldOut:
    """The teacher-forced loss of a generator on windows of held-out pieces: the same windows, as
    written (no transposition), and the same latent noise every time it is measured."""

    def __init__(self, rolls: list, model, config, device: torch.device, seed: int = 0):
        self.pieces = len(rolls)
        batches = batches_for(rolls, model, replace(config, transpose=0), device)
        tokens, codes, keys = batches.sample(WINDOWS, seed) if len(batches) else (None, None, None)
        self.batch = None if tokens is None or not len(tokens) else Batch(
            torch.from_numpy(tokens).to(device), torch.from_numpy(keys).to(device),
            torch.from_numpy(codes).to(device).clamp(min=0))
        if self.batch is not None:
            z = torch.randn(len(tokens), model.latent_dim, generator=torch.Generator().manual_seed(seed + 4099))
            self.z = z.to(device)

    @property
    def windows(self) -> int:
        return 0 if self.batch is None else len(self.batch.tokens)

    @torch.no_grad()
    def loss(self, generator, autocast) -> float:
        b, training = self.batch, generator.training
        generator.eval()  # (as it draws: nothing dropped)
        with autocast:
            logits = generator(b.tokens, generator.condition(self.z, b.keys), b.codes)
        generator.train(training)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), b.tokens.reshape(-1)).item()
