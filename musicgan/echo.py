"""The rhythm of one bar in the next: how often a voice strikes where it struck a bar before.

Music keeps its rhythms from bar to bar: a figure comes back, an accompaniment keeps its pattern,
a hymn's voices move in the same note values bar after bar. So a voice that struck a note at some
place in a bar strikes at that place in the next bar more often than its rate at that place alone
says. Counted here as one number: the common odds ratio (Mantel and Haenszel's) of "strikes now"
against "struck a bar before", over every place in the bar (each metre's) and every voice, so that
how often each place is struck at all (the onset biases' business) does not enter it. 1: a bar's
rhythm says nothing of the next one's.

A model drawing freely keeps its rhythm less than its music: a model of 20 string-quartet
movements 1.10 against their 11.5, the pretrained fiddle model 4.1 against its tunes' 4.9 (windows
of 4 bars, drawn with their sampling biases). ``Generator.echo_bias`` is fitted with the other sampling biases
(``Trainer.calibrate``) to bring the draws' ratio to the music's. Bars that repeat the bar before
them note for note are left out of the count: a piece's form makes those (:mod:`musicgan.form`),
and the bias is for the bars that are drawn. (Few are: 0.2% of the steps of the quartets'
windows, 0.3% of O'Neill's tunes'.)
"""
from __future__ import annotations

import numpy as np

from .voices import FIRST_PITCH, REST

MOST = 3.0  # the largest bias the fit may reach (the smallest is 0: see move)


def counts(tokens: np.ndarray, codes: np.ndarray, bar: int) -> np.ndarray:
    """(n_codes, V, 2, 2) counts of (struck a bar before, strikes now) for every step of every
    window of ``tokens`` (N, T, V) that stood at its code (``codes`` (N, T); ``bar``: the codes of a
    metre, ``ModelConfig.longest_bar``, so ``code % bar == 0`` is a downbeat) before, in a bar
    that is not a note-for-note repeat of the one before it."""
    tokens, codes = np.asarray(tokens), np.asarray(codes)
    N, T, V = tokens.shape
    n_codes = int(codes.max()) + 1 if codes.size else 1
    struck = (tokens >= FIRST_PITCH).astype(np.int64)
    sounds = tokens != REST
    out = np.zeros((n_codes, V, 2, 2), dtype=np.int64)
    last = np.full((N, n_codes), -1)
    rows = np.arange(N)
    repeat = _repeated(tokens, codes, bar)
    for t in range(T):
        code = codes[:, t]
        before = last[rows, code]
        ok = (before >= 0) & ~repeat[:, t]
        if ok.any():
            r, b, c = rows[ok], before[ok], code[ok]
            for v in range(V):
                both = sounds[r, b, v] & sounds[r, t, v]
                np.add.at(out, (c[both], v, struck[r[both], b[both], v], struck[r[both], t, v]), 1)
        last[rows, code] = t
    return out


def odds_ratio(table: np.ndarray) -> float:
    """The Mantel-Haenszel common odds ratio of :func:`counts`' tables (1.0 where nothing is
    counted)."""
    n = table.sum((-1, -2)).astype(float)
    n[n == 0] = np.inf
    both, neither = table[..., 1, 1], table[..., 0, 0]
    then, now = table[..., 1, 0], table[..., 0, 1]
    agree, disagree = (both * neither / n).sum(), (then * now / n).sum()
    return float((agree + 0.5) / (disagree + 0.5))


def log_odds(tokens: np.ndarray, codes: np.ndarray, bar: int) -> float:
    """The log of :func:`odds_ratio` of ``tokens`` (see :func:`counts`)."""
    return float(np.log(odds_ratio(counts(tokens, codes, bar))))


def move(bias: float, want: float, got: float, step: float) -> float:
    """One round of fitting the echo bias: raised by the damped gap in log odds ratio (the music's
    ``want`` against the draws' ``got``). (On the chorale model a bias of 0.3 raised the draws'
    log odds ratio by 0.34: about one for one.) Never below 0: on O'Neill's tunes the draws of
    windows kept their rhythm more than the tunes (log odds ratio 1.45-1.50 against 1.31) while
    the pieces as the app makes them kept it as the tunes do (groove 0.864 against 0.862), and the
    bias fitted below 0 took the pieces' groove to 0.846 and a model of jigs' 0.034 under its
    music's (tests/test_styles.py): the count of windows and the pieces part ways there."""
    return float(np.clip(bias + np.clip(step * (want - got), -1, 1), 0.0, MOST))


def _repeated(tokens: np.ndarray, codes: np.ndarray, bar: int) -> np.ndarray:
    """(N, T): the steps of a bar whose tokens are those of the bar before it, as long."""
    N, T, _ = tokens.shape
    out = np.zeros((N, T), dtype=bool)
    for i in range(N):
        starts = np.nonzero(codes[i] % bar == 0)[0].tolist() + [T]
        for a, b, c in zip(starts, starts[1:], starts[2:]):
            if c - b == b - a and np.array_equal(tokens[i, a:b], tokens[i, b:c]):
                out[i, b:c] = True
    return out
