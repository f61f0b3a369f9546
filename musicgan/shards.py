"""A large corpus parsed once, in parallel, into sharded arrays that training memory-maps.

``prepare(paths, out, workers)`` lists files, folders and zips (safely, as :mod:`musicgan.data`
does); a pool of worker processes reads and parses them, batch by batch, and writes

    out/shard-00000.npy ...   int32 notes (pitch, start, end, velocity) of one batch of pieces, back to back
    out/index.json            one entry per piece (shard, offset, count, tempo map, meter, program)
                              plus the report of what was read and skipped

Each worker writes its own shards, so the main process handles only names and a few numbers per
piece, and preparing needs memory for one batch per worker, not the corpus.
``load(out)`` returns rolls whose notes are read-only memory-mapped slices of the shards, for
analysis. Training uses ``open_corpus(out)``: a :class:`ShardedCorpus` keeps only a few numbers per
piece in memory and reads a window's notes from disk when a batch needs it, so the trainer's
memory does not grow with the corpus (:class:`StreamingWindows`).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Callable

import numpy as np

from . import metre, midi, pickup
from .data import Corpus, Limits, Report, iter_sources, read_source
from .midi import MidiError, Roll

FORMAT = "musicgan-shards"
BATCH_FILES = 128  # files per worker task, and per shard file (about 1 MB of notes for chorales)


def _prepare_batch(job):
    """Worker: read and parse a batch of files, write their notes as one temporary shard and
    return only the small per-piece records (the notes never travel back through a pipe)."""
    batch_id, items, steps_per_beat, out, find_pickups = job
    results, arrays, offset = [], [], 0
    if find_pickups:  # (one thread: a forked worker must not start the thread pool its parent may hold)
        import torch
        torch.set_num_threads(1)
    for name, source in items:
        name, blob, reason = read_source(name, source)
        if blob is not None:
            try:
                roll = midi.read(blob, steps_per_beat, name=name)
            except MidiError as e:
                reason = e.reason
        if reason is not None:
            results.append((name, None, reason))
            continue
        roll, found = pickup.barred(roll) if find_pickups else (roll, None)
        notes = roll.notes
        results.append((name, {"offset": offset, "count": len(notes), "steps": int(notes[:, midi.END].max()),
                               "pickup_beats": found.beats if found else 0.0,
                               "pitch_min": int(notes[:, midi.PITCH].min()),
                               "pitch_max": int(notes[:, midi.PITCH].max()), "tempos": roll.tempos,
                               "time_signatures": roll.time_signatures, "program": roll.program,
                               "drum_notes": roll.drum_notes}, None))
        arrays.append(notes)
        offset += len(notes)
    if arrays:
        np.save(Path(out) / f"batch-{batch_id:06d}.tmp.npy", np.concatenate(arrays).astype("<i4"))
    return results


def is_prepared(path) -> bool:
    return (Path(path) / "index.json").is_file()


def prepare(paths, out, workers: int = 2, steps_per_beat: int = 4, limits: Limits = Limits(max_files=10_000_000),
            progress: Callable[[int], None] | None = None, batch_files: int = BATCH_FILES,
            find_pickups: bool = True) -> Report:
    """Parse every MIDI file under ``paths`` with ``workers`` processes into shards in ``out``
    (``find_pickups``: as ``data.load``).

    The main process only lists the files (zip members it extracts itself, safely); each worker
    reads and parses a batch of files and writes the batch's notes as one shard. Batches come back
    in order, so the index (and the corpus) is the same whatever the number of workers."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("batch-*.tmp.npy"):  # left by an interrupted run
        old.unlink()
    report, pieces, shard_id, done = Report(steps_per_beat=steps_per_beat), [], 0, 0

    def batches():
        batch = []
        for name, source, reason in iter_sources(paths, limits, lazy=True):
            if source is None:
                report.skipped.append((name, reason))
                continue
            batch.append((name, source))
            if len(batch) == batch_files:
                yield batch
                batch = []
        if batch:
            yield batch

    jobs = ((i, batch, steps_per_beat, str(out), find_pickups) for i, batch in enumerate(batches()))
    context = mp.get_context("spawn" if os.name == "nt" else "fork")
    with context.Pool(max(1, workers)) as pool:
        for batch_id, results in enumerate(pool.imap(_prepare_batch, jobs)):
            wrote = False
            for name, piece, reason in results:
                if piece is None:
                    report.skipped.append((name, reason))
                    continue
                wrote = True
                pieces.append({"name": name, "shard": shard_id, **piece})
                report.read.append(name)
                if piece["pickup_beats"]:
                    report.pickups.append((name, piece["pickup_beats"]))
                report.notes += piece["count"]
                report.drum_notes += piece["drum_notes"]
                _, numerator, denominator = piece["time_signatures"][0]
                report.bars += piece["steps"] / max(1, round(numerator * 4 / denominator * steps_per_beat))
            if wrote:  # shards are numbered without gaps, in the order of the files
                os.replace(out / f"batch-{batch_id:06d}.tmp.npy", out / f"shard-{shard_id:05d}.npy")
                shard_id += 1
            done += len(results)
            if progress:
                progress(done)
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
    return Corpus(rolls, _report(index))


def _report(index: dict) -> Report:
    r = index["report"]
    return Report(read=[p["name"] for p in index["pieces"]], skipped=[(s["file"], s["reason"]) for s in r["skipped"]],
                  notes=r["notes"], bars=r["bars"], drum_notes=r["drum_notes"],
                  steps_per_beat=int(index["steps_per_beat"]),
                  pickups=[(p["file"], p["beats"]) for p in r.get("pickups", [])])


class ShardedCorpus:
    """A prepared corpus kept on disk: per piece only its place, length and pitch range in memory."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            index = json.loads((self.path / "index.json").read_text())
            if index.get("format") != FORMAT:
                raise ValueError("not a musicgan prepared corpus")
            pieces = index["pieces"]
            self.steps_per_beat = int(index["steps_per_beat"])
            columns = ("shard", "offset", "count", "steps", "pitch_min", "pitch_max", "program")
            self.table = np.array([[p[c] for c in columns] for p in pieces], dtype=np.int64).reshape(-1, len(columns))
            self.tempo_bpm = np.array([p["tempos"][0][1] for p in pieces], dtype=np.float32)
            self.time_signatures = [tuple(map(tuple, p["time_signatures"])) for p in pieces]
            self.report = _report(index)
            self._shards = []
            for i in range(index["shards"]):
                with open(self.path / f"shard-{i:05d}.npy", "rb") as fh:  # where the array's bytes start
                    version = np.lib.format.read_magic(fh)
                    (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(fh)
                    self._shards.append((self.path / f"shard-{i:05d}.npy", fh.tell()))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{path}: not a usable prepared corpus ({e}); run `python -m musicgan prepare` again") from None

    def __len__(self) -> int:
        return len(self.table)

    def bars_per_metre(self) -> dict:
        """How many bars of the corpus are in each metre, most first (see musicgan.metre)."""
        counts: dict = {}
        for (steps,), signatures in zip(self.table[:, 3:4].tolist(), self.time_signatures):
            for start, end, m in metre.segments(signatures, steps):
                counts[m] = counts.get(m, 0) + (end - start) / metre.bar_steps(m, self.steps_per_beat)
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def notes(self, i: int) -> np.ndarray:
        """Piece i's notes, read from its shard (no memory map: nothing stays resident)."""
        shard, offset, count = self.table[i, :3]
        path, start = self._shards[shard]
        return np.fromfile(path, dtype="<i4", count=int(count) * 4, offset=int(start + offset * 16)).reshape(-1, 4)


def open_corpus(path) -> ShardedCorpus:
    return ShardedCorpus(path)


class StreamingWindows:
    """Training windows drawn at random from a :class:`ShardedCorpus`, encoded when asked for.

    A piece is chosen with probability proportional to its number of (start, transposition)
    windows, then a start on one of its bar lines and a transposition uniformly, the same
    distribution as sampling uniformly from :class:`musicgan.data.Windows`. Only ``pieces``
    (this process's share under torchrun) are drawn from.
    """

    def __init__(self, corpus: ShardedCorpus, config, model, pieces: np.ndarray | None = None):
        self.corpus, self.config, self.model = corpus, config, model
        t = corpus.table
        self.pieces = np.arange(len(t)) if pieces is None else np.asarray(pieces)
        length = config.window_steps
        low, high = config.pitch_range
        pmin, pmax = t[self.pieces, 4], t[self.pieces, 5]
        self.starts = np.array([len(self._starts(int(j))) for j in self.pieces], dtype=np.int64)
        self.shift_lo = np.maximum(config.transpose[0], low - pmin)
        self.shift_hi = np.minimum(config.transpose[1], high - pmax)
        n_shifts = np.maximum(self.shift_hi - self.shift_lo + 1, 0)
        self.weights = self.starts * n_shifts
        self.plain = (self.shift_lo <= 0) & (0 <= self.shift_hi)  # pieces that fit untransposed
        self.piece_keys = np.full(len(self.pieces), -1, dtype=np.int64)  # estimated when first drawn
        self.length = length

    def _signatures(self, piece: int) -> tuple:
        return self.config.time_signatures(Roll(notes=np.zeros((0, 4), np.int32),
                                                time_signatures=self.corpus.time_signatures[piece]))

    def _starts(self, piece: int) -> np.ndarray:
        steps = int(self.corpus.table[piece, 3])
        last = max(steps - self.config.window_steps, 0)
        lines = metre.bar_lines(self._signatures(piece), last + 1, self.config.steps_per_beat)[::self.config.hop_bars]
        return lines if len(lines) else np.zeros(1, np.int64)

    def __len__(self) -> int:
        return int(self.weights.sum())

    def sample(self, n: int, generator, untransposed: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n windows as int64 tokens (n, window_steps, voices), the key of each (n,)
        (:mod:`musicgan.keys`: its piece's, transposed with it) and each step's code (n,
        window_steps; -1 in a metre the model does not know); ``generator`` is a torch.Generator."""
        import torch

        from . import keys, voices as vox

        weights = self.starts * self.plain if untransposed else self.weights
        if weights.sum() == 0:
            weights = self.weights
        picks = torch.multinomial(torch.from_numpy(weights.astype(np.float64)), n, replacement=True, generator=generator)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64).numpy()
        length, (low, high) = self.length, self.config.pitch_range
        out = np.zeros((n, length, self.model.voices), dtype=np.int64)
        out_keys = np.zeros(n, dtype=np.int64)
        out_codes = np.zeros((n, length), dtype=np.int64)
        for k, j in enumerate(picks.tolist()):
            piece = int(self.pieces[j])
            starts = self._starts(piece)
            start = int(starts[int(u[k, 0] * len(starts))])
            shift = 0 if untransposed and self.plain[j] else \
                int(self.shift_lo[j] + int(u[k, 1] * (self.shift_hi[j] - self.shift_lo[j] + 1)))
            notes = self.corpus.notes(piece)
            if self.piece_keys[j] < 0:
                self.piece_keys[j] = keys.of_piece(notes)
            out_keys[k] = keys.transpose(self.piece_keys[j], shift)
            out_codes[k] = self.model.step_codes(self._signatures(piece), start + length)[start:]
            notes = notes[(notes[:, midi.START] < start + length) & (notes[:, midi.END] > start)].copy()
            notes[:, midi.START:midi.END + 1] = np.clip(notes[:, midi.START:midi.END + 1] - start, 0, length)
            notes[:, midi.PITCH] += shift
            onset, sustain = Roll(notes=notes).pianoroll(low, high, length)
            out[k] = vox.encode(onset, sustain, self.model.voices)
        return out, out_keys, out_codes
