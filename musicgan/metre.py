"""Metre: where a piece's bars begin, and each step's place in its bar.

A metre is a time signature as written, ``(numerator, denominator)``: 3/4 is ``(3, 4)``, 6/8 is
``(6, 8)``. A bar of it lasts ``numerator * 4 / denominator`` quarter-note beats (6/8: 3 beats,
4/2: 8), so on a grid of ``steps_per_beat`` steps a beat it lasts :func:`bar_steps` steps. A
piece's time signatures (``Roll.time_signatures``: ``(step, numerator, denominator)`` rows) start a
new bar where they change, and bars follow each other from there.

Networks see each step's *code*: its metre's index in the model's list of metres times the
longest bar, plus its position in the bar (:meth:`musicgan.models.ModelConfig.step_codes`). The listener's view (onsets on the
downbeat, the onset profile over the bar, the bar-to-bar regularity of the rhythm) is in
:mod:`musicgan.metrics`.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

Metre = tuple  # (numerator, denominator)
COMMON = ((4, 4), (3, 4), (2, 4), (2, 2), (6, 8), (3, 8), (9, 8), (12, 8), (3, 2), (4, 2), (6, 4))


def bar_steps(metre, steps_per_beat: int) -> int:
    """Steps in one bar of ``metre``: 4/4 at 4 steps a beat is 16, 6/8 is 12, 4/2 is 32."""
    numerator, denominator = metre
    return max(1, round(numerator * 4 / denominator * steps_per_beat))


def reading(said, share: str, model_metres, refusal: str) -> list[float]:
    """What a model's config says of a habit of its music (``said``: {``share``: a share of its
    pieces, "beats": {metre name: beats}}; None: not read) as [the share, then the beats in each
    of ``model_metres``, 0 where not said]; all zeros for None. ValueError(``refusal``) for
    anything that is not such a reading (a checkpoint's config is untrusted)."""
    if said is None:
        return [0.0] * (1 + len(model_metres))
    part, beats = (said.get(share), said.get("beats")) if isinstance(said, dict) else (None, None)
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not (number(part) and 0 <= part <= 1 and isinstance(beats, dict)
            and all(number(v) and 0 <= v <= 1000 for v in beats.values())):
        raise ValueError(refusal)
    return [float(part)] + [float(beats.get(name(m), 0)) for m in model_metres]


def name(metre) -> str:
    return f"{metre[0]}/{metre[1]}"


def parse(text: str) -> tuple:
    """'6/8' -> (6, 8); ValueError for anything that is not a time signature."""
    try:
        numerator, denominator = (int(part) for part in str(text).strip().split("/"))
    except ValueError:
        raise ValueError(f"not a metre: {text!r} (say e.g. '3/4' or '6/8')") from None
    if not 1 <= numerator <= 32 or denominator not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"not a metre: {text!r} (say e.g. '3/4' or '6/8')")
    return numerator, denominator


def segments(time_signatures, n_steps: int) -> list[tuple[int, int, tuple]]:
    """(start, end, metre) of each stretch of a piece in one metre, covering steps 0..n_steps."""
    rows = sorted((int(s), (int(n), int(d))) for s, n, d in time_signatures) or [(0, (4, 4))]
    if rows[0][0] > 0:
        rows.insert(0, (0, rows[0][1]))
    out = []
    for (start, metre), (end, _) in zip(rows, rows[1:] + [(max(n_steps, rows[-1][0]), None)]):
        if end > start:
            out.append((start, end, metre))
    return out or [(0, max(n_steps, 0), rows[-1][1])]


def bar_lines(time_signatures, n_steps: int, steps_per_beat: int) -> np.ndarray:
    """The step where each bar begins, for bars that begin before ``n_steps``."""
    starts = [np.arange(start, end, bar_steps(metre, steps_per_beat))
              for start, end, metre in segments(time_signatures, n_steps)]
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)


def bar_spans(time_signatures, n_steps: int, steps_per_beat: int) -> list[tuple[int, int]]:
    """(first step, end step) of each bar of :func:`bar_lines`, the last one ending at ``n_steps``."""
    lines = bar_lines(time_signatures, n_steps, steps_per_beat).tolist() + [n_steps]
    return list(zip(lines, lines[1:]))


def positions(time_signatures, n_steps: int, steps_per_beat: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(the position of each step in its bar (n_steps,), the metre of each step as an index into
    the returned list of metres (n_steps,), that list)."""
    position = np.zeros(n_steps, np.int64)
    which = np.zeros(n_steps, np.int64)
    metres: list = []
    for start, end, metre in segments(time_signatures, n_steps):
        end = min(end, n_steps)
        if metre not in metres:
            metres.append(metre)
        position[start:end] = np.arange(end - start) % bar_steps(metre, steps_per_beat)
        which[start:end] = metres.index(metre)
    return position, which, metres


def alike(metre, known) -> tuple | None:
    """The metre of ``known`` whose bars are ``metre``'s: as long, and both simple or both compound,
    so their strong places coincide (2/2 and 4/4, 2/4 and 4/8; not 6/8 and 3/4). None if none is."""
    for other in known:
        if other[0] * metre[1] == metre[0] * other[1] and _compound(other) == _compound(metre):
            return tuple(other)
    return None


def read_as(metre, known) -> tuple | None:
    """The metre of ``known`` to read music in ``metre`` as: one :func:`alike` it, else one alike
    two of its bars (2/4 as 4/4, 3/8 as 6/8: two bars as one), else one alike half of its bar (4/4
    as 2/4, 6/8 as 3/8: a bar as two; a compound bar is halved only between its beats). Bar lines
    stay bar lines either way, and the strong beats stay strong. None if none is."""
    numerator, denominator = metre
    halves = numerator % (6 if _compound(metre) else 2) == 0
    return (alike(metre, known) or alike((2 * numerator, denominator), known)
            or (alike((numerator // 2, denominator), known) if halves else None))


def _compound(metre) -> bool:
    """Beats of three eighths or quarters: 6/8, 9/8, 12/8, 6/4."""
    return metre[0] % 3 == 0 and metre[0] > 3


def quarters(metre) -> Fraction:
    """How long a bar of ``metre`` lasts, in quarter notes (6/8: 3)."""
    return Fraction(4 * metre[0], metre[1])


def metre_at(time_signatures, step: int) -> tuple:
    """The metre in force at ``step``."""
    current = (4, 4)
    for start, numerator, denominator in sorted(time_signatures):
        if start > step:
            break
        current = (int(numerator), int(denominator))
    return current


def main_metre(rolls) -> tuple:
    """The metre most bars of ``rolls`` are in (4/4 when there are none)."""
    counts = bars_per_metre(rolls)
    return max(counts, key=counts.get) if counts else (4, 4)


def bars_per_metre(rolls) -> dict:
    """How many bars of ``rolls`` are in each metre, most first."""
    counts: dict = {}
    for roll in rolls:
        for start, end, metre in segments(roll.time_signatures, roll.n_steps):
            counts[metre] = counts.get(metre, 0) + (end - start) / bar_steps(metre, roll.steps_per_beat)
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
