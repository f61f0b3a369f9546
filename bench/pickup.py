"""How well the bar finder finds the pickups that files do not mark (musicgan.pickup).

Each collection's pieces (``python -m musicgan.datasets all data/styles``) are written with their
pickup as a rest before the music, as music21's score has it; taken off, each piece is what a
file without the rest holds, and the rest taken off is the answer. For each collection's held-out
split (``test``, by default; the finder trains on ``train``) it prints, at the shipped margin:

* found: pieces with a pickup whose shift it found exactly (the row "shipped": as `find` decides);
* missed: pieces with a pickup it left as written;
* moved wrongly: pieces it moved by a wrong amount (those without a pickup among them);
* right: pieces whose bars end up where the score has them (reading every file as written
  gets those without a pickup right, and no other);
* and the same for the finder's best shift alone (no margin, no preference for short pickups),
  and for a first, simpler try (the shift that puts the most note-time on the bar's first
  step), for comparison.

Where the export recorded each score's pickup (``pickups.json``, as ``musicgan.datasets`` now
writes it), a piece whose first bar is whole but begins with a rest (a madrigal's voices entering
on beat 2) is not counted: a file of it holds that rest, and the finder leaves such a file alone
(``begin_after_a_rest`` counts them). Without the record, every rest before the music is taken
as a pickup's. The collections nothing learns from (``python -m musicgan.datasets unseen
data/unseen``) say how the finder does on music unlike what it was trained on:

    python bench/pickup.py [--data data/styles] [--split test] [--weights W] [--downbeat-floor F]
    python bench/pickup.py --data data/unseen
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from musicgan import pickup  # noqa: E402
from musicgan.datasets import PICKUPS_FILE  # noqa: E402


def tally(pairs) -> dict:
    """pairs: (answer, guess) shifts."""
    pairs = list(pairs)
    with_pickup = [(a, g) for a, g in pairs if a]
    return {"pieces": len(pairs), "with_pickup": len(with_pickup), "right": sum(a == g for a, g in pairs),
            "found": sum(a == g for a, g in with_pickup),
            "missed": sum(g == 0 for a, g in with_pickup),
            "moved_wrongly": sum(a != g and g != 0 for a, g in pairs),
            "moved_without_pickup": sum(a == 0 and g != 0 for a, g in pairs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "styles")
    parser.add_argument("--split", default="test")
    parser.add_argument("--downbeat-floor", type=float, default=pickup.DOWNBEAT_FLOOR,
                        help="the share of the bar lines' note-time a shift must keep (0: no floor)")
    parser.add_argument("--weights", type=Path, default=pickup.WEIGHTS, help="a finder's weights (the shipped one's)")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    finder = pickup.shipped(args.weights)
    if finder is None:
        print("no bar finder weights: python -m musicgan.pickup train data/styles", file=sys.stderr)
        return 1
    summary, began = {}, time.monotonic()
    for folder in sorted(p for p in args.data.iterdir() if (p / args.split).is_dir()):
        pieces = pickup.collection(folder / args.split)
        record = folder / args.split / PICKUPS_FILE
        scored = json.loads(record.read_text()) if record.is_file() else {}
        rested = lambda piece: piece[2] and scored.get(piece[3]) == 0  # noqa: E731 (a whole first bar that begins with a rest)
        left_out = sum(map(rested, pieces))
        pieces = [piece for piece in pieces if not rested(piece)]
        rows = [(answer, pickup.shift_scores(finder, roll)[0], int(np.argmax(pickup.downbeat_time(roll)))) for roll, _, answer, _ in pieces]
        shipped = [(answer, pickup.find(roll, finder, downbeat_floor=args.downbeat_floor).steps) for roll, _, answer, _ in pieces]  # (read on GRID)
        summary[folder.name] = {
            "shipped": tally(shipped),
            "best_shift": tally((a, int(np.argmax(s))) for a, s, _ in rows),
            "most_note_time": tally((a, g) for a, _, g in rows),
            "begin_after_a_rest": left_out if scored else None}
        print(folder.name, json.dumps(summary[folder.name]), flush=True)
    summary["margin"], summary["tie"], summary["downbeat_floor"] = pickup.MARGIN, pickup.TIE, args.downbeat_floor
    summary["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
