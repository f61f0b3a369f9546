"""Music a person gives the model to start from (an opening to continue, a line to harmonise):
read on the model's grid, cut to whole bars, and checked against what the model can play, with
the reason in words when it cannot. One place for these checks, so that Continue and Harmonise
refuse the same things with the same messages."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import metre, swing
from .midi import Roll
from .models import ModelConfig


def whole_bars(cfg: ModelConfig, roll: Roll, bars: int, what: str) -> Roll:
    """The first ``bars`` bars of ``roll`` (all of them, if it has fewer) on the model's grid: a
    roll of their notes that lasts to the end of the last bar (its ``n_steps``, a rest at the end
    included). ValueError, in words, for music that has no notes or is in a metre the model does
    not know. ``what`` names the music in messages ("the opening", "the melody")."""
    roll = roll.on_grid(cfg.steps_per_beat)
    if not len(roll.notes):
        raise ValueError(f"{roll.name or what} has no notes")
    lines = metre.bar_lines(roll.time_signatures, roll.n_steps, cfg.steps_per_beat)
    last = int(lines[-1])
    ends = [int(b) for b in lines[1:]] + [last + cfg.bar_steps(metre.metre_at(roll.time_signatures, last))]
    n_steps = ends[min(bars, len(ends)) - 1]
    in_bars = [metre.metre_at(roll.time_signatures, int(b)) for b in lines if b < n_steps]  # (each bar's metre)
    unknown = sorted({m for m in in_bars if m not in cfg.metres}, key=lambda m: (-in_bars.count(m), m))
    if unknown and cfg.metre_input:
        known = ", ".join(metre.name(m) for m in cfg.metres)
        m = unknown[0]
        if in_bars.count(m) * 2 > len(in_bars):
            raise ValueError(f"{what} is in {metre.name(m)}; this model knows {known}")
        count = in_bars.count(m)  # (a few short bars, as some books end a strain: not "in 1/8")
        raise ValueError(f"{what} has {'a bar' if count == 1 else f'{count} bars'} of {metre.name(m)}; "
                         f"this model knows {known}")
    notes = roll.notes[roll.notes[:, 1] < n_steps].copy()
    notes[:, 2] = np.minimum(notes[:, 2], n_steps)
    return Roll(notes=notes, steps_per_beat=cfg.steps_per_beat, tempos=roll.tempos[:1],
                time_signatures=tuple(ts for ts in roll.time_signatures if ts[0] < n_steps),
                program=roll.program, name=roll.name, length=n_steps)


def in_known_metres(cfg: ModelConfig, roll: Roll) -> tuple[Roll, dict, int, tuple, frozenset]:
    """(``roll`` with each of its metres that the model does not know read as one it does
    (:func:`musicgan.metre.read_as`: a hymn in 2/2 for a model of 4/4, a polka in 2/4 two bars to
    one), or failing that, a compound metre read in swing (:mod:`musicgan.swing`: a jig's 6/8 as
    2/4, and so as 4/4 two bars to one) or a metre of half notes at half its note values (a
    hymn's 3/2 as 3/4); what was read as what; the steps its music was moved
    later for it (:func:`lead`); its time signatures as written, in the time it is read in; the
    metres read in another time). Metres with none to be read as are left for :func:`whole_bars` to
    refuse in words."""
    written = roll.time_signatures
    if not cfg.metre_input:
        return roll, {}, 0, written, frozenset()
    own = {(int(n), int(d)) for _, n, d in written} - set(cfg.metres)
    unread = {m for m in own if metre.read_as(m, cfg.metres) is None}
    swung = frozenset(m for m in unread if swing.readable(m, cfg.steps_per_beat)
                      and (swing.simple(m) in cfg.metres or metre.read_as(swing.simple(m), cfg.metres)))
    if swung:
        roll, written = swing.swung(roll, swung)
    read_as = {}
    for mine in own:
        plain = swing.simple(mine) if mine in swung else mine
        other = plain if plain in cfg.metres else metre.read_as(plain, cfg.metres)
        if other is not None:
            read_as[mine] = other
    if not read_as:
        return roll, {}, 0, written, swung
    rows = tuple((s, *read_as.get((int(n), int(d)), (int(n), int(d)))) for s, n, d in written)
    first = metre.metre_at(written, 0)
    steps = lead(cfg, roll, read_as.get(first))
    return replace(roll, time_signatures=rows).later(steps), read_as, steps, written, swung


def lead(cfg: ModelConfig, roll: Roll, other) -> int:
    """How many steps later ``roll``'s music goes when its opening metre is read as ``other`` (None:
    not read as another), so that its pickup, if it has one, leads into the first bar line of
    ``other`` as it led into its own: a 2/4 tune with a pickup of one beat, read as 4/4, starts on
    beat 4 (two beats later); a 4/4 one read as 2/4 starts on beat 2 (two beats earlier). Whole
    bars of rest before the music are left out too. 0 for music that opens on its
    bar line."""
    if other is None or not len(roll.notes):
        return 0
    mine = cfg.bar_steps(metre.metre_at(roll.time_signatures, 0))
    first = int(roll.notes[:, 1].min())
    pickup = -first % mine
    return -(-pickup // cfg.bar_steps(other)) * cfg.bar_steps(other) - pickup - first


class OutOfRange(ValueError):
    """Music with notes outside the model's pitch range: its lowest and highest notes (``low``,
    ``high``), and ``span``, the words that say so (``what`` names the music in them)."""

    def __init__(self, what: str, low: int, high: int, cfg: ModelConfig):
        self.arguments = (what, low, high, cfg)
        self.low, self.high = low, high
        self.span = f"{what}'s notes go from MIDI {low} to {high}; this model plays {cfg.pitch_low} to {cfg.pitch_high}"
        super().__init__(f"{self.span} (transpose it by octaves into that range)")

    def __reduce__(self):  # (as MidiError's)
        return type(self), self.arguments

    def unmoved(self) -> ValueError:
        """The refusal when no whole octave brings all of the music in."""
        return ValueError(f"{self.span}, and no whole octave up or down brings all of them into that range")


def check_range(cfg: ModelConfig, notes: np.ndarray, what: str) -> None:
    """:class:`OutOfRange`, in words, when ``notes`` go outside the model's pitch range."""
    low, high = int(notes[:, 0].min()), int(notes[:, 0].max())
    if low < cfg.pitch_low or high > cfg.pitch_high:
        raise OutOfRange(what, low, high, cfg)


def octaves_into(cfg: ModelConfig, error: OutOfRange) -> int:
    """The fewest whole octaves (in semitones: 12, -12, 24 ...) that move the music of ``error``
    into the model's range; 0 when its span is wider than the range allows."""
    for octaves in (1, -1, 2, -2, 3, -3):
        if cfg.pitch_low <= error.low + 12 * octaves and error.high + 12 * octaves <= cfg.pitch_high:
            return 12 * octaves
    return 0
