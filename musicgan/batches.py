"""Batches of training windows: one interface, two back ends.

The trainer asks a :class:`Batches` for ``draw(n, rng)``: ``n`` windows drawn with replacement,
as tokens (n, T, V), the key of each window (n,) and each step's metrical code (n, T). Where the
windows come from is the back end's business:

* :class:`InMemory` cuts rolls held in memory into windows and encodes them all up front (the
  app, the CLI on a folder of files);
* :class:`Streamed` draws windows from a prepared corpus on disk (``python -m musicgan prepare``)
  and encodes them as batches need them, so the trainer's memory does not grow with the corpus.

Under torchrun each process draws from its own share of the corpus (``rank`` of ``world``), as
DistributedSampler would deal it. Both describe the music in ``meta`` (files, windows, bars,
tempo, program, keys, metres), which the checkpoint keeps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import ending, keys, metre, upbeat
from .data import WindowConfig, Windows
from .midi import Roll
from .shards import ShardedCorpus, StreamingWindows
from .voices import window_tokens


@dataclass
class Batch:
    tokens: torch.Tensor  # (n, T, V) voice tokens
    keys: torch.Tensor  # (n,) the key of each window (musicgan.keys)
    codes: torch.Tensor  # (n, T) each step's metre and position in its bar (ModelConfig.step_codes)


class Batches:
    meta: dict

    def __len__(self) -> int:
        raise NotImplementedError

    def draw(self, n: int, rng: torch.Generator, untransposed: bool = False) -> Batch:
        """``n`` windows drawn uniformly with replacement; ``untransposed``: only the music as it is
        (what the discriminator sees: transposed copies would teach it a flat key distribution)."""
        raise NotImplementedError

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens (m, T, V), codes (m, T), keys (m,)) of up to ``n`` windows as they are, for statistics."""
        raise NotImplementedError


def window_steps(model, window_bars: int = 0) -> int:
    """The length in steps of the windows a run trains on: ``window_bars`` bars of the model's
    commonest metre (0: as many as make 16 beats, 4 bars of 4/4, 6 of 3/4 or 6/8, 2 of 4/2; on a
    grid finer than 4 steps a beat, no more than 128 steps)."""
    bar = model.steps_per_bar
    return (window_bars or max(1, min(-(-16 * model.steps_per_beat // bar), 128 // bar))) * bar


def window_config(model, config) -> WindowConfig:
    """The windows a run trains on (:func:`window_steps`), starting on the pieces' own bar lines.
    A model without metre input counts 4/4 bars from the first step."""
    bar = model.steps_per_bar
    bars = window_steps(model, config.window_bars) // bar
    if not model.metre_input:
        return WindowConfig(window_bars=config.window_bars or 4, hop_bars=config.hop_bars,
                            beats_per_bar=bar // model.steps_per_beat, steps_per_beat=model.steps_per_beat,
                            transpose=(-config.transpose, config.transpose),
                            pitch_range=(model.pitch_low, model.pitch_high))
    return WindowConfig(window_bars=bars, hop_bars=config.hop_bars, steps_per_beat=model.steps_per_beat,
                        transpose=(-config.transpose, config.transpose), pitch_range=(model.pitch_low, model.pitch_high),
                        follow_metre=True, length=bars * bar)


def batches_for(rolls, model, config, device, rank: int = 0, world: int = 1) -> Batches:
    windows = window_config(model, config)
    if isinstance(rolls, ShardedCorpus):
        return Streamed(rolls, windows, model, rank, world)
    return InMemory(rolls, windows, model, device, rank, world)


def _metre_meta(bars: dict) -> dict:
    return {metre.name(m): round(float(n), 1) for m, n in bars.items()}


class InMemory(Batches):
    def __init__(self, rolls: list, config: WindowConfig, model, device, rank: int = 0, world: int = 1):
        self.device = device
        windows = Windows(rolls, config)
        codes = windows.step_codes(model)
        known = (codes >= 0).all(1)  # windows in a metre the model does not know are left out
        windows.index, codes = windows.index[known], codes[known]
        self.windows = windows
        self.tokens = torch.from_numpy(window_tokens(windows, model.pitch_low, model.voices)).to(device)
        self.codes = torch.from_numpy(codes).to(device)
        untransposed = torch.from_numpy(np.nonzero(windows.index[:, 2] == 0)[0])
        shard = torch.arange(rank, len(self.tokens), world)
        self.shard = shard if len(shard) else torch.arange(len(self.tokens))
        mine = untransposed[untransposed % world == rank]
        self.untransposed = mine if len(mine) else untransposed
        # the key of each window: its piece's, moved with the window's transposition
        piece_keys = np.array([keys.of_piece(r.notes) for r in rolls], dtype=np.int64)
        index = windows.index
        window_keys = keys.transpose(piece_keys[index[:, 0]], index[:, 2]) if len(index) else np.zeros(0, np.int64)
        self.keys = torch.from_numpy(window_keys).to(device)
        tempos = sorted(r.tempo_bpm for r in rolls)
        self.meta = {"files": len(rolls), "windows": len(windows), "bars": round(sum(r.n_bars for r in rolls), 1),
                     "tempo_bpm": tempos[len(tempos) // 2],
                     "program": int(np.bincount([r.program for r in rolls], minlength=128).argmax()),
                     "keys": [int(k) for k in np.bincount(piece_keys, minlength=keys.KEYS)],
                     "metres": _metre_meta(metre.bars_per_metre(rolls)),
                     **({} if (ends := ending.habit(rolls)) is None else {"ends": ends}),
                     **({} if (opens := upbeat.habit(rolls)) is None else {"opens": opens}),
                     **({} if (entries := upbeat.entering(rolls, model.voices)) is None else {"entries": entries})}

    def __len__(self) -> int:
        return len(self.tokens)

    def draw(self, n, rng, untransposed=False) -> Batch:
        pool = self.untransposed if untransposed else self.shard
        index = pool[torch.randint(len(pool), (n,), generator=rng)].to(self.device)
        return Batch(self.tokens[index].long(), self.keys[index], self.codes[index])

    def sample(self, n, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        plain = self.untransposed.numpy()
        pick = np.random.default_rng(seed).permutation(plain)[:n] if len(plain) > n else plain
        return (self.tokens[pick].cpu().numpy().astype(np.int64), self.codes[pick].cpu().numpy(),
                self.keys[pick].cpu().numpy())


class Streamed(Batches):
    def __init__(self, corpus: ShardedCorpus, config: WindowConfig, model, rank: int = 0, world: int = 1):
        mine = np.arange(rank, len(corpus), world)
        self.windows = StreamingWindows(corpus, config, model, mine if len(mine) else None)
        # counted on at most 1,000 pieces spread over the corpus
        spread = np.unique(np.linspace(0, len(corpus) - 1, min(len(corpus), 1000)).astype(int))
        pieces = [Roll(notes=corpus.notes(int(i)), steps_per_beat=corpus.steps_per_beat,
                       time_signatures=corpus.time_signatures[int(i)]) for i in spread]
        key_counts = np.bincount([keys.of_piece(r.notes) for r in pieces], minlength=keys.KEYS)
        self.meta = {"files": len(corpus), "windows": len(self.windows), "bars": round(corpus.report.bars, 1),
                     "tempo_bpm": float(np.median(corpus.tempo_bpm)),
                     "program": int(np.bincount(corpus.table[:, 6], minlength=128).argmax()),
                     "keys": [int(k) for k in key_counts], "metres": _metre_meta(corpus.bars_per_metre()),
                     **({} if (ends := ending.habit(pieces)) is None else {"ends": ends}),
                     **({} if (opens := upbeat.habit(pieces)) is None else {"opens": opens}),
                     **({} if (entries := upbeat.entering(pieces, model.voices)) is None else {"entries": entries})}

    def __len__(self) -> int:
        return len(self.windows)

    def draw(self, n, rng, untransposed=False) -> Batch:
        tokens, window_keys, codes = self.windows.sample(n, rng, untransposed)
        return Batch(torch.from_numpy(tokens), torch.from_numpy(window_keys), torch.from_numpy(codes))

    def sample(self, n, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tokens, window_keys, codes = self.windows.sample(n, torch.Generator().manual_seed(seed), untransposed=True)
        return tokens, codes, window_keys
