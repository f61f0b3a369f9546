"""A large corpus parsed once, in parallel, into sharded arrays that training memory-maps.

``prepare(paths, out, workers)`` reads files, folders and zips (safely, as :mod:`musicgan.data`
does), parses them in a pool of worker processes, and writes

    out/shard-00000.npy ...   int32 notes (pitch, start, end, velocity) of many pieces, back to back
    out/index.json            one entry per piece (shard, offset, count, tempo map, meter, program)
                              plus the report of what was read and skipped

Results stream to disk as they arrive, so preparing needs memory for one shard, not the corpus.
``load(out)`` returns rolls whose notes are read-only memory-mapped slices of the shards: the
operating system pages them in as training touches them.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Callable

import numpy as np

from . import midi
from .data import Corpus, Limits, Report, iter_sources
from .midi import MidiError, Roll

FORMAT = "musicgan-shards"
SHARD_NOTES = 2_000_000  # notes per shard file (32 MB)


def _parse(job):
    name, blob, steps_per_beat = job
    try:
        roll = midi.read(blob, steps_per_beat, name=name)
    except MidiError as e:
        return name, None, e.reason
    meta = {"tempos": roll.tempos, "time_signatures": roll.time_signatures, "program": roll.program,
            "drum_notes": roll.drum_notes}
    return name, (roll.notes, meta), None


def is_prepared(path) -> bool:
    return (Path(path) / "index.json").is_file()


def prepare(paths, out, workers: int = 2, steps_per_beat: int = 4, limits: Limits = Limits(max_files=10_000_000),
            progress: Callable[[int], None] | None = None) -> Report:
    """Parse every MIDI file under ``paths`` with ``workers`` processes into shards in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report, pieces = Report(), []
    buffer, buffered, shard_id = [], 0, 0

    def flush():
        nonlocal buffer, buffered, shard_id
        if buffer:
            np.save(out / f"shard-{shard_id:05d}.npy", np.concatenate(buffer).astype("<i4"))
            buffer, buffered, shard_id = [], 0, shard_id + 1

    def jobs():
        for name, blob, reason in iter_sources(paths, limits):
            if blob is None:
                report.skipped.append((name, reason))
            else:
                yield name, blob, steps_per_beat

    context = mp.get_context("spawn" if os.name == "nt" else "fork")
    with context.Pool(max(1, workers)) as pool:
        for done, (name, result, reason) in enumerate(pool.imap(_parse, jobs(), chunksize=8), 1):
            if progress:
                progress(done)
            if result is None:
                report.skipped.append((name, reason))
                continue
            notes, meta = result
            if buffered + len(notes) > SHARD_NOTES:
                flush()
            pieces.append({"name": name, "shard": shard_id, "offset": buffered, "count": len(notes),
                           "steps": int(notes[:, midi.END].max()), **meta})
            buffer.append(notes)
            buffered += len(notes)
            report.read.append(name)
            report.notes += len(notes)
            report.drum_notes += meta["drum_notes"]
            bar = max(1, round(meta["time_signatures"][0][1] * 4 / meta["time_signatures"][0][2] * steps_per_beat))
            report.bars += pieces[-1]["steps"] / bar
    flush()
    index = {"format": FORMAT, "steps_per_beat": steps_per_beat, "shards": shard_id, "pieces": pieces,
             "report": report.to_dict()}
    tmp = out / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, out / "index.json")
    return report


def load(path) -> Corpus:
    """Rolls of a prepared corpus, their notes memory-mapped from the shards (nothing is copied)."""
    path = Path(path)
    try:
        index = json.loads((path / "index.json").read_text())
        if index.get("format") != FORMAT:
            raise ValueError("not a musicgan prepared corpus")
        shards = [np.load(path / f"shard-{i:05d}.npy", mmap_mode="r") for i in range(index["shards"])]
        rolls = [Roll(notes=shards[p["shard"]][p["offset"]:p["offset"] + p["count"]],
                      steps_per_beat=index["steps_per_beat"], tempos=tuple(map(tuple, p["tempos"])),
                      time_signatures=tuple(map(tuple, p["time_signatures"])), program=p["program"],
                      drum_notes=p["drum_notes"], name=p["name"]) for p in index["pieces"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: not a usable prepared corpus ({e}); run `python -m musicgan prepare` again") from None
    report = Report(read=[p["name"] for p in index["pieces"]],
                    skipped=[(s["file"], s["reason"]) for s in index["report"]["skipped"]],
                    notes=index["report"]["notes"], bars=index["report"]["bars"],
                    drum_notes=index["report"]["drum_notes"])
    return Corpus(rolls, report)
