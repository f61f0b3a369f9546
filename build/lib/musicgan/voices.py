"""Roll <-> voice tokens: the representation the networks see.

Drawing every pitch of a piano roll independently destroys harmony (DESIGN.md, "Measured
here"). So a step is split into ``V`` monophonic voices, highest first (a "skyline" split:
with more than ``V`` notes sounding, the ``V - 1`` highest and the lowest are kept, so the
bass survives). Each voice makes one categorical choice per step:

    0 = rest,  1 = hold (the voice's note goes on),  2 + k = a new note of pitch ``low + k``

so polyphony, onsets vs. held notes (repeated notes survive) and durations are all kept, and the
generator chooses the notes of one step jointly (voice by voice, each seeing the ones above).
"""
from __future__ import annotations

import numpy as np

from .midi import Roll, _sorted_notes, sounding_counts

REST, HOLD, FIRST_PITCH = 0, 1, 2


MOST_VOICES = 6  # the most voices a model gets by itself (each costs time: one more choice per step)
COVERAGE = 0.95  # ... enough that this share of the sounding steps keep all their notes


def voices_needed(note_arrays, coverage: float = COVERAGE, most: int = MOST_VOICES) -> int:
    """The fewest voices (1..``most``) that keep every note of at least ``coverage`` of the steps
    where something sounds. ``note_arrays``: notes (pitch, start, end, velocity) of each piece.
    Four-part chorales need 4, or 5 where an instrument adds a part; piano music more."""
    counts = np.zeros(most + 2, dtype=np.int64)
    for notes in note_arrays:
        sounding = sounding_counts(notes)
        counts += np.bincount(np.minimum(sounding[sounding > 0], most + 1), minlength=most + 2)
    if not counts.sum():
        return 1
    covered = np.cumsum(counts) / counts.sum()
    return int(min(most, max(1, np.searchsorted(covered[1:], coverage - 1e-9) + 1)))


def vocab_size(pitch_low: int, pitch_high: int) -> int:
    return FIRST_PITCH + pitch_high - pitch_low + 1


def encode(onset: np.ndarray, sustain: np.ndarray, voices: int) -> np.ndarray:
    """(onset, sustain) boolean arrays (..., steps, pitches) -> int64 tokens (..., steps, voices)."""
    onset = np.asarray(onset, dtype=bool)
    sustain = np.asarray(sustain, dtype=bool) | onset
    n_pitches = sustain.shape[-1]
    count = sustain.sum(-1)  # (..., steps)
    # active pitch indices, highest first; inactive ones sort last
    order = np.argsort(np.where(sustain, -np.arange(n_pitches), 1), axis=-1, kind="stable")
    pitch = np.full(count.shape + (voices,), -1, dtype=np.int64)
    for v in range(voices):
        if v < voices - 1:
            rank = np.full_like(count, v)
        else:  # the last voice takes the lowest note when there are more notes than voices
            rank = np.where(count > voices, count - 1, v)
        chosen = np.take_along_axis(order, np.minimum(rank, n_pitches - 1)[..., None], axis=-1)[..., 0]
        pitch[..., v] = np.where(count > rank, chosen, -1)
    struck = np.take_along_axis(onset, np.maximum(pitch, 0), axis=-1) & (pitch >= 0)
    prev = np.concatenate([np.full_like(pitch[..., :1, :], -1), pitch[..., :-1, :]], axis=-2)
    tokens = np.where(pitch < 0, REST, np.where(~struck & (prev == pitch), HOLD, FIRST_PITCH + pitch))
    return tokens.astype(np.int64)


def decode(tokens: np.ndarray, pitch_low: int, velocity: int = 80, **meta) -> Roll:
    """int tokens (steps, voices) -> Roll, as long as the tokens (a rest at the end counts).
    A hold after a rest is read as a rest."""
    tokens = np.asarray(tokens)
    n_steps, n_voices = tokens.shape
    notes = []
    for v in range(n_voices):
        pitch, start = None, 0
        for t, tok in enumerate(tokens[:, v].tolist()):
            if tok == HOLD and pitch is not None:
                continue
            if pitch is not None:
                notes.append((pitch, start, t, velocity))
                pitch = None
            if tok >= FIRST_PITCH:
                pitch, start = pitch_low + tok - FIRST_PITCH, t
        if pitch is not None:
            notes.append((pitch, start, n_steps, velocity))
    notes = np.array(notes, dtype=np.int32).reshape(-1, 4)
    return Roll(notes=_resolve_unisons(notes), length=n_steps, **meta)


def _resolve_unisons(notes: np.ndarray) -> np.ndarray:
    """Two voices on one pitch at once are one sounding note in MIDI: merge them."""
    from .midi import _resolve_overlaps

    return _resolve_overlaps(notes) if len(notes) else _sorted_notes(notes)


def window_tokens(windows, pitch_low: int, voices: int) -> np.ndarray:
    """Tokens (n_windows, window_steps, voices) as uint8 for every window of a
    :class:`musicgan.data.Windows`, encoding each piece once and slicing it."""
    length = windows.config.window_steps
    out = np.zeros((len(windows), length, voices), dtype=np.uint8)
    for r, roll in enumerate(windows.rolls):
        rows = np.nonzero(windows.index[:, 0] == r)[0]
        if len(rows) == 0:
            continue
        onset, sustain = roll.pianoroll(0, 127, roll.n_steps + length)
        tokens = encode(onset, sustain, voices)  # pitch tokens are FIRST_PITCH + MIDI pitch here
        for i in rows:
            _, start, shift = windows.index[i]
            tok = tokens[start:start + length].copy()
            held = tok[0] == HOLD  # a note sounding into the window starts it
            if held.any():
                sounding = _held_pitch(tokens, start)
                tok[0, held] = FIRST_PITCH + sounding[held]
            pitched = tok >= FIRST_PITCH
            tok[pitched] += shift - pitch_low
            out[i] = tok
    return out


def _held_pitch(tokens: np.ndarray, step: int) -> np.ndarray:
    """MIDI pitch each voice holds at ``step`` (walking back to its onset)."""
    pitch = np.zeros(tokens.shape[1], dtype=np.int64)
    for v in range(tokens.shape[1]):
        t = step
        while t > 0 and tokens[t, v] == HOLD:
            t -= 1
        pitch[v] = tokens[t, v] - FIRST_PITCH
    return pitch
