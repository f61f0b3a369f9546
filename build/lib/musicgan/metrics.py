"""Musical statistics of rolls, a comparison of two sets, a two-sample test and a copy check.

The per-clip statistics follow MusPy (Dong et al. 2020) and MGEval (Yang & Lerch 2018); each is a
small pure function of one :class:`~musicgan.midi.Roll` with its formula in the docstring.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metre
from .midi import END, PITCH, START, Roll, sounding_counts

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
DURATION_BINS = (1, 2, 3, 4, 6, 8, 12, 16)  # note lengths in steps: 1/16 ... whole note and longer


def _sounding(roll: Roll) -> np.ndarray:
    """Number of notes sounding at each step."""
    return sounding_counts(roll.notes)


def pitch_range(roll: Roll) -> float:
    """Highest minus lowest pitch, in semitones."""
    return float(np.ptp(roll.notes[:, PITCH])) if len(roll.notes) else 0.0


def pitch_classes_used(roll: Roll) -> float:
    """Number of distinct pitch classes (0-12)."""
    return float(len(np.unique(roll.notes[:, PITCH] % 12)))


def polyphony(roll: Roll) -> float:
    """Mean number of notes sounding, over the steps where at least one sounds."""
    sounding = _sounding(roll)
    sounding = sounding[sounding > 0]
    return float(sounding.mean()) if len(sounding) else 0.0


def pitch_class_histogram(roll: Roll) -> np.ndarray:
    """Share of notes on each pitch class (C=0 ... B=11), weighted by note count."""
    hist = np.bincount(roll.notes[:, PITCH] % 12, minlength=12).astype(float)
    return hist / max(hist.sum(), 1)


def scale_consistency(roll: Roll) -> float:
    """max over the 24 major and natural-minor scales of the share of notes in that scale."""
    hist = pitch_class_histogram(roll)
    return float(max(hist[(scale + root) % 12].sum() for root in range(12) for scale in (MAJOR, MINOR)))


def pitch_class_entropy(roll: Roll) -> float:
    """Shannon entropy (bits) of the pitch-class histogram: H = -sum p log2 p (0 to log2 12)."""
    p = pitch_class_histogram(roll)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def empty_beat_rate(roll: Roll) -> float:
    """Share of beats in which no note sounds."""
    sounding = _sounding(roll) > 0
    spb = roll.steps_per_beat
    n_beats = len(sounding) // spb
    if n_beats == 0:
        return 1.0
    beats = sounding[:n_beats * spb].reshape(n_beats, spb).any(1)
    return float(1 - beats.mean())


def note_density(roll: Roll, steps: int | None = None) -> float:
    """Notes started per bar of 4 beats."""
    steps = steps or max(roll.n_steps, 1)
    return float(len(roll.notes) / (steps / (4 * roll.steps_per_beat)))


def notes_per_beat(roll: Roll) -> float:
    """Notes started per quarter-note beat."""
    return float(len(roll.notes) / max(roll.n_steps / roll.steps_per_beat, 1e-9)) if roll.n_steps else 0.0


def polyphony_rate(roll: Roll) -> float:
    """Share of the steps (silent ones included) in which more than one note sounds (MusPy)."""
    sounding = _sounding(roll)
    return float((sounding > 1).mean()) if len(sounding) else 0.0


def pitches_used(roll: Roll) -> float:
    """Number of distinct pitches."""
    return float(len(np.unique(roll.notes[:, PITCH])))


def beat_steps(piece_metre, steps_per_beat: int) -> int:
    """Steps in one felt beat of a metre: a dotted quarter in 6/8, 9/8 and 12/8, else 4/den quarters."""
    numerator, denominator = piece_metre
    if denominator == 8 and numerator % 3 == 0 and numerator > 3:
        return max(1, round(1.5 * steps_per_beat))
    return max(1, round(4 / denominator * steps_per_beat))


def _bar_positions(roll: Roll) -> tuple[np.ndarray, np.ndarray, list]:
    """(position in its bar, metre index, metres) of every note's onset, by the roll's own metre."""
    n = max(roll.n_steps, 1)
    position, which, metres = metre.positions(roll.time_signatures, n + 1, roll.steps_per_beat)
    starts = roll.notes[:, START]
    return position[starts], which[starts], metres


def downbeat_onsets(roll: Roll) -> float:
    """Share of the notes that start on the first step of a bar (of the roll's own metre)."""
    if not len(roll.notes):
        return 0.0
    position, _, _ = _bar_positions(roll)
    return float((position == 0).mean())


def beat_onsets(roll: Roll) -> float:
    """Share of the notes that start on a beat of the roll's metre (dotted quarters in 6/8)."""
    if not len(roll.notes):
        return 0.0
    position, which, metres = _bar_positions(roll)
    beats = np.array([beat_steps(m, roll.steps_per_beat) for m in metres])
    return float((position % beats[which] == 0).mean())


def groove_consistency(roll: Roll) -> float:
    """1 - the mean Hamming distance between the onset patterns of consecutive bars, each divided
    by the bar's length (MusPy's groove consistency, on the bars as written: 1 when every bar
    has the same rhythm). Bars of different lengths (a change of metre) are not compared."""
    struck = np.zeros(max(roll.n_steps, 1), bool)
    struck[roll.notes[:, START]] = True
    bars = [struck[a:b] for a, b in metre.bar_spans(roll.time_signatures, roll.n_steps, roll.steps_per_beat)]
    distances = [float((x != y).mean()) for x, y in zip(bars, bars[1:]) if len(x) == len(y) and len(x)]
    return 1.0 - float(np.mean(distances)) if distances else 1.0


def repeated_bars(roll: Roll, back: int = 8) -> float:
    """Share of the bars after the first that repeat, note for note, one of the ``back`` bars
    before them (the same pitches sounding at the same places of a bar of the same length, held
    notes cut at the barlines), by the roll's own bars; bars with no note are not counted. The
    repetition a listener hears in a tune's phrases: a fiddle tune's bars come back 4 and 8 bars
    later (its phrases, its repeated strain), a chorale's 4 to 8 (its repeated opening lines).
    4-bar clips do not show it: score whole pieces."""
    bars = bar_keys(roll)
    counted = [i for i in range(1, len(bars)) if bars[i] is not None]
    if not counted:
        return 0.0
    return float(np.mean([bars[i] in bars[max(0, i - back):i] for i in counted]))


def bar_keys(roll: Roll) -> list:
    """One key per bar of the roll (by its own bar lines): the bar's length and its notes (held
    notes cut at the bar lines), equal for two bars that sound alike note for note; None for a bar
    with no note."""
    keys = []
    for a, b in metre.bar_spans(roll.time_signatures, roll.n_steps, roll.steps_per_beat):
        key = _block(roll.notes, a, b - a)
        keys.append((b - a, key.tobytes()) if len(key) else None)
    return keys


def _onset_counts(rolls: list[Roll]) -> dict:
    """For each metre, how many onsets of the rolls fall on each step of its bars."""
    counts: dict = {}
    for roll in rolls:
        position, which, metres = _bar_positions(roll)
        for k, piece_metre in enumerate(metres):
            length = metre.bar_steps(piece_metre, roll.steps_per_beat)
            here = np.bincount(position[which == k], minlength=length)[:length]
            counts[piece_metre] = counts.get(piece_metre, 0) + here
    return counts


def onset_profile(rolls: list[Roll], piece_metre) -> np.ndarray:
    """How the onsets of the rolls' bars in ``piece_metre`` fall over the bar: the share of them at
    each step of the bar (zeros when there is no such bar)."""
    counts = _onset_counts(rolls).get(piece_metre)
    if counts is None:
        return np.zeros(metre.bar_steps(piece_metre, rolls[0].steps_per_beat if rolls else 4))
    return counts / max(counts.sum(), 1)


def profile_correlation(generated: list[Roll], reference: list[Roll]) -> float:
    """How alike the two sets' onset profiles over the bar are: the correlation of the profiles
    in each metre of the reference, weighted by its onsets in that metre. A metre the generated
    music never uses counts as no correlation."""
    ref, gen = _onset_counts(reference), _onset_counts(generated)
    total = weighted = 0.0
    for piece_metre, counts in ref.items():
        other = gen.get(piece_metre)
        same = 0.0
        if other is not None and other.std() and counts.std():
            same = float(np.corrcoef(counts, other)[0, 1])
        total, weighted = total + counts.sum(), weighted + counts.sum() * same
    return weighted / total if total else 0.0


def metres_written(rolls: list[Roll]) -> dict:
    """The share of the rolls' bars in each metre, as their time signatures say."""
    bars = metre.bars_per_metre(rolls)
    total = sum(bars.values()) or 1
    return {metre.name(m): round(n / total, 3) for m, n in bars.items()}


def duration_histogram(roll: Roll) -> np.ndarray:
    """Share of notes whose length (in steps) falls in each of DURATION_BINS (the last: >= 16)."""
    lengths = roll.notes[:, END] - roll.notes[:, START]
    index = np.searchsorted(DURATION_BINS, lengths, side="right") - 1
    hist = np.bincount(np.clip(index, 0, len(DURATION_BINS) - 1), minlength=len(DURATION_BINS)).astype(float)
    return hist / max(hist.sum(), 1)


STATISTICS = {
    "pitch range (semitones)": pitch_range,
    "pitch classes used": pitch_classes_used,
    "polyphony (notes at once)": polyphony,
    "scale consistency": scale_consistency,
    "pitch-class entropy (bits)": pitch_class_entropy,
    "empty-beat rate": empty_beat_rate,
    "note density (notes/bar)": note_density,
}
# what a listener notices first in music of any style (the styles bench compares these)
LISTENER = {
    "polyphony rate": polyphony_rate,
    "notes per beat": notes_per_beat,
    "pitch classes": pitch_classes_used,
    "scale consistency": scale_consistency,
    "onsets on downbeats": downbeat_onsets,
    "range (semitones)": pitch_range,
    "groove consistency": groove_consistency,
}


def summary(rolls: list[Roll], statistics: dict = STATISTICS) -> dict:
    """Mean of every statistic over a set of clips, plus the mean duration histogram."""
    out = {name: float(np.mean([fn(r) for r in rolls])) for name, fn in statistics.items()}
    out["duration histogram"] = np.mean([duration_histogram(r) for r in rolls], 0).round(3).tolist()
    return out


def compare(generated: list[Roll], reference: list[Roll]) -> list[dict]:
    """Rows of (statistic, generated, reference, relative difference)."""
    g, r = summary(generated), summary(reference)
    rows = []
    for name in STATISTICS:
        rel = (g[name] - r[name]) / abs(r[name]) if r[name] else float("nan")
        rows.append({"statistic": name, "generated": g[name], "reference": r[name], "relative_difference": rel})
    hist_distance = 0.5 * float(np.abs(np.array(g["duration histogram"]) - np.array(r["duration histogram"])).sum())
    rows.append({"statistic": "note lengths (total variation)", "generated": hist_distance, "reference": 0.0,
                 "relative_difference": hist_distance})
    return rows


# ------------------------------------------------------------------ two-sample classifier test

def features(roll: Roll, steps: int | None = None) -> np.ndarray:
    """A fixed-length description of a clip for the two-sample test: pitch, rhythm, harmony."""
    steps = steps or roll.n_steps
    notes = roll.notes
    sounding = _sounding(roll)
    sounding = np.pad(sounding, (0, max(0, steps - len(sounding))))[:steps]
    pitches = notes[:, PITCH].astype(float)
    poly_hist = np.bincount(np.minimum(sounding, 5), minlength=6) / max(steps, 1)
    onset_pos = np.bincount(notes[:, START] % roll.steps_per_beat, minlength=roll.steps_per_beat) / max(len(notes), 1)
    # harmony: interval classes between notes sounding together at each onset step
    harmony = np.zeros(12)
    for step in np.unique(notes[:, START]):
        active = notes[(notes[:, START] <= step) & (notes[:, END] > step), PITCH]
        diffs = (active[:, None] - active[None, :])[np.triu_indices(len(active), 1)]
        harmony += np.bincount(np.abs(diffs) % 12, minlength=12)
    harmony /= max(harmony.sum(), 1)
    # melody: intervals of the top line from note to note
    top = []
    for step in np.unique(notes[:, START]):
        top.append(notes[notes[:, START] == step, PITCH].max())
    leaps = np.abs(np.diff(top)) if len(top) > 1 else np.zeros(0, dtype=np.int64)
    leap_hist = np.bincount(np.minimum(leaps, 12), minlength=13)[[0, 1, 2, 3, 4, 5, 7, 12]].astype(float)
    leap_hist /= max(len(leaps), 1)
    # metre as written, and how the notes fall in it
    written = metre.metre_at(roll.time_signatures, 0)
    metre_hot = np.zeros(len(metre.COMMON) + 1)
    metre_hot[metre.COMMON.index(written) if written in metre.COMMON else -1] = 1
    return np.concatenate([
        pitch_class_histogram(roll), duration_histogram(roll), poly_hist, onset_pos, harmony, leap_hist, metre_hot,
        [pitches.mean() / 12 if len(notes) else 0, pitches.std() / 12 if len(notes) else 0,
         pitch_range(roll) / 12, pitch_classes_used(roll) / 12, scale_consistency(roll),
         pitch_class_entropy(roll), empty_beat_rate(roll), len(notes) / max(steps, 1),
         metre.bar_steps(written, roll.steps_per_beat) / roll.steps_per_beat / 8, downbeat_onsets(roll),
         beat_onsets(roll), groove_consistency(roll), pitches_used(roll) / 24, polyphony_rate(roll),
         notes_per_beat(roll)],
    ])


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 25) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method; returns weights (bias last)."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[-1] = 0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + reg * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-6)
        w -= np.linalg.solve(hess, grad)
    return w


def two_sample_accuracy(a: list[Roll], b: list[Roll], folds: int = 5, seed: int = 0, splits: int = 1) -> float:
    """Cross-validated accuracy of a logistic-regression classifier telling clips of ``a`` from
    clips of ``b`` (equal numbers of each). 0.5: indistinguishable; 1.0: always told apart.
    ``splits``: the mean over that many random draws and fold splits (one moves by about ±0.04)."""
    return features_two_sample([features(r) for r in a], [features(r) for r in b], folds, seed, splits)


def features_two_sample(fa: list, fb: list, folds: int = 5, seed: int = 0, splits: int = 1) -> float:
    """:func:`two_sample_accuracy` of clips already described by :func:`features`."""
    n = min(len(fa), len(fb))
    if n < folds:
        raise ValueError(f"the two-sample test needs at least {folds} clips on each side")
    return float(np.mean([_two_sample(fa, fb, n, folds, seed + k) for k in range(splits)]))


def _two_sample(fa: list, fb: list, n: int, folds: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    pick_a, pick_b = rng.permutation(len(fa))[:n], rng.permutation(len(fb))[:n]
    x = np.array([fa[i] for i in pick_a] + [fb[i] for i in pick_b])
    y = np.r_[np.zeros(n), np.ones(n)]
    order = rng.permutation(2 * n)
    x, y = x[order], y[order]
    correct = 0
    for k in range(folds):
        test = np.arange(2 * n) % folds == k
        mean, std = x[~test].mean(0), x[~test].std(0) + 1e-6
        w = _fit_logistic((x[~test] - mean) / std, y[~test])
        xt = np.hstack([(x[test] - mean) / std, np.ones((test.sum(), 1))])
        correct += ((xt @ w > 0) == y[test]).sum()
    return float(correct / (2 * n))


# ------------------------------------------------------------------ copy check

def _block(notes: np.ndarray, start: int, length: int) -> np.ndarray:
    """The notes sounding in steps start .. start + length - 1, as int32 rows (pitch, start, end)
    counted from ``start`` and cut at the block's edges, in order of start, then pitch (one key
    for one block of music, whatever the order of the notes)."""
    inside = notes[(notes[:, START] < start + length) & (notes[:, END] > start)]
    key = inside[:, :3].astype(np.int32)  # (a copy) the bytes of one type, whatever the roll's
    key[:, 1:] = np.clip(key[:, 1:] - start, 0, length)
    return key[np.lexsort((key[:, 0], key[:, 1]))]


def bar_blocks(roll: Roll, length: int) -> dict:
    """Transposition-invariant keys (bytes) of the non-empty ``length``-step blocks of a roll,
    by start step, starting on every beat."""
    out = {}
    for start in range(0, max(roll.n_steps - length, 0) + 1, roll.steps_per_beat):
        key = _block(roll.notes, start, length)
        if len(key) == 0:
            continue
        key[:, 0] -= key[:, 0].min()
        out[start] = key.tobytes()
    return out


def longest_copy(generated: list[Roll], training: list[Roll]) -> int:
    """Longest run of consecutive non-empty bars of any generated piece found verbatim (in any
    transposition, starting on any beat) in the training music; 0 when no bar is copied."""
    return max(copy_runs(generated, training), default=0)


def copy_runs(generated: list[Roll], training: list[Roll]) -> list[int]:
    """For each generated piece, its longest run of bars (of 4 beats, starting on any of its
    beats) found verbatim in the training music. Any beat, not only every 4 beats from its start:
    a 4-bar clip of a piece in 9/8 starts on a beat that is not a multiple of 4, and a quote that
    starts there is as audible as one on the piece's first beat."""
    if not generated:
        return []
    bar = 4 * generated[0].steps_per_beat
    known: dict = {}
    for r, roll in enumerate(training):
        for start, key in bar_blocks(roll, bar).items():
            known.setdefault(key, set()).add((r, start))
    runs = []
    for roll in generated:
        blocks = bar_blocks(roll, bar)
        best = 0
        for first, key in blocks.items():
            places = known.get(key, set())  # where this bar occurs
            run = 0
            while places:  # keep the places where the following bars occur too
                run += 1
                following = known.get(blocks.get(first + run * bar), set())
                places = {(r, s) for r, s in places if (r, s + run * bar) in following}
            best = max(best, run)
        runs.append(best)
    return runs


@dataclass
class Evaluation:
    rows: list
    two_sample: float
    copy_bars: int | None = None

    def format(self) -> str:
        lines = [f"{'statistic':<32}{'generated':>11}{'reference':>11}{'diff':>8}"]
        for row in self.rows:
            lines.append(f"{row['statistic']:<32}{row['generated']:>11.3f}{row['reference']:>11.3f}"
                         f"{row['relative_difference']:>+8.0%}")
        lines.append(f"two-sample classifier accuracy: {self.two_sample:.2f} (0.50 = indistinguishable)")
        if self.copy_bars is not None:
            lines.append(f"longest run of bars copied from the training data: {self.copy_bars}")
        return "\n".join(lines)


def evaluate(generated: list[Roll], reference: list[Roll], training: list[Roll] | None = None,
             seed: int = 0) -> Evaluation:
    return Evaluation(compare(generated, reference), two_sample_accuracy(generated, reference, seed=seed),
                      longest_copy(generated, training) if training is not None else None)
