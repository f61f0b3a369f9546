"""Build public-domain training sets offline.

``python -m musicgan.datasets bach OUT_DIR`` exports every Bach piece in music21's corpus
(about 430, nearly all four-part chorales) to MIDI under ``OUT_DIR/train`` and ``OUT_DIR/test``.
The split is fixed: a piece goes to ``test`` when the first byte of the SHA-1 of its name is
below 26 (about 10%), so it never depends on the corpus order or on the machine.

music21 is a development dependency (requirements-dev.txt), not a runtime one.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def split_of(name: str) -> str:
    """'train' or 'test' for a piece name such as 'bwv26.6'."""
    return "test" if hashlib.sha1(name.encode()).digest()[0] < 26 else "train"


def bach_sources() -> list[Path]:
    from music21 import corpus

    return sorted(Path(p) for p in corpus.getComposer("bach"))


def piece_name(source: Path) -> str:
    return source.name.rsplit(".", 1)[0]  # bwv26.6.mxl -> bwv26.6


def export(source: Path, out: Path) -> str | None:
    """Write one corpus piece as MIDI; returns an error string or None."""
    from music21 import corpus

    try:
        score = corpus.parse(str(source))
        score.write("midi", fp=str(out))
        return None
    except Exception as e:  # music21 raises many kinds; one bad piece must not stop the export
        return f"{source.name}: {type(e).__name__}: {e}"


def build_bach(out_dir: Path, workers: int = 2, limit: int | None = None) -> dict:
    out_dir = Path(out_dir)
    jobs = []
    for source in bach_sources()[:limit]:
        name = piece_name(source)
        target = out_dir / split_of(name) / f"{name}.mid"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((source, target))
    errors = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for err in pool.map(export, *zip(*jobs)) if jobs else []:
            if err:
                errors.append(err)
    counts = {split: len(list((out_dir / split).glob("*.mid"))) for split in ("train", "test")}
    return {"counts": counts, "errors": errors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicgan.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["bach"])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="export only the first N pieces")
    args = parser.parse_args(argv)
    try:
        result = build_bach(args.out_dir, args.workers, args.limit)
    except ImportError:
        print("error: music21 is needed to build the Bach set: pip install -r requirements-dev.txt",
              file=sys.stderr)
        return 2
    for err in result["errors"]:
        print(f"skipped {err}", file=sys.stderr)
    c = result["counts"]
    print(f"{args.out_dir}: {c['train']} train and {c['test']} test pieces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
