"""How a piece ends: on its key's tonic chord, struck or sounding on a strong beat of its last
bar and held as long as the music the model learnt from holds its last chord.

A model learns from windows of a few bars, cut from anywhere in a piece, so nothing tells it that
the bars it is drawing are the last: its pieces stopped wherever the bar count ran out, in the
middle of a run. Of 100 pieces of 16 bars (``bench/styles.py``), the pretrained chorale model's
ended on their tonic chord in 9% (the held-out chorales: 72%, in the keys a listener's ear, the
Krumhansl estimate, gives them), its last chord sounding for a median of half a beat; the fiddle
model's in 21%, on a sixteenth (docs/quality.md, "Endings").

So the last bar of a new piece is drawn on its own, after the rest has been chosen, and of its
candidates one that *can close* goes first (:func:`closing`): one whose voices sound the tonic
chord of the piece's key, with the tonic in the bass, on the bar's downbeat or, in a bar that
halves between two beats (4/4, 2/4, 6/8), on its middle. On those steps alone the draw leans
toward the tonic chord (``generate.toward_tonic``): without it a fifth of the chorale model's
pieces had no candidate that could close, their harmony too far from home by then. The piece then
closes there (:func:`closed`): the chord is held (:func:`held_to`) and nothing after it is struck. The
notes are the model's, the way into the last chord its own cadence; the choice among draws, the
lean on the closing steps and the length of the last chord are the ending's.

A continuation closes the same way; a harmonisation, whose last bar is the given line's, closes
where the line's last note is struck, when that note lets it (:func:`sounds_tonic`): where the
critic's first choice does not, its last bars are drawn again, as a new piece's last bar is
(:func:`musicgan.harmonise.harmonise_rolls`), and the chord is held as long as the line's last note.
Short pieces with no candidates to choose among (interpolations, variations) lean the same way and
draw their last bar again where it does not close (:func:`musicgan.generate.sample_tokens`).

The tonic chord: the key's tonic, third and fifth (in a minor key, the major third too: the
chorales' "Picardy" close), with the tonic lowest. In one voice, the tonic itself.

Where in its last bar a piece closes, and for how long its last chord sounds, are the music's
(:func:`habit`, read from the training music and kept in the checkpoint's ``data.ends``): a
madrigal's final chord is struck on the downbeat and fills the bar (47 of Monteverdi's 48 held-out
madrigals), a fiddle tune's last note falls in the middle of the bar and is short (half a beat in
2/4, a beat in 2/2 and 6/8: then the tune goes back to its repeat), and the chorales close on
either (39% on the downbeat), their last chord 2 beats in 4/4 and 3 in 3/4. A model trained
before the music was read for it closes on the latest place and holds the chord to the bar's end.
"""
from __future__ import annotations

import numpy as np
import torch

from . import keys, metre as metres, voices
from .midi import END, PITCH, START, Roll, last_chord
from .models import sounding
from .voices import FIRST_PITCH, HOLD, REST


def places(piece_metre, steps_per_beat: int, ends=None) -> list[int]:
    """The steps of a bar of ``piece_metre`` on which a piece may close, in the order tried: its
    middle, when the bar halves between two of its beats (4/4 on beat 3, 6/8 on its second
    dotted beat, 2/4 on beat 2), and its downbeat; the downbeat first where ``ends`` (a model's
    ``Generator.ends``, see :func:`habit`) says most of its music's pieces close in the first
    half of a bar."""
    bar = metres.bar_steps(piece_metre, steps_per_beat)
    numerator = piece_metre[0]
    beats = numerator // 3 if numerator % 3 == 0 and numerator > 3 else numerator
    order = [bar // 2, 0] if beats % 2 == 0 else [0]
    return order[::-1] if ends is not None and float(ends[0]) > 0.5 else order


def habit(rolls) -> dict | None:
    """How the pieces of ``rolls`` (whole pieces, as written) end: {"downbeat": the share whose
    last chord (the notes that sound at the very end) is struck in the first half of its bar,
    "beats": {metre name: the median beats it sounds, of the pieces whose last bar is in that
    metre}}; None when none has notes. By metre: a fiddle tune's last note sounds half a beat in
    2/4 and a beat in 2/2 and 6/8; a chorale's last chord 2 beats in 4/4 and 3 in 3/4."""
    early, beats = [], {}
    for roll in rolls:
        notes = roll.notes
        if not len(notes):
            continue
        chord = last_chord(notes)
        end, struck = int(chord[0, END]), int(chord[:, START].max())
        start = max(s for s, _ in metres.bar_spans(roll.time_signatures, max(roll.n_steps, end), roll.steps_per_beat)
                    if s <= struck)
        bar_metre = metres.metre_at(roll.time_signatures, start)
        early.append(struck - start < metres.bar_steps(bar_metre, roll.steps_per_beat) / 2)
        beats.setdefault(metres.name(bar_metre), []).append((end - struck) / roll.steps_per_beat)
    if not early:
        return None
    return {"downbeat": round(float(np.mean(early)), 3),
            "beats": {name: float(np.median(b)) for name, b in sorted(beats.items(), key=lambda nb: -len(nb[1]))}}


def ends_of(said, model_metres) -> torch.Tensor:
    """A model's ``Generator.ends`` from what its config says of its music's endings (``data.ends``,
    :func:`habit`; None: not read): the share closing on a downbeat, then the beats a last chord
    sounds in each of ``model_metres`` (0 where not said: to the end of its bar); ValueError for
    anything that is not such a reading."""
    return torch.tensor(metres.reading(
        said, "downbeat", model_metres,
        "data.ends is not a share of pieces closing on a downbeat and the beats of a last chord by metre"))


def held_to(at: int, n_steps: int, steps_per_beat: int, beats: float = 0.0) -> int | None:
    """Where a last chord struck at step ``at`` of a piece of ``n_steps`` stops sounding: after
    ``beats`` (its model's music's, :func:`habit`), or at the end (None) when that is longer,
    or not said (0)."""
    stop = at + max(1, round(beats * steps_per_beat)) if beats > 0 else n_steps
    return stop if stop < n_steps else None


def tonic_chord(pitches, key: int) -> bool:
    """Whether MIDI ``pitches`` (sounding together; at least one) are the tonic chord of ``key``
    (:mod:`musicgan.keys`) with the tonic lowest."""
    pitches = np.asarray(pitches)
    if not len(pitches):
        return False
    tonic = key % 12
    chord = {tonic, (tonic + 4) % 12, (tonic + 7) % 12} | ({(tonic + 3) % 12} if key >= 12 else set())
    return int(pitches.min()) % 12 == tonic and set((pitches % 12).tolist()) <= chord


def closing(tokens: np.ndarray, key: int, piece_metre, steps_per_beat: int, pitch_low: int,
            ends=None, short: int = 0) -> int | None:
    """The step from which a piece of ``tokens`` (T, V; whole bars of ``piece_metre`` on a grid
    of ``steps_per_beat``) can close: the first of its last bar's :func:`places` (in the order
    ``ends`` gives them, before its last ``short`` steps: a piece that opened with a pickup ends
    that much early) where its voices sound the tonic chord of ``key``; None where none does."""
    bar = metres.bar_steps(piece_metre, steps_per_beat)
    if len(tokens) < bar:
        return None
    last = len(tokens) - bar
    sound = sounding(torch.from_numpy(np.asarray(tokens, np.int64))).numpy()
    for place in places(piece_metre, steps_per_beat, ends):
        if place < bar - short and _tonic_sounds(sound[last + place], key, pitch_low):
            return last + place
    return None


def key_of(tokens: np.ndarray, key: int | None, pitch_low: int) -> int:
    """``key``, or for a model that takes none (None), the key estimated from the notes of ``tokens`` (T, V)."""
    return keys.estimate(voices.decode(tokens, pitch_low).notes) if key is None else key


def sounds_tonic(tokens: np.ndarray, step: int, key: int, pitch_low: int) -> bool:
    """Whether the voices of ``tokens`` (T, V) sound the tonic chord of ``key`` at ``step`` (a
    harmonisation's last melody note: :func:`musicgan.harmonise.harmonise_rolls`)."""
    return _tonic_sounds(sounding(torch.from_numpy(np.asarray(tokens[:step + 1], np.int64))).numpy()[step], key,
                         pitch_low)


def _tonic_sounds(sound: np.ndarray, key: int, pitch_low: int) -> bool:
    """Whether one step's sounding tokens (V,) are the tonic chord of ``key``."""
    return tonic_chord(sound[sound >= FIRST_PITCH] - FIRST_PITCH + pitch_low, key)


def closed(tokens: np.ndarray, at: int, end: int | None = None) -> np.ndarray:
    """``tokens`` (T, V) closing at step ``at``: what sounds there is held to step ``end`` (None:
    the end; a voice at rest stays at rest), nothing after ``at`` is struck, and from ``end`` on
    every voice rests (a harmonisation ends with its line's last note)."""
    out = np.array(tokens, copy=True)
    out[at + 1:] = HOLD
    if end is not None:
        out[end:] = REST
    return out


def ends_closed(roll: Roll, key: int | None = None) -> tuple[bool, float]:
    """How a piece (a drawn one, or music as written) ends, as a listener hears it: (whether its
    last chord, the notes that sound at its very end, is the tonic chord of ``key`` (None: the
    key estimated from its notes), how many beats it has sounded for when the piece ends, from
    the last of its notes to be struck)."""
    notes = roll.notes
    if not len(notes):
        return False, 0.0
    key = keys.estimate(notes) if key is None else key
    chord = last_chord(notes)
    return tonic_chord(chord[:, PITCH], key), float(chord[0, END] - chord[:, START].max()) / roll.steps_per_beat
