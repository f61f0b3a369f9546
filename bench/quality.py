"""Quality: the GAN against baselines on held-out Bach chorales, under one CPU budget.

    python bench/quality.py [--minutes 40] [--data data/bach] [--out runs/quality]
    python bench/quality.py --evaluate-only --out runs/quality     # re-score saved checkpoints

Training (budget B minutes, warm-up share w = 0.5):
  1. likelihood warm-up for w*B minutes               -> snapshot
  2a. from the snapshot, more likelihood for (1-w)*B   -> "ablation: no adversarial phase" (B in all)
  2b. from the snapshot, adversarial for (1-w)*B       -> "GAN" (B in all; the full method)
Both arms get the same budget and the same warm-up. Then every row is scored against 4-bar clips
of the held-out split: the real training music (the floor), an order-2 Markov chain over steps
(the baseline), the ablation and the GAN. Two-sample accuracy: 0.50 means indistinguishable.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musicgan import checkpoint as ckpt, data, generate, metrics, voices  # noqa: E402
from musicgan.train import Budget, TrainConfig, Trainer  # noqa: E402


def clips_of(rolls, bars=4):
    windows = data.Windows(rolls, data.WindowConfig(window_bars=bars, hop_bars=bars))
    return [windows[i] for i in range(len(windows))]


class MarkovChain:
    """Order-k Markov chain over whole steps (the tuple of voice tokens), with back-off."""

    def __init__(self, tokens: np.ndarray, order: int = 2):
        self.order, self.counts = order, [defaultdict(lambda: defaultdict(int)) for _ in range(order + 1)]
        for seq in tokens:
            frames = [tuple(f) for f in seq.tolist()]
            for t, frame in enumerate(frames):
                for k in range(order + 1):
                    if t >= k:
                        self.counts[k][tuple(frames[t - k:t])][frame] += 1

    def sample(self, n_steps: int, rng) -> np.ndarray:
        out = []
        for t in range(n_steps):
            for k in range(min(self.order, t), -1, -1):
                options = self.counts[k].get(tuple(out[t - k:t]))
                if options:
                    break
            frames, weights = zip(*options.items())
            p = np.array(weights, dtype=float)
            out.append(frames[rng.choice(len(frames), p=p / p.sum())])
        return np.array(out)


def train_arms(train_rolls, minutes, warmup, out: Path, seed=0, transpose=3):
    config = TrainConfig(seed=seed, warmup=1.0, transpose=transpose)
    t0 = time.time()
    trainer = Trainer(train_rolls, config=config, device="cpu", budget=Budget(minutes=warmup * minutes))
    trainer.run()
    trainer.save(out / "warmup")
    print(f"warm-up: {trainer.step_count} steps in {trainer.elapsed_s / 60:.1f} min", flush=True)
    trainer.run(Budget(minutes=minutes))
    trainer.save(out / "ablation", with_train_state=False)
    print(f"ablation: {trainer.step_count} steps in {trainer.elapsed_s / 60:.1f} min", flush=True)

    gan = Trainer(train_rolls, model=trainer.model, config=TrainConfig(seed=seed, warmup=warmup, transpose=transpose),
                  device="cpu",
                  budget=Budget(minutes=minutes))
    gan.restore(ckpt.load(out / "warmup", with_discriminator=True))
    gan.adversarial_from = gan.step_count
    log = []
    gan.callback = lambda e: log.append(e) if e["step"] % 50 == 0 else None
    gan.run(Budget(minutes=minutes))
    gan.save(out / "gan")
    (out / "gan_log.json").write_text(json.dumps(log))
    print(f"GAN: {gan.step_count} steps ({gan.step_count - gan.adversarial_from} adversarial) "
          f"in {gan.elapsed_s / 60:.1f} min; wall {(time.time() - t0) / 60:.1f} min", flush=True)


def generated_clips(path, n, bars=4, temperature=1.0):
    model = ckpt.load(path)
    return generate.sample_rolls(model.generator, range(n), bars, temperature)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=40.0, help="training budget B per arm")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--transpose", type=int, default=3,
                        help="augmentation of the likelihood loss, in semitones (D sees untransposed music)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bach")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--num", type=int, default=200, help="generated clips per row")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--extra", nargs="*", default=[], help="more checkpoints to score (label=path)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)  # the budget is "2 CPU cores", whatever this machine has

    if not args.data.exists():
        from musicgan import datasets
        datasets.main(["bach", str(args.data)])
    train_rolls = data.load([args.data / "train"]).rolls
    test_rolls = data.load([args.data / "test"]).rolls
    if not args.evaluate_only:
        train_arms(train_rolls, args.minutes, args.warmup, args.out, transpose=args.transpose)

    reference = clips_of(test_rolls)
    train_clips = clips_of(train_rolls)
    rng = np.random.default_rng(0)
    rows = {"real (train split)": [train_clips[i] for i in rng.permutation(len(train_clips))[:args.num]]}
    model_cfg = ckpt.load(args.out / "gan").model
    windows = data.Windows(train_rolls, data.WindowConfig(pitch_range=(model_cfg.pitch_low, model_cfg.pitch_high)))
    chain = MarkovChain(voices.window_tokens(windows, model_cfg.pitch_low, model_cfg.voices))
    rows["Markov chain (order 2)"] = [
        voices.decode(chain.sample(64, rng), model_cfg.pitch_low) for _ in range(args.num)]
    rows["ablation (no adversarial)"] = generated_clips(args.out / "ablation", args.num)
    rows["GAN (full)"] = generated_clips(args.out / "gan", args.num)
    for extra in args.extra:
        label, path = extra.split("=", 1)
        rows[label] = generated_clips(path, args.num)

    stats = list(metrics.STATISTICS)
    short = {"scale consistency": "scale", "polyphony (notes at once)": "poly",
             "pitch-class entropy (bits)": "pc-ent", "note density (notes/bar)": "notes/bar",
             "empty-beat rate": "empty", "pitch classes used": "pcs", "pitch range (semitones)": "range"}
    print(f"\n{len(reference)} held-out clips of 4 bars; {args.num} clips per row")
    header = f"{'':<28}{'2-sample':>9}{'copy':>6}" + "".join(f"{short[s]:>10}" for s in stats)
    print(header)
    ref = metrics.summary(reference)
    print(f"{'held-out reference':<28}{'':>9}{'':>6}" + "".join(f"{ref[s]:>10.3f}" for s in stats))
    results = {}
    for label, clips in rows.items():
        acc = metrics.two_sample_accuracy(clips, reference)
        copy = metrics.longest_copy(clips, train_rolls) if "real" not in label else None
        summ = metrics.summary(clips)
        results[label] = {"two_sample": acc, "copy_bars": copy, **{s: summ[s] for s in stats}}
        print(f"{label:<28}{acc:>9.2f}{'-' if copy is None else copy:>6}"
              + "".join(f"{summ[s]:>10.3f}" for s in stats))
    (args.out / "quality.json").write_text(json.dumps(results, indent=2))
    print("\ncopy: longest run of bars found verbatim in the training split (any transposition)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
