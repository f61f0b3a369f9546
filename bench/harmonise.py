"""Harmonise and continue held-out chorales, and compare with Bach's own.

    python bench/harmonise.py [--model checkpoints/bach-chorales] [--data data/styles/bach]
                              [--train-minutes 10] [--out runs/harmonise]

1. The harmonisers (one for a melody, one for a bass): the model's own, or (``--train-minutes M``,
   or for one the model lacks) a :class:`musicgan.harmonise.LineReader` trained for M minutes (10)
   on the training split with the generator frozen, saved with a copy of the model in OUT/model.
2. For every held-out chorale (none of them trained on):
   * its soprano (the top line) harmonised twice, as the app does (the critic's choice): by
     *clamping* (the unconditioned model with the melody fixed as its top voice, drawn as free
     pieces are) and by the *conditioned* model (the same, with the reader's view of the melody
     still to come); and, when the model's trainer fitted how it clamps (``Checkpoint.clamped``),
     a third time as a model without a harmoniser does: clamping, drawn as fitted;
   * its bass (the lowest line) harmonised the same two ways (the voices drawn above it);
   * the chorale continued from its first 4 bars: 4 more bars (the continuation alone);
   (``--seeds`` of each, 3 by default)
   * and, for comparison, free pieces of 16 bars as the app makes them.
3. Every row is cut into 4-bar clips and scored against the clips of the held-out chorales
   themselves (Bach's own harmonisations of those melodies, and his continuations): the two-sample
   accuracy (0.50: indistinguishable; mean of ``--splits`` splits), the listener's statistics,
   the voice-leading counts of :mod:`musicgan.voiceleading`, computed the same way for Bach, and
   the share of whole pieces that end on the tonic chord (:func:`musicgan.ending.ends_closed`), and
   of harmonisations that end as Bach's harmonisation of the same line does (his last bass note,
   his last chord's pitch classes).
   Everything is drawn as the app draws it, ending included (``--no-ending``: as before it).
   The training split against the held-out one is the floor.

Results go to OUT/results.json. Run it on an otherwise idle machine: training is time-budgeted
(beside another busy process, ``BENCH_THREADS=1`` keeps torch from spinning two threads).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musicgan import checkpoint as ckpt, data, ending, generate, harmonise, metrics, midi, voiceleading  # noqa: E402
from musicgan.batches import batches_for  # noqa: E402
from musicgan.train import TrainConfig  # noqa: E402


def rolls_in(folder: Path, steps_per_beat: int) -> list:
    return data.load([folder], steps_per_beat, find_pickups=False).rolls  # (bars as the scores have them)


def with_harmonisers(model_path: Path, train_rolls, minutes: float | None, out: Path, lines) -> ckpt.Checkpoint:
    """The model with a harmoniser for each of ``lines`` (a melody, a bass): its own, or trained here for
    ``minutes`` each (10 for one it lacks) on a copy of it in OUT/model."""
    model = ckpt.load(model_path)
    missing = [v for v in lines if minutes is not None or v not in model.harmonisers]
    if not missing:
        return model
    target = out / "model"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_path, target)
    model = ckpt.load(target)
    batches = batches_for(train_rolls, model.model, TrainConfig(), torch.device("cpu"))
    for voice in missing:
        print(f"training the harmoniser for the {voice} line for {minutes or 10:g} minutes ...", flush=True)
        h = harmonise.train_reader(model.generator, batches, minutes=minutes or 10.0, voice=voice,
                                   callback=lambda e: print(f"  step {e['step']}: loss {e['loss']:.3f}", flush=True)
                                   if e["step"] % 500 == 0 else None)
        print(f"  {h.meta['steps']} steps, loss {h.meta['loss']}", flush=True)
        harmonise.save(target, h)
    return ckpt.load(target)


def last_chord(roll) -> tuple[int, frozenset]:
    """The pitch class of the lowest note sounding at a piece's very end, and the pitch classes sounding there."""
    chord = midi.last_chord(roll.notes)[:, midi.PITCH]
    return int(chord.min()) % 12, frozenset((chord % 12).tolist())


def row(name: str, pieces: list, reference_clips: list | None, splits: int, melodies=None, bach=None) -> dict:
    """One column: the pieces' two-sample score against ``reference_clips`` (None: they are the
    reference), voice-leading counts and statistics; with ``bach`` (the chorale each piece
    harmonises a line of, one per piece), how often it ends as Bach's does: on his last bass
    note, and on his last chord (its pitch classes)."""
    clips = data.clips(pieces, 4)
    out = {"name": name, "pieces": len(pieces), "clips": len(clips),
           "two_sample": None if reference_clips is None else
           metrics.two_sample_accuracy(clips, reference_clips, splits=splits),
           **voiceleading.summary(pieces, melodies), **metrics.summary(clips, metrics.LISTENER),
           "ends on the tonic chord": float(np.mean([ending.ends_closed(p)[0] for p in pieces])),
           "last bass note as Bach's": None, "last chord as Bach's": None}
    if bach is not None:
        ours, his = [last_chord(p) for p in pieces], [last_chord(r) for r in bach]
        out["last bass note as Bach's"] = float(np.mean([a[0] == b[0] for a, b in zip(ours, his)]))
        out["last chord as Bach's"] = float(np.mean([a == b for a, b in zip(ours, his)]))
    out.pop("duration histogram", None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(generate.DEFAULT_CHECKPOINT))
    parser.add_argument("--data", default="data/styles/bach")
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="train a harmoniser for this long (default: the model's own, else 10 minutes)")
    parser.add_argument("--out", default="runs/harmonise")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--free", type=int, default=64, help="free pieces of 16 bars to compare with")
    parser.add_argument("--seeds", type=int, default=3, help="harmonisations and continuations of each chorale")
    parser.add_argument("--lines", nargs="+", choices=harmonise.VOICES, default=list(harmonise.VOICES),
                        help="the lines to harmonise: top (the soprano), bottom (the bass); both by default")
    parser.add_argument("--no-others", action="store_true", help="leave out the continued and free pieces")
    parser.add_argument("--no-ending", action="store_true",
                        help="harmonisations and pieces that end as drawn, as before musicgan.ending")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(__import__("os").environ.get("BENCH_THREADS", 2)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data)
    if not (data_dir / "test").is_dir():
        print(f"{data_dir}: no train/test split (build it with python -m musicgan.datasets bach {data_dir})")
        return 2
    spb = ckpt.load(args.model).model.steps_per_beat
    train_rolls, test_rolls = rolls_in(data_dir / "train", spb), rolls_in(data_dir / "test", spb)
    model = with_harmonisers(Path(args.model), train_rolls, args.train_minutes, out, args.lines)
    G, sampling = model.generator, model.sampling
    reference = data.clips(test_rolls, 4)

    seeds = [[args.seeds * i + k for k in range(args.seeds)] for i in range(len(test_rolls))]
    harmonised = {}
    for voice in args.lines:
        t0 = time.time()
        lines = [harmonise.line_of(G, r, voice) for r in test_rolls]
        ways = [("clamping", None, None), ("conditioned", model.harmonisers[voice], None)]
        if voice in model.clamped:  # as a model without a harmoniser does it (its trainer's fit)
            ways.insert(1, ("clamping, fitted", None, model.clamped[voice]))
        for how, reader, clamped in ways:
            harmonised[voice, how] = [p for line, s in zip(lines, seeds)
                                      for p in harmonise.harmonise_rolls(G, line, s, reader, **model.choice, clamped=clamped,
                                                                         ending=not args.no_ending)]
        print(f"made {args.seeds} harmonisations of each of {len(test_rolls)} {voice} lines, clamped and "
              f"conditioned, in {time.time() - t0:.0f} s", flush=True)
    own = [harmonise.line_of(G, r).roll for r in test_rolls]
    melodies = [m for m in own for _ in range(args.seeds)]
    rows = [row("Bach (held-out chorales)", test_rolls, None, args.splits, own),
            row("floor: training split", train_rolls, reference, args.splits)]
    for voice, how in harmonised:
        name = harmonise.NAMES[voice]
        rows.append(row(f"{name} given: {how}", harmonised[voice, how], reference, args.splits,
                        melodies if voice == "top" else None, [r for r in test_rolls for _ in range(args.seeds)]))
    if not args.no_others:
        continued = [p for r, s in zip(test_rolls, seeds)
                     for p in generate.continue_rolls(G, r, s, bars=4, primer_bars=4, whole=False,
                                                      ending=not args.no_ending, **sampling)]
        rows.append(row("continued (4 bars after 4)", continued, reference, args.splits))
        rows.append(row("free pieces", generate.sample_rolls(G, range(args.free), 16, ending=not args.no_ending,
                                                             **sampling), reference, args.splits))
    keys = ["two_sample", "parallels_per_100_beats", "non_chord_tones_strong", "above_melody_per_100_beats"]
    keys += [k for k in rows[0] if k not in keys + ["name", "pieces", "clips"]]
    h_meta = {v: model.meta.get(ckpt.READERS[v][0]) for v in args.lines}
    print(f"\nmodel {args.model}; harmonisers {h_meta}")
    print("| | " + " | ".join(r["name"] for r in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for k in keys:
        cells = [r.get(k) for r in rows]
        print(f"| {k} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    print("| clips | " + " | ".join(str(r["clips"]) for r in rows) + " |")
    (out / "results.json").write_text(json.dumps({"model": args.model, "harmonisers": h_meta,
                                                  "rows": rows}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
