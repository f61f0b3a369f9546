"""The copy guard: a compact index of the training music that lets generation refuse a piece
that quotes it verbatim.

A model that learned from a few files can replay runs of them note for note, and a musician
should not get someone else's bars back as "new" music. The index holds a 64-bit hash of every
pair of consecutive bars of the training music (bars of 4 beats, transposition-invariant,
starting on any beat: the same bar keys as :func:`musicgan.metrics.copy_runs`). A generated piece
*copies* when two consecutive bars of it, starting on any of its beats, hash to a pair in the
index, i.e. when ``copy_runs`` would find a run of 2 bars or more. (Starting on its beats, not
only every 4 beats from its start: a piece in 3/4 or 9/8 can quote 8 beats that begin anywhere.)
The hashes cannot be played back: the checkpoint gains a few hundred kilobytes, not the training
music.

:func:`musicgan.generate.sample_rolls` uses the index to pass over candidates that copy (see
there). The measurement in :mod:`musicgan.metrics` stays independent of it: it searches the
training music itself, so the benches check the guard rather than trust it.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .metrics import bar_blocks
from .midi import Roll

COPY_BARS = 2  # a run of this many consecutive bars found verbatim in the training music is a copy
MAX_INDEX = 4_000_000  # hashes (32 MB); a corpus with more bar pairs than this is not indexed


def _pair_hashes(roll: Roll) -> list[int]:
    """Hashes of each block of a bar (4 beats, starting on every beat) joined with the bar after it."""
    bar = 4 * roll.steps_per_beat
    keys = bar_blocks(roll, bar)
    return [int.from_bytes(hashlib.blake2b(len(key).to_bytes(4, "little") + key + keys[start + bar],
                                           digest_size=8).digest(), "little", signed=True)
            for start, key in keys.items() if start + bar in keys]


def build(rolls) -> np.ndarray | None:
    """Sorted unique int64 hashes of every bar pair of ``rolls``; None when there would be more
    than MAX_INDEX of them."""
    hashes: set[int] = set()
    for roll in rolls:
        hashes.update(_pair_hashes(roll))
        if len(hashes) > MAX_INDEX:
            return None
    return np.array(sorted(hashes), dtype=np.int64)


def copies(roll: Roll, index: np.ndarray) -> bool:
    """Whether two consecutive bars of ``roll`` (4 beats each, starting on any of its beats) occur
    verbatim in the indexed music."""
    if index is None or not len(index):
        return False
    pairs = np.array(_pair_hashes(roll), dtype=np.int64)
    if not len(pairs):
        return False
    found = np.searchsorted(index, pairs)
    return bool((index[np.minimum(found, len(index) - 1)] == pairs).any())
