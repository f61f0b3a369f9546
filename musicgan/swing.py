"""Compound time read as simple time in swing: a jig's 6/8 as 2/4, for a model that knows 2/4
(or 4/4, two bars as one) and not 6/8; and a metre of half notes at half its note values (3/2 as
3/4). Both read the music in another time, each beat of it as a quarter of the model's.

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

A metre whose beat is a half note and that no metre the model knows reads as bar for bar (3/2,
a hymn's or a sarabande's; 2/2 and 4/2 read as 4/4 already, :func:`musicgan.metre.read_as`) is
read the same way, in another time: at half its note values, its halves as quarters (3/2 as
3/4), and back at twice them. Its beats stay its beats, three to a bar; a note shorter than a
sixteenth read (an eighth of a step's length written) is read a step later or earlier, as in
swing, and the music given comes back as it was.
"""
from __future__ import annotations

import numpy as np

from . import metre as metres
from .midi import Roll

TO_SWING = np.array([0, 1, 1, 2, 2, 3])  # sixteenths of a dotted beat -> of a quarter
FROM_SWING = np.array([0, 2, 4, 5])  # and back


def simple(metre) -> tuple | None:
    """The simple metre of quarters a metre reads as in another time: a compound metre of eighths
    in swing (6/8: 2/4, 9/8: 3/4, 12/8: 4/4), a metre of half notes at half its note values (3/2:
    3/4); None for any other."""
    numerator, denominator = metre
    if halved(metre):
        return (numerator, 4)
    return (numerator // 3, 4) if denominator == 8 and numerator % 3 == 0 and numerator > 3 else None


def halved(metre) -> bool:
    """Whether ``metre`` is read at half its note values (a beat of a half note), not in swing."""
    return metre[1] == 2


def readable(metre, steps_per_beat: int) -> bool:
    """Whether music in ``metre`` can be read in another time on a grid of ``steps_per_beat``: it
    has a reading (:func:`simple`), and for swing, the grid has the sixteenths the reading maps
    (4, 8, 12 ... a beat)."""
    return simple(metre) is not None and (halved(metre) or steps_per_beat % 4 == 0)


def words(metre) -> str:
    """How a metre read in another time was read, in the description's words."""
    return ", its halves as quarters" if halved(metre) else " in swing"


def swung(roll: Roll, which) -> tuple[Roll, tuple]:
    """(``roll`` with its bars in the metres of ``which`` (see :func:`simple`) read in swing or at
    half their note values, in their simple metres; its time signatures in the new time, each in its own
    metre as written: what :func:`unswung` reads to take it back)."""
    moved = lambda t: swung_steps(t, roll.time_signatures, roll.n_steps, roll.steps_per_beat, which)  # noqa: E731
    written = tuple((int(moved(np.array([s]))[0]), int(n), int(d)) for s, n, d in roll.time_signatures)
    read = tuple((s, *(simple((n, d)) if (n, d) in which else (n, d))) for s, n, d in written)
    return roll.retimed(moved, read), written


def unswung(roll: Roll, which) -> Roll:
    """``roll`` (in the time of :func:`swung`, its time signatures as written) with its bars in the
    metres of ``which`` taken back out of swing (or back to their note values)."""
    return roll.retimed(lambda t: unswung_steps(t, roll.time_signatures, roll.n_steps, roll.steps_per_beat, which))


def swung_steps(t, time_signatures, n_steps: int, steps_per_beat: int, which) -> np.ndarray:
    """Steps ``t`` of a piece (its time signatures as written) in the time of :func:`swung`."""
    starts, others, kinds = _segments(time_signatures, n_steps, steps_per_beat, set(which), True)
    return _moved(t, starts, others, kinds, steps_per_beat, True)


def unswung_steps(t, time_signatures, n_steps: int, steps_per_beat: int, which) -> np.ndarray:
    """Steps ``t`` of a piece in the time of :func:`swung` (its time signatures as written) out of swing."""
    starts, others, kinds = _segments(time_signatures, n_steps, steps_per_beat, set(which), False)
    return _moved(t, starts, others, kinds, steps_per_beat, False)


PLAIN, SWUNG, HALVED = 0, 1, 2  # how a stretch of one metre is read


def _segments(time_signatures, n_steps: int, steps_per_beat: int, which: set, forward: bool):
    """(each stretch's start in one metre, its start in the other time, how it is read: PLAIN,
    SWUNG or HALVED)."""
    rows = metres.segments(time_signatures, n_steps)
    starts = np.array([start for start, _, _ in rows], np.int64)
    kinds = np.array([PLAIN if m not in which else HALVED if halved(m) else SWUNG for _, _, m in rows], np.int64)
    others = [0]
    for (start, end, _), kind in zip(rows[:-1], kinds):
        others.append(others[-1] + int(_within(np.array([end - start]), kind, steps_per_beat, forward)[0]))
    return starts, np.array(others, np.int64), kinds


def _within(offset: np.ndarray, kind, steps_per_beat: int, forward: bool) -> np.ndarray:
    """Steps from the start of a stretch read as ``kind`` (``offset``) in the other time."""
    offset = np.asarray(offset, np.int64)
    out = np.where(kind == HALVED, offset // 2 if forward else offset * 2, offset)
    swung_ = kind == SWUNG
    if np.any(swung_):
        u = steps_per_beat // 4  # steps of a sixteenth
        beat_from, beat_to, table = (6 * u, 4 * u, TO_SWING) if forward else (4 * u, 6 * u, FROM_SWING)
        beats, place = np.divmod(offset, beat_from)
        sixteenth, rest = np.divmod(place, u)
        out = np.where(swung_, beats * beat_to + table[np.minimum(sixteenth, len(table) - 1)] * u + rest, out)
    return out


def _moved(t, starts, others, kinds, steps_per_beat: int, forward: bool) -> np.ndarray:
    """Steps ``t`` moved into the other time (``forward``) or out of it."""
    t = np.asarray(t, np.int64)
    i = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
    return others[i] + _within(t - starts[i], kinds[i], steps_per_beat, forward)
