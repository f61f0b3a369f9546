"""Voice-leading counts a music-theory teacher marks in a harmonisation, computed the same way for
the model's pieces and for the music it learnt from.

A roll holds notes, not parts, so the parts are read off each beat as the sounding notes from the
top down (the skyline of :mod:`musicgan.voices`): the top note is the melody, the bottom one the
bass, and between two beats that sound as many notes, the k-th highest at one goes to the k-th
highest at the next.

* **Parallel fifths and octaves**, per 100 beats: two parts a perfect fifth apart (or one or more
  octaves) on one beat, the same interval on the next, both having moved the same way.
* **Non-chord tones on strong beats**, as a share of the notes sounding there (the first beat of a
  bar, and the middle of a 4/4 or 4/2 bar): the notes whose pitch class is outside the triad or
  dominant seventh that holds the most of them.
* **Notes above the melody** (harmonisations only), per 100 beats: beats where the melody given is
  not the top note. Music read as a skyline has none by definition.
"""
from __future__ import annotations

import numpy as np

from . import metre
from .midi import Roll

# chords as pitch-class sets from their root: major, minor and diminished triads, dominant seventh
SHAPES = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 7, 10))
CHORDS = np.array([[i in {(root + s) % 12 for s in shape} for i in range(12)]
                   for shape in SHAPES for root in range(12)], dtype=bool)  # (48, 12): chord -> its pitch classes


def _beats(roll: Roll) -> tuple[list, list]:
    """(the step where each beat starts, whether it is strong) by the roll's own metre."""
    steps, strong = [], []
    for start, end in metre.bar_spans(roll.time_signatures, roll.n_steps, roll.steps_per_beat):
        m = metre.metre_at(roll.time_signatures, start)
        beat = max(1, round(4 / m[1] * roll.steps_per_beat))
        n = max(1, (end - start) // beat)
        for b in range(n):
            steps.append(start + b * beat)
            strong.append(b == 0 or (m[0] == 4 and b == 2))
    return steps, strong


def _sounding(roll: Roll, steps) -> np.ndarray:
    """(len(steps), 128) bool: the pitches sounding at each of ``steps`` (in order), at once: a
    note sounds at the steps from its start up to, not at, its end."""
    steps, n = np.asarray(steps, dtype=np.int64), roll.notes
    marks = np.zeros((len(steps) + 1, 128), dtype=np.int32)  # +1 where a note begins to sound, -1 where it ends
    np.add.at(marks, (np.searchsorted(steps, n[:, 1]), n[:, 0]), 1)
    np.add.at(marks, (np.searchsorted(steps, n[:, 2]), n[:, 0]), -1)
    return np.cumsum(marks, 0)[:-1] > 0


def _pitches(roll: Roll, steps) -> np.ndarray:
    """(len(steps), 128): at each of ``steps``, each pitch where it sounds, and -1 where it does not."""
    return np.where(_sounding(roll, steps), np.arange(128), -1)


def parallels(roll: Roll) -> float:
    """Parallel fifths and octaves per 100 beats."""
    count, beats = parallel_count(roll)
    return 100.0 * count / max(beats, 1)


def parallel_count(roll: Roll) -> tuple[int, int]:
    """(parallel fifths and octaves, beats) in a roll: over each two beats that sound as many
    notes (two or more), the pairs of parts (the k-th highest note at both) a fifth or octaves
    apart at both that both moved, the same way. In one pass over the beats (generation counts
    the piece so far for every candidate of every window)."""
    steps, _ = _beats(roll)
    pitches = _pitches(roll, steps)
    count = (pitches >= 0).sum(1)
    parts = int(count.max(initial=0))
    if len(steps) < 2 or parts < 2:
        return 0, len(steps)
    # each beat's pitches, highest first (-1 past its last)
    pitch = -np.sort(-pitches, axis=1)[:, :parts]
    before, now = pitch[:-1], pitch[1:]
    i, j = np.triu_indices(parts, 1)  # every pair of parts, the upper one first
    apart_before, apart_now = before[:, i] - before[:, j], now[:, i] - now[:, j]
    perfect = (apart_before == apart_now) & (apart_before > 0) & np.isin(apart_before % 12, (0, 7))
    moved = (before[:, i] != now[:, i]) & (np.sign(now[:, i] - before[:, i]) == np.sign(now[:, j] - before[:, j]))
    counted = ((count[:-1] == count[1:]) & (count[1:] > 1))[:, None] & (j[None] < count[1:, None])
    return int((perfect & moved & counted).sum()), len(steps)


def pooled_parallels(rolls) -> float:
    """Parallel fifths and octaves per 100 beats of a set of pieces, pooled over them."""
    counts = np.array([parallel_count(r) for r in rolls]).reshape(-1, 2)
    return 100.0 * int(counts[:, 0].sum()) / max(int(counts[:, 1].sum()), 1)


def non_chord_tones(roll: Roll) -> tuple[int, int]:
    """(notes outside the best-fitting chord, notes) on the strong beats."""
    steps, strong = _beats(roll)
    outside = total = 0
    for sounding in _sounding(roll, [s for s, is_strong in zip(steps, strong) if is_strong]):
        pcs = np.bincount(np.flatnonzero(sounding) % 12, minlength=12)
        if pcs.sum() < 2:
            continue
        held = CHORDS @ pcs  # notes inside each chord
        outside += int(pcs.sum() - held.max())
        total += int(pcs.sum())
    return outside, total


def above_melody(roll: Roll, melody: Roll) -> float:
    """Beats (per 100) where a note sounds above the melody note (the melody's notes: ``melody``)."""
    steps, _ = _beats(roll)
    highest, melody_top = (_pitches(r, steps).max(1, initial=-1) for r in (roll, melody))
    count = int(((melody_top >= 0) & (highest > melody_top)).sum())
    return 100.0 * count / max(len(steps), 1)


def summary(rolls: list[Roll], melodies: list[Roll] | None = None) -> dict:
    """The counts over a set of pieces: parallels per 100 beats and the share of non-chord tones
    on strong beats (both pooled over the pieces), and notes above the melody where given."""
    beats = sum(len(_beats(r)[0]) for r in rolls)
    nct = [non_chord_tones(r) for r in rolls]
    out = {"parallels_per_100_beats": pooled_parallels(rolls),
           "non_chord_tones_strong": sum(a for a, _ in nct) / max(sum(b for _, b in nct), 1)}
    if melodies is not None:
        above = sum(above_melody(r, m) * len(_beats(r)[0]) / 100 for r, m in zip(rolls, melodies))
        out["above_melody_per_100_beats"] = 100 * above / max(beats, 1)
    return out
