"""Large corpora: `prepare` scaling with workers, and training memory as the corpus grows.

    python bench/prepare.py [--copies 10] [--data data/bach/train]

Builds a corpus of COPIES copies of the Bach training split (distinct file names, same notes),
prepares it with 1, 2 and as many workers as the machine has cores (files/s, timed inside
the process: interpreter start-up is not counted), then trains 30 steps from the 1x and the
COPIES-x prepared corpus and prints each run's peak resident memory.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musicgan import shards  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bach" / "train")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the most workers to try")
    args = parser.parse_args(argv)
    files = sorted(args.data.glob("*.mid"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for c in range(args.copies):
            (tmp / "big" / f"copy{c}").mkdir(parents=True)
            for f in files:
                shutil.copy(f, tmp / "big" / f"copy{c}" / f.name)
        n = len(files) * args.copies
        rates = {}
        for workers in sorted({1, 2, args.workers}):
            t0 = time.perf_counter()
            report = shards.prepare([tmp / "big"], tmp / f"cache{workers}", workers=workers)
            seconds = time.perf_counter() - t0
            rates[workers] = len(report.read) / seconds
            print(f"prepare {n} files with {workers} worker(s): {rates[workers]:,.0f} files/s ({seconds:.1f} s; "
                  f"{rates[workers] / rates[1]:.2f}x one worker)", flush=True)
        small = tmp / "small"
        subprocess.run([sys.executable, "-m", "musicgan", "prepare", str(args.data), "--out", str(small), "--quiet"],
                       cwd=ROOT, check=True, capture_output=True)
        # each training run in its own child, so RUSAGE_CHILDREN's maximum is that run's own peak
        for label, cache in (("1x", small), (f"{args.copies}x", tmp / f"cache{max(rates)}")):
            probe = (f"import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'musicgan', 'train', "
                     f"'{cache}', '--out', '{tmp / ('m' + label)}', '--steps', '30', '--quiet'], check=True); "
                     f"print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
            out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
            print(f"train 30 steps from the {label} prepared corpus: peak RSS {float(out.stdout.split()[-1]):,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
