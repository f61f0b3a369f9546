"""Training and generation speed at the default model size.

    python bench/train_speed.py [--device cpu|cuda|auto] [--threads 2]

Prints, for each training phase, seconds per step and sample-timesteps per second (batch x
window steps / seconds), and the latency of generating 16 bars to MIDI bytes. Medians of
several runs after a warm-up; the figures vary with the machine and its load.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musicgan import data, generate, midi  # noqa: E402
from musicgan.train import Budget, TrainConfig, Trainer, device_label, pick_device  # noqa: E402


def time_steps(trainer, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        trainer.step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the Space's free tier has 2)")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rolls = data.load(sorted((ROOT / "examples").glob("*.mid"))).rolls
    trainer = Trainer(rolls, config=TrainConfig(d_warmup_steps=0), device=device, budget=Budget(steps=10 ** 6))
    config = trainer.config  # (with the batch sized for the device)
    window = trainer.windows.config.window_steps
    print(f"device: {device_label(device)}, {args.threads} CPU threads; batch {config.batch_size} x {window} steps; "
          f"model: {sum(p.numel() for p in trainer.G.parameters()):,} G + "
          f"{sum(p.numel() for p in trainer.D.parameters()):,} D parameters")
    trainer.step()  # warm-up
    mle = time_steps(trainer, args.steps)
    trainer.adversarial_from = trainer.step_count
    trainer.step()
    critic = time_steps(trainer, max(3, args.steps // 2))
    trainer.config = dataclasses.replace(trainer.config, g_adversarial=True, d_warmup_steps=0)
    trainer.step()
    adv = time_steps(trainer, max(3, args.steps // 2))
    for name, s in (("likelihood (teacher forcing)", mle), ("critic (G draws, D learns)", critic),
                    ("G adversarial (straight-through)", adv)):
        print(f"{name:<34} {s:7.3f} s/step  {config.batch_size * window / s:9,.0f} sample-timesteps/s")

    model = generate.load_model()
    guard = {k: v for k, v in model.sampling.items() if k == "avoid"}
    for label, sampling in ((f"{model.candidates} candidates, critic, copy guard", model.sampling),
                            ("1 draw, no critic, copy guard", guard)):
        generate.sample_rolls(model.generator, [0], 16, **sampling)
        latencies = []
        for seed in range(10):
            t0 = time.perf_counter()
            midi.to_midi_bytes(generate.sample_rolls(model.generator, [seed], 16, **sampling)[0])
            latencies.append(time.perf_counter() - t0)
        print(f"generate 16 bars to MIDI (pretrained, {label}, CPU): median {1000 * statistics.median(latencies):.0f} ms, "
              f"max {1000 * max(latencies):.0f} ms (target <= 200 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
