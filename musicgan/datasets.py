"""Build public-domain training sets offline, from music21's corpus.

    python -m musicgan.datasets NAME OUT_DIR      # NAME: bach, fiddle, trecento, quartets, or all
    python -m musicgan.datasets unseen OUT_DIR    # madrigals, various, folk: music nothing learns from

exports every piece of a collection to MIDI under ``OUT_DIR/train`` and ``OUT_DIR/test`` (with
``all``: ``OUT_DIR/NAME/train`` ...). The collections are the development benchmark of several
styles (``bench/styles.py``):

* ``bach``: the Bach chorales (about 430; four voices, mostly 4/4, some 3/4);
* ``fiddle``: the fiddle tunes of Ryan's Mammoth Collection (1883; about 1,060 reels, jigs,
  hornpipes and strathspeys; one line, 2/4, 4/4, 6/8, 9/8 ...);
* ``trecento``: Italian polyphony of the fourteenth century (about 100 pieces in two and three
  voices, many in ternary metres);
* ``quartets``: string-quartet movements by Haydn, Mozart and Beethoven (about 35; four
  instruments, wide range, fast notes).

The split is fixed: a piece goes to ``test`` when the first byte of the SHA-1 of its name is below
the collection's share of 256 (10% of the chorales and the tunes, 15% of the trecento pieces,
20% of the few quartet movements), so it never depends on the corpus order or on the machine.

Three more collections are *unseen*: every piece is held out (``test``), and no model or tool of
ours learns from them, so they say how what was tuned on the four above does on music it never
met (``bench/pickup.py`` scores the bar finder on them):

* ``madrigals``: Monteverdi's madrigals (books 3-5; five voices, mostly 4/4);
* ``various``: one to a few pieces each by other composers: piano pieces (a mazurka, polonaises,
  a rag, a sonata movement), songs with piano, a string quartet, an aria, a clarinet concertino;
* ``folk``: every 8th tune of O'Neill's *Music of Ireland* (1903): reels, jigs, hornpipes, slip
  jigs and slow airs in 3/4, one line. Many of its tunes are in Ryan's collection too, in other
  settings; none is left out for that. (music21 cannot write 11 of the 270 as MIDI: skipped.)

Each folder also gets ``pickups.json``: for each piece, how much shorter than a whole bar its
score's first bar is, in quarter notes (the rest the export put before a pickup; 0: the first bar
is whole, even where it begins with a rest).

music21 is a development dependency (requirements-dev.txt), not a runtime one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Collection:
    folders: tuple  # folders of music21's corpus
    test_share: float  # the share of pieces held out for testing
    about: str
    leave_out: tuple = ()  # pieces in those folders that are not of the collection
    every: int = 0  # of files of many tunes each (ABC books): every this-many-th tune (0: files of one piece)

COLLECTIONS = {
    "bach": Collection(("bach",), 26 / 256, "Bach chorales"),
    "fiddle": Collection(("ryansMammoth",), 26 / 256, "fiddle tunes of Ryan's Mammoth Collection"),
    "trecento": Collection(("trecento",), 0.15, "fourteenth-century Italian polyphony"),
    "quartets": Collection(("haydn", "mozart", "beethoven"), 0.2, "string quartets by Haydn, Mozart and Beethoven",
                           leave_out=("mozart-k545-movement1_exposition",)),  # a piano sonata
}
UNSEEN = {
    "madrigals": Collection(("monteverdi",), 1.0, "Monteverdi's madrigals, all held out",
                            leave_out=("monteverdi-madrigal.3.1_old",)),  # an older copy of 3.1
    "various": Collection(("beach", "chopin", "corelli", "cpebach", "handel", "johnson_j_r", "joplin", "liliuokalani",
                           "schoenberg", "schubert", "schumann_clara", "schumann_robert", "verdi", "weber", "webern"),
                          1.0, "pieces by composers of none of the other collections, all held out",
                          leave_out=("schumann_robert-opus48no2",)),  # the same song as dichterliebe_no2
    "folk": Collection(("oneills1850",), 1.0, "every 8th tune of O'Neill's Music of Ireland, all held out", every=8),
}
BY_NAME = {**COLLECTIONS, **UNSEEN}
PICKUPS_FILE = "pickups.json"
# one file per piece, the first of these found (.rntxt: the chorale harmonisations of Riemenschneider's
# edition as chord progressions, part of the Bach set the pretrained model learned from)
PREFERRED = (".mxl", ".xml", ".musicxml", ".abc", ".krn", ".rntxt")


def split_of(name: str, test_share: float = 26 / 256) -> str:
    """'train' or 'test' for a piece name such as 'bwv26.6'."""
    return "test" if hashlib.sha1(name.encode()).digest()[0] < round(256 * test_share) else "train"


def piece_name(source: Path, folder: str) -> str:
    """A piece's name from its corpus path: bach/bwv26.6.mxl -> bwv26.6, and
    beethoven/opus18no1/movement1.mxl -> beethoven-opus18no1-movement1 (beside Bach's, keep the old names)."""
    parts = list(source.parts[source.parts.index(folder) + 1:])
    parts[-1] = parts[-1].rsplit(".", 1)[0]
    return parts[-1] if folder == "bach" else "-".join([folder, *parts])


def sources(collection: str) -> dict[str, Path | tuple[Path, int]]:
    """The corpus files of a collection, by piece name (one file per piece; in a collection of
    books of many tunes, (the book, the tune's number), named oneills1850-0001-0050-17)."""
    from music21 import corpus

    spec = BY_NAME[collection]
    found: dict[str, Path | tuple[Path, int]] = {}
    for folder in spec.folders:
        paths = [Path(p) for p in corpus.getPaths() if f"/corpus/{folder}/" in str(p)]
        for path in sorted(paths, key=lambda p: PREFERRED.index(p.suffix) if p.suffix in PREFERRED else 99):
            name = piece_name(path, folder)
            if path.suffix not in PREFERRED or name in spec.leave_out:
                continue
            if not spec.every:
                found.setdefault(name, path)
                continue
            for number in tune_numbers(path)[::spec.every]:
                found.setdefault(f"{name}-{number}", (path, number))
    return dict(sorted(found.items()))


def tune_numbers(path: Path) -> list[int]:
    """The reference numbers (X:) of the tunes of an ABC book, in its order."""
    numbers = []
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("X:") and line[2:].strip().isdigit():
            numbers.append(int(line[2:].strip()))
    return numbers


def bach_sources() -> list[Path]:
    return sorted(sources("bach").values())


def export(source: Path, out: Path) -> str | None:
    """Write one corpus piece as MIDI (its notes, not its chord symbols); returns an error string
    or None. music21 plays the repeats out; where they are badly formed, the piece is written as
    notated, without them."""
    return _export(source, out)[0]


def _export(source: Path | tuple[Path, int], out: Path) -> tuple[str | None, float]:
    """(:func:`export`'s answer, how much shorter than a whole bar the score's first bar is:
    :func:`pickup_quarters`). ``source``: a file, or (a book of tunes, a tune's number)."""
    from music21 import corpus
    from music21.repeat import ExpanderException

    source, number = source if isinstance(source, tuple) else (source, None)
    name = source.name if number is None else f"{source.name} #{number}"
    try:
        score = _without_chord_symbols(corpus.parse(str(source), number=number))
        try:
            score.write("midi", fp=str(out))
        except ExpanderException:
            _without_repeats(score).write("midi", fp=str(out))
        quarters = pickup_quarters(score)
        _pad_pickup(out, quarters)
        return None, quarters
    except Exception as e:  # music21 raises many kinds; one bad piece must not stop the export
        return f"{name}: {type(e).__name__}: {e}", 0.0


def pickup_quarters(score) -> float:
    """How much shorter than a whole bar the score's first bar is, in quarter notes: an anacrusis
    (a chorale's one-beat pickup, a reel's eighth-note lead-in); 0 when the first bar is whole."""
    from music21 import stream

    part = score.parts.first() if score.parts else score
    first = part.getElementsByClass(stream.Measure).first() if part is not None else None
    return float(first.paddingLeft) if first is not None and first.paddingLeft > 0 else 0.0


def _pad_pickup(path: Path, quarters: float) -> None:
    """Move the music of a MIDI file ``quarters`` later, its opening time signature, tempo and
    key staying at the start: a first bar that is an anacrusis becomes a whole bar that begins
    with a rest, so that the bars a reader counts from the start are the score's. music21 writes
    a pickup from the file's first tick, and a MIDI file has no other way to say where its bars
    begin: read back, every bar of the piece began that much early (70% of the Bach chorales
    and 74% of the fiddle tunes have a pickup)."""
    if quarters <= 0:
        return
    import mido

    song = mido.MidiFile(path)
    pad = round(quarters * song.ticks_per_beat)
    for track in song.tracks:
        timed, now = [], 0
        for msg in track:
            now += msg.time
            keep = msg.is_meta and now == 0 and msg.type != "end_of_track"  # the opening's settings
            timed.append((now if keep else now + pad, msg))
        timed.sort(key=lambda item: item[0])  # (stable: the order within a tick stays)
        track[:] = [msg.copy(time=at - before) for (at, msg), before in zip(timed, [0] + [t for t, _ in timed])]
    song.save(path)


def _without_chord_symbols(score):
    """The score without its chord symbols ("G", "D7" over a fiddle tune: music21 would play them
    as chords, and the tune is one line) and without its grace notes (ornaments written with no
    time of their own: played, they land on the note they lead to)."""
    from music21 import harmony, note

    for symbol in list(score.recurse().getElementsByClass(harmony.ChordSymbol)):
        symbol.activeSite.remove(symbol)
    for grace in [n for n in score.recurse().getElementsByClass(note.GeneralNote) if n.duration.isGrace]:
        grace.activeSite.remove(grace)
    return score


def _without_repeats(score):
    """The score with its repeat signs, endings and jumps taken out (played once, as written)."""
    from music21 import bar, repeat, spanner, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = None
    for mark in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        mark.activeSite.remove(mark)
    return score


EXPORT_VERSION = "2"  # 2: pickups written as the end of a whole first bar (see _pad_pickup)
VERSION_FILE = "export-version.txt"


def build(name: str, out_dir: Path, workers: int = 2, limit: int | None = None) -> dict:
    """Export a collection into ``out_dir``/train and /test; pieces already there are kept,
    unless an older version of this export wrote them (then all are written again)."""
    out_dir = Path(out_dir)
    share = BY_NAME[name].test_share
    version = out_dir / VERSION_FILE
    current = version.is_file() and version.read_text().strip() == EXPORT_VERSION
    jobs = []
    for piece, source in list(sources(name).items())[:limit]:
        target = out_dir / split_of(piece, share) / f"{piece}.mid"
        if not current or not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((source, target))
    errors, pickups = [], {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for (_, target), (err, quarters) in zip(jobs, pool.map(_export, *zip(*jobs)) if jobs else []):
            if err:
                errors.append(err)
            else:
                pickups.setdefault(target.parent, {})[target.name] = quarters
    for folder, found in pickups.items():  # (pieces kept from before keep what the file had for them)
        record = folder / PICKUPS_FILE
        known = json.loads(record.read_text()) if record.is_file() and current else {}
        record.write_text(json.dumps(dict(sorted({**known, **found}.items())), indent=0) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    version.write_text(EXPORT_VERSION + "\n")
    counts = {split: len(list((out_dir / split).glob("*.mid"))) for split in ("train", "test")}
    return {"counts": counts, "errors": errors}


def build_bach(out_dir: Path, workers: int = 2, limit: int | None = None) -> dict:
    return build("bach", out_dir, workers, limit)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicgan.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=[*COLLECTIONS, *UNSEEN, "all", "unseen"],
                        help="a collection; all: the four that models learn from; unseen: the three none does")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="export only the first N pieces")
    args = parser.parse_args(argv)
    groups = {"all": list(COLLECTIONS), "unseen": list(UNSEEN)}
    names = groups.get(args.name, [args.name])
    for name in names:
        out = args.out_dir / name if args.name in groups else args.out_dir
        try:
            result = build(name, out, args.workers, args.limit)
        except ImportError:
            print("error: music21 is needed to build the data sets: pip install -r requirements-dev.txt",
                  file=sys.stderr)
            return 2
        for err in result["errors"]:
            print(f"skipped {err}", file=sys.stderr)
        c = result["counts"]
        print(f"{out}: {c['train']} train and {c['test']} test pieces ({BY_NAME[name].about})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
