"""Where the bars begin: find a pickup (an anacrusis) that a MIDI file does not mark.

Most MIDI files do not say that their first bar is short (one that writes it in a time signature
of its own is read as a pickup: :func:`musicgan.midi.read`). A piece that opens with a pickup (a hymn's
upbeat, a reel's eighth-note lead-in) is often written from the file's first tick, as music21,
abc2midi and many notation programs write it, and a reader that counts bars from the start puts
every bar line early by the pickup's length. Of the pieces in music21's corpus, 70% of the Bach
chorales and 74% of the fiddle tunes open with one. A model that learns from such bars learns the
metre a beat (or an eighth) out of phase: its long notes and cadences fall before the bar line.

The :class:`BarFinder` reads a piece (its onsets, durations, bass and pitch classes against its
key, step by step) both ways with a small GRU and says, at each step, where in the bar it hears
it. The pickup is the shift that agrees best with what it hears, over the whole piece
(:func:`find`); of shifts about as good (:data:`TIE`: a chorale's first beat and its third
can sound alike), the shortest pickup, as most are. It is taken only when it beats reading the
piece as written by a margin (:data:`MARGIN`), so that music that was barred right stays as it
is, and not where it would take a third or more of the note-time off the bar lines
(:data:`DOWNBEAT_FLOOR`: long notes fall on the first beat, and a polonaise's accents off it
can sound like a pickup's to the finder). All three were chosen on the training
split (``bench/pickup.py`` scores the held-out one, and collections the finder never met). It is trained
(``python -m musicgan.pickup train data/styles``) on the four collections of
:mod:`musicgan.datasets`, whose pickups music21 knows (they are written as a rest before the
music: see ``datasets.export``), and ships with the package (``bar_finder.safetensors``).

A file whose music begins after a rest is taken as barred already: a notation program that
writes a pickup as a whole bar with a rest before it, or a sequencer, counts the bars right.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import keys, metre
from .midi import Roll

GRID = 4  # steps a beat the finder reads on (a sixteenth note each, in 4/4)
MAX_BAR = 48  # the longest bar it knows, in steps of GRID (12 quarter notes)
DENOMINATORS = (2, 4, 8, 16)
FEATURES = 9 + 12 + MAX_BAR + len(DENOMINATORS)
READ_STEPS = 1024  # it reads at most this much of a piece (64 bars of 4/4)
MARGIN = 0.6  # nats a step: how much better a shift must explain the piece than no shift
TIE = 0.2  # nats a step: shifts this near the best are as good, and the shortest pickup of them is taken
DOWNBEAT_FLOOR = 0.7  # a shift must keep this share of the note-time that begins on a bar line as written
WEIGHTS = Path(__file__).with_name("bar_finder.safetensors")


@dataclass(frozen=True)
class Found:
    """A pickup: the music moves ``steps`` later (on the roll's own grid: the rest that makes the
    first bar whole); ``beats``: the pickup's own length in quarter notes (the bar less that
    rest); ``margin``: how much better (nats a step) that explains the piece than reading it as
    written. ``steps`` 0: none."""
    steps: int
    beats: float
    margin: float


def _opening_bar(roll: Roll) -> tuple[int, int]:
    """(the steps of ``roll``'s first bar on :data:`GRID`, its time signature's denominator)."""
    _, numerator, denominator = roll.time_signatures[0] if roll.time_signatures else (0, 4, 4)
    return metre.bar_steps((numerator, denominator), GRID), denominator


def beats_text(beats: float) -> str:
    """A pickup's length in words: "1 beat", "1.5 beats"."""
    return f"{beats:g} beat" + ("" if beats == 1 else "s")


def features(roll: Roll) -> np.ndarray:
    """What the finder hears at each step of ``roll`` (on :data:`GRID`, its first
    :data:`READ_STEPS` steps): (T, FEATURES) float32."""
    roll = roll.on_grid(GRID)
    notes = roll.notes
    T = min(max(roll.n_steps, 1), READ_STEPS)
    out = np.zeros((T, FEATURES), np.float32)
    onsets = np.zeros(T, np.int64)
    sounding = np.zeros(T + 1, np.int64)
    longest = np.zeros(T)
    lowest_struck = np.full(T, 200)
    lowest_sounding = np.full(T, 200)
    highest = np.full(T, -1)
    tonic = keys.estimate(notes) % 12 if len(notes) else 0
    for p, s, e, _ in notes.tolist():
        if s >= T:
            continue
        onsets[s] += 1
        sounding[s:min(e, T)] += 1
        longest[s] = max(longest[s], e - s)
        lowest_struck[s] = min(lowest_struck[s], p)
        lowest_sounding[s:min(e, T)] = np.minimum(lowest_sounding[s:min(e, T)], p)
        out[s, 9 + (p - tonic) % 12] = 1
        highest[s] = max(highest[s], p)
    struck = np.nonzero(onsets)[0]
    gaps = np.diff(np.append(struck, T))  # each onset to the next (or the end)
    out[:, 0] = onsets > 0
    out[:, 1] = np.log1p(onsets)
    out[:, 2] = np.log1p(sounding[:T])
    out[:, 3] = np.log2(1 + longest) / 6
    out[struck, 4] = np.log2(1 + gaps) / 6
    out[:, 5] = (lowest_struck < 200) & (lowest_struck <= lowest_sounding)  # the bass moves here
    out[:, 6] = np.arange(T) == 0
    if len(struck):  # the melody: the top note struck, against the piece's middle, and the leap to it
        top = highest[struck].astype(float)
        out[struck, 7] = np.clip((top - np.median(top)) / 12, -2, 2)
        out[struck, 8] = np.clip(np.diff(top, prepend=top[0]) / 12, -2, 2)
    bar, denominator = _opening_bar(roll)
    out[:, 21 + min(bar, MAX_BAR) - 1] = 1
    if denominator in DENOMINATORS:
        out[:, 21 + MAX_BAR + DENOMINATORS.index(denominator)] = 1
    return out


class BarFinder(nn.Module):
    """Each step's features -> where in its bar it is (logits over :data:`MAX_BAR` positions)."""

    def __init__(self, hidden: int = 48):
        super().__init__()
        self.rnn = nn.GRU(FEATURES, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, MAX_BAR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0])


@lru_cache(maxsize=2)
def shipped(weights: Path = WEIGHTS) -> BarFinder | None:
    """The finder that ships with the package, or the one in ``weights`` (None if missing)."""
    if not Path(weights).is_file():
        return None
    from safetensors.torch import load_file
    finder = BarFinder()
    finder.load_state_dict(load_file(str(weights)))
    return finder.eval()


def shift_scores(finder: BarFinder, roll: Roll) -> tuple[np.ndarray, int]:
    """(the mean log-probability a step of each shift d = 0 .. bar-1 (on GRID): how well the bars
    of the music moved d steps later agree with what the finder hears; the bar in steps)."""
    bar, _ = _opening_bar(roll)
    x = torch.from_numpy(features(roll))
    with torch.no_grad():
        logits = finder(x[None])[0, :, :bar]
    logp = F.log_softmax(logits, -1).numpy()
    t = np.arange(len(logp))
    return np.array([logp[t, (t + d) % bar].mean() for d in range(bar)]), bar


def downbeat_time(roll: Roll) -> np.ndarray:
    """The note-time (in steps of :data:`GRID`) of the notes that begin on a bar line, for each
    shift d = 0 .. bar-1 (on GRID) of the music later, with the opening bar's length throughout."""
    bar, _ = _opening_bar(roll)
    notes = roll.on_grid(GRID).notes
    time = np.zeros(bar)
    np.add.at(time, (-notes[:, 1]) % bar, notes[:, 2] - notes[:, 1])
    return time


def find(roll: Roll, finder: BarFinder | None = None, margin: float = MARGIN,
         downbeat_floor: float = DOWNBEAT_FLOOR) -> Found:
    """The pickup ``roll`` opens with, if its file does not mark it (see the module's doc):
    none for music that begins after a rest, for a bar too long for the finder, when no shift
    explains the music better than reading it as written by ``margin``, or when the shift would
    put less than ``downbeat_floor`` of the note-time as written on the bar lines."""
    finder = finder or shipped()
    none = Found(0, 0.0, 0.0)
    if finder is None or not len(roll.notes) or int(roll.notes[:, 1].min()) > 0:
        return none
    if _opening_bar(roll)[0] > MAX_BAR:
        return none
    scores, bar = shift_scores(finder, roll)
    near = np.nonzero(scores[1:] >= scores.max() - TIE)[0] + 1
    d = int(near[-1]) if len(near) else 0  # (the shortest pickup of those near the best)
    gain = float(scores[d] - scores[0])
    if d == 0 or gain < margin:
        return Found(0, 0.0, round(max(gain, 0.0), 4))
    time = downbeat_time(roll)
    if time[d] < downbeat_floor * time[0]:
        return Found(0, 0.0, round(gain, 4))
    return Found(round(d * roll.steps_per_beat / GRID), (bar - d) / GRID, round(gain, 4))


def barred(roll: Roll) -> tuple[Roll, Found]:
    """(``roll`` with its bars put right, the pickup :func:`find` found in it)."""
    found = find(roll)
    return padded(roll, found.steps), found


def padded(roll: Roll, steps: int) -> Roll:
    """``roll`` with its music ``steps`` later, its opening time signature and tempo staying at
    the start: a pickup written as a whole first bar that begins with a rest."""
    return roll.later(steps) if steps > 0 else roll


# ------------------------------------------------------------------------------------ training

def as_written(roll: Roll) -> tuple[Roll, int]:
    """(a roll of a collection's piece as a file without the pickup's rest would hold it: its music
    from step 0; the shift that was taken off: the pickup's rest, 0 for none)."""
    first = int(roll.notes[:, 1].min())
    return replace(roll, notes=roll.notes - np.array([0, first, first, 0], roll.notes.dtype),
                   time_signatures=tuple((max(0, s - first), n, d) for s, n, d in roll.time_signatures)), first


def collection(folder: Path) -> list[tuple[Roll, np.ndarray, int, str]]:
    """(the piece as written (:func:`as_written`), each of its steps' position in its bar, the
    shift that puts its bars right, its file's name) of each piece in ``folder`` (on
    :data:`GRID`) that opens in a bar the finder knows."""
    from . import midi
    out = []
    for path in sorted(folder.glob("*.mid")):
        try:
            roll = midi.read(path, GRID)
        except midi.MidiError:
            continue
        if not len(roll.notes) or roll.time_signatures[0][0] != 0:
            continue
        written, first = as_written(roll)
        if _opening_bar(roll)[0] > MAX_BAR or first >= written.steps_per_bar:
            continue
        position, _, _ = metre.positions(roll.time_signatures, roll.n_steps, GRID)
        out.append((written, position[first:], first, path.name))
    return out


def train(root: Path, steps: int = 4000, seed: int = 0, window: int = 512, batch: int = 32,
          log=print) -> tuple[BarFinder, dict]:
    """Train a finder on the ``train/`` splits of the collections under ``root`` (as
    ``python -m musicgan.datasets all root`` writes them), each collection drawn as often as the
    others. Returns the finder and what it measured."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    styles = {d.name: [(features(roll), position[:min(len(position), READ_STEPS)])
                       for roll, position, _, _ in collection(d / "train")]
              for d in sorted(root.iterdir()) if (d / "train").is_dir()}
    styles = {k: v for k, v in styles.items() if v}
    log(json.dumps({k: len(v) for k, v in styles.items()}))
    finder = BarFinder()
    opt = torch.optim.Adam(finder.parameters(), lr=3e-3)
    names = list(styles)
    began = time.monotonic()
    for step in range(steps):
        xs, ys = [], []
        for _ in range(batch):
            pieces = styles[names[rng.integers(len(names))]]
            x, y = pieces[rng.integers(len(pieces))]
            where = rng.random()  # a third of the crops begin the piece, a third end it
            start = 0 if where < 1 / 3 or len(x) <= window else len(x) - window if where < 2 / 3 else \
                int(rng.integers(len(x) - window))
            cx, cy = x[start:start + window], y[start:start + window]
            if start:
                cx = cx.copy()
                cx[:, 6] = 0  # (a crop's first step is not the piece's)
            pad = window - len(cx)
            xs.append(np.pad(cx, ((0, pad), (0, 0))))
            ys.append(np.pad(cy, (0, pad), constant_values=-100))
        logits = finder(torch.from_numpy(np.stack(xs)))
        loss = F.cross_entropy(logits.reshape(-1, MAX_BAR), torch.from_numpy(np.stack(ys)).reshape(-1),
                               ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"step {step} loss {loss.item():.3f} ({time.monotonic() - began:.0f} s)")
    return finder.eval(), {"steps": steps, "seed": seed, "window": window, "batch": batch,
                           "pieces": {k: len(v) for k, v in styles.items()}}


def main(argv=None) -> int:
    import argparse
    from safetensors.torch import save_file
    parser = argparse.ArgumentParser(prog="python -m musicgan.pickup",
                                     description="train the bar finder on the collections' training splits")
    parser.add_argument("command", choices=["train"])
    parser.add_argument("root", type=Path, help="the folder of collections (python -m musicgan.datasets all ROOT)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=512, help="steps of each training crop")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    finder, meta = train(args.root, args.steps, args.seed, args.window)
    save_file({k: v.contiguous() for k, v in finder.state_dict().items()}, str(args.out),
              metadata={"trained": json.dumps(meta)})
    print(f"saved {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
