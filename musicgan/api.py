"""The high-level calls both faces use: compose a piece, run a training job, judge closeness.

``compose(...)`` returns everything a listener needs at once (roll, MIDI bytes, PNG, audio);
:class:`TrainingJob` runs the trainer in a thread with progress events and a stop switch. The app
and the CLI call these instead of orchestrating the lower modules themselves.
"""
from __future__ import annotations

import contextvars
import dataclasses
import itertools
import math
import multiprocessing
import os
import shutil
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Callable
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from . import (checkpoint as ckpt, data, form, generate, given as given_music, harmonise, keys, metre as metres, metrics,
               midi, pickup, render, swing, upbeat, zerogpu)
from .midi import Roll
from .train import Budget, TrainConfig, Trainer, TrainingError, device_label, pick_device


@dataclass
class Piece:
    roll: Roll
    midi: bytes
    audio: render.Audio | None
    description: str
    given: np.ndarray | None = None  # which notes were given (an opening, a melody), not drawn: a bool per note

    @cached_property
    def png(self) -> bytes:
        """The piano-roll image, drawn when first asked for (matplotlib takes about 0.1 s)."""
        return render.piano_roll_png(self.roll, self.description)


@lru_cache(maxsize=4)
def _cached_model(path: str, stamp: tuple) -> ckpt.Checkpoint:
    return ckpt.load(path)


def model_stamp(path=None) -> tuple[str, tuple]:
    """(the checkpoint's path, (name, time changed, size) of each of its files): what names a
    model's music (the pretrained default when ``path`` is None). CheckpointError when there is none."""
    p = Path(path) if path else generate.DEFAULT_CHECKPOINT
    try:
        stats = [(f.name, f.stat()) for f in (sorted(p.iterdir()) if p.is_dir() else [p])]
        return str(p), tuple((name, st.st_mtime_ns, st.st_size) for name, st in stats)
    except OSError:
        raise ckpt.CheckpointError(f"{p}: no such checkpoint") from None


def load_model(path=None) -> ckpt.Checkpoint:
    """A checkpoint (the pretrained default when ``path`` is None), cached while unchanged."""
    return _cached_model(*model_stamp(path))


def _piece(roll: Roll, description: str, audio: bool, given: np.ndarray | None = None) -> Piece:
    """The roll with its MIDI, and its audio (:func:`sounded`) when asked for. Every maker sets the
    roll's tempo and instrument to the ones it plays at. A piece that opens with a pickup (a new
    piece's, an opening's or a melody's) is written, drawn and played from its first note, in a
    short first bar (:func:`musicgan.midi.with_pickup_bar`), not after a rest: read back, it is
    the roll it was."""
    roll = midi.with_pickup_bar(roll)  # (its notes keep their order: ``given`` still marks them)
    piece = Piece(roll=roll, midi=midi.to_midi_bytes(roll, given=given), audio=None, description=description,
                  given=given)
    return sounded(piece) if audio else piece


def _defaults(model: ckpt.Checkpoint, tempo_bpm, program):
    tempo, prog = generate.defaults(model)
    return float(tempo_bpm or tempo), int(prog if program is None else program)


def compose(model: ckpt.Checkpoint | None = None, seed: int = 0, bars: int = 16, tempo_bpm: float | None = None,
            program: int | None = None, temperature: float = 1.0, audio: bool = True, key: int | None = None,
            metre: tuple | None = None) -> Piece:
    """One new piece: the same model and arguments always give the same music. ``key`` and
    ``metre``: see :func:`musicgan.generate.sample_rolls` (None: the seed's)."""
    piece = compose_many(model, [seed], bars, tempo_bpm, program, temperature, key, metre)[0]
    return sounded(piece) if audio else piece


def compose_many(model: ckpt.Checkpoint | None, seeds, bars: int = 16, tempo_bpm: float | None = None,
                 program: int | None = None, temperature: float = 1.0, key: int | None = None,
                 metre: tuple | None = None) -> list[Piece]:
    """:func:`compose` for several seeds at once, without audio (see :func:`sounded`): each seed's
    piece is the one it gets alone, and the seeds are drawn in one batch. The sampler's loop is
    bound by the number of its small torch calls on a CPU, not their size, so 8 seeds together cost
    about 2.5x one seed instead of 8x (a server drawing its waiting visitors' pieces together)."""
    model = model or load_model()
    tempo, program = _defaults(model, tempo_bpm, program)
    rolls = generate.sample_rolls(model.generator, seeds, bars, temperature, tempo, program, key=key, metre=metre,
                                  ending=True, opening=True, **model.sampling)
    pieces = []
    for seed, roll in zip(seeds, rolls):
        in_key = generate.piece_key(seed, model.generator, key)
        key_text = "" if in_key is None else f" · {keys.name(in_key)}"
        seed_metre = generate.piece_metre(seed, model.generator, metre)
        in_metre = metres.name(seed_metre)
        rests = generate.piece_opening(seed, model.generator, seed_metre, bars)[1]
        phrases = "" if model.forms is None else form.describe(generate.piece_form(
            seed, model.forms, bars, True, generate.opening_bars(rests, model.model.bar_steps(seed_metre))))
        drawn = upbeat.pickup(roll)[1]  # (the pickup as drawn: where its first note came)
        up_text = f" · a pickup of {pickup.beats_text(drawn / roll.steps_per_beat)}" if drawn else ""
        entry = upbeat.entries_for(seed, model.generator.entering, model.model.steps_per_beat)
        if entry is not None and entry.max():
            up_text += f" · voices entering over {pickup.beats_text(entry.max() / model.model.steps_per_beat)}"
        description = f"seed {seed} · {_bars(bars)} of {in_metre}{up_text} · {tempo:g} bpm{key_text}"
        pieces.append(_piece(roll, description + (f" · {phrases}" if phrases else ""), audio=False))
    return pieces


def sounded(piece: Piece) -> Piece:
    """The piece with its audio: its roll played at the roll's tempo, on the roll's instrument."""
    return dataclasses.replace(piece, audio=render.synthesize(piece.roll, piece.roll.program, piece.roll.tempo_bpm))


def compose_continuation(model: ckpt.Checkpoint | None, opening, seed: int = 0, bars: int = 8,
                         opening_bars: int = 4, tempo_bpm: float | None = None, program: int | None = None,
                         temperature: float = 1.0, audio: bool = True, whole: bool = True,
                         find_pickups: bool = True) -> Piece:
    """``bars`` more bars after the first ``opening_bars`` bars of ``opening`` (a MIDI file's
    path or bytes, or a Roll), in its metre, key, tempo and instrument unless ``tempo_bpm`` or
    ``program`` say otherwise (see :func:`musicgan.generate.continue_rolls`). ``whole``: the
    opening and its continuation, else the continuation alone. ``find_pickups``: a file that
    opens with a pickup it does not mark gets a whole first bar (:mod:`musicgan.pickup`; a Roll is
    taken as it is). ValueError (or MidiError) in words for an opening the model cannot read."""
    model = model or load_model()
    (opened, opened_tokens, last_metre), roll, how, opening_bars = _opening(model, opening, opening_bars, find_pickups)
    added = how.bars(bars, model.model.steps_per_beat)  # (in the model's bars)
    piece = generate.continue_rolls(model.generator, roll, [seed], added, opening_bars, temperature, whole=whole,
                                    ending=True, **model.sampling)[0]
    tempo = float(tempo_bpm or piece.tempo_bpm)
    program = piece.program if program is None else int(program)
    piece = how.written_back(dataclasses.replace(piece, tempos=((0, tempo),), program=program),
                             at=0 if whole else len(opened_tokens))
    what = "opening and" if whole else "after the opening:"
    opened_end = how.own_step(len(opened_tokens) - how.lead) if whole else 0  # (where the opening ends in the piece)
    given = piece.notes[:, 1] < opened_end if whole else None
    if whole and how.music is not None:  # (read in another time: the opening as it was, not as heard)
        piece, given = how.with_own(piece, given, how.music.notes, opened_end)
    lines = metres.bar_lines(piece.time_signatures, piece.n_steps, piece.steps_per_beat)
    bars = int((lines >= opened_end).sum())
    sources = None if model.forms is None or not whole else generate.continuation_form(
        model.model, opened, len(opened_tokens), last_metre, added, seed, model.forms, ending=True)
    if sources is not None:  # (phrases counted in the music's own bars, their lines as read)
        sources = form.rebarred(sources, model.model.bar_steps(last_metre), how.read_steps(lines, piece) + how.lead)
    phrases = "" if sources is None else f" · {form.describe(sources)}"
    return _piece(piece, f"seed {seed} · {what} {_bars(bars)} of {metres.name(piece.time_signatures[-1][1:])}"
                         f"{how.said(piece)} · {tempo:g} bpm{phrases}", audio, given)


def _opening(model: ckpt.Checkpoint, opening, opening_bars: int = 4, find_pickups: bool = True, **_):
    """(:func:`musicgan.generate.opening` of the music a person gave to be continued, the music as
    read, how it was read (:class:`Read`), the opening's length in the model's bars): what
    :func:`compose_continuation` reads before it draws. ValueError in words where it cannot."""
    roll, how = _given(opening, model, "the opening", find_pickups)
    bars = how.bars(opening_bars, model.model.steps_per_beat, opening=True)
    return *_in_range(lambda music: generate.opening(model.generator, music, bars), roll, model, how), bars


def _line(model: ckpt.Checkpoint, melody, voice: str = "top", find_pickups: bool = True, **_):
    """(:func:`musicgan.harmonise.line_of` the music a person gave to be harmonised, the music as
    read, how it was read): what :func:`compose_harmonisation` reads before it draws."""
    melody, how = _given(melody, model, harmonise.WHAT.get(voice, "the melody"), find_pickups)
    return _in_range(lambda music: harmonise.line_of(model.generator, music, voice), melody, model, how)


def refusal(kind: str, model_path: str | None = None, **arguments) -> str | None:
    """Why the model at ``model_path`` (None: the pretrained one) cannot take the music a person
    gave for ``kind`` ("continuation" or "harmonisation", with the arguments :func:`web_piece` takes
    for it), in the words :func:`compose_continuation` or :func:`compose_harmonisation` would say
    it; None where it can. It reads the music as they do and draws nothing."""
    try:
        READS[kind](load_model(model_path), **arguments)
    except ValueError as e:
        return str(e)
    return None


def takers(kind: str, models: dict, **arguments) -> list:
    """The names of ``models`` (name -> checkpoint path) whose model takes the music a person gave
    for ``kind`` (:func:`refusal` says None), in their order: what a refusal names instead."""
    return [name for name, path in models.items() if refusal(kind, path, **arguments) is None]


def _bars(n: int) -> str:
    """A count of bars in words: "1 bar", "16 bars"."""
    return f"{n} bar" + ("" if n == 1 else "s")


@dataclasses.dataclass(frozen=True)
class Read:
    """How the music a person gave was read: the pickup found in it (``pickup.Found`` or None), its
    metres read as ones the model knows (:func:`musicgan.given.in_known_metres`), its own time
    signatures (after the pickup, in the time it is read in), the steps it was moved later for
    its opening's metre (``lead``, :func:`musicgan.given.lead`), the metres read in another time
    (:mod:`musicgan.swing`) and then the music itself, as it was before."""
    found: object = None
    read_as: dict = dataclasses.field(default_factory=dict)
    written: tuple = ()
    shift: int = 0  # semitones (whole octaves) the music was moved to lie in the model's range
    lead: int = 0
    swung: frozenset = frozenset()
    music: Roll | None = None

    def written_back(self, roll: Roll, at: int = 0) -> Roll:
        """``roll`` (made from the music, from its step ``at`` as read: a continuation alone
        begins where the opening ends) in the music's own octave, place and metres again: each bar
        in a metre read as another is written in the one the music has there (after its end: the
        one it ends in)."""
        roll = roll.transpose(-self.shift) if self.shift else roll
        roll = roll if at else roll.later(-self.lead)
        begins = at - self.lead if at else 0  # (the music's step where the roll begins)
        if not self.read_as:
            return roll
        rows = []
        for start, numerator, denominator in roll.time_signatures:
            own = metres.metre_at(self.written, begins + start)
            rows.append((start, *own) if self.read_as.get(own) == (numerator, denominator) else
                        (start, numerator, denominator))
        roll = dataclasses.replace(roll, time_signatures=tuple(rows))
        return swing.unswung(roll, self.swung) if self.swung else roll

    def own_step(self, step: int) -> int:
        """The music's own step for ``step`` of it as read (after ``lead`` is taken off)."""
        if not self.swung:
            return step
        return int(swing.unswung_steps(np.array([step]), self.written, step + 1, self.music.steps_per_beat,
                                       self.swung)[0])

    def read_steps(self, steps: np.ndarray, piece: Roll) -> np.ndarray:
        """Steps of ``piece`` (written back) as read, before ``lead`` (:func:`own_step` the other way)."""
        if not self.swung:
            return steps
        return swing.swung_steps(steps, piece.time_signatures, piece.n_steps, piece.steps_per_beat, self.swung)

    def with_own(self, piece: Roll, given: np.ndarray, notes: np.ndarray, end: int | None = None) -> tuple[Roll, np.ndarray]:
        """(``piece`` (written back) with its ``given`` notes replaced by ``notes``, the music's own
        (up to step ``end``, and the piece's), and which notes those are now): a reading in swing
        hears two notes of one step read at one step, and the music given comes back as it was.
        Where a note the model wrote would sound one of their pitches at once, it gives way."""
        if not self.swung:
            return piece, given
        end = piece.n_steps if end is None else min(end, piece.n_steps)
        notes = notes[notes[:, 1] < end].copy()
        notes[:, 2] = np.minimum(notes[:, 2], end)
        wrote = piece.notes[~given].copy()
        keep = np.ones(len(wrote), bool)
        for i, (pitch, start, end, _) in enumerate(wrote):
            same = notes[(notes[:, 0] == pitch) & (notes[:, 1] < end) & (notes[:, 2] > start)]
            if len(same):
                first = int(same[:, 1].min())
                wrote[i, 2] = first
                keep[i] = first > start
        both = np.concatenate([wrote[keep], notes])
        mine = np.concatenate([np.zeros(keep.sum(), bool), np.ones(len(notes), bool)])
        order = np.lexsort((both[:, 0], both[:, 1]))
        return dataclasses.replace(piece, notes=both[order]), mine[order]

    def bars(self, n: int, steps_per_beat: int, opening: bool = False) -> int:
        """The model's bars that hold ``n`` bars of the music's opening metre (at least that much
        music; when ``opening``, counted from the music's start, where ``lead`` moved it): 4 bars
        of 2/4 read as 4/4 are 2, and an opening of 4 bars of 2/4 with a pickup is 3."""
        mine = metres.metre_at(self.written, 0)
        other = self.read_as.get(mine, mine)
        lead = Fraction(self.lead, steps_per_beat) if opening else 0
        return math.ceil((n * metres.quarters(self._read_in(mine)) + lead) / metres.quarters(other))

    def _read_in(self, mine) -> tuple:
        """The metre ``mine`` is in as read: its simple metre where it is read in another time (in
        swing, or at half its note values)."""
        return swing.simple(mine) if mine in self.swung else mine

    def said(self, roll: Roll) -> str:
        """The description's words for how the music in ``roll`` (written back) was read:
        " (its pickup of 1 beat found; its 2/2 read as 4/4; its 2/4 read as 4/4, two bars as one)"."""
        words = [f"its pickup of {pickup.beats_text(self.found.beats)} found"] if self.found and self.found.steps else []
        used = {(int(n), int(d)) for _, n, d in roll.time_signatures}
        for mine, other in self.read_as.items():
            if mine in used:
                longer = metres.quarters(other) / metres.quarters(self._read_in(mine))
                how = "" if longer == 1 else ", two bars as one" if longer > 1 else ", a bar as two"
                swung = swing.words(mine) if mine in self.swung else ""
                words.append(f"its {metres.name(mine)} read as {metres.name(other)}{swung}{how}")
        if self.shift:
            octaves = abs(self.shift) // 12
            words.append(f"read {'an octave' if octaves == 1 else f'{octaves} octaves'} "
                         f"{'higher' if self.shift > 0 else 'lower'}, in this model's range")
        return f" ({'; '.join(words)})" if words else ""


def _in_range(read, roll: Roll, model: ckpt.Checkpoint, how: Read):
    """(``read(roll)``, the roll, how it was read): music with notes outside the model's range is
    moved by the fewest whole octaves that bring it in (``how.shift``), where some do; where none
    does, the refusal (``given.OutOfRange``) stands."""
    try:
        return read(roll), roll, how
    except given_music.OutOfRange as e:
        shift = given_music.octaves_into(model.model, e)
        if not shift:
            raise e.unmoved() from None
        roll = roll.transpose(shift)
        return read(roll), roll, dataclasses.replace(how, shift=shift)


def _given(source, model: ckpt.Checkpoint, what: str, find_pickups: bool) -> tuple[Roll, Read]:
    """(the music a person gives (a MIDI file's path or bytes, or a Roll) as a roll on the model's
    grid, in metres it knows, and how it was read: the pickup found in it (not for a Roll, nor
    when not asked) and the metres read as others; its octave is settled by :func:`_in_range`)."""
    found = None
    if isinstance(source, Roll):
        roll = source.on_grid(model.model.steps_per_beat)
    else:
        roll = midi.read(source, model.model.steps_per_beat, name=what if isinstance(source, bytes) else None)
        if find_pickups:
            roll, found = pickup.barred(roll)
    music = roll
    roll, read_as, lead, written, swung = given_music.in_known_metres(model.model, roll)
    return roll, Read(found, read_as, written, lead=lead, swung=swung, music=music if swung else None)


def compose_harmonisation(model: ckpt.Checkpoint | None, melody, seed: int = 0, tempo_bpm: float | None = None,
                          program: int | None = None, temperature: float = 1.0, audio: bool = True,
                          voice: str = "top", find_pickups: bool = True) -> Piece:
    """The top line of ``melody`` (``voice`` "top"; a MIDI file's path or bytes, or a Roll; a
    one-line file is all melody), or its lowest line (``voice`` "bottom": a bass), kept note for note,
    with the other voices written by the model, in its key, metre, tempo and instrument unless
    ``tempo_bpm`` or ``program`` say otherwise (see :func:`musicgan.harmonise.harmonise_rolls`). A
    model without a harmoniser for that line clamps it (its voices hear it up to each step only,
    drawn as its trainer fitted for clamping: ``Checkpoint.clamped``). ``find_pickups``: as
    :func:`compose_continuation`. ValueError (or MidiError) in words for a line the model cannot take."""
    model = model or load_model()
    line, melody, how = _line(model, melody, voice, find_pickups)
    reader = model.harmonisers.get(voice)
    piece = harmonise.harmonise_rolls(model.generator, line, [seed], reader, temperature, **model.choice,
                                      clamped=model.clamped.get(voice), ending=True)[0]
    tempo = float(tempo_bpm or piece.tempo_bpm)
    program = piece.program if program is None else int(program)
    piece = dataclasses.replace(piece, tempos=((0, tempo),), program=program)
    piece = _to_its_last_bar(how.written_back(piece))
    given = dataclasses.replace(line, roll=how.written_back(line.roll)).mask(piece)  # (the line's notes)
    if how.music is not None:  # (read in another time: the line as it was, not as heard)
        piece, given = how.with_own(piece, given, harmonise.line_notes(how.music, voice))
    named = "a melody" if voice == "top" else "a bass line"
    clamped = "" if reader is not None else f" (clamped: this model has no harmoniser for {named})"
    bars = len(metres.bar_lines(piece.time_signatures, piece.n_steps, piece.steps_per_beat))
    return _piece(piece, f"seed {seed} · {named} of {_bars(bars)} harmonised{clamped}{how.said(piece)} · "
                         f"{tempo:g} bpm", audio, given)


def _to_its_last_bar(roll: Roll) -> Roll:
    """``roll`` lasting to the end of the bar its last note ends in, in its own metre (a line read
    two bars as one leaves the model's last bar half empty; read a bar as two, half full)."""
    last = int(roll.notes[:, 2].max())
    lines = metres.bar_lines(roll.time_signatures, max(roll.n_steps, last), roll.steps_per_beat)
    start = int(lines[lines < last].max())
    return dataclasses.replace(roll, length=start + metres.bar_steps(metres.metre_at(roll.time_signatures, start),
                                                                     roll.steps_per_beat))


def compose_interpolation(model: ckpt.Checkpoint | None, seed_a: int, seed_b: int, steps: int = 5,
                          bars: int = 4, tempo_bpm=None, program=None, temperature: float = 1.0,
                          audio: bool = True, key: int | None = None, metre: tuple | None = None) -> Piece:
    """``steps`` short pieces morphing from seed_a to seed_b, played one after another, each
    closing where it can (:func:`musicgan.generate.sample_tokens`)."""
    model = model or load_model()
    tempo, program = _defaults(model, tempo_bpm, program)
    rolls = generate.interpolate_rolls(model.generator, seed_a, seed_b, steps, bars, temperature, tempo, program,
                                       key=key, metre=metre, ending=True)
    return _piece(generate.concatenate(rolls), f"seed {seed_a} → {seed_b} in {steps} steps of {_bars(bars)}", audio)


def compose_variations(model: ckpt.Checkpoint | None, seed: int, n: int = 4, amount: float = 0.3,
                       bars: int = 4, tempo_bpm=None, program=None, temperature: float = 1.0,
                       audio: bool = True, key: int | None = None, metre: tuple | None = None) -> Piece:
    """The seed's piece followed by ``n`` variations of it, each closing (see
    :func:`musicgan.generate.sample_tokens`)."""
    model = model or load_model()
    tempo, program = _defaults(model, tempo_bpm, program)
    # the theme without the critic's choice: the variations turn its noise, not a candidate's
    original = generate.sample_rolls(model.generator, [seed], bars, temperature, tempo, program, key=key, metre=metre,
                                     ending=True)
    rolls = original + generate.variation_rolls(model.generator, seed, n, amount, bars, temperature, tempo, program,
                                                key=key, metre=metre, ending=True)
    return _piece(generate.concatenate(rolls), f"seed {seed} and {n} variations", audio)


# ------------------------------------------------------------------------------ closeness

@dataclass
class Closeness:
    two_sample: float  # how often a classifier tells generated clips from real ones (0.5: never)
    yardstick: float | None  # ... and half the real pieces from the other half (None: too few pieces)
    verdict: str
    generated: dict  # plot data for the generated set
    reference: dict  # the same for the reference music
    png: bytes


def _profile(rolls: list[Roll]) -> dict:
    return {
        "pitch classes": np.mean([metrics.pitch_class_histogram(r) for r in rolls], 0),
        "note lengths": np.mean([metrics.duration_histogram(r) for r in rolls], 0),
        "polyphony": float(np.mean([metrics.polyphony(r) for r in rolls])),
        "notes per bar": float(np.mean([metrics.note_density(r) for r in rolls])),
    }


def verdict(accuracy: float, yardstick: float | None = None) -> str:
    """A sentence for musicians. With a ``yardstick`` (the real pieces told from one another), the
    accuracy is read against it: a few pieces differ among themselves, and the classifier sees it."""
    if yardstick is not None and accuracy <= yardstick + 0.03:
        return ("As close as this music can show: the classifier tells the generated clips from the real "
                "ones no more often than it tells some of the real pieces from the others.")
    excess = accuracy - (0.5 if yardstick is None else max(yardstick, 0.5))
    if excess <= 0.07:
        return "Very close: a classifier can barely tell the generated clips from the real ones."
    if excess <= 0.2:
        return "Close: similar in pitch, rhythm and harmony, with some telling differences."
    if excess <= 0.35:
        return "Recognisably related, but clearly different in places."
    return "Far: the generated music is easy to tell apart from the real music."


SPLITS = 10  # the classifier's accuracy is averaged over this many random splits (one moves by +-0.04)
HALVINGS = 10  # and the yardstick over this many ways of halving the pieces
REAL_CLIPS = 400  # at most this many real clips, taken evenly across the pieces


def closeness(model: ckpt.Checkpoint, reference: list[Roll], n: int = 60, bars: int = 4) -> Closeness:
    """Generated clips vs. clips of ``reference`` (usually the training music), for musicians.

    Each generated clip is drawn in the key and metre of a real clip in turn (where the model
    takes keys and knows that metre): a few pieces are in a few keys, and clips drawn from all the
    keys of the training music are told from them by their pitch classes alone. The yardstick is
    the same classifier telling half the real pieces (their clips) from the other half, averaged
    over several halvings: with the 10 example chorales it is about 0.75, since clips of one piece
    share its key, metre and texture, and the generated clips are read against it."""
    real, real_keys, piece_of = [], [], []
    for i, roll in enumerate(reference):
        clips = data.clips([roll], bars)
        real += clips
        real_keys += [keys.of_piece(roll.notes)] * len(clips)
        piece_of += [i] * len(clips)
    if len(real) < 5:
        raise ValueError("need at least 5 clips of real music to compare with")
    if len(real) > REAL_CLIPS:  # (a few hundred pieces: the comparison stays a matter of seconds)
        keep = np.linspace(0, len(real) - 1, REAL_CLIPS).astype(int)
        real, real_keys, piece_of = [real[i] for i in keep], [real_keys[i] for i in keep], [piece_of[i] for i in keep]
    cfg, count = model.model, max(n, 5)
    at = [metres.metre_at(real[i % len(real)].time_signatures, 0) for i in range(count)]
    fake = generate.sample_rolls(model.generator, range(1000, 1000 + count), bars,
                                 key=[real_keys[i % len(real)] if cfg.key_input else None for i in range(count)],
                                 metre=[m if m in cfg.metres else None for m in at], **model.sampling)
    real_features = [metrics.features(r) for r in real]  # (described once: the comparison and the yardstick)
    accuracy = metrics.features_two_sample([metrics.features(f) for f in fake], real_features, splits=SPLITS)
    g, r = _profile(fake), _profile(real)
    yardstick = _yardstick(real_features, np.array(piece_of))
    return Closeness(accuracy, yardstick, verdict(accuracy, yardstick), g, r,
                     render.closeness_png(g, r, accuracy, yardstick))


def _yardstick(features: list, piece_of: np.ndarray) -> float | None:
    """The two-sample accuracy of half the pieces' clips (their :func:`metrics.features`) against
    the other half's, averaged over HALVINGS random halvings (the same every time); None with
    fewer than 4 pieces or 5 clips a side."""
    pieces = np.unique(piece_of)
    if len(pieces) < 4:
        return None
    rng, scores = np.random.default_rng(0), []
    for k in range(HALVINGS):
        half = set(rng.permutation(pieces)[: len(pieces) // 2].tolist())
        a = [f for f, p in zip(features, piece_of) if p in half]
        b = [f for f, p in zip(features, piece_of) if p not in half]
        if min(len(a), len(b)) < 5:
            continue
        scores.append(metrics.features_two_sample(a, b, seed=k))
    return float(np.mean(scores)) if scores else None


# ------------------------------------------------------------------------------ serving many people

def serve_on_shared_cores() -> None:
    """Threads for a server where several people share a few cores (a Space): every torch job
    (a visitor's piece, a training run) runs on one thread, and the jobs run side by side on the
    cores instead. torch's worker threads spin while they wait, so two of them on two cores
    shared with any other busy thread slowed a training step from 0.20 s to 1.56 s and a
    16-bar piece from 0.17 s to 6.3 s (with one thread: 0.35 s and 0.19 s)."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before torch's first parallel work; then it is already set
        pass


class CpuSlots:
    """How many CPU-heavy requests (pieces, comparisons) run at once: one per core, less the
    core a running training job holds. Everything else waits its turn here, first come first
    served, so a training run keeps its pace however many people generate, and a piece never
    shares a core. Those who wait ``behind`` go after everyone else in line."""

    LOOK_S = 0.2  # how often a wait looks again without being woken (a training job may have ended)

    def __init__(self, cores: int | None = None):
        self.cores = max(1, cores or os.cpu_count() or 1)
        self._busy = 0
        self._line: list = []  # those waiting: (behind, the order they came, a token)
        self._came = itertools.count()
        self._free = threading.Condition()

    def limit(self) -> int:
        return max(1, self.cores - (1 if TrainingJob.busy() else 0))

    def take(self, timeout: float | None = None, behind: bool = False,
             give_up: Callable[[], bool] = lambda: False) -> bool:
        """Take a slot in turn, waiting at most ``timeout`` seconds (None: as long as it takes);
        False if none came, or once ``give_up()`` (asked whenever a slot is taken or given)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        me = (behind, next(self._came), object())
        with self._free:
            self._line.append(me)
            try:
                while min(self._line) is not me or self._busy >= self.limit():
                    left = self.LOOK_S if deadline is None else min(self.LOOK_S, deadline - time.monotonic())
                    if left <= 0 or give_up():
                        return False
                    self._free.wait(left)
                self._busy += 1
                return True
            finally:
                self._line.remove(me)
                self._free.notify_all()  # the next in line may go now

    def give(self) -> None:
        with self._free:
            self._busy -= 1
            self._free.notify_all()

    @contextmanager
    def __call__(self):
        self.take()
        try:
            yield
        finally:
            self.give()


cpu_slot = CpuSlots()


@dataclass
class WebPiece:
    """A piece as a web page needs it: the notes to draw, the MIDI file and the audio as MP3."""

    roll: Roll
    midi: bytes
    mp3: bytes
    description: str
    engine: str  # the synthesiser that played it (see render.synthesize)
    given: np.ndarray | None = None  # see Piece.given


_MAKERS = {"piece": compose, "interpolation": compose_interpolation, "variations": compose_variations,
           "continuation": compose_continuation, "harmonisation": compose_harmonisation}
READS = {"continuation": _opening, "harmonisation": _line}  # (what the makers of given music read first)
CAN = {"continuation": "continue it", "harmonisation": "harmonise it"}  # (what a model that takes it can do)


def web_piece(kind: str, model_path: str | None = None, **arguments) -> WebPiece:
    """:func:`compose` (``kind`` "piece"), :func:`compose_interpolation`,
    :func:`compose_variations`, :func:`compose_continuation` or :func:`compose_harmonisation` with the model at ``model_path``
    (None: the pretrained one)."""
    return web_sound(_MAKERS[kind](load_model(model_path), **arguments))


def web_sound(piece: Piece) -> WebPiece:
    """A piece without audio (see :func:`compose_many`) as the web page needs it."""
    piece = piece if piece.audio is not None else sounded(piece)
    return WebPiece(piece.roll, piece.midi, piece.audio.mp3_bytes(), piece.description, piece.audio.engine,
                    piece.given)


def _size(piece: WebPiece) -> int:
    return len(piece.midi) + len(piece.mp3) + piece.roll.notes.nbytes


def _drawn_together(model_path: str | None, seeds: list[int], arguments: dict) -> list[Piece]:
    return compose_many(load_model(model_path), seeds, **arguments)


def _worker_start(parent: int) -> None:
    serve_on_shared_cores()
    load_model()  # the pretrained model, before the first visitor asks
    threading.Thread(target=_leave_with, args=(parent,), name="musicgan-watch", daemon=True).start()


def _leave_with(parent: int) -> None:
    """A worker ends when the process that started it does: stopped or killed, it cannot tell its
    workers (they would wait for work forever, each holding torch and a model in memory)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


TOGETHER = 8  # at most this many visitors' pieces are drawn in one batch (8: about 2.5x the time of one)
KEPT_BYTES = 48 * 2 ** 20  # finished pieces kept to hand out again (the examples, seed 0 ...), at most this much
KEPT_KINDS = ("piece", "interpolation", "variations")  # the kinds made from seeds alone (not from uploads)


class Composers:
    """:func:`web_piece` in worker processes, one per core, for a server of many visitors.
    Threads of one process hold Python's lock in turn: two of them made 16-bar pieces 1.35x as
    fast as one, two processes 2.2x. The workers start when first needed (or by :meth:`warm`);
    each keeps its own cache of models, read by path, so the same model and arguments give the
    same music as in this process.

    Each worker task holds one of ``slots`` (:class:`CpuSlots`). New pieces ("piece") are made in
    two tasks: the draw, then the audio. Visitors whose pieces wait to be drawn with the same model
    and arguments are drawn together, up to :data:`TOGETHER` at once, when a slot comes free
    (:func:`compose_many`: a batch costs little more than one piece, and each seed still gets its
    own music). Alone, a visitor's piece is drawn at once, as before. The audio of pieces already
    drawn (and any other task) goes before the next draw: it finishes those visitors' pieces first,
    and the next draw gathers the visitors who click meanwhile. 8 threads asking for 16-bar pieces
    back to back on 2 cores, in this process: 2.6 pieces/s when every draw went first come first
    served (nearly every draw was then alone), 3.5-3.65 in this order (most draws of 7)."""

    def __init__(self, workers: int | None = None, slots: CpuSlots | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.slots = slots or cpu_slot
        self.batches: list[int] = []  # the size of every draw so far (for tests and benches)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._waiting: dict[tuple, list[tuple[int, Future]]] = {}  # by (model, arguments): (seed, its piece)
        self._kept: OrderedDict = OrderedDict()  # finished pieces by what made them, the latest used last
        self.kept_hits = 0  # pieces handed out again (for tests and benches)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_start, initargs=(os.getpid(),))
            return self._pool

    def _broken(self, pool: ProcessPoolExecutor) -> RuntimeError:
        """A worker died (out of memory?): start afresh next time."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        return RuntimeError("the piece could not be made (a worker process stopped); please try again")

    def warm(self) -> None:
        """Start every worker now (each loads torch and the pretrained model: a few seconds)."""
        pool = self._executor()
        for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
            future.result()

    def web_piece(self, kind: str, model_path: str | None = None, **arguments) -> WebPiece:
        """:func:`web_piece`, made in a worker, or handed out again when the same model (unchanged
        since) made it with the same arguments: the same model and arguments always give the
        same music, and on a Space many visitors click the same examples and start from seed 0."""
        name = (kind, model_stamp(model_path), tuple(sorted(arguments.items()))) if kind in KEPT_KINDS else None
        try:
            hash(name)
        except TypeError:  # an argument that names no piece by value
            name = None
        with self._lock:
            if name in self._kept:
                self._kept.move_to_end(name)
                self.kept_hits += 1
                return self._kept[name]
        if kind == "piece":
            arguments = dict(arguments)
            piece = self._drawn(model_path, arguments.pop("seed"), arguments)
            made = self._run(web_sound, piece)
        else:
            made = self._run(web_piece, kind, model_path, **arguments)
        if name is not None:
            self._keep(name, made)
        return made

    def _keep(self, name: tuple, made: WebPiece) -> None:
        """Keep a finished piece, forgetting the least recently used beyond KEPT_BYTES."""
        with self._lock:
            self._kept[name] = made
            while sum(_size(p) for p in self._kept.values()) > KEPT_BYTES and len(self._kept) > 1:
                self._kept.popitem(last=False)

    def _run(self, fn, *args, **kwargs):
        """``fn`` in a worker, holding a CPU slot (it goes before the draws that wait)."""
        with self.slots():
            pool = self._executor()
            try:
                return pool.submit(fn, *args, **kwargs).result()
            except BrokenProcessPool:
                raise self._broken(pool) from None

    def _drawn(self, model_path: str | None, seed: int, arguments: dict) -> Piece:
        """The seed's piece without audio, drawn with whatever else waits for the same model and arguments."""
        mine: Future = Future()
        group = (model_path, tuple(sorted(arguments.items())))
        with self._lock:
            self._waiting.setdefault(group, []).append((seed, mine))
        while not mine.done():
            with self._lock:
                if not any(ticket is mine for tickets in self._waiting.values() for _, ticket in tickets):
                    break  # it is being drawn
            # behind: the audio of pieces drawn already goes first, and more visitors gather meanwhile
            if not self.slots.take(behind=True, give_up=mine.done):
                continue
            with self._lock:
                group = next(iter(self._waiting), None)  # the group waiting longest
                if group is not None:
                    tickets = self._waiting.pop(group)
                    if len(tickets) > TOGETHER:
                        tickets, self._waiting[group] = tickets[:TOGETHER], tickets[TOGETHER:]
            if group is None:
                self.slots.give()
            else:
                self._draw(group, tickets)
        return mine.result()

    def _draw(self, group: tuple, tickets: list[tuple[int, Future]]) -> None:
        """Start drawing a batch in a worker; the slot taken for it is given back when it is done."""
        self.batches.append(len(tickets))
        model_path, arguments = group[0], dict(group[1])
        pool = self._executor()

        def done(future: Future) -> None:
            try:
                pieces = future.result()
            except BrokenProcessPool:
                error = self._broken(pool)
            except BaseException as e:  # ValueError and the like: the same arguments fail alike for all
                error = e
            else:
                error = None
                for (_, ticket), piece in zip(tickets, pieces):
                    ticket.set_result(piece)
            if error is not None:
                for _, ticket in tickets:
                    ticket.set_exception(error)
            self.slots.give()  # (after the pieces: it wakes those who wait for them)

        try:
            pool.submit(_drawn_together, model_path, [seed for seed, _ in tickets], arguments).add_done_callback(done)
        except Exception as e:  # a broken pool, or one shut down meanwhile: no waiting visitor may hang
            error = self._broken(pool) if isinstance(e, BrokenProcessPool) else \
                RuntimeError(f"the piece could not be made ({e}); please try again")
            for _, ticket in tickets:
                ticket.set_exception(error)
            self.slots.give()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None


# ------------------------------------------------------------------------------ training jobs

# One training job per process: a Space's CPU cannot train two models at once usefully.
_TRAINING_SLOT = threading.Lock()
_RUNNING: dict = {}  # the job holding the slot, by its owner (see TrainingJob.owner)


@dataclass
class JobState:
    status: str = "idle"  # idle, running, done, stopped, failed
    message: str = ""
    history: list = field(default_factory=list)  # step events
    sample: Roll | None = None
    sample_step: int = 0
    progress: float = 0.0
    elapsed_s: float = 0.0
    checkpoint: str | None = None


class TrainingJob:
    """Train in a background thread; read ``state`` at any time; ``stop()`` keeps the model.
    ``gpu_calls``: train as a sequence of short GPU calls (ZeroGPU; see :mod:`musicgan.zerogpu`),
    ``zerogpu.in_calls(spaces.GPU)``; None trains here, in one go."""

    def __init__(self, rolls: list[Roll], out_dir, config: TrainConfig = TrainConfig(),
                 budget: Budget = Budget(minutes=3), device: str = "auto", sample_every_s: float = 10.0,
                 start_from=None, owner: str | None = None, gpu_calls=None):
        self.rolls, self.out_dir, self.config, self.budget = rolls, Path(out_dir), config, budget
        self.start_from = start_from  # a checkpoint folder to fine-tune, or None to start from scratch
        self.gpu_calls = gpu_calls
        self.device = pick_device(device) if gpu_calls is None else None
        self.sample_every_s = sample_every_s
        self.owner = owner  # who started it (a browser session), so that leaving can stop it
        self.state = JobState()
        self._note = ""  # said beside the step once the warm-up ended early
        self._stop = threading.Event()
        self._keep = True
        self._thread: threading.Thread | None = None
        self._work = self.out_dir.with_name(self.out_dir.name + "-run")  # the run carried between GPU calls
        self._save = None  # saves the model trained so far into out_dir (True if there was one)

    @staticmethod
    def busy() -> bool:
        return _TRAINING_SLOT.locked()

    @staticmethod
    def stop_owned_by(owner: str | None) -> bool:
        """Stop the running job that ``owner`` started (a visitor who closed the page); True if there was one."""
        job = _RUNNING.get(owner) if owner is not None else None
        if job is None:
            return False
        job.stop(keep=False)  # nobody is left to use the model: free the slot without saving it
        return True

    @property
    def device_label(self) -> str:
        return "the GPU, in short calls" if self.device is None else device_label(self.device)

    def start(self) -> bool:
        """Start training; False (and nothing started) when another job holds the slot."""
        if not _TRAINING_SLOT.acquire(blocking=False):
            return False
        self.state = JobState(status="running", message="preparing the data")
        _RUNNING[self.owner] = self
        # in the starting request's context: a GPU call from this thread is that visitor's (ZeroGPU)
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name="musicgan-training", daemon=True)
        self._thread.start()
        return True

    def stop(self, keep: bool = True) -> None:
        """Stop after the current step; the model so far is saved unless ``keep`` is False."""
        self._keep = self._keep and keep
        self._stop.set()
        if self.gpu_calls is not None and self._work.is_dir():  # the GPU call's process looks for it
            (self._work / zerogpu.STOP_FILE).touch()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_event(self, event: dict) -> None:
        if event["event"] == "step":
            self.state.history.append({k: v for k, v in event.items() if k != "event"})
            self.state.progress, self.state.elapsed_s = event["progress"], event["elapsed_s"]
            self.state.message = f"step {event['step']} ({event['phase']})" + self._note
        elif event["event"] == "ended_early":
            self._note = (f"; the held-out pieces' loss stopped falling at step {event['best_step']}, "
                          f"so the warm-up ended early and keeps that step's model")
        elif event["event"] == "sample":
            self.state.sample, self.state.sample_step = event["roll"], event["step"]

    def _run(self) -> None:
        """Train, then save what was learned (also after a stop or an error). The model is saved
        before the state says the run ended, so whoever sees "finished" or "stopped" can use it."""
        status, message = "failed", ""
        try:
            status, message = self._train_in_calls() if self.gpu_calls is not None else self._train_here()
        except (TrainingError, ckpt.CheckpointError) as e:
            message = str(e)
        except Exception as e:  # never let a thread die silently: the page must say what happened
            message = f"training failed: {type(e).__name__}: {e}"
        finally:
            try:
                if self._save is not None and self._keep:
                    self.state.message = "saving the model"
                    if self._save():
                        self.state.checkpoint = str(self.out_dir)
            except Exception as e:
                message += f" (the model could not be saved: {e})"
            finally:
                shutil.rmtree(self._work, ignore_errors=True)
            self.state.status, self.state.message = status, message + self._note
            _RUNNING.pop(self.owner, None)
            _TRAINING_SLOT.release()

    def _train_here(self) -> tuple[str, str]:
        base = None if self.start_from is None else ckpt.load(self.start_from, with_discriminator=True)
        trainer = Trainer(self.rolls, base.model if base else None, config=self.config, device=self.device,
                          callback=self._on_event, budget=self.budget)
        if base:
            trainer.start_from(base)
        self._save = lambda: trainer.step_count > 0 and trainer.save(self.out_dir, with_train_state=False)
        self.state.message = f"training on {device_label(self.device)}, {trainer.config.batch_size} windows a step"
        status = trainer.run(self.budget, should_stop=self._stop.is_set, sample_every_s=self.sample_every_s)
        self.state.sample, self.state.sample_step = trainer.sample(), trainer.step_count
        return status, f"{'finished' if status == 'done' else 'stopped'} after {trainer.step_count} steps"

    def _train_in_calls(self) -> tuple[str, str]:
        """The run as GPU calls of a few minutes (:mod:`musicgan.zerogpu`), each carrying it on
        from the last; a refused or cut-off call ends the run and keeps what the last one saved.
        The model is finished on the CPU after the last call (``zerogpu.finish``)."""
        self._work.mkdir(parents=True, exist_ok=True)
        part = None
        self._save = lambda: (self._work / ckpt.CONFIG).is_file() and self._finish(part)
        status, step, elapsed, calls, saved_in = "paused", 0, 0.0, 0, None
        while status == "paused":
            if self._stop.is_set():
                return "stopped", f"stopped after {step} steps"
            calls += 1
            save_s = zerogpu.reserve_for_saving(saved_in)  # as long as the last part's saving took, and a margin
            part = zerogpu.Part(self.rolls, self.config, self.budget, str(self._work),
                                zerogpu.call_seconds(self.budget, elapsed, save_s), start_from=self.start_from,
                                stop_file=str(self._work / zerogpu.STOP_FILE), sample_every_s=self.sample_every_s,
                                save_s=save_s)
            self.state.message = f"waiting for the GPU (call {calls}, {part.seconds} s)"
            try:
                for event in self.gpu_calls(part):
                    if event["event"] == "part":
                        status, step, elapsed, saved_in = event["status"], event["step"], event["elapsed_s"], event["save_s"]
                    else:
                        self._on_event(event)
            except Exception as e:  # noqa: BLE001 - a refusal or a cut-off call (spaces raises gr.Error), in its words
                kept = f"; the model of step {step} is kept" if step else ""
                return "stopped" if step else "failed", f"the GPU stopped the training: {e}{kept}"
        return status, f"{'finished' if status == 'done' else 'stopped'} after {step} steps in {calls} GPU calls"

    def _finish(self, part) -> bool:
        """The model the GPU calls trained, finished here on the CPU (its sampling fitted to the
        music) and saved into out_dir, with its sample."""
        self.state.message = "fitting how the model draws to the music (on the CPU) and saving it"
        trainer = zerogpu.finish(part, self.out_dir)
        self.state.sample, self.state.sample_step = trainer.sample(), trainer.step_count
        return True
