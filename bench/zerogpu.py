"""Where a ZeroGPU run's GPU time goes: a training run through :class:`musicgan.zerogpu.StandIn`
(a process per call, cut off at its duration, as ``spaces.GPU`` does), on this machine's device.

    python bench/zerogpu.py [--style quartets] [--pieces 20] [--minutes 3] [--call-s 120]

Prints JSON: the calls (asked and ran, seconds), the GPU time they used in all (what a visitor's
daily quota is charged), the training time and steps they bought, the seconds each part spent
saving, and the time from the last call's end to the model being ready (saved for the visitor).
Run it with nothing else busy: a call's setup and saving are CPU work, and a busy machine slows
them several times over.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musicgan import api, data, zerogpu  # noqa: E402
from musicgan.train import Budget  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--style", default="quartets", help="a collection of data/styles (python -m musicgan.datasets)")
    p.add_argument("--pieces", type=int, default=20, help="the first N pieces of its training split")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--call-s", type=float, default=zerogpu.CALL_S, help="the stand-in's longest call")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = sorted((ROOT / "data" / "styles" / args.style / "train").glob("*.mid"))[:args.pieces]
    if not files:
        sys.exit(f"no music in data/styles/{args.style}/train: run python -m musicgan.datasets all data/styles")
    rolls = data.load(files, cache_dir=False).rolls
    gpu = zerogpu.StandIn(max_duration_s=args.call_s)
    saves: list = []
    calls = zerogpu.in_calls(gpu)

    def counted(part):
        for event in calls(part):
            if event["event"] == "part":
                saves.append(round(event["save_s"], 2))
            yield event

    with tempfile.TemporaryDirectory() as folder:
        job = api.TrainingJob(rolls, Path(folder) / "model", budget=Budget(minutes=args.minutes), gpu_calls=counted)
        began = time.monotonic()
        job.start()
        last_calls, last_end = 0, began
        while job.running:
            time.sleep(0.1)
            if len(gpu.calls) != last_calls:
                last_calls, last_end = len(gpu.calls), time.monotonic()
        ended = time.monotonic()
        state = job.state
    used = sum(min(ran, asked) for asked, ran in gpu.calls)
    trained = state.history[-1]["elapsed_s"] if state.history else 0.0
    print(json.dumps({
        "style": args.style, "pieces": len(rolls), "minutes": args.minutes, "status": state.status,
        "message": state.message, "calls": [[asked, round(ran, 1)] for asked, ran in gpu.calls],
        "gpu_s": round(used, 1), "trained_s": round(trained, 1), "steps": state.history[-1]["step"] if state.history else 0,
        "trained_share_of_gpu_s": round(trained / used, 3) if used else None, "save_s": saves,
        "ready_after_last_call_s": round(ended - last_end, 1), "wall_s": round(ended - began, 1)}, indent=1))
    return 0 if state.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
