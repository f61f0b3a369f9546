"""How a piece ends: on its key's tonic chord, struck or sounding on a strong beat of its last
bar and held to the end, as the music the models learn from ends.

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
closes there (:func:`closed`): the chord is held to the end and nothing after it is struck. The
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
"""
from __future__ import annotations

import numpy as np
import torch

from . import keys, metre as metres, voices
from .midi import END, PITCH, START, Roll
from .models import sounding
from .voices import FIRST_PITCH, HOLD, REST


def places(piece_metre, steps_per_beat: int) -> list[int]:
    """The steps of a bar of ``piece_metre`` on which a piece may close, latest first: its middle,
    when the bar halves between two of its beats (4/4 on beat 3, 6/8 on its second dotted beat,
    2/4 on beat 2), and its downbeat."""
    bar = metres.bar_steps(piece_metre, steps_per_beat)
    numerator = piece_metre[0]
    beats = numerator // 3 if numerator % 3 == 0 and numerator > 3 else numerator
    return [bar // 2, 0] if beats % 2 == 0 else [0]


def tonic_chord(pitches, key: int) -> bool:
    """Whether MIDI ``pitches`` (sounding together; at least one) are the tonic chord of ``key``
    (:mod:`musicgan.keys`) with the tonic lowest."""
    pitches = np.asarray(pitches)
    if not len(pitches):
        return False
    tonic = key % 12
    chord = {tonic, (tonic + 4) % 12, (tonic + 7) % 12} | ({(tonic + 3) % 12} if key >= 12 else set())
    return int(pitches.min()) % 12 == tonic and set((pitches % 12).tolist()) <= chord


def closing(tokens: np.ndarray, key: int, piece_metre, steps_per_beat: int, pitch_low: int) -> int | None:
    """The step from which a piece of ``tokens`` (T, V; whole bars of ``piece_metre`` on a grid
    of ``steps_per_beat``) can close: the latest of its last bar's :func:`places` where its voices
    sound the tonic chord of ``key``; None where none does."""
    bar = metres.bar_steps(piece_metre, steps_per_beat)
    if len(tokens) < bar:
        return None
    last = len(tokens) - bar
    sound = sounding(torch.from_numpy(np.asarray(tokens, np.int64))).numpy()
    for place in places(piece_metre, steps_per_beat):
        if _tonic_sounds(sound[last + place], key, pitch_low):
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
    end = int(notes[:, END].max())
    chord = notes[notes[:, END] == end]
    return tonic_chord(chord[:, PITCH], key), float(end - chord[:, START].max()) / roll.steps_per_beat
