"""Files, folders and .zip archives -> rolls -> a dataset of fixed-length windows.

:func:`load` reads everything it is given, skips what it cannot use with a reason, and returns a
:class:`Corpus` (the rolls and a :class:`Report`). Parsed files are cached by content, so
loading the same music again is fast whatever the files are called. :class:`Windows` cuts the
rolls into windows of a few bars, optionally transposed, for training.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field, asdict
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

from . import metre, midi, pickup as pickups_
from .midi import MidiError, Roll

MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar", ".rmi")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one load reads: a hostile upload must not exhaust memory or time."""

    max_files: int = 20_000
    max_file_bytes: int = midi.MAX_FILE_BYTES
    max_zip_members: int = 5_000
    max_zip_bytes: int = 512 * 1024 * 1024  # total uncompressed MIDI read from one archive
    max_zip_ratio: int = 200  # a member compressed more than this is a zip bomb


@dataclass
class Report:
    """What a load read and skipped, for people (:meth:`format`) and machines (:meth:`to_dict`)."""

    read: list = field(default_factory=list)  # names of files that gave a roll
    skipped: list = field(default_factory=list)  # (name, reason)
    notes: int = 0
    bars: float = 0.0
    drum_notes: int = 0
    cached: int = 0  # files served from the cache
    metres: dict = field(default_factory=dict)  # bars in each metre ("3/4": 120.0), most first
    off_grid: tuple = (0, 0)  # notes whose onset the grid moved, and of those, kept by a grid 3x finer
    steps_per_beat: int = 4  # the grid the music was read on
    pickups: list = field(default_factory=list)  # (name, beats): a pickup found (musicgan.pickup), its music moved

    def pickups_named(self, quote: str = "", shown: int = 5) -> str:
        """The first ``shown`` files a pickup was found in, each with its length, and how many more:
        "a.mid (1 beat), b.mid (0.5 beats) and 3 more" (each name between ``quote`` marks)."""
        named = ", ".join(f"{quote}{name}{quote} ({pickups_.beats_text(beats)})" for name, beats in self.pickups[:shown])
        return named + (f" and {len(self.pickups) - shown} more" if len(self.pickups) > shown else "")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["off_grid"] = {"moved": self.off_grid[0], "on_thirds": self.off_grid[1]}
        d["skipped"] = [{"file": n, "reason": r} for n, r in self.skipped]
        d["pickups"] = [{"file": n, "beats": b} for n, b in self.pickups]
        d["files_read"], d["files_skipped"] = len(self.read), len(self.skipped)
        d["bars"] = round(self.bars, 1)
        return d

    def format(self) -> str:
        lines = [f"{len(self.read)} file(s) read, {len(self.skipped)} skipped: "
                 f"{self.notes:,} notes in {self.bars:,.0f} bars"
                 + (f" ({self.drum_notes:,} drum notes left out)" if self.drum_notes else "")]
        if self.metres:
            total = sum(self.metres.values()) or 1
            lines.append("metres: " + ", ".join(f"{name} ({100 * bars / total:.0f}% of the bars)"
                                                for name, bars in self.metres.items()))
        if self.notes:
            moved, thirds = self.off_grid
            line = (f"grid: {self.steps_per_beat} steps a beat; it moves the onsets of {moved:,} notes "
                    f"({100 * moved / self.notes:.1f}%)")
            if moved:
                line += f", {100 * thirds / moved:.0f}% of them triplets or swing (a grid 3x finer would keep them)"
            lines.append(line)
        if self.pickups:
            lines.append(f"pickups: {len(self.pickups)} of {len(self.read)} file(s) open with a pickup the file does "
                         f"not mark; the first bar is made whole with a rest before it: {self.pickups_named()}")
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


@dataclass
class Corpus:
    rolls: list
    report: Report


# ------------------------------------------------------------------------------ collecting

def iter_sources(paths: Iterable, limits: Limits = Limits(), lazy: bool = False
                 ) -> Iterator[tuple[str, bytes | Path | None, str | None]]:
    """Yield (name, data, None) for every MIDI candidate under ``paths``, or
    (name, None, reason) for something skipped. Folders are walked recursively; links to files
    are read, linked folders are not walked (no loops); .zip archives are opened safely; other
    files are skipped by suffix.
    ``lazy``: plain files come as their Path (size already checked; read them with
    :func:`read_source`), so that worker processes can do the reading."""
    count = 0
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())  # rglob does not enter linked folders
        elif path.exists():
            files = [path]
        else:
            yield str(path), None, "no such file or folder"
            continue
        for f in files:
            if count >= limits.max_files:
                yield str(f), None, f"too many files (the limit is {limits.max_files:,})"
                return
            suffix = f.suffix.lower()
            if suffix == ".zip":
                for item in _iter_zip(f, limits):
                    count += item[1] is not None
                    yield item
            elif suffix in MIDI_SUFFIXES or f == path:
                count += 1
                try:
                    size = f.stat().st_size
                    if size > limits.max_file_bytes:
                        yield f.name, None, f"too large ({size / 1e6:.1f} MB; the limit is " \
                                            f"{limits.max_file_bytes / 1e6:.0f} MB)"
                    else:
                        yield (f.name, f, None) if lazy else read_source(f.name, f)
                except OSError as e:
                    yield f.name, None, f"cannot be read ({e.strerror or e})"
            # other files inside folders (.txt, .jpg ...) are ignored silently


def read_source(name: str, source: bytes | Path) -> tuple[str, bytes | None, str | None]:
    """(name, bytes, None) of a source from :func:`iter_sources`, or (name, None, reason)."""
    if isinstance(source, bytes):
        return name, source, None
    try:
        return name, Path(source).read_bytes(), None
    except OSError as e:
        return name, None, f"cannot be read ({e.strerror or e})"


def _iter_zip(path: Path, limits: Limits):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        yield path.name, None, f"not a readable zip archive ({e})"
        return
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_zip_members:
            yield path.name, None, f"zip archive has {len(members):,} entries " \
                                   f"(the limit is {limits.max_zip_members:,})"
            return
        total = 0
        for info in members:
            label = f"{path.name}/{info.filename}"
            if info.is_dir():
                continue
            reason = _unsafe_member(info, limits)
            if reason is None and total + info.file_size > limits.max_zip_bytes:
                reason = f"the archive holds more than {limits.max_zip_bytes / 1e6:.0f} MB of MIDI"
            if reason:
                yield label, None, reason
                continue
            try:
                # read at most the declared size + 1: a lying header cannot make us read more
                with archive.open(info) as fh:
                    data = fh.read(min(info.file_size, limits.max_file_bytes) + 1)
            except Exception as e:  # zlib.error, BadZipFile, NotImplementedError (encryption) ...
                yield label, None, f"cannot be extracted ({type(e).__name__}: {e})"
                continue
            if len(data) != info.file_size:
                yield label, None, "size does not match the archive's directory (corrupt or hostile)"
                continue
            total += len(data)
            yield label, data, None


def _unsafe_member(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        return "unsafe path in archive (absolute or with '..'); skipped"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in archive; skipped"
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".zip":
        return "nested archive; ignored"
    if suffix not in MIDI_SUFFIXES:
        return "not a MIDI file name (.mid or .midi)"
    if info.file_size > limits.max_file_bytes:
        return f"too large ({info.file_size / 1e6:.1f} MB; the limit is {limits.max_file_bytes / 1e6:.0f} MB)"
    if info.compress_size and info.file_size / info.compress_size > limits.max_zip_ratio:
        return "compressed too much to be real MIDI (zip bomb?)"
    return None


# ------------------------------------------------------------------------------ the cache

CACHE_FORMAT = 2
_MAGIC = b"MGR1"


def default_cache_dir() -> Path:
    root = os.environ.get("MUSICGAN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "musicgan"
    return Path(root) / "rolls"


def _cache_key(data: bytes, steps_per_beat: int, keep_drums: bool) -> str:
    h = hashlib.blake2b(data, digest_size=20)
    h.update(f"|v{CACHE_FORMAT}|spb{steps_per_beat}|drums{int(keep_drums)}|max{midi.MAX_STEPS}".encode())
    return h.hexdigest()


def _cache_get(path: Path, name: str):
    """A Roll, a MidiError (a failure remembered) or None (not cached / unreadable)."""
    try:
        blob = path.read_bytes()
        if blob[:4] != _MAGIC:
            return None
        header_len = int.from_bytes(blob[4:8], "little")
        meta = json.loads(blob[8:8 + header_len])
        if "error" in meta:
            return MidiError(name, meta["error"])
        notes = np.frombuffer(blob[8 + header_len:], dtype="<i4").reshape(-1, 4).astype(np.int32)
        return Roll(notes=notes, steps_per_beat=meta["steps_per_beat"],
                    tempos=tuple(tuple(t) for t in meta["tempos"]),
                    time_signatures=tuple(tuple(t) for t in meta["time_signatures"]),
                    program=meta["program"], drum_notes=meta["drum_notes"], name=name,
                    off_grid=tuple(meta["off_grid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_put(path: Path, result) -> None:
    if isinstance(result, MidiError):
        meta, body = {"error": result.reason}, b""
    else:
        meta = {"steps_per_beat": result.steps_per_beat, "tempos": result.tempos,
                "time_signatures": result.time_signatures, "program": result.program,
                "drum_notes": result.drum_notes, "off_grid": result.off_grid}
        body = result.notes.astype("<i4").tobytes()
    header = json.dumps(meta).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_MAGIC + len(header).to_bytes(4, "little") + header + body)
        os.replace(tmp, path)  # atomic: a reader never sees half an entry
    except OSError:
        pass  # a read-only or full cache only costs speed


def read_cached(data: bytes, name: str, steps_per_beat: int = 4, keep_drums: bool = False,
                cache_dir: Path | None = None) -> tuple[Roll, bool]:
    """Parse MIDI bytes through the content cache: (roll, was_cached). Raises MidiError."""
    entry = None
    if cache_dir is not None:
        key = _cache_key(data, steps_per_beat, keep_drums)
        entry = Path(cache_dir) / key[:2] / key
        hit = _cache_get(entry, name)
        if isinstance(hit, MidiError):
            raise hit
        if hit is not None:
            return hit, True
    try:
        result = midi.read(data, steps_per_beat, name=name, keep_drums=keep_drums)
    except MidiError as e:
        if entry is not None:
            _cache_put(entry, e)
        raise
    if entry is not None:
        _cache_put(entry, result)
    return result, False


FINER_GRID_SHARE = 0.05  # when the grid moves more of the notes than this, the music needs a finer one


def grid_for(report: "Report", steps_per_beat: int = 4) -> int:
    """The steps a beat the music of ``report`` (read at ``steps_per_beat``) needs: the same,
    unless the grid moved more than FINER_GRID_SHARE of its notes; then three times as many
    when most of those are triplets or swing (a third of a step off), else twice as many."""
    moved, thirds = report.off_grid
    if not report.notes or moved <= FINER_GRID_SHARE * report.notes:
        return steps_per_beat
    return steps_per_beat * (3 if thirds >= moved / 2 else 2)


def load(paths: Iterable, steps_per_beat: int | str = 4, *, keep_drums: bool = False,
         cache_dir: Path | str | None | bool = True, limits: Limits = Limits(),
         find_pickups: bool = True) -> Corpus:
    """Read MIDI from files, folders and zip archives into rolls, with a report.

    ``steps_per_beat``: the grid, or "auto": 4 steps a beat, or the finer grid the music needs
    (:func:`grid_for`: quartets with runs of triplets get 12). ``cache_dir=True`` uses
    :func:`default_cache_dir`; ``False``/``None`` disables the cache. ``find_pickups``: a piece
    that opens with a pickup its file does not mark has its music moved to make the first bar
    whole (:mod:`musicgan.pickup`; listed in ``report.pickups``); False reads the bars as
    written (music whose bars are known right, as the collections of :mod:`musicgan.datasets`).
    Never raises for bad files: they are listed in ``report.skipped`` with the reason.
    """
    if steps_per_beat == "auto":
        again = dict(keep_drums=keep_drums, cache_dir=cache_dir, limits=limits, find_pickups=find_pickups)
        corpus = load(paths, 4, **again)
        finer = grid_for(corpus.report, 4)
        return corpus if finer == 4 else load(paths, finer, **again)
    if cache_dir is True:
        cache_dir = default_cache_dir()
    cache_dir = Path(cache_dir) if cache_dir else None
    report, rolls = Report(steps_per_beat=steps_per_beat), []
    for name, data, reason in iter_sources(paths, limits):
        if data is None:
            report.skipped.append((name, reason))
            continue
        try:
            roll, cached = read_cached(data, name, steps_per_beat, keep_drums, cache_dir)
        except MidiError as e:
            report.skipped.append((name, e.reason))
            continue
        if find_pickups:
            roll, found = pickups_.barred(roll)
            if found.steps:
                report.pickups.append((name, found.beats))
        rolls.append(roll)
        report.read.append(name)
        report.notes += len(roll.notes)
        report.bars += roll.n_bars
        report.drum_notes += roll.drum_notes
        report.cached += cached
        report.off_grid = (report.off_grid[0] + roll.off_grid[0], report.off_grid[1] + roll.off_grid[1])
    report.metres = {metre.name(m): round(bars, 1) for m, bars in metre.bars_per_metre(rolls).items()}
    return Corpus(rolls, report)


# ------------------------------------------------------------------------------ windows

@dataclass(frozen=True)
class WindowConfig:
    """How rolls are cut into training windows.

    Every window has ``window_steps`` steps. With ``follow_metre`` (models that know metres)
    windows start on the piece's own bar lines, every ``hop_bars`` bars, and carry the piece's
    time signatures; without it (models from before), a bar is ``beats_per_bar`` beats counted
    from the first step, whatever the piece's metre. ``length`` fixes the window's steps (None:
    ``window_bars`` bars of ``beats_per_bar`` beats). ``transpose`` is the inclusive range of
    semitone shifts used for augmentation; a shifted window is kept only if it stays inside
    ``pitch_range``.
    """

    window_bars: int = 4
    hop_bars: int = 1
    beats_per_bar: int = 4
    steps_per_beat: int = 4
    transpose: tuple = (0, 0)
    pitch_range: tuple = (0, 127)  # inclusive MIDI pitches
    follow_metre: bool = False
    length: int | None = None

    @property
    def window_steps(self) -> int:
        return self.length or self.window_bars * self.beats_per_bar * self.steps_per_beat

    def time_signatures(self, roll: Roll) -> tuple:
        """The time signatures the windows of ``roll`` go by."""
        return roll.time_signatures if self.follow_metre else ((0, self.beats_per_bar, 4),)

    def starts(self, roll: Roll) -> np.ndarray:
        """Where the windows of ``roll`` may start: bar lines, every ``hop_bars`` bars, while a
        whole window fits (a piece shorter than a window gets one, from its first step)."""
        last = max(roll.n_steps - self.window_steps, 0)
        lines = metre.bar_lines(self.time_signatures(roll), last + 1, self.steps_per_beat)[::self.hop_bars]
        return lines if len(lines) else np.zeros(1, np.int64)


class Windows:
    """Every usable (roll, start, transposition) window of a corpus, in a fixed order.

    ``windows[i]`` is a Roll of exactly ``config.window_steps`` steps (notes cut at the window's
    edges, time signatures moved with it); the order depends only on the rolls and the config,
    so a seed fixes the batches.
    """

    def __init__(self, rolls: list, config: WindowConfig = WindowConfig()):
        self.rolls, self.config = rolls, config
        length = config.window_steps
        low, high = config.pitch_range
        index = []
        for r, roll in enumerate(rolls):
            if roll.steps_per_beat != config.steps_per_beat:
                raise ValueError(f"{roll.name}: {roll.steps_per_beat} steps a beat, expected {config.steps_per_beat}")
            notes = roll.notes
            for start in config.starts(roll).tolist():
                inside = notes[(notes[:, midi.START] < start + length) & (notes[:, midi.END] > start)]
                if len(inside) == 0:
                    continue
                lo, hi = inside[:, midi.PITCH].min(), inside[:, midi.PITCH].max()
                for shift in range(config.transpose[0], config.transpose[1] + 1):
                    if lo + shift >= low and hi + shift <= high:
                        index.append((r, start, shift))
        self.index = np.array(index, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Roll:
        r, start, shift = self.index[i]
        return cut(self.rolls[r], int(start), self.config.window_steps, int(shift),
                   self.config.time_signatures(self.rolls[r]))

    def step_codes(self, model) -> np.ndarray:
        """(n_windows, window_steps): each step's code for ``model`` (a ModelConfig; see
        :meth:`~musicgan.models.ModelConfig.step_codes`), -1 in metres it does not know."""
        length = self.config.window_steps
        out = np.zeros((len(self), length), dtype=np.int64)
        for r, roll in enumerate(self.rolls):
            rows = np.nonzero(self.index[:, 0] == r)[0]
            if len(rows):
                codes = model.step_codes(self.config.time_signatures(roll), roll.n_steps + length)
                for i in rows:
                    start = self.index[i, 1]
                    out[i] = codes[start:start + length]
        return out

    def pianorolls(self, indices=None):
        """Stacked (onset, sustain) boolean arrays of shape (n, window_steps, n_pitches)."""
        indices = range(len(self)) if indices is None else indices
        low, high = self.config.pitch_range
        pairs = [self[i].pianoroll(low, high, self.config.window_steps) for i in indices]
        n_pitches = high - low + 1
        if not pairs:
            empty = np.zeros((0, self.config.window_steps, n_pitches), dtype=bool)
            return empty, empty.copy()
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def moved_time_signatures(time_signatures, start: int, length: int) -> tuple:
    """The time signatures of steps start..start+length of a piece, counted from ``start``."""
    rows = [(s - start, n, d) for s, n, d in time_signatures if start < s < start + length]
    return ((0, *metre.metre_at(time_signatures, start)),) + tuple(rows)


def cut(roll: Roll, start: int, length: int, shift: int = 0, time_signatures=None) -> Roll:
    """Steps start..start+length of ``roll`` as a roll of its own (notes cut at the edges,
    transposed by ``shift``; its time signatures moved with it, or ``time_signatures`` moved)."""
    notes = roll.notes
    notes = notes[(notes[:, midi.START] < start + length) & (notes[:, midi.END] > start)].copy()
    notes[:, midi.START:midi.END + 1] = np.clip(notes[:, midi.START:midi.END + 1] - start, 0, length)
    notes[:, midi.PITCH] += shift
    signatures = moved_time_signatures(roll.time_signatures if time_signatures is None else time_signatures,
                                       start, length)
    return Roll(notes=midi._sorted_notes(notes), steps_per_beat=roll.steps_per_beat, tempos=((0, roll.tempo_bpm),),
                time_signatures=signatures, program=roll.program, name=f"{roll.name}@{start}{shift:+d}")


def clips(rolls: list, bars: int = 4) -> list[Roll]:
    """Every piece cut into clips of ``bars`` of its own bars, from its bar lines, one after
    another (what is left at the end, fewer bars, is left out): what the quality benches compare."""
    out = []
    for roll in rolls:
        lines = metre.bar_lines(roll.time_signatures, roll.n_steps, roll.steps_per_beat).tolist() + [roll.n_steps]
        for first in range(0, len(lines) - bars, bars):
            start, end = lines[first], lines[first + bars]
            clip = cut(roll, start, end - start)
            if len(clip.notes):
                out.append(clip)
    return out
