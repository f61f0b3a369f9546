"""MIDI file <-> :class:`Roll`, the one in-memory representation of a piece.

A :class:`Roll` is a list of notes on a grid of ``steps_per_beat`` steps per quarter-note beat
(4 by default: sixteenth notes). Positions come straight from MIDI ticks (ticks are beats
already), so tempo changes never smear the grid; the tempo map and time signatures are kept
beside the notes and written back.

Reading uses a small Standard MIDI File parser of our own rather than pretty_midi or mido:
it is several times faster, it bounds the work per file, it reads valid files that
pretty_midi refuses (huge tick values), and every failure becomes one :class:`MidiError`
with the file name and a reason in plain words. Writing uses mido.

Decisions (documented because they lose information on purpose):

* All non-drum tracks and channels are merged into one part; the most used General MIDI
  program is kept as the roll's ``program``.
* Drums (channel 10) are left out by default and counted in :attr:`Roll.drum_notes`.
* Notes are quantised to the nearest step; a note shorter than one step lasts one step.
  Overlapping notes of one pitch are cut where the next one starts (MIDI cannot hold both).
  Notes still sounding at the end of their track end with the track's last note event.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from .metre import bar_steps, metre_at

Source = Union[str, os.PathLike, bytes, bytearray, BinaryIO]

DRUM_CHANNEL = 9  # "channel 10" as musicians count
DEFAULT_TEMPO_BPM = 120.0

# Bounds on the work done for one file; a public app must never hang on a hostile one.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 2_000_000
MAX_STEPS = 4 * 4 * 4096  # 4096 bars of 4/4 at 4 steps a beat (over an hour at 120 bpm)

#: columns of :attr:`Roll.notes`
PITCH, START, END, VELOCITY = range(4)


class MidiError(ValueError):
    """A MIDI file that cannot be used, with the file's name and the reason in plain words."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):  # (raised in a worker process, it comes back whole: its arguments are not the message)
        return type(self), (self.source, self.reason)


@dataclass(frozen=True)
class Roll:
    """Notes on a beat grid, with the tempo map and meter needed to write them back.

    Attributes
    ----------
    notes : np.ndarray
        int32 array of shape (n_notes, 4): pitch (MIDI number), start step, end step
        (exclusive), velocity (1-127). Sorted by start step, then pitch. One pitch never
        holds two notes at once.
    steps_per_beat : int
        Grid resolution in steps per quarter-note beat.
    tempos : tuple of (step, bpm)
        Tempo map; the first entry is at step 0.
    time_signatures : tuple of (step, numerator, denominator)
        Meter changes; the first entry is at step 0. A piece that opens with a pickup has a
        whole first bar whose music comes at its end, after a rest (a file that writes its pickup
        as a short bar in a time signature of its own is read so).
    program : int
        General MIDI program (0-127) of the merged part.
    drum_notes : int
        Drum notes (channel 10) left out when the file was read.
    off_grid : tuple of (int, int)
        Notes whose onset the grid moved (it fell between two steps), and how many of those a
        grid three times finer keeps (triplets, swing): (moved, kept by thirds).
    name : str
        Where the roll came from (file name), for messages.
    key : int or None
        The key the music is in (:mod:`musicgan.keys`) when it is known (the model wrote in it):
        written to MIDI as its key signature. Reading a file leaves it None.
    length : int
        Steps the piece lasts at least, so that a rest at its end counts (a drawn piece fills
        its last bar); 0 when it ends where its last note ends. Reading a file leaves it 0.
    """

    notes: np.ndarray
    steps_per_beat: int = 4
    tempos: tuple = ((0, DEFAULT_TEMPO_BPM),)
    time_signatures: tuple = ((0, 4, 4),)
    program: int = 0
    drum_notes: int = 0
    name: str = ""
    off_grid: tuple = (0, 0)
    key: int | None = None
    length: int = 0

    @property
    def n_steps(self) -> int:
        """Length in steps: the end of the last note, or ``length`` when that is later."""
        return max(int(self.notes[:, END].max()) if len(self.notes) else 0, self.length)

    @property
    def steps_per_bar(self) -> int:
        """Steps in one bar of the first time signature."""
        _, num, den = self.time_signatures[0]
        return max(1, round(num * 4 / den * self.steps_per_beat))

    @property
    def n_bars(self) -> float:
        return self.n_steps / self.steps_per_bar

    @property
    def tempo_bpm(self) -> float:
        """The opening tempo in quarter-note beats per minute."""
        return float(self.tempos[0][1])

    def on_grid(self, steps_per_beat: int) -> "Roll":
        """The roll on another grid (positions rescaled and rounded; a note lasts at least a step)."""
        if steps_per_beat == self.steps_per_beat:
            return self
        scale = steps_per_beat / self.steps_per_beat
        return replace(self.retimed(lambda t: np.round(np.asarray(t) * scale).astype(np.int64)),
                       steps_per_beat=steps_per_beat)

    def retimed(self, moved, time_signatures: tuple | None = None) -> "Roll":
        """The roll with each step ``t`` at ``moved(t)`` (a map, on arrays of steps, that never goes
        back: a reading of the music in another time, :mod:`musicgan.swing`): its notes (each
        lasting at least a step, two of one pitch that come to start together kept once), tempo
        changes, time signatures (``time_signatures`` in their place, if given) and length."""
        notes = self.notes.copy()
        if len(notes):
            notes[:, START] = moved(notes[:, START])
            notes[:, END] = np.maximum(moved(notes[:, END]), notes[:, START] + 1)
            notes = _resolve_overlaps(notes)
        at = lambda rows: tuple((int(moved(np.array([r[0]]))[0]), *r[1:]) for r in rows)  # noqa: E731
        return replace(self, notes=notes, tempos=at(self.tempos),
                       time_signatures=time_signatures if time_signatures is not None else at(self.time_signatures),
                       length=int(moved(np.array([self.length]))[0]) if self.length else 0)

    def later(self, steps: int) -> "Roll":
        """The roll with its music ``steps`` later, its opening time signature and tempo staying at
        the start; for negative ``steps``, earlier, and what would sound before step 0 is cut there."""
        if not steps:
            return self
        notes = self.notes.copy()
        notes[:, START:END + 1] += steps
        notes = notes[notes[:, END] > 0]
        notes[:, START] = np.maximum(notes[:, START], 0)

        def moved(rows):  # (each row's step moved; of the rows that reach step 0, the last, in force there)
            rows = [(max(0, int(r[0]) + steps) if r[0] > 0 else 0, *r[1:]) for r in rows]
            return tuple(r for r, after in zip(rows, rows[1:] + [(1,)]) if r[0] > 0 or after[0] > 0)
        return replace(self, notes=notes, tempos=moved(self.tempos), time_signatures=moved(self.time_signatures),
                       length=max(0, self.length + steps) if self.length else 0)

    def transpose(self, semitones: int) -> "Roll":
        notes = self.notes.copy()
        notes[:, PITCH] += semitones
        if len(notes) and (notes[:, PITCH].min() < 0 or notes[:, PITCH].max() > 127):
            raise ValueError(f"transposing {self.name} by {semitones} leaves the MIDI pitch range")
        return replace(self, notes=notes)

    def pianoroll(self, pitch_low: int = 0, pitch_high: int = 127, n_steps: int | None = None):
        """Dense boolean (onset, sustain) arrays of shape (n_steps, pitch_high - pitch_low + 1).

        ``sustain`` is true wherever a note sounds (its onset step included); ``onset`` only
        where a note starts, so repeated notes stay distinct. Notes outside the range are dropped.
        """
        n_steps = self.n_steps if n_steps is None else n_steps
        n_pitches = pitch_high - pitch_low + 1
        onset = np.zeros((n_steps, n_pitches), dtype=bool)
        sustain = np.zeros((n_steps, n_pitches), dtype=bool)
        for pitch, start, end, _ in self.notes:
            if pitch_low <= pitch <= pitch_high and start < n_steps:
                onset[start, pitch - pitch_low] = True
                sustain[start:end, pitch - pitch_low] = True
        return onset, sustain

    @classmethod
    def from_pianoroll(cls, onset: np.ndarray, sustain: np.ndarray, pitch_low: int = 0,
                       velocity: int = 80, **meta) -> "Roll":
        """Inverse of :meth:`pianoroll`: a note starts at every onset (or at a sustain that
        follows silence) and lasts while sustain stays on."""
        onset = np.asarray(onset, dtype=bool)
        sustain = np.asarray(sustain, dtype=bool) | onset
        n_steps = len(sustain)
        notes = []
        for p in range(sustain.shape[1]):
            col, on = sustain[:, p], onset[:, p]
            start = None
            for t in range(n_steps):
                if start is not None and (not col[t] or on[t]):
                    notes.append((p + pitch_low, start, t, velocity))
                    start = None
                if col[t] and start is None:
                    start = t
            if start is not None:
                notes.append((p + pitch_low, start, n_steps, velocity))
        return cls(notes=_sorted_notes(np.array(notes, dtype=np.int32).reshape(-1, 4)), **meta)


def sounding_counts(notes: np.ndarray) -> np.ndarray:
    """Number of notes sounding at each step of a note array (pitch, start, end, velocity), from
    step 0 to the end of the last note."""
    notes = np.asarray(notes).reshape(-1, 4)
    if not len(notes):
        return np.zeros(0, dtype=np.int64)
    count = np.zeros(int(notes[:, END].max()) + 1, dtype=np.int64)
    np.add.at(count, notes[:, START], 1)
    np.add.at(count, notes[:, END], -1)
    return np.cumsum(count)[:-1]


def last_chord(notes: np.ndarray) -> np.ndarray:
    """The notes (rows of a note array) that sound at the very end of a piece: its last chord as
    a listener hears it (empty for no notes)."""
    notes = np.asarray(notes).reshape(-1, 4)
    return notes[notes[:, END] == notes[:, END].max()] if len(notes) else notes


def _sorted_notes(notes: np.ndarray) -> np.ndarray:
    if len(notes) == 0:
        return notes.reshape(0, 4).astype(np.int32)
    return notes[np.lexsort((notes[:, PITCH], notes[:, START]))].astype(np.int32)


# ---------------------------------------------------------------------------------- reading

def _source_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or os.fspath(source)
    return getattr(source, "name", None) or "<bytes>"


def _read_bytes(source: Source, name: str, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise MidiError(name, f"too large ({size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB)")
            data = path.read_bytes()
        except MidiError:
            raise
        except IsADirectoryError:
            raise MidiError(name, "is a folder, not a file") from None
        except OSError as e:
            raise MidiError(name, f"cannot be opened ({e.strerror or e})") from None
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MidiError(name, f"too large (over {max_bytes / 1e6:.0f} MB)")
    return data


def read(source: Source, steps_per_beat: int = 4, *, name: str | None = None,
         keep_drums: bool = False, max_bytes: int = MAX_FILE_BYTES,
         max_steps: int = MAX_STEPS) -> Roll:
    """Read a Standard MIDI File (type 0, 1 or 2; a path, bytes or a binary file) into a Roll.

    Raises
    ------
    MidiError
        For anything that is not a usable MIDI file: not MIDI, truncated, no notes, only
        drums, too large (``max_bytes``) or too long (``max_steps`` steps).
    """
    name = _source_name(source, name)
    data = _read_bytes(source, name, max_bytes)
    division, tracks = _parse_chunks(data, name)
    return _build_roll(division, tracks, data, name, steps_per_beat, keep_drums, max_steps)


def _parse_chunks(data: bytes, name: str):
    if not data:
        raise MidiError(name, "the file is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI (.rmi)
        at = data.find(b"MThd")
        data = data[at:] if at >= 0 else b""
    if data[:4] != b"MThd":
        raise MidiError(name, "not a MIDI file (it does not start with a MIDI header)")
    if len(data) < 14:
        raise MidiError(name, "truncated (the MIDI header is incomplete)")
    header_len, fmt, n_tracks, division = struct.unpack(">IHHH", data[4:14])
    if header_len < 6 or fmt > 2:
        raise MidiError(name, "corrupt MIDI header")
    pos = 8 + header_len
    tracks = []
    while pos + 8 <= len(data) and len(tracks) < n_tracks:
        kind, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        pos += 8
        if kind == b"MTrk":
            if pos + length > len(data):
                raise MidiError(name, f"truncated (track {len(tracks) + 1} of {n_tracks} is cut off)")
            tracks.append((pos, pos + length))
        pos += length  # unknown chunk types are skipped, as the standard asks
    if len(tracks) < n_tracks:
        raise MidiError(name, f"truncated (found {len(tracks)} of {n_tracks} tracks)")
    if not tracks:
        raise MidiError(name, "no notes (the file has no tracks)")
    return division, tracks


# Data bytes that follow each channel-message status (high nibble 0x8-0xE).
_DATA_LEN = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


def _parse_track(data: bytes, start: int, end: int, name: str, budget: list):
    """Events of one track: (notes, tempos, time signatures, programs, last tick).

    notes: list of (tick_on, tick_off, pitch, velocity, channel, program); hanging notes get
    tick_off None. Running status, note-on with velocity 0, and sysex are handled.
    """
    pos, tick, status = start, 0, 0
    open_notes: dict = {}  # (channel, pitch) -> list of (tick_on, velocity, program), FIFO
    notes, tempos, meters = [], [], []
    programs = [0] * 16
    last_note_tick = 0
    events = 0
    while pos < end:
        # delta time: variable-length quantity, at most 4 bytes
        delta = 0
        for _ in range(4):
            if pos >= end:
                raise MidiError(name, "truncated (a track ends inside an event)")
            b = data[pos]
            pos += 1
            delta = (delta << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        tick += delta
        if pos >= end:
            raise MidiError(name, "truncated (a track ends inside an event)")
        b = data[pos]
        if b & 0x80:
            pos += 1
            if b < 0xF0:
                status = b  # running status only applies to channel messages
        elif status == 0:
            raise MidiError(name, "corrupt track data (a data byte where an event should start)")
        else:
            b = status
        events += 1
        if b == 0xFF:  # meta event
            if pos + 1 > end:
                raise MidiError(name, "truncated (a track ends inside an event)")
            kind = data[pos]
            length, pos = _varlen(data, pos + 1, end, name)
            if pos + length > end:
                raise MidiError(name, "truncated (a track ends inside an event)")
            body = data[pos:pos + length]
            pos += length
            if kind == 0x51 and length == 3:
                usec = int.from_bytes(body, "big")
                if usec > 0:
                    tempos.append((tick, 60_000_000 / usec))
            elif kind == 0x58 and length >= 2 and body[0] > 0 and body[1] < 8:
                meters.append((tick, body[0], 2 ** body[1]))
            elif kind == 0x2F:
                break
        elif b in (0xF0, 0xF7):  # sysex: length-prefixed
            length, pos = _varlen(data, pos, end, name)
            pos += length
            if pos > end:
                raise MidiError(name, "truncated (a track ends inside an event)")
        elif b >= 0xF0:  # system common / real-time bytes do not belong in files: skip them
            continue
        else:
            kind, channel = b >> 4, b & 0x0F
            n = _DATA_LEN[kind]
            if pos + n > end:
                raise MidiError(name, "truncated (a track ends inside an event)")
            d1 = data[pos] & 0x7F
            d2 = data[pos + 1] & 0x7F if n == 2 else 0
            pos += n
            if kind == 0x9 and d2 > 0:
                open_notes.setdefault((channel, d1), []).append((tick, d2, programs[channel]))
                last_note_tick = tick
            elif kind == 0x8 or kind == 0x9:
                stack = open_notes.get((channel, d1))
                if stack:
                    on, vel, prog = stack.pop(0)
                    notes.append((on, tick, d1, vel, channel, prog))
                last_note_tick = tick
            elif kind == 0xC:
                programs[channel] = d1
        if events > budget[0]:
            raise MidiError(name, f"too large (more than {MAX_EVENTS:,} events)")
    budget[0] -= events
    for (channel, pitch), stack in open_notes.items():
        for on, vel, prog in stack:
            notes.append((on, None, pitch, vel, channel, prog))
    return notes, tempos, meters, last_note_tick


def _varlen(data: bytes, pos: int, end: int, name: str):
    value = 0
    for _ in range(4):
        if pos >= end:
            raise MidiError(name, "truncated (a track ends inside an event)")
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos
    raise MidiError(name, "corrupt track data (a length longer than 4 bytes)")


def _build_roll(division, tracks, data, name, steps_per_beat, keep_drums, max_steps) -> Roll:
    budget = [MAX_EVENTS]
    all_notes, tempos, meters = [], [], []
    for start, end in tracks:
        notes, t, m, last = _parse_track(data, start, end, name, budget)
        all_notes.extend(n if n[1] is not None else (n[0], max(last, n[0]), *n[2:]) for n in notes)
        tempos += t
        meters += m

    if division & 0x8000:  # SMPTE time: ticks are fractions of a second; assume 120 bpm
        fps = 256 - (division >> 8)
        ticks_per_beat = fps * (division & 0xFF) * 60 / DEFAULT_TEMPO_BPM
    else:
        ticks_per_beat = division
    if ticks_per_beat <= 0:
        raise MidiError(name, "corrupt MIDI header (zero ticks per beat)")
    scale = steps_per_beat / ticks_per_beat

    drums = [n for n in all_notes if n[4] == DRUM_CHANNEL]
    pitched = all_notes if keep_drums else [n for n in all_notes if n[4] != DRUM_CHANNEL]
    if not pitched:
        if drums:
            raise MidiError(name, "only drums (channel 10); there are no pitched notes to learn from")
        raise MidiError(name, "no notes")

    arr = np.array([(n[2], n[0], n[1], n[3], n[5]) for n in pitched], dtype=np.float64)
    exact = arr[:, 1] * scale
    starts = np.round(exact)
    ends = np.maximum(np.round(arr[:, 2] * scale), starts + 1)  # no zero-length notes
    moved = np.abs(exact - starts) > 0.05
    thirds = np.abs(exact * 3 - np.round(exact * 3)) <= 0.15
    if ends.max() > max_steps:
        bars = ends.max() / (4 * steps_per_beat)
        raise MidiError(name, f"too long ({bars:,.0f} bars of 4/4; the limit is "
                              f"{max_steps // (4 * steps_per_beat):,})")
    notes = np.stack([arr[:, 0], starts, ends, arr[:, 3]], axis=1).astype(np.int32)
    notes = _resolve_overlaps(notes)

    programs = arr[:, 4].astype(np.int64)
    program = int(np.bincount(programs, minlength=128).argmax())
    return _whole_first_bar(Roll(
        notes=notes, steps_per_beat=steps_per_beat, off_grid=(int(moved.sum()), int((moved & thirds).sum())),
        tempos=_tempo_map(tempos, scale), time_signatures=_meter_map(meters, scale),
        program=program, drum_notes=len(drums) if not keep_drums else 0, name=name))


def _whole_first_bar(roll: Roll) -> Roll:
    """``roll`` with a first bar shorter than the second, written in a time signature of its own
    (a pickup, as notation programs write one: 1/4 for a bar, then 4/4), as a whole bar of the
    second's metre whose music comes at its end, as rolls hold a pickup."""
    rows = roll.time_signatures
    if len(rows) < 2:
        return roll
    short, whole = (bar_steps(row[1:], roll.steps_per_beat) for row in rows[:2])
    if rows[1][0] != short or whole <= short:
        return roll
    moved = roll.later(whole - short)
    return replace(moved, time_signatures=((0, *rows[1][1:]), *moved.time_signatures[2:]))


def pickup_steps(roll: Roll) -> int:
    """The steps of music in a roll's first bar before its second bar begins, where its first note
    is struck after that bar's downbeat (a pickup, held as rolls hold one); else 0."""
    bar = bar_steps(metre_at(roll.time_signatures, 0), roll.steps_per_beat)
    start = int(roll.notes[:, START].min()) if len(roll.notes) else 0
    return bar - start if 0 < start < bar else 0


def with_pickup_bar(roll: Roll) -> Roll:
    """``roll`` as notation writes a pickup, where its first note comes after its first downbeat
    and before its second bar: its music from that note on, in a first bar of its own time
    signature as long as the pickup (a beat of 4/4: 1/4; an eighth of 6/8: 1/8), then the bars
    as they were; :func:`read` gives the roll back. A roll that begins on its downbeat, whose
    pickup no time signature measures (a third of a beat), or whose second bar is in another metre
    (read back, the pickup would lead into a bar of that one), is returned as it is."""
    rows = tuple(roll.time_signatures)
    first = metre_at(rows, 0)
    bar, pickup = bar_steps(first, roll.steps_per_beat), pickup_steps(roll)
    if not pickup or (len(rows) > 1 and rows[1][0] <= bar):
        return roll
    start = bar - pickup
    short = next(((n, d) for d in sorted({first[1], 4, 8, 16, 32}, key=lambda d: (d != first[1], d))
                  if (n := pickup * d / (4 * roll.steps_per_beat)) == int(n) and 1 <= n <= 32), None)
    if short is None:
        return roll
    moved = roll.later(-start)
    return replace(moved, time_signatures=((0, int(short[0]), short[1]), (pickup, *first), *moved.time_signatures[1:]))


def _resolve_overlaps(notes: np.ndarray) -> np.ndarray:
    """One pitch sounds once at a time: cut a note where the next of its pitch starts, and
    of two notes starting together on one pitch keep the longer."""
    notes = notes[np.lexsort((-notes[:, END], notes[:, START], notes[:, PITCH]))]
    same_pitch = notes[1:, PITCH] == notes[:-1, PITCH]
    same_start = same_pitch & (notes[1:, START] == notes[:-1, START])
    keep = np.ones(len(notes), dtype=bool)
    keep[1:] = ~same_start
    notes = notes[keep]
    same_pitch = notes[1:, PITCH] == notes[:-1, PITCH]
    cut = same_pitch & (notes[:-1, END] > notes[1:, START])
    notes[:-1, END] = np.where(cut, notes[1:, START], notes[:-1, END])
    return _sorted_notes(notes)


def _tempo_map(tempos, scale) -> tuple:
    out = []
    for tick, bpm in sorted(tempos, key=lambda x: x[0]):
        step, bpm = int(round(tick * scale)), round(float(bpm), 3)
        if out and out[-1][0] == step:
            out[-1] = (step, bpm)
        elif not out or out[-1][1] != bpm:
            out.append((step, bpm))
    if not out or out[0][0] != 0:
        out.insert(0, (0, DEFAULT_TEMPO_BPM if not out else out[0][1]))
    return tuple(out)


def _meter_map(meters, scale) -> tuple:
    out = []
    for tick, num, den in sorted(meters, key=lambda x: x[0]):
        step = int(round(tick * scale))
        if out and out[-1][0] == step:
            out[-1] = (step, num, den)
        elif not out or out[-1][1:] != (num, den):
            out.append((step, num, den))
    if not out or out[0][0] != 0:
        out.insert(0, (0, *(out[0][1:] if out else (4, 4))))
    return tuple(out)


# ---------------------------------------------------------------------------------- writing

TICKS_PER_BEAT = 480


def to_midi_bytes(roll: Roll, program: int | None = None, tempo_bpm: float | None = None,
                  given: np.ndarray | None = None) -> bytes:
    """The roll as a type-1 Standard MIDI File (bytes). Identical rolls give identical bytes.

    ``program`` and ``tempo_bpm`` override the roll's own (a tempo override replaces the map).
    ``given``: which of the roll's notes someone gave the model (an opening it continued, a
    melody it harmonised), a boolean per note: they go on a track (and channel) of their own,
    named "given"; the model's are named "musicgan".
    """
    import mido

    ticks_per_step = TICKS_PER_BEAT // roll.steps_per_beat
    meta = mido.MidiTrack()
    tempos = ((0, tempo_bpm),) if tempo_bpm else roll.tempos
    events = [(step, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
              for step, bpm in tempos]
    events += [(step, 1, mido.MetaMessage("time_signature", numerator=num, denominator=den))
               for step, num, den in roll.time_signatures]
    if roll.key is not None:  # notation programs then write the piece with its key's sharps or flats
        from .keys import signature

        events.append((0, 2, mido.MetaMessage("key_signature", key=signature(roll.key))))
    # the file lasts as long as the roll (a rest at its end included), not only to its last note
    events.append((roll.n_steps, 3, mido.MetaMessage("end_of_track")))
    _append_timed(meta, sorted(events, key=lambda e: (e[0], e[1])), ticks_per_step)

    program = roll.program if program is None else program
    parts = [(roll.notes, 0, None)] if given is None or not np.any(given) else \
        [(roll.notes[given], 1, "given"), (roll.notes[~given], 0, "musicgan")]
    tracks = [meta]
    for notes, channel, name in parts:
        track = mido.MidiTrack()
        if name:
            track.append(mido.MetaMessage("track_name", name=name))
        track.append(mido.Message("program_change", program=program, channel=channel))
        events = []
        for pitch, start, end, velocity in notes.tolist():
            # at one step, note-offs come before note-ons so a repeated pitch re-strikes cleanly
            events.append((end, 0, pitch, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
            events.append((start, 1, pitch, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)))
        events.sort(key=lambda e: e[:3])
        _append_timed(track, [(e[0], 0, e[3]) for e in events], ticks_per_step)
        tracks.append(track)

    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, tracks=tracks)
    buf = io.BytesIO()
    midi.save(file=buf)
    return buf.getvalue()


def _append_timed(track, events, ticks_per_step):
    now = 0
    for step, _, message in events:
        track.append(message.copy(time=(step - now) * ticks_per_step))
        now = step


def write(roll: Roll, path: str | os.PathLike, **kwargs) -> Path:
    """Write the roll to a .mid file (see :func:`to_midi_bytes` for the options)."""
    path = Path(path)
    path.write_bytes(to_midi_bytes(roll, **kwargs))
    return path
