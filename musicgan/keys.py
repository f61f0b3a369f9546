"""Keys: which of the 24 major and minor keys a piece is in (Krumhansl-Schmuckler).

A key is an int: 0-11 for C major .. B major, 12-23 for C minor .. B minor. The estimate
correlates the piece's duration-weighted pitch-class histogram with the Krumhansl-Kessler
probe-tone profiles (Krumhansl 1990) of all 24 keys and takes the best match.

The generator is told the key of the piece each training window comes from (shifted with the
window when it is transposed), so it learns music *in a key*. Without it, a model trained on a
few files drifted: each bar of its clips had the pitch classes of real bars (6.9 against 6.8),
but over 4 bars it used one more than the real music did (9.9 against 8.9).

A whole piece is also heard by where it ends (:func:`of_piece`). The profiles alone hear many
pieces a fifth away from home: 48 of the 430 Bach chorales whose key signature and last bass
note agree (G major, ending on G) sound "D major" to them, since the chorales dwell on the
dominant; a madrigal in G Dorian (one flat, ending on G) sounds "D minor", and 35% of Monteverdi's
held-out madrigals end on the tonic of their estimated key. Told keys like those, a model learns
to end a fifth away from the tonic it is asked for. So the key of a whole piece prefers the one
whose tonic is the piece's final, its lowest note at the very end, where that key's profile fits
within :data:`FINAL_MARGIN` of the best (a correlation of 0.2 less). It names the key signature
the Bach chorales were written with for 81% of them (the profiles alone: 67%), the string
quartets' for 76% (61%), the fiddle tunes' as often (82%); the ten example chorales as their
editors wrote them, where the profiles alone heard five a fifth or a third away (docs/quality.md,
"The key of a whole piece"; bwv254, in D Dorian written without a flat, is D minor either way). A given line to harmonise
ends where its piece does, and is read the same way; an opening to continue has no final to go by,
and is heard by its notes alone.
"""
from __future__ import annotations

import numpy as np

from .midi import END, PITCH, START, last_chord

KEYS = 24
_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# row k: the profile of key k over pitch classes C..B
_PROFILES = np.array([np.roll(_MAJOR, t) for t in range(12)] + [np.roll(_MINOR, t) for t in range(12)])
_PROFILES = (_PROFILES - _PROFILES.mean(1, keepdims=True)) / _PROFILES.std(1, keepdims=True)


FINAL_MARGIN = 0.2  # how much less well a key whose tonic is the piece's final may fit, and be preferred


def estimate(notes: np.ndarray, final: int | None = None) -> int:
    """The key of a note array (pitch, start, end, velocity rows) by its pitch classes; C major
    when there are no notes. ``final`` (a pitch class): prefer a key on that tonic where its
    profile correlates within :data:`FINAL_MARGIN` of the best."""
    if len(notes) == 0:
        return 0
    hist = np.bincount(notes[:, PITCH] % 12, weights=(notes[:, END] - notes[:, START]).astype(float), minlength=12)
    if hist.std() == 0:
        return 0 if final is None else final % 12
    fit = _PROFILES @ ((hist - hist.mean()) / hist.std()) / 12  # correlations
    if final is not None:
        fit[[final % 12, final % 12 + 12]] += FINAL_MARGIN
    return int(np.argmax(fit))


def final(notes: np.ndarray) -> int | None:
    """The pitch class a piece ends on: the lowest of the notes sounding at its very end; None
    when there are no notes."""
    if len(notes) == 0:
        return None
    return int(last_chord(notes)[:, PITCH].min()) % 12


def of_piece(notes: np.ndarray) -> int:
    """The key of a whole piece (its notes), heard by its pitch classes and where it ends: the
    key each of a model's training pieces is told to be in."""
    return estimate(notes, final(notes))


def transpose(key, shift):
    """The key (int or int array) moved by ``shift`` semitones; the mode stays."""
    return (key % 12 + shift) % 12 + 12 * (key // 12)


def name(key: int) -> str:
    return f"{_TONICS[key % 12]} {'minor' if key >= 12 else 'major'}"


def parse(text: str) -> int:
    """'C major', 'f# minor', 'Bb', 'a minor' -> a key; ValueError for anything else."""
    parts = text.strip().replace("♯", "#").replace("♭", "b").split()
    if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1].lower() not in ("major", "minor")):
        raise ValueError(f"not a key: {text!r} (say e.g. 'C major' or 'F# minor')")
    spellings = {t.lower(): i for i, t in enumerate(_TONICS)}
    spellings.update({"db": 1, "d#": 3, "gb": 6, "g#": 8, "a#": 10, "cb": 11, "e#": 5, "fb": 4, "b#": 0})
    tonic = spellings.get(parts[0].lower())
    if tonic is None:
        raise ValueError(f"not a key: {text!r} (say e.g. 'C major' or 'F# minor')")
    return tonic + (12 if len(parts) == 2 and parts[1].lower() == "minor" else 0)


NAMES = [name(k) for k in range(KEYS)]
# each key's signature as MIDI files name it (mido's spelling), with the fewer accidentals
_SIGNATURES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
               "Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")


def signature(key: int) -> str:
    """The key signature of a key, as a MIDI key_signature message names it ('Eb', 'F#m')."""
    return _SIGNATURES[key]
