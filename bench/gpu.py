"""The GPU in one run of about 5 minutes: how busy training keeps it, against a reference step,
and what 3 GPU minutes make of the chorales. Prints one JSON summary (also to --out).

    python bench/gpu.py [--device cuda] [--minutes 3] [--out runs/gpu.json]
    python bench/gpu.py --device cpu --quick          # check the script on a CPU (seconds, not figures)

On a lent device machine (it has PyTorch, not our other needs): carry the wheels of safetensors
and the chorale split (``python -m musicgan.datasets bach data/styles/bach`` here), then
``PYTHONUNBUFFERED=1 python bench/gpu.py --out $OUT/gpu.json``.

1. **Throughput per phase** (likelihood, critic, G adversarial), in sample-timesteps per second
   (batch x window steps / seconds per step), at the default batch (64) and at larger ones, with
   the peak memory and the SM busy share that ``nvidia-smi`` reports while each runs.
2. **The reference step**: a C-RNN-GAN-style GAN written here (an LSTM generator feeding back its
   own output, hidden 256, and a bidirectional LSTM discriminator, hidden 256, 64 steps), one
   G + D step at batch 64 and 1,024, in the same run: what a plain recurrent GAN gets from the card.
3. **3 GPU minutes on the chorales** (the bench's training split), scored as ``bench/styles.py``
   scores (pieces of 16 bars as the app makes them, 4-bar clips against the held-out chorales,
   two-sample accuracy over several splits), beside the shipped pretrained model in the same run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from musicgan import checkpoint as ckpt, data  # noqa: E402
from musicgan.train import Budget, TrainConfig, Trainer, device_label, pick_device  # noqa: E402


class SMBusy:
    """The GPU's busy share (``nvidia-smi``'s utilization.gpu, sampled every 100 ms) while a block runs."""

    def __init__(self, device: torch.device):
        self.on = device.type == "cuda"
        self.samples: list[float] = []

    def __enter__(self):
        if self.on:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self):
        for line in self.process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __exit__(self, *exc):
        if self.on:
            self.process.terminate()
            self.process.wait(5)

    @property
    def busy(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(step, device, n: int) -> float:
    step()  # warm-up
    sync(device)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def phases(rolls, device, batch: int, n: int) -> dict:
    """Sample-timesteps/s of each training phase at one batch size (the project's model)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(batch_size=batch, d_warmup_steps=0)
    trainer = Trainer(rolls, config=config, device=device, budget=Budget(steps=10 ** 6))
    window = trainer.windows.config.window_steps
    out = {"batch": batch, "window_steps": window, "hidden": trainer.model.hidden}
    for name in ("likelihood", "critic", "g_adversarial"):
        if name == "critic":
            trainer.adversarial_from = trainer.step_count
        if name == "g_adversarial":
            trainer.config = dataclasses.replace(trainer.config, g_adversarial=True)
        with SMBusy(device) as sm:
            s = seconds_per_step(trainer.step, device, n)
        out[name] = {"s_per_step": round(s, 4), "sample_timesteps_per_s": round(batch * window / s),
                     "sm_busy_pct": sm.busy}
    if device.type == "cuda":
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return out


class ReferenceG(nn.Module):
    """C-RNN-GAN's generator, in outline: at each step an LSTM reads noise and its own last output."""

    def __init__(self, features=4, noise=100, hidden=256, layers=2):
        super().__init__()
        self.noise, self.features = noise, features
        self.cells = nn.ModuleList([nn.LSTMCell(noise + features if i == 0 else hidden, hidden)
                                    for i in range(layers)])
        self.out = nn.Linear(hidden, features)

    def forward(self, z):  # z: (B, T, noise)
        B, T, _ = z.shape
        states = [(z.new_zeros(B, c.hidden_size), z.new_zeros(B, c.hidden_size)) for c in self.cells]
        last, outs = z.new_zeros(B, self.features), []
        for t in range(T):
            x = torch.cat([z[:, t], last], -1)
            for i, cell in enumerate(self.cells):
                states[i] = cell(x, states[i])
                x = states[i][0]
            last = self.out(x)
            outs.append(last)
        return torch.stack(outs, 1)


class ReferenceD(nn.Module):
    """C-RNN-GAN's discriminator, in outline: a bidirectional LSTM with a verdict per step."""

    def __init__(self, features=4, hidden=256, layers=2):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, x):
        return self.out(self.lstm(x)[0]).mean((1, 2))


def reference(device, batch: int, n: int, steps: int = 64) -> dict:
    torch.manual_seed(0)
    G, D = ReferenceG().to(device), ReferenceD().to(device)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-4), torch.optim.Adam(D.parameters(), 1e-4)
    real = torch.randn(batch, steps, 4, device=device)
    bce = nn.functional.binary_cross_entropy_with_logits

    def step():
        z = torch.randn(batch, steps, G.noise, device=device)
        fake = G(z)
        loss_d = bce(D(real), torch.ones(batch, device=device)) + bce(D(fake.detach()), torch.zeros(batch, device=device))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(D(fake), torch.ones(batch, device=device))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    with SMBusy(device) as sm:
        s = seconds_per_step(step, device, n)
    return {"batch": batch, "hidden": 256, "steps": steps, "s_per_step": round(s, 4),
            "sample_timesteps_per_s": round(batch * steps / s), "sm_busy_pct": sm.busy}


def chorales(device, minutes: float, split: Path, out: Path, pieces: int, splits: int) -> dict:
    import styles

    train_rolls, test_rolls = data.load([split / "train"]).rolls, data.load([split / "test"]).rolls
    trainer = Trainer(train_rolls, config=TrainConfig(), device=device, budget=Budget(minutes=minutes))
    with SMBusy(device) as sm:
        trainer.run()
    trainer.save(out)
    reference_clips = data.clips(test_rolls, styles.CLIP_BARS)
    result = {"training": {"steps": trainer.step_count, "adversarial_from": trainer.adversarial_from,
                           "minutes": minutes, "hidden": trainer.model.hidden, "batch": trainer.config.batch_size,
                           "sm_busy_pct": sm.busy}}
    for label, path in (("trained here", out), ("pretrained (shipped)", ROOT / "checkpoints" / "bach-chorales")):
        model = ckpt.load(path)
        clips = data.clips(styles.project_pieces(model, pieces), styles.CLIP_BARS)
        scored = styles.score(clips, reference_clips, train_rolls, splits, copies=False)
        result[label] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in scored.items()}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=3.0, help="the chorale training's budget")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "styles" / "bach")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu.json")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (to check the script)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    n = 2 if args.quick else 10
    if args.quick:
        args.batches, args.minutes = args.batches[:1], min(args.minutes, 0.2)
    if not args.data.exists():
        from musicgan import datasets
        datasets.main(["bach", str(args.data)])
    summary = {"device": device_label(device), "torch": torch.__version__}
    if device.type == "cuda":
        summary["card"] = torch.cuda.get_device_name(device)
    rolls = data.load(sorted((ROOT / "examples").glob("*.mid"))).rolls
    t0 = time.time()
    summary["phases"] = [phases(rolls, device, batch, n) for batch in args.batches]
    print(json.dumps(summary["phases"]), flush=True)
    summary["reference"] = [reference(device, batch, n) for batch in ([64] if args.quick else [64, 1024])]
    print(json.dumps(summary["reference"]), flush=True)
    best = max(r["sample_timesteps_per_s"] for r in summary["reference"])
    summary["against_reference_best"] = {
        f"batch {p['batch']}": {k: round(p[k]["sample_timesteps_per_s"] / best, 2) for k in ("critic", "g_adversarial")}
        for p in summary["phases"]}
    summary["chorales"] = chorales(device, args.minutes, args.data, args.out.with_suffix("") / "chorales",
                                   pieces=16 if args.quick else 200, splits=2 if args.quick else 5)
    summary["wall_s"] = round(time.time() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
