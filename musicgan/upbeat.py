"""How a piece begins: on its first downbeat, or with an upbeat (a pickup) before it, as the music
the model learnt from begins.

Most chorales and fiddle tunes begin before their first downbeat: 72% of the Bach chorales' training
split (a beat in 4/4 for most) and 74% of the fiddle tunes' (half a beat to three beats). A model
learns from windows cut at bar lines anywhere in a piece, and its own pieces began on the
downbeat: 3 of 40 of the chorale model's and 1 of 40 of the fiddle model's opened otherwise. A
piece that begins on a pickup also ends a pickup early: its first and last bars together make one
whole bar, so a chorale whose last chord is struck on the downbeat holds it 3 beats, not 4.

So the trainer reads how the music begins (:func:`habit`, kept in the checkpoint's ``data.opens``),
and a new piece opens with a pickup as often as its music does (:func:`pickup_for`, by a stream of
the piece's seed), of the length the music's pickups have in its metre: the voices are given a rest
up to the pickup, as the music's first bar rests before its own, and the model draws on from there.
Its last bar ends the pickup's length early (:func:`musicgan.generate.sample_rolls`). A roll holds
a pickup as the music's are held, a whole first bar whose music comes at its end (see
:class:`musicgan.midi.Roll`); a file writes it as notation does, a short first bar in a time
signature of its own (:func:`musicgan.midi.with_pickup_bar`), so that it plays from its first note.

How a piece's voices come in (:func:`entries`: a madrigal's one by one, a chorale's together) is
read here too. The trainer keeps how often its music's voices come in one by one, and some of
those pieces' entries (:func:`entering`, ``data.entries`` in the checkpoint, ``Generator.entering``);
a new piece's voices come in so as often (:func:`entries_for`): each voice is given a rest until
its entry and strikes a note there (docs/quality.md, "Voices that come in one by one").
"""
from __future__ import annotations

import numpy as np
import torch

from . import metre as metres
from .midi import END, START, pickup_steps, sounding_counts


def pickup(roll) -> tuple[tuple, int]:
    """(the metre of a piece's first bar, the steps of its pickup: :func:`musicgan.midi.pickup_steps`)."""
    return metres.metre_at(roll.time_signatures, 0), pickup_steps(roll)


def habit(rolls) -> dict | None:
    """How the pieces of ``rolls`` (whole pieces, as read: a pickup is the end of a whole first bar)
    begin: {"pickup": the share whose first note comes after their first downbeat, "beats":
    {metre name: the median beats of those pickups, of the pieces that open in that metre}}; None
    when none has notes."""
    has, beats = [], {}
    for roll in rolls:
        if not len(roll.notes):
            continue
        first, steps = pickup(roll)
        has.append(steps > 0)
        if steps:
            beats.setdefault(metres.name(first), []).append(steps / roll.steps_per_beat)
    if not has:
        return None
    return {"pickup": round(float(np.mean(has)), 3),
            "beats": {name: float(np.median(b)) for name, b in sorted(beats.items(), key=lambda nb: -len(nb[1]))}}


def opens_of(said, model_metres) -> torch.Tensor:
    """A model's ``Generator.opens`` from what its config says of how its music begins
    (``data.opens``, :func:`habit`; None: not read): the share opening with a pickup, then the
    beats of a pickup in each of ``model_metres`` (0 where not said: no pickup in that metre);
    ValueError for anything that is not such a reading."""
    return torch.tensor(metres.reading(
        said, "pickup", model_metres, "data.opens is not a share of pieces opening with a pickup and its beats by metre"))


PICKUP_STREAM = 7177  # the seed's stream that decides whether its piece opens with a pickup


def pickup_for(seed: int, opens: torch.Tensor, model_metres, piece_metre, steps_per_beat: int) -> int:
    """The steps of the pickup a new piece of ``seed`` in ``piece_metre`` opens with (0: none), by
    ``opens`` (a model's ``Generator.opens``): one as often as its music's pieces open with one, of
    their length in that metre, shorter than a bar and a whole number of steps (at least one)."""
    share = float(opens[0])
    if share <= 0 or piece_metre not in model_metres:
        return 0
    beats = float(opens[1 + list(model_metres).index(piece_metre)])
    steps = max(1, round(beats * steps_per_beat)) if beats > 0 else 0
    if not 0 < steps < metres.bar_steps(piece_metre, steps_per_beat):
        return 0
    return steps if np.random.default_rng([int(seed) & 0xFFFFFFFF, PICKUP_STREAM]).random() < share else 0


OPENING_BARS = 8  # the bars of a piece's opening that its voices' entries are read from
ENTRIES_STREAM = 7178  # (the stream of a seed that draws the entries of its piece)


def entries(roll, voices: int) -> np.ndarray:
    """(voices,) when each of a piece's voices comes in, in beats after its first note: how many
    beats the piece plays before k notes first sound together (k = 1 .. voices, a skyline's
    voices from the top, :mod:`musicgan.voices`), up to its usual texture (the median count of
    notes sounding in its first OPENING_BARS bars, where it sounds); the voices past that come in
    with the last of those. A chorale's four voices all come in on its first note (zeros); a
    madrigal's enter one by one."""
    notes = roll.notes
    out = np.zeros(voices)
    if not len(notes):
        return out
    first = int(notes[:, START].min())
    span = OPENING_BARS * metres.bar_steps(metres.metre_at(roll.time_signatures, 0), roll.steps_per_beat)
    shifted = notes.copy()
    shifted[:, START:END + 1] -= first
    counts = np.minimum(sounding_counts(shifted)[:span], voices)
    usual = int(np.ceil(np.median(counts[counts > 0]))) if (counts > 0).any() else 1
    for k in range(1, usual + 1):
        out[k - 1] = np.argmax(counts >= k) / roll.steps_per_beat
    out[usual:] = out[usual - 1]
    return np.maximum.accumulate(out)


MOST_ENTRIES = 64  # the most pieces' entries a model keeps (spread across its music)
HEARD_APART = 1.0  # the beats by which a piece's last voice comes in after its first, at least, to be heard
# coming in one by one (a chorale's fourth voice half a beat after the others, out of a unison, is not)


def entering(rolls, voices: int) -> dict | None:
    """How the voices of a model's music come in (``data.entries`` in its checkpoint): {"share":
    the share of its pieces whose voices come in one by one (the last HEARD_APART beats or more
    after the first note), "beats": the entries of up to MOST_ENTRIES of those pieces
    (:func:`entries`), taken evenly across them}; None when every piece's voices come in together
    (a chorale's, a fiddle tune's one voice)."""
    rows = [entries(r, voices) for r in rolls if len(r.notes)]
    apart = [row for row in rows if row.max() >= HEARD_APART]
    if not apart:
        return None
    keep = np.unique(np.linspace(0, len(apart) - 1, min(len(apart), MOST_ENTRIES)).astype(int))
    return {"share": round(len(apart) / len(rows), 3),
            "beats": [[round(float(b), 3) for b in apart[i]] for i in keep]}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))


def entering_of(said, voices: int) -> dict | None:
    """``data.entries`` of a checkpoint (:func:`entering`; None: its voices come in together),
    checked: ValueError for anything that is not such a reading for a model of ``voices`` voices."""
    if said is None:
        return None
    share, beats = (said.get("share"), said.get("beats")) if isinstance(said, dict) else (None, None)
    if not (_number(share) and 0 <= share <= 1 and isinstance(beats, list) and 0 < len(beats) <= MOST_ENTRIES
            and all(isinstance(row, list) and len(row) == voices and all(_number(b) and 0 <= b <= 1000 for b in row)
                    for row in beats)):
        raise ValueError(f"data.entries is not a share of pieces whose {voices} voices come in one by one "
                         "and their entries in beats")
    return {"share": float(share), "beats": [[float(b) for b in row] for row in beats]}


def entries_for(seed: int, said: dict | None, steps_per_beat: int) -> np.ndarray | None:
    """(V,) the steps after its first note at which each voice of a seed's piece comes in, by a
    stream of the seed: as often as its model's music's voices come in one by one (``said``,
    :func:`entering`), one of those pieces' entries; None: all at once."""
    if not said:
        return None
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, ENTRIES_STREAM])
    if rng.random() >= said["share"]:
        return None
    row = np.asarray(said["beats"][rng.integers(len(said["beats"]))])
    return np.maximum.accumulate(np.round(row * steps_per_beat).astype(np.int64))
