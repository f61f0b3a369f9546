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


def _sounding_at(roll: Roll, step: int) -> np.ndarray:
    """The pitches sounding at ``step``, highest first (one of each)."""
    n = roll.notes
    pitches = n[(n[:, 1] <= step) & (n[:, 2] > step), 0]
    return np.unique(pitches)[::-1]


def parallels(roll: Roll) -> float:
    """Parallel fifths and octaves per 100 beats."""
    count, beats = parallel_count(roll)
    return 100.0 * count / max(beats, 1)


def parallel_count(roll: Roll) -> tuple[int, int]:
    """(parallel fifths and octaves, beats) in a roll."""
    steps, _ = _beats(roll)
    count, prev = 0, None
    for step in steps:
        now = _sounding_at(roll, step)
        if prev is not None and len(prev) == len(now) > 1:
            for i in range(len(now)):
                for j in range(i + 1, len(now)):
                    a, b = prev[i] - prev[j], now[i] - now[j]
                    perfect = a == b and a > 0 and a % 12 in (0, 7)
                    moved = prev[i] != now[i] and np.sign(now[i] - prev[i]) == np.sign(now[j] - prev[j])
                    count += bool(perfect and moved)
        prev = now
    return count, len(steps)


def pooled_parallels(rolls) -> float:
    """Parallel fifths and octaves per 100 beats of a set of pieces, pooled over them."""
    counts = np.array([parallel_count(r) for r in rolls]).reshape(-1, 2)
    return 100.0 * int(counts[:, 0].sum()) / max(int(counts[:, 1].sum()), 1)


def non_chord_tones(roll: Roll) -> tuple[int, int]:
    """(notes outside the best-fitting chord, notes) on the strong beats."""
    steps, strong = _beats(roll)
    outside = total = 0
    for step, is_strong in zip(steps, strong):
        if not is_strong:
            continue
        pcs = np.bincount(_sounding_at(roll, step) % 12, minlength=12)
        if pcs.sum() < 2:
            continue
        held = CHORDS @ pcs  # notes inside each chord
        outside += int(pcs.sum() - held.max())
        total += int(pcs.sum())
    return outside, total


def above_melody(roll: Roll, melody: Roll) -> float:
    """Beats (per 100) where a note sounds above the melody note (the melody's notes: ``melody``)."""
    steps, _ = _beats(roll)
    mel = melody.notes
    count = 0
    for step in steps:
        m = mel[(mel[:, 1] <= step) & (mel[:, 2] > step), 0]
        if len(m):
            count += bool((_sounding_at(roll, step) > m.max()).any())
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
