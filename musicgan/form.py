"""The form of a piece: which of its bars come back, note for note.

A fiddle tune plays its 8-bar strain twice and its 4-bar phrases again within it; a chorale
repeats its opening lines. Half the bars of the fiddle tunes repeat one of the 8 bars before
them, and the model's pieces almost never do (``metrics.repeated_bars``; docs/quality.md, "Phrases
that come back"): its training windows are 4 to 8 bars, shorter than the distance at which music
repeats. So a piece takes its form from the training music, as it takes its metre and key: a
seed draws one training piece's form (for each of its first :data:`FORM_BARS` bars, the first
earlier bar it repeats note for note as part of a phrase that comes back or as a figure, or
none) and its piece
repeats its own bars where that piece did. The notes are the model's; which bars return is the music's. (A template piece's
repetition structure imposed on generated music: Lattner, Grachten and Widmer, "Imposing
higher-level structure in polyphonic music generation using convolutional restricted Boltzmann
machines and constraints", 2018.)

A form is an int8 array of each bar's *source*: the bar it repeats (the first occurrence of its
notes, which is itself no repeat), or -1 for a bar of its own (and for every bar after the piece
ends). Phrases count, bars that come back together, in order, and figures that come back alone
(:func:`of`).
"""
from __future__ import annotations

import numpy as np
import torch

from . import metre
from .metrics import bar_keys
from .midi import START, Roll

FORM_BARS = 64  # the bars of a piece's form that are kept; later bars of a generated piece are its own
MAX_FORMS = 2048  # forms kept of a model's music (spread evenly over its pieces)
PHRASE_BARS = 2  # the fewest bars that come back together, in order, that make a phrase of the form


def of(roll: Roll) -> np.ndarray:
    """(FORM_BARS,) the source of each of the roll's first bars (by its own bar lines; see the
    module's note). A bar with notes that sounded note for note in an earlier bar of the same
    length (held notes cut at the bar lines, as ``metrics.repeated_bars`` reads them) repeats
    the first such bar, when it is part of a phrase that comes back (at least PHRASE_BARS bars in a
    row that repeat bars in a row) or is a figure (:func:`figures`). A held chord or a bar of long
    notes that comes back alone is the model's to write: it writes them by itself. Measured on the
    training splits of ``bench/styles.py``, of the first 16 bars of the Trecento pieces 1% repeat
    in phrases and 8% alone, nearly all (97%) struck less than once a beat; of the fiddle tunes'
    41% and 13%, nearly all (99.7%) figures, struck twice a beat like their other bars."""
    sources = np.full(FORM_BARS, -1, np.int64)
    first: dict = {}
    for b, key in enumerate(bar_keys(roll)[:FORM_BARS]):
        if key is not None:
            sources[b] = first.setdefault(key, b)
    sources[sources == np.arange(FORM_BARS)] = -1
    figure = figures(roll)
    out = np.full(FORM_BARS, -1, np.int8)
    for s, e in phrases(sources):
        if e - s >= PHRASE_BARS or figure[s]:
            out[s:e] = sources[s:e]
    return out


def figures(roll: Roll) -> np.ndarray:
    """(FORM_BARS,) bool: which of the roll's first bars (by its own bar lines) are figures, bars
    that strike notes at least once a beat (as many times with an onset as the bar has beats): a
    tune's figure that comes back alone is heard as its form, a held chord is not."""
    out = np.zeros(FORM_BARS, bool)
    starts = np.unique(roll.notes[:, START])
    for b, (a, e) in enumerate(metre.bar_spans(roll.time_signatures, roll.n_steps, roll.steps_per_beat)[:FORM_BARS]):
        out[b] = np.searchsorted(starts, e) - np.searchsorted(starts, a) >= (e - a) / roll.steps_per_beat
    return out


def phrases(sources) -> list[tuple[int, int]]:
    """(first bar, end bar) of each run of bars of ``sources`` that repeat bars in a row: the
    phrases that come back."""
    out, b = [], 0
    while b < len(sources):
        if sources[b] < 0:
            b += 1
            continue
        e = b + 1
        while e < len(sources) and sources[e] == sources[e - 1] + 1:
            e += 1
        out.append((b, e))
        b = e
    return out


def build(rolls) -> np.ndarray | None:
    """(n, FORM_BARS) the forms of the rolls (at most MAX_FORMS, spread evenly over them); None
    when no bar of any of them repeats (then pieces are drawn as they always were)."""
    rolls = list(rolls)
    if len(rolls) > MAX_FORMS:
        rolls = [rolls[i] for i in np.linspace(0, len(rolls) - 1, MAX_FORMS).astype(int)]
    forms = np.stack([of(r) for r in rolls]) if rolls else np.zeros((0, FORM_BARS), np.int8)
    return forms if (forms >= 0).any() else None


def check(forms) -> np.ndarray:
    """``forms`` as an int8 (n, FORM_BARS) array of sources, or ValueError: each source an
    earlier bar that repeats no other."""
    forms = np.asarray(forms)
    if forms.dtype != np.int8 or forms.ndim != 2 or forms.shape[1] != FORM_BARS or not len(forms):
        raise ValueError(f"forms are int8 rows of {FORM_BARS} bars")
    bars = np.arange(FORM_BARS)
    if ((forms < -1) | (forms >= bars)).any():
        raise ValueError("a bar of a form repeats a bar that is not before it")
    rows, cols = np.nonzero(forms >= 0)
    if (forms[rows, forms[rows, cols]] != -1).any():
        raise ValueError("a bar of a form repeats a bar that is itself a repeat")
    return forms


def for_seed(seed: int, forms: np.ndarray, bars: int, ending: bool = False) -> np.ndarray:
    """(bars,) the sources of a seed's piece of ``bars`` bars: the form of one of ``forms``,
    drawn with a stream of its own (uniformly: each piece of the music as likely). ``ending``: the
    last bar is the piece's own, where it closes (:mod:`musicgan.ending`), as a phrase that comes
    back at the end of a piece takes a new last bar (a second ending)."""
    rng = torch.Generator().manual_seed((seed * 1_000_000_009 + 9_173) % (2 ** 63))
    row = forms[int(torch.randint(len(forms), (1,), generator=rng))].astype(np.int64)
    out = np.full(bars, -1, np.int64)
    out[:min(bars, FORM_BARS)] = row[:bars]
    if ending:
        out[-1] = -1
    return out


def parts(sources: np.ndarray, start: int, end: int) -> list[tuple[int, int]]:
    """The bars start .. end - 1 of pieces with these ``sources`` (rows, bars), cut where any of
    them goes from bars of its own to repeated bars or back: (first bar, end bar) of each part. In
    a part every piece either draws every bar or repeats every bar, and the bars it repeats lie
    in parts before (a source is a bar of its own)."""
    repeats = sources[:, start:end] >= 0
    cuts = [start] + [start + b for b in range(1, end - start) if (repeats[:, b] != repeats[:, b - 1]).any()] + [end]
    return list(zip(cuts, cuts[1:]))


def rebarred(sources, bar: int, lines) -> np.ndarray:
    """``sources`` of bars of ``bar`` steps from step 0, as the sources of the bars that begin at
    the steps ``lines`` instead (the same music barred otherwise: two bars as one, a bar as two).
    Such a bar repeats the one that begins as far back as the bars it lies in repeat from, when
    they all repeat from equally far back and a bar begins there; else it is -1 (drawn)."""
    sources = np.asarray(sources)
    lines = [int(s) for s in lines]
    begins = {s: i for i, s in enumerate(lines)}
    end = len(sources) * bar
    out = np.full(len(lines), -1)
    for j, s in enumerate(lines):
        e = min(lines[j + 1] if j + 1 < len(lines) else end, end)
        if s < 0 or e <= s:
            continue
        back = {(k - sources[k]) * bar if sources[k] >= 0 else None for k in range(s // bar, (e - 1) // bar + 1)}
        if len(back) == 1 and None not in back:
            out[j] = begins.get(s - back.pop(), -1)
    return out


def describe(sources: np.ndarray, most: int = 3) -> str:
    """The phrases that come back in a piece of these ``sources``, in words: "bars 5-8 repeat
    1-4" (counted from 1); "" when none does. The longest ``most`` are named, in the piece's
    order, and the bars of any others counted ("and 5 more bars repeat earlier ones"): a fiddle
    tune's form named bar by bar ran to seven phrases, more than a listener reads under a player."""
    found = phrases(sources)
    named = sorted(sorted(found, key=lambda p: p[0] - p[1])[:most])  # (the longest, first come first)
    said = []
    for b, e in named:
        n, a = e - b, int(sources[b])
        said.append(f"bar {b + 1} repeats {a + 1}" if n == 1 else f"bars {b + 1}-{e} repeat {a + 1}-{a + n}")
    rest = sum(e - b for b, e in found) - sum(e - b for b, e in named)
    if rest:
        said.append(f"and {rest} more bar{'s' if rest > 1 else ''} repeat{'' if rest > 1 else 's'} earlier "
                    f"one{'s' if rest > 1 else ''}")
    return ", ".join(said)
