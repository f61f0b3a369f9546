"""Music other than four-part chorales in 4/4 (slow): chorales in 3/4 and jigs in 6/8 from
music21's corpus (public domain, exported here as the dataset script does), and a piece that
changes metre. A model of each writes pieces whose metre a listener hears."""
from pathlib import Path

import numpy as np
import pytest

from musicgan import api, data, generate, metre, metrics, midi
from musicgan.train import Budget, TrainConfig, Trainer

from conftest import make_midi, meta, off, on

pytestmark = pytest.mark.slow

# chorales in 3/4 (from the training split of the bench's Bach set), and the held-out ones
WALTZ_TRAIN = ["bwv122.6", "bwv130.6", "bwv137.5", "bwv145.5", "bwv153.9", "bwv187.7", "bwv19.7", "bwv194.12",
               "bwv229.2", "bwv269", "bwv282", "bwv299", "bwv306", "bwv320", "bwv321", "bwv326", "bwv327",
               "bwv342", "bwv343", "bwv344", "bwv349", "bwv356", "bwv368", "bwv391"]
WALTZ_HELD_OUT = ["bwv11.6", "bwv266", "bwv295", "bwv366", "bwv390", "bwv400"]


def export(collection: str, names: list, folder: Path) -> list:
    from musicgan import datasets

    sources = datasets.sources(collection)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (folder / f"{name}.mid").exists():
            assert datasets.export(sources[name], folder / f"{name}.mid") is None
    return data.load([folder / f"{name}.mid" for name in names], "auto", cache_dir=False).rolls


def jig_names() -> list:
    from musicgan import datasets

    return [name for name in datasets.sources("fiddle") if name.endswith("Jig")]


@pytest.mark.parametrize("name,collection,pickup_steps", [("bwv1.6", "bach", 4), ("ryansMammoth-AcaciaReel", "fiddle", 2),
                                                          ("bwv10.7", "bach", 0)])
def test_a_pickup_is_exported_as_the_end_of_a_whole_first_bar(name, collection, pickup_steps, tmp_path):
    # a MIDI file cannot say that its first bar is short: written from its first tick, an
    # anacrusis would move every bar line of the piece, read back, by its length
    from music21 import corpus

    from musicgan import datasets

    source = datasets.sources(collection)[name]
    assert datasets.export(source, tmp_path / "padded.mid") is None
    datasets._without_chord_symbols(corpus.parse(str(source))).write("midi", fp=str(tmp_path / "as-written.mid"))
    padded, written = midi.read(tmp_path / "padded.mid"), midi.read(tmp_path / "as-written.mid")
    bar = metre.bar_steps(padded.time_signatures[0][1:], padded.steps_per_beat)
    assert padded.time_signatures == written.time_signatures and len(padded.time_signatures) == 1
    shift = bar - pickup_steps if pickup_steps else 0
    assert padded.notes[:, 1].min() == shift  # the pickup ends the first bar, after a rest
    moved = written.notes.copy()
    moved[:, 1:3] += shift
    assert np.array_equal(padded.notes, moved)  # every note moved by as much, nothing else


def test_a_book_of_tunes_is_exported_a_tune_at_a_time(tmp_path):
    """O'Neill's Music of Ireland comes as ABC books of many tunes: every 8th is a piece of the
    unseen folk collection, read from its book by number, with its own metre and pickup."""
    from musicgan import datasets

    sources = datasets.sources("folk")
    book, number = sources["oneills1850-0001-0050-1"]
    assert sources["oneills1850-0001-0050-9"] == (book, 9) and "oneills1850-0001-0050-2" not in sources
    assert datasets.tune_numbers(book)[:3] == [1, 2, 3]
    # tune 2, Fare You Well (2/4, a pickup of an eighth), and tune 5 (6/8, a pickup of an eighth)
    two, pickup_two = datasets._export((book, 2), tmp_path / "2.mid")
    five, pickup_five = datasets._export((book, 5), tmp_path / "5.mid")
    assert two is None and five is None and (pickup_two, pickup_five) == (1.5, 2.5)  # (the rests before them)
    a, b = midi.read(tmp_path / "2.mid"), midi.read(tmp_path / "5.mid")
    assert (a.time_signatures, b.time_signatures) == (((0, 2, 4),), ((0, 6, 8),))
    assert a.notes[:, 1].min() == 6 and b.notes[:, 1].min() == 10  # (the pickups end whole first bars)
    assert midi.sounding_counts(a.notes).max() == midi.sounding_counts(b.notes).max() == 1
    assert len(a.notes) > 40 and len(b.notes) > 40
    # a tune music21 cannot write is a line to report, with its number
    error, _ = datasets._export((book, 1), tmp_path / "1.mid")
    assert error.startswith("0001-0050.abc #1: StreamException")


def test_a_collection_written_by_an_older_export_is_written_again(tmp_path):
    from musicgan import datasets

    first = datasets.build("trecento", tmp_path, workers=1, limit=2)
    assert sum(first["counts"].values()) == 2 and not first["errors"]
    piece = next(tmp_path.glob("*/*.mid"))
    piece.write_bytes(b"kept")
    datasets.build("trecento", tmp_path, workers=1, limit=2)
    assert piece.read_bytes() == b"kept"  # written by this export: kept as it is
    (tmp_path / datasets.VERSION_FILE).write_text("1")
    datasets.build("trecento", tmp_path, workers=1, limit=2)
    assert piece.read_bytes()[:4] == b"MThd"  # by an older one: written again


def test_the_export_records_each_scores_pickup(tmp_path):
    """pickups.json: how much shorter than a whole bar each score's first bar is; the export put
    that much rest before the music, and a build that keeps pieces keeps what it recorded."""
    import json

    from musicgan import datasets

    datasets.build("bach", tmp_path, workers=1, limit=4)
    records = {}
    for folder in tmp_path.glob("*/"):
        for name, quarters in json.loads((folder / datasets.PICKUPS_FILE).read_text()).items():
            records[name] = quarters
            if quarters:
                assert midi.read(folder / name, 4).notes[:, 1].min() == round(4 * quarters)
    assert len(records) == 4 and 0 < sum(q > 0 for q in records.values()) < 4
    for piece in tmp_path.glob("*/*.mid"):
        piece.unlink()
        break
    datasets.build("bach", tmp_path, workers=1, limit=4)  # (writes the one piece again)
    again = {}
    for folder in tmp_path.glob("*/"):
        again.update(json.loads((folder / datasets.PICKUPS_FILE).read_text()))
    assert again == records


@pytest.fixture(scope="module")
def waltzes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("waltzes")
    return export("bach", WALTZ_TRAIN, folder / "train"), export("bach", WALTZ_HELD_OUT, folder / "test")


@pytest.fixture(scope="module")
def jigs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jigs")
    names = jig_names()[:80]
    rolls = export("fiddle", names, folder)
    in_six_eight = [r for r in rolls if r.time_signatures == ((0, 6, 8),)]
    return in_six_eight[:-8], in_six_eight[-8:]


def trained(rolls, steps: int, path: Path):
    trainer = Trainer(rolls, config=TrainConfig(), device="cpu", budget=Budget(steps=steps))
    trainer.run()
    trainer.save(path)
    return api.load_model(path)


def metre_heard(model, held_out, pieces: int = 48, bars: int = 8):
    rolls = generate.sample_rolls(model.generator, range(pieces), bars, **model.sampling)
    clips, reference = data.clips(rolls, 4), data.clips(held_out, 4)
    return (rolls, metrics.profile_correlation(clips, reference),
            np.mean([metrics.groove_consistency(c) for c in clips]) -
            np.mean([metrics.groove_consistency(c) for c in reference]))


@pytest.mark.parametrize("corpus,written,steps", [("waltzes", (3, 4), 600), ("jigs", (6, 8), 1200)])
def test_a_model_of_waltzes_or_jigs_writes_a_metre_a_listener_hears(corpus, written, steps, request, tmp_path):
    train, held_out = request.getfixturevalue(corpus)
    assert all(r.time_signatures[0][1:] == written for r in train)
    model = trained(train, steps, tmp_path / corpus)
    assert model.model.metres == (written,)
    rolls, correlation, groove_gap = metre_heard(model, held_out)
    assert all(r.time_signatures == ((0, *written),) for r in rolls)  # written in the music's metre
    assert correlation >= 0.9, f"the onsets fall over the bar unlike the music's (correlation {correlation:.2f})"
    assert abs(groove_gap) <= 0.03, f"bar-to-bar rhythm {groove_gap:+.3f} from the music's"


def test_one_line_of_music_trains_and_plays_one_line(jigs, tmp_path):
    train, _ = jigs
    model = trained(train[:12], 20, tmp_path / "tunes")
    assert model.model.voices == 1
    piece = api.compose(model, seed=3, bars=4, audio=False)
    roll = midi.read(piece.midi)
    assert len(roll.notes) > 4 and metrics.polyphony_rate(roll) == 0.0 and roll.time_signatures == ((0, 6, 8),)


def changing(bars_of_three: int, bars_of_two: int, first: int = 60) -> bytes:
    """A tune of quarter notes: some bars of 3/4, then bars of 2/4 (the file says where)."""
    events = [(0, meta("time_signature", numerator=3, denominator=4))]
    for beat in range(3 * bars_of_three):
        events += [(0, on(first + (beat * 5) % 12)), (480, off(first + (beat * 5) % 12))]
    events += [(0, meta("time_signature", numerator=2, denominator=4))]
    for beat in range(2 * bars_of_two):
        events += [(0, on(first + (beat * 7) % 12)), (480, off(first + (beat * 7) % 12))]
    return make_midi([events])


def test_pieces_that_change_metre_train_and_keep_their_changes(tmp_path):
    files = []
    for i in range(6):
        path = tmp_path / f"changing{i}.mid"
        path.write_bytes(changing(8 + i, 8 + 2 * i, 55 + i))
        files.append(path)
    rolls = data.load(files, cache_dir=False).rolls
    assert all(len(r.time_signatures) == 2 for r in rolls)
    trainer = Trainer(rolls, config=TrainConfig(batch_size=8, transpose=0), device="cpu", budget=Budget(steps=4))
    assert set(trainer.model.metres) == {(3, 4), (2, 4)}
    # windows across the change carry both metres, each step at its place in its own bar
    codes = trainer.data.codes.numpy()
    P = trainer.model.longest_bar
    assert ((codes // P == 0).any(1) & (codes // P == 1).any(1)).any()
    trainer.run()
    trainer.save(tmp_path / "model")
    model = api.load_model(tmp_path / "model")
    assert {metre.name(generate.metre_for(s, model.generator)) for s in range(20)} == {"3/4", "2/4"}
