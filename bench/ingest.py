"""Ingest speed: our reader vs pretty_midi on the same files, and a cached reload.

    python bench/ingest.py [DIR]        # default: data/bach (built if missing)

Prints files/s and notes/s for: pretty_midi alone, a cold parse + encode with ``musicgan.data``
(empty cache), and a reload served by the content cache. Ratios come from one run on one
machine; the numbers themselves vary with the machine and its load.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musicgan import data  # noqa: E402


def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else ROOT / "data" / "bach"
    if not folder.exists():
        from musicgan import datasets
        print(f"building the Bach set in {folder} ...", flush=True)
        datasets.main(["bach", str(folder)])
    files = sorted(folder.rglob("*.mid"))
    if not files:
        print(f"no .mid files under {folder}")
        return 1
    import pretty_midi

    def with_pretty_midi():
        notes = 0
        for f in files:
            pm = pretty_midi.PrettyMIDI(str(f))
            notes += sum(len(i.notes) for i in pm.instruments if not i.is_drum)
        return notes

    pm_notes, pm_s = timed(with_pretty_midi)

    def cold():
        with tempfile.TemporaryDirectory() as cache:  # an empty cache each time: really cold
            corpus = data.load(files, cache_dir=cache, find_pickups=False)
            corpus.report.cached and sys.exit("cold run hit the cache")
            return corpus

    corpus, cold_s = timed(cold)
    with tempfile.TemporaryDirectory() as cache:
        data.load(files, cache_dir=cache, find_pickups=False)
        warm, warm_s = timed(lambda: data.load(files, cache_dir=cache, find_pickups=False), repeats=5)
        assert warm.report.cached == len(files)
        _, finding_s = timed(lambda: data.load(files, cache_dir=cache), repeats=1)  # (the reader, cached, + the bar finder)

    n = len(files)
    ours_notes = corpus.report.notes
    print(f"{n} files from {folder}")
    print(f"{'reader':<28}{'files/s':>10}{'notes/s':>12}{'x pretty_midi':>15}")
    for label, seconds, notes in [("pretty_midi (parse only)", pm_s, pm_notes),
                                  ("musicgan cold (parse+encode)", cold_s, ours_notes),
                                  ("musicgan cached reload", warm_s, ours_notes),
                                  ("cached + finding pickups", finding_s, ours_notes)]:
        print(f"{label:<28}{n / seconds:>10,.0f}{notes / seconds:>12,.0f}{pm_s / seconds:>14.1f}x")
    print("targets: cold >= 3x pretty_midi files/s; cached >= 50x (the reader alone; the bar finder of "
          "musicgan.pickup, on by default, adds its own time: the last row)")
    print("(musicgan merges unison doublings and same-pitch overlaps, so it counts fewer notes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
