"""The GPU in one run of about 7 minutes: how busy training keeps it, against a reference step,
and what 2 GPU minutes make of the chorales at the old batch and the trainer's own choice.
Prints one JSON summary (also to --out, rewritten after each part).

    python bench/gpu.py [--device cuda] [--minutes 2] [--out runs/gpu.json] [--parts phases graphs ...]
    python bench/gpu.py --device cpu --quick          # check the script on a CPU (seconds, not figures)

On a lent device machine (it has PyTorch, not our other needs): carry the wheel of mido and the
chorale split (``python -m musicgan.datasets bach data/styles/bach`` here), then
``PYTHONUNBUFFERED=1 python bench/gpu.py --out $OUT/gpu.json``.

1. **phases**: throughput per phase (likelihood, critic, G adversarial), in sample-timesteps per
   second (batch x window steps / seconds per step), at batch 64, at the trainer's own choice for
   the device (``TrainConfig.sized_for``) and at a larger one, with the peak memory and the SM
   busy share that ``nvidia-smi`` reports while each runs; and the likelihood and critic phases
   again launched op by op instead of replayed from CUDA graphs (:mod:`musicgan.cudagraph`).
2. **graphs**: whether the graph's draws are the eager draws, token for token.
3. **reference**: a C-RNN-GAN-style GAN written here (an LSTM generator feeding back its own
   output, hidden 256, and a bidirectional LSTM discriminator, hidden 256, 64 steps), one G + D
   step at batch 64 and 1,024, in the same run: what a plain recurrent GAN gets from the card.
4. **chorales**: 2 GPU minutes on the chorales (the bench's training split) at each of
   ``--train-batches``, scored as ``bench/styles.py`` scores (pieces of 16 bars as the app makes
   them, 4-bar clips against the held-out chorales, two-sample accuracy over several splits),
   beside the shipped pretrained model in the same run. Each trained model is saved in a folder
   named after it beside ``--out`` (``$OUT/gpu/batch-64/``: shallow enough to come back from a
   lent device; the model without its training state), ready for ``python -m musicgan generate``
   or ``add-harmoniser``.
5. **profile**: where a step's time goes at the trainer's own batch (``torch.profiler``, 20
   steps of each phase after 5 unprofiled, and 20 timed without it): the share of the wall time the
   card spends in kernels, and the operators that take the most GPU time and the most host time.
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
from musicgan.models import ModelConfig  # noqa: E402
from musicgan.train import (Budget, TrainConfig, Trainer, default_width, device_label, model_config_for,  # noqa: E402
                            pick_device)


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


def phases(rolls, device, batch: int, n: int, graphs: bool = True,
           names=("likelihood", "critic", "g_adversarial")) -> dict:
    """Sample-timesteps/s of each training phase at one batch size (the project's model); 0: the
    trainer's own choice for the device (its learning rates do not change the speed)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(batch_size=batch, d_warmup_steps=0, cuda_graphs=graphs)
    trainer = Trainer(rolls, config=config, device=device, budget=Budget(steps=10 ** 6))
    batch = trainer.config.batch_size
    window = trainer.windows.config.window_steps
    out = {"batch": batch, "window_steps": window, "hidden": trainer.model.hidden, "cuda_graphs": graphs}
    for name in names:
        if name in ("critic", "g_adversarial"):
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


def profile(rolls, device, n: int = 20, top: int = 12) -> dict:
    """Where a step's time goes at the trainer's own batch: the wall time of ``n`` steps of each
    phase, the time the card spent in kernels (their union on the timeline, as a share of the
    wall time), and the top operators by GPU time and by host time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    trainer = Trainer(rolls, config=TrainConfig(d_warmup_steps=0), device=device, budget=Budget(steps=10 ** 6))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out = {"batch": trainer.config.batch_size}
    for name in ("likelihood", "critic"):
        if name == "critic":
            trainer.adversarial_from = trainer.step_count
        for _ in range(5):
            trainer.step()
        sync(device)
        with SMBusy(device) as sm:  # unprofiled first: the profiler slows the host
            t0 = time.perf_counter()
            for _ in range(n):
                trainer.step()
            sync(device)
            plain = (time.perf_counter() - t0) / n
        with torch_profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(n):
                trainer.step()
            sync(device)
            wall = time.perf_counter() - t0
        spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                       if e.device_type == torch.autograd.DeviceType.CUDA)
        busy, end = 0.0, float("-inf")  # the union of the kernels' spans (us)
        for a, b in spans:
            if b > end:
                busy += b - max(a, end)
                end = b
        averages = prof.key_averages()

        def table(key):
            rows = sorted(averages, key=lambda a: getattr(a, key), reverse=True)[:top]
            return [{"op": a.key[:60], "calls": a.count, "ms": round(getattr(a, key) / 1000, 2)} for a in rows]

        out[name] = {"s_per_step": round(plain, 4), "sm_busy_pct": sm.busy, "profiled_s_per_step": round(wall / n, 4),
                     "kernel_busy_share": round(busy / 1e6 / wall, 3),
                     "by_gpu_time": table("self_device_time_total") if device.type == "cuda" else [],
                     "by_host_time": table("self_cpu_time_total")}
    return out


def graph_agrees(rolls, device, batch: int = 512) -> dict:
    """Whether the critic's draws replayed from a CUDA graph are the eager draws, token for token
    (same weights, noise, keys and metres), with a parallels penalty and a tonal bias set; and
    again after the weights moved (a replay reads them where they live)."""
    trainer = Trainer(rolls, config=TrainConfig(batch_size=batch), device=device, budget=Budget(steps=10 ** 6))
    G = trainer.G
    G.parallel_bias.fill_(1.5)
    G.tonal_bias.normal_(0, 0.3, generator=torch.Generator(device).manual_seed(1))
    result = {}
    for when in ("initial weights", "after 5 likelihood steps"):
        if when != "initial weights":
            for _ in range(5):
                trainer.step()
        real = trainer._batch(untransposed=True)
        z, noise = trainer._noise(*real.tokens.shape[:2])
        z = G.condition(z, real.keys)
        graphed = trainer.draw(z, noise, real.codes)
        with torch.no_grad():
            eager, _ = G.sample(z, noise, real.codes)
        result[when] = {"identical": bool(torch.equal(graphed, eager)),
                        "tokens_differing": int((graphed != eager).sum()), "tokens": eager.numel()}
    result["recorded"] = trainer.draw.captures
    return result


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


def chorales(device, minutes: float, split: Path, out: Path, pieces: int, splits: int, batches,
             graphs: bool = True, pretrained: bool = True) -> dict:
    """``minutes`` of training at each batch size (0: the trainer's choice for the device), each
    scored beside the shipped pretrained model, in the same run."""
    import styles

    train_rolls, test_rolls = (data.load([split / part], find_pickups=False).rolls for part in ("train", "test"))
    reference_clips = data.clips(test_rolls, styles.CLIP_BARS)

    def scored(path):
        clips = data.clips(styles.project_pieces(ckpt.load(path), pieces), styles.CLIP_BARS)
        result = styles.score(clips, reference_clips, train_rolls, splits, copies=False)
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}

    result, model_fields = {}, {f.name for f in dataclasses.fields(ModelConfig)}
    for batch in batches:
        overrides = json.loads(batch) if isinstance(batch, str) and batch.startswith("{") else {"batch_size": int(batch)}
        train_overrides = {k: v for k, v in overrides.items() if k not in model_fields}
        config, budget = TrainConfig(cuda_graphs=graphs, **train_overrides), Budget(minutes=minutes)
        model = None
        if len(train_overrides) < len(overrides):  # a model setting too (hidden, layers, d_hidden ...)
            model = model_config_for(train_rolls, transpose=config.transpose, **{
                "hidden": default_width(device, budget), **{k: overrides[k] for k in model_fields & set(overrides)}})
        trainer = Trainer(train_rolls, model, config=config, device=device, budget=budget)
        with SMBusy(device) as sm:
            trainer.run()
        c = trainer.config
        label = f"batch {c.batch_size}" + (" (auto)" if not overrides.get("batch_size") else "") + \
            "".join(f" {k} {v}" for k, v in overrides.items() if k != "batch_size")
        # the model as a visitor downloads it (with its training state it is too large to come back)
        folder = trainer.save(out / label.replace(" ", "-").replace("(", "").replace(")", ""), with_train_state=False)
        result[label] = {"folder": str(folder),
                         "training": {"steps": trainer.step_count, "adversarial_from": trainer.adversarial_from,
                                      "minutes": minutes, "hidden": trainer.model.hidden,
                                      "layers": trainer.model.layers, "d_hidden": trainer.model.d_hidden,
                                      "window_steps": trainer.data.windows.config.window_steps, "lr_mle": c.lr_mle,
                                      "lr_d": c.lr_d, "skipped": trainer.skipped, "sm_busy_pct": sm.busy},
                         **scored(folder)}
        print(json.dumps({label: result[label]}), flush=True)
    if pretrained:
        result["pretrained (shipped)"] = scored(ROOT / "checkpoints" / "bach-chorales")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=2.0, help="each chorale training's budget")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 0, 2048],
                        help="batch sizes whose phases are timed (0: the trainer's choice for the device)")
    parser.add_argument("--train-batches", nargs="+", default=["64", "0"],
                        help="batch sizes trained on the chorales (0: the trainer's choice), or JSON objects "
                             "of TrainConfig and ModelConfig fields (e.g. '{\"batch_size\": 64, \"seed\": 1}', "
                             "'{\"hidden\": 512, \"window_bars\": 8}')")
    parser.add_argument("--parts", nargs="+", default=["phases", "graphs", "reference", "chorales"],
                        help="of: phases graphs reference profile chorales")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "styles" / "bach")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu.json")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (to check the script)")
    parser.add_argument("--no-graphs", dest="graphs", action="store_false",
                        help="launch the critic's draws step by step everywhere (no CUDA graphs)")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                        help="do not score the shipped model beside the trained ones")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    n = 2 if args.quick else 10
    if args.quick:
        args.batches, args.minutes = args.batches[:2], min(args.minutes, 0.1)
    if not args.data.exists():
        from musicgan import datasets
        datasets.main(["bach", str(args.data)])
    summary = {"device": device_label(device), "torch": torch.__version__}
    if device.type == "cuda":
        summary["card"] = torch.cuda.get_device_name(device)
    rolls = data.load(sorted((ROOT / "examples").glob("*.mid"))).rolls
    t0 = time.time()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def report(name, value):
        summary[name] = value
        summary["wall_s"] = round(time.time() - t0)
        print(json.dumps({name: value}), flush=True)
        args.out.write_text(json.dumps(summary, indent=2))  # what is done so far, if a later part fails

    if "phases" in args.parts:
        report("phases", [phases(rolls, device, batch, n, args.graphs) for batch in args.batches])
        report("without_graphs", [phases(rolls, device, batch, n, graphs=False, names=("likelihood", "critic"))
                                  for batch in args.batches[:2]])
    if "graphs" in args.parts:
        try:
            report("graph_agrees", graph_agrees(rolls, device, batch=64 if args.quick else 512))
        except RuntimeError as e:  # (the figures of the other parts still come)
            report("graph_agrees", {"error": str(e)[:2000]})
    if "reference" in args.parts:
        report("reference", [reference(device, batch, n) for batch in ([64] if args.quick else [64, 1024])])
        if "phases" in args.parts:
            best = max(r["sample_timesteps_per_s"] for r in summary["reference"])
            report("against_reference_best", {
                f"batch {p['batch']}": {k: round(p[k]["sample_timesteps_per_s"] / best, 2)
                                        for k in ("critic", "g_adversarial")} for p in summary["phases"]})
    if "profile" in args.parts:
        report("profile", profile(rolls, device, n=3 if args.quick else 20))
    if "chorales" in args.parts:
        report("chorales", chorales(device, args.minutes, args.data, args.out.with_suffix(""),
                                    pieces=16 if args.quick else 200, splits=2 if args.quick else 5,
                                    batches=args.train_batches, graphs=args.graphs, pretrained=args.pretrained))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
