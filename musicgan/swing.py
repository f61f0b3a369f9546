"""Compound time read as simple time in swing: a jig's 6/8 as 2/4, for a model that knows 2/4
(or 4/4, two bars as one) and not 6/8.

A bar of 6/8 has two beats of three eighths each (dotted quarters), 9/8 three, 12/8 four. Read in
swing, each of those beats is one quarter of the model's, so the bar lines and beats stay where
they were and the chords change where a jig's change, once or twice a bar. Within a beat, the
three eighths become a long-short pair: on a grid of sixteenths, the six steps of a dotted beat go
to the four of a quarter as 0 1 2 3 4 5 -> 0 1 1 2 2 3, and back as 0 1 2 3 -> 0 2 4 5. So the
model's quarters come back as dotted quarters, its eighths as a quarter and an eighth (the
lilt of 6/8), and its sixteenths as two eighths and two sixteenths. Its reading of the music is
not exact where two notes of a beat fall on one step read (a sixteenth on the second or fourth
step of a dotted beat); the music given comes back as it was all the same (see
:func:`musicgan.api.compose_harmonisation`).

Measured on 12 held-out jigs harmonised by the chorale model (docs/quality.md): a third of the
voices' onsets fall on a bar's two beats and the chords change with them, against the
beats in threes of reading 6/8 as 3/4 and a chord under every eighth of reading it at half speed.
"""
from __future__ import annotations

import numpy as np

from . import metre as metres
from .midi import Roll

TO_SWING = np.array([0, 1, 1, 2, 2, 3])  # sixteenths of a dotted beat -> of a quarter
FROM_SWING = np.array([0, 2, 4, 5])  # and back


def simple(metre) -> tuple | None:
    """The simple metre a compound metre of eighths reads as in swing (6/8: 2/4, 9/8: 3/4, 12/8:
    4/4); None for any other."""
    numerator, denominator = metre
    return (numerator // 3, 4) if denominator == 8 and numerator % 3 == 0 and numerator > 3 else None


def readable(steps_per_beat: int) -> bool:
    """Whether a grid of ``steps_per_beat`` has the sixteenths the reading maps (4, 8, 12 ...)."""
    return steps_per_beat % 4 == 0


def swung(roll: Roll, which) -> tuple[Roll, tuple]:
    """(``roll`` with its bars in the metres of ``which`` (compound metres, see :func:`simple`)
    read in swing, in their simple metres; its time signatures in the new time, each in its own
    metre as written: what :func:`unswung` reads to take it back)."""
    moved = lambda t: swung_steps(t, roll.time_signatures, roll.n_steps, roll.steps_per_beat, which)  # noqa: E731
    written = tuple((int(moved(np.array([s]))[0]), int(n), int(d)) for s, n, d in roll.time_signatures)
    read = tuple((s, *(simple((n, d)) if (n, d) in which else (n, d))) for s, n, d in written)
    return roll.retimed(moved, read), written


def unswung(roll: Roll, which) -> Roll:
    """``roll`` (in the time of :func:`swung`, its time signatures as written) with its bars in the
    metres of ``which`` taken back out of swing."""
    return roll.retimed(lambda t: unswung_steps(t, roll.time_signatures, roll.n_steps, roll.steps_per_beat, which))


def swung_steps(t, time_signatures, n_steps: int, steps_per_beat: int, which) -> np.ndarray:
    """Steps ``t`` of a piece (its time signatures as written) in the time of :func:`swung`."""
    starts, others, swung_ = _segments(time_signatures, n_steps, steps_per_beat, set(which), True)
    return _moved(t, starts, others, swung_, steps_per_beat, True)


def unswung_steps(t, time_signatures, n_steps: int, steps_per_beat: int, which) -> np.ndarray:
    """Steps ``t`` of a piece in the time of :func:`swung` (its time signatures as written) out of swing."""
    starts, others, swung_ = _segments(time_signatures, n_steps, steps_per_beat, set(which), False)
    return _moved(t, starts, others, swung_, steps_per_beat, False)


def _segments(time_signatures, n_steps: int, steps_per_beat: int, which: set, forward: bool):
    """(each stretch's start in one metre, its start in the other time, whether it is swung)."""
    rows = metres.segments(time_signatures, n_steps)
    starts = np.array([start for start, _, _ in rows], np.int64)
    swung_ = np.array([m in which for _, _, m in rows], bool)
    others = [0]
    for (start, end, _), is_swung in zip(rows[:-1], swung_):
        others.append(others[-1] + int(_within(np.array([end - start]), steps_per_beat, forward)[0] if is_swung
                                       else end - start))
    return starts, np.array(others, np.int64), swung_


def _within(offset: np.ndarray, steps_per_beat: int, forward: bool) -> np.ndarray:
    """Steps from the start of a swung stretch (``offset``) in the other time."""
    u = steps_per_beat // 4  # steps of a sixteenth
    beat_from, beat_to, table = (6 * u, 4 * u, TO_SWING) if forward else (4 * u, 6 * u, FROM_SWING)
    beats, place = np.divmod(offset, beat_from)
    sixteenth, rest = np.divmod(place, u)
    return beats * beat_to + table[np.minimum(sixteenth, len(table) - 1)] * u + rest


def _moved(t, starts, others, swung_, steps_per_beat: int, forward: bool) -> np.ndarray:
    """Steps ``t`` moved into swing (``forward``) or out of it."""
    t = np.asarray(t, np.int64)
    i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
    offset = t - starts[i]
    return others[i] + np.where(swung_[i], _within(offset, steps_per_beat, forward), offset)
