"""``python -m musicgan``: a thin command-line face on the library."""
from __future__ import annotations

import argparse
import json
import sys


def cmd_stats(args) -> int:
    from . import data

    corpus = data.load(args.paths, cache_dir=not args.no_cache)
    report = corpus.report
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    if not corpus.rolls:
        print("error: no usable MIDI file found", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musicgan",
                                     description="Learn from MIDI files with a recurrent GAN.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stats", help="report what a set of MIDI files, folders or zips contains")
    p.add_argument("paths", nargs="+", help="MIDI files, folders (searched recursively) or .zip archives")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-cache", action="store_true", help="parse every file again")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
