"""Music a person gives the shipped models: what each takes, and how the harmonisations sound.

    python bench/given.py [--seed 1] [--pieces 20] [--skip-sweep] [--skip-listen]

1. **The sweep.** For every piece of each collection here (the held-out splits of
   ``python -m musicgan.datasets all data/styles`` and the unseen collections of
   ``python -m musicgan.datasets unseen data/unseen``), three tries: continue it, harmonise its
   melody, harmonise its bass. It counts the tries each shipped model takes (``api.refusal``:
   the music read as Continue and Harmonise read it, nothing drawn), the tries one or the other
   takes, and the chorale model's refusals by their words.
2. **As a listener hears the harmonisations.** The first ``--pieces`` melodies of each kind
   (held-out jigs in 6/8, O'Neill's jigs, held-out reels in 2/4, held-out chorales) harmonised by
   the chorale model as the app does (seed ``--seed``), with the counts of
   :mod:`musicgan.voiceleading` and, in 6/8, the share of the written voices' onsets on the bar's
   two beats and between its eighths, against real 6/8 polyphony (the Trecento pieces and the
   `various` movements in 6/8: all their notes).

It prints one JSON line a part and a summary. Nothing trains; it takes a few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from musicgan import api, midi, voiceleading  # noqa: E402

MODELS = {"chorales": None, "fiddle": str(ROOT / "checkpoints" / "fiddle-tunes")}
COLLECTIONS = {"fiddle": "data/styles/fiddle/test", "bach": "data/styles/bach/test",
               "trecento": "data/styles/trecento/test", "quartets": "data/styles/quartets/test",
               "folk": "data/unseen/folk/test", "various": "data/unseen/various/test",
               "madrigals": "data/unseen/madrigals/test"}
TRIES = (("continuation", "opening", {}), ("harmonisation", "melody", {"voice": "top"}),
         ("harmonisation", "melody", {"voice": "bottom"}))


def sweep(root: Path) -> dict:
    out = {}
    for name, folder in COLLECTIONS.items():
        files = sorted((root / folder).glob("*.mid"))
        if not files:
            continue
        taken, refused = collections.Counter(), collections.Counter()
        for path in files:
            music = path.read_bytes()
            for kind, argument, extra in TRIES:
                words = {model: api.refusal(kind, path_, **{argument: music}, **extra) for model, path_ in MODELS.items()}
                taken["tries"] += 1
                taken["either"] += any(w is None for w in words.values())
                for model, w in words.items():
                    taken[model] += w is None
                if words["chorales"]:
                    refused[words["chorales"].split(";")[0]] += 1
        out[name] = {**taken, "chorales_refused": dict(refused.most_common(8))}
        print(name, json.dumps(out[name]), flush=True)
    return out


def six_eight(roll, mask) -> tuple[float, float]:
    """(the share of the notes (``mask``) of a roll in 6/8 that begin on its two beats, and between its eighths)."""
    spb = roll.steps_per_beat
    place = roll.notes[mask][:, 1] % (3 * spb)
    return float(np.isin(place, [0, 3 * spb // 2]).mean()), float((place % (spb // 2) != 0).mean())


def listen(root: Path, seed: int, pieces: int) -> dict:
    model = api.load_model()

    def first(folder, metre):
        return [p for p in sorted((root / folder).glob("*.mid")) if midi.read(p).time_signatures == ((0, *metre),)]

    kinds = {"jigs (held out)": first(COLLECTIONS["fiddle"], (6, 8)),
             "O'Neill's jigs (never learnt)": first(COLLECTIONS["folk"], (6, 8)),
             "reels in 2/4 (held out)": first(COLLECTIONS["fiddle"], (2, 4)),
             "chorales (held out)": sorted((root / COLLECTIONS["bach"]).glob("*.mid"))}
    out = {}
    for name, files in kinds.items():
        rolls, melodies, below, metre_ = [], [], [], []
        for path in files[:pieces]:
            piece = api.compose_harmonisation(model, path, seed=seed, audio=False)
            roll, given = piece.roll, piece.given
            rolls.append(roll)
            melodies.append(dataclasses.replace(roll, notes=roll.notes[given]))
            below.append((~given).sum() / (roll.n_steps / roll.steps_per_beat))
            if roll.time_signatures == ((0, 6, 8),):
                metre_.append(six_eight(roll, ~given))
        if not rolls:
            continue
        row = {"pieces": len(rolls), **voiceleading.summary(rolls, melodies),
               "notes_a_quarter_below_the_melody": float(np.mean(below))}
        if metre_:
            row["onsets_on_the_two_beats"], row["onsets_between_eighths"] = map(float, np.mean(metre_, 0))
        out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        print(name, json.dumps(out[name]), flush=True)
    real = [midi.read(p, 4) for folder in ("data/styles/trecento/test", "data/styles/trecento/train",
                                           "data/unseen/various/test") for p in sorted((root / folder).glob("*.mid"))]
    real = [r for r in real if r.time_signatures == ((0, 6, 8),)]
    if real:
        on, between = np.mean([six_eight(r, np.ones(len(r.notes), bool)) for r in real], 0)
        out["real 6/8 polyphony (all its notes)"] = {
            "pieces": len(real), **{k: round(v, 4) for k, v in voiceleading.summary(real).items()},
            "onsets_on_the_two_beats": round(float(on), 4), "onsets_between_eighths": round(float(between), 4)}
        print("real 6/8 polyphony", json.dumps(out["real 6/8 polyphony (all its notes)"]), flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="where data/ is")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pieces", type=int, default=20)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-listen", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    summary = {"sweep": {} if args.skip_sweep else sweep(args.root),
               "harmonisations": {} if args.skip_listen else listen(args.root, args.seed, args.pieces)}
    if not any(summary.values()):
        print("no music found: build it with python -m musicgan.datasets all data/styles "
              "and python -m musicgan.datasets unseen data/unseen", file=sys.stderr)
        return 1
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
