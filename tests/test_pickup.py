"""musicgan.pickup: a pickup that a file does not mark is found, and the first bar made whole."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from musicgan import api, data, midi, pickup
from musicgan.midi import Roll

from conftest import EXAMPLES, ROOT, pickup_rest


def written_without_the_rest(path, folder):
    """The example chorale ``path`` as a file that does not mark its pickup (its music from the
    first tick), and the steps of rest taken off (on a grid of 4 steps a beat)."""
    roll, rest = pickup.as_written(midi.read(path, 4))
    out = folder / path.name
    midi.write(roll, out)
    return out, rest


def test_padding_moves_the_music_and_keeps_the_opening_settings():
    roll = Roll(np.array([[60, 0, 4, 80], [64, 4, 12, 80]], np.int32), tempos=((0, 100.0), (16, 90.0)),
                time_signatures=((0, 3, 4), (24, 4, 4)), name="x")
    moved = pickup.padded(roll, 8)
    assert moved.notes[:, :3].tolist() == [[60, 8, 12], [64, 12, 20]]
    assert moved.tempos == ((0, 100.0), (24, 90.0)) and moved.time_signatures == ((0, 3, 4), (32, 4, 4))
    assert pickup.padded(roll, 0) is roll


def test_the_finder_puts_the_example_chorales_bars_where_bach_wrote_them():
    """Six of the ten open with a one-beat pickup (their export writes a rest before it), four do
    not: taken off, the finder puts back exactly the rest that was there, and no other."""
    answers, found = [], []
    for path in EXAMPLES:
        roll, rest = pickup.as_written(midi.read(path, 4))
        answers.append(rest)
        found.append(pickup.find(roll).steps)
    assert sum(a > 0 for a in answers) == 6 and found == answers


def test_music_that_begins_after_a_rest_is_read_as_written():
    padded = [midi.read(path, 4) for path in EXAMPLES]
    padded = [roll for roll in padded if roll.notes[:, 1].min() > 0]  # (their pickups, written as rests)
    assert len(padded) == 6 and all(pickup.find(roll) == pickup.Found(0, 0.0, 0.0) for roll in padded)
    empty = Roll(np.zeros((0, 4), np.int32))
    assert pickup.find(empty).steps == 0
    long_bar = Roll(np.array([[60, 0, 4, 80]] * 1, np.int32), time_signatures=((0, 13, 4),))
    assert pickup.find(long_bar).steps == 0  # (a bar longer than the finder knows)


class Hears(pickup.BarFinder):
    """A finder that hears every piece's bars ``shift`` steps later than written (4/4 on GRID)."""

    def __init__(self, shift: int):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        t = np.arange(x.shape[1])
        logits = np.full((1, x.shape[1], pickup.MAX_BAR), -10.0, np.float32)
        logits[0, t, (t + self.shift) % 16] = 10.0
        return torch.from_numpy(logits)


def test_a_shift_that_takes_the_long_notes_off_the_bar_lines_is_not_taken():
    """However sure the finder is: a polonaise's accents off the beat can sound to it like a
    pickup's, but bars whose long notes fall on their first beat are barred as written."""
    bar_lines = [[60, b * 16, b * 16 + 8, 80] for b in range(8)] + \
                [[62 + k, b * 16 + 8 + 4 * k, b * 16 + 12 + 4 * k, 80] for b in range(8) for k in range(2)]
    even = [[60 + b % 5, b * 4, b * 4 + 4, 80] for b in range(32)]  # (quarter notes: no beat the longer)
    finder = Hears(12)  # (a one-beat pickup: the music 3 beats later)
    for notes, moved in ((bar_lines, False), (even, True)):
        roll = Roll(np.array(notes, np.int32), time_signatures=((0, 4, 4),), steps_per_beat=4)
        time = pickup.downbeat_time(roll)
        assert (time[12] < pickup.DOWNBEAT_FLOOR * time[0]) == (not moved)
        found = pickup.find(roll, finder)
        assert found.margin > pickup.MARGIN and found.steps == (12 if moved else 0)
        assert pickup.find(roll, finder, downbeat_floor=0).steps == 12


def test_the_finder_is_the_same_on_a_finer_grid(tmp_path):
    """Read on 12 steps a beat (music with triplets), the same pickup, in that grid's steps."""
    path, rest = written_without_the_rest(EXAMPLES[1], tmp_path)
    assert rest == 12  # (bwv253: a one-beat pickup in 4/4)
    assert pickup.find(midi.read(path, 12)) == pickup.Found(36, 1.0, pickup.find(midi.read(path, 4)).margin)


def test_load_finds_and_reports_the_pickups(tmp_path):
    copies = [written_without_the_rest(p, tmp_path) for p in EXAMPLES]
    corpus = data.load([tmp_path], cache_dir=False)
    as_exported = data.load(EXAMPLES, cache_dir=False, find_pickups=False)
    for got, want in zip(corpus.rolls, as_exported.rolls):
        assert np.array_equal(got.notes, want.notes) and got.time_signatures == want.time_signatures
    names = [p.name for p, rest in copies if rest]
    assert corpus.report.pickups == [(name, 1.0) for name in names]  # (one beat: of 4/4, and of 3/4 in bwv306)
    assert "pickups: 6 of 10 file(s) open with a pickup" in corpus.report.format()
    assert corpus.report.to_dict()["pickups"][0] == {"file": names[0], "beats": 1.0}
    written = data.load([tmp_path], cache_dir=False, find_pickups=False)
    assert not written.report.pickups and all(int(r.notes[:, 1].min()) == 0 for r in written.rolls)
    assert "pickups" not in written.report.format()


def test_the_cli_says_what_it_found_and_can_read_the_bars_as_written(tmp_path):
    for path in EXAMPLES[:3]:
        written_without_the_rest(path, tmp_path)
    run = lambda *flags: subprocess.run([sys.executable, "-m", "musicgan", "stats", str(tmp_path), "--json", *flags],  # noqa: E731
                                        capture_output=True, text=True, cwd=ROOT, timeout=120)
    found, as_written = run("--no-cache"), run("--no-cache", "--bars-as-written")
    assert found.returncode == 0 and as_written.returncode == 0, found.stderr + as_written.stderr
    assert len(json.loads(found.stdout)["pickups"]) == 2 and json.loads(as_written.stdout)["pickups"] == []


@pytest.mark.parametrize("seed", range(20))
def test_the_finder_takes_any_music(seed):
    """Random notes in any bar the reader gives: a pickup shorter than a bar, or none; no error."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    starts = np.sort(rng.integers(0, 400, n))
    starts -= starts[0]
    notes = np.stack([rng.integers(0, 128, n), starts, starts + rng.integers(1, 20, n), rng.integers(1, 128, n)], 1)
    metre = [(4, 4), (3, 4), (6, 8), (2, 2), (5, 4), (7, 8), (12, 8), (1, 16)][seed % 8]
    roll = Roll(notes.astype(np.int32), steps_per_beat=[4, 12, 8][seed % 3], time_signatures=((0, *metre),))
    found = pickup.find(roll)
    assert 0 <= found.steps < roll.steps_per_bar and found == pickup.find(roll)


@pytest.mark.parametrize("voice", ["top", "bottom"])
def test_a_line_whose_file_does_not_mark_its_pickup_is_harmonised_in_its_bars(tmp_path, voice):
    path, rest = written_without_the_rest(EXAMPLES[1], tmp_path)  # (bwv253: a one-beat pickup)
    model = api.load_model()
    piece = api.compose_harmonisation(model, path, seed=2, audio=False, voice=voice)
    assert "(its pickup of 1 beat found)" in piece.description
    # written from the pickup found, in a short first bar; read back, the first bar: a rest, then the pickup
    assert piece.roll.notes[piece.given][:, 1].min() == 0 == piece.roll.notes[:, 1].min() and pickup_rest(piece.roll) == rest
    assert midi.read(piece.midi).notes[:, 1].min() == rest
    as_written = api.compose_harmonisation(model, path, seed=2, audio=False, voice=voice, find_pickups=False)
    assert "pickup" not in as_written.description and as_written.roll.notes[:, 1].min() == 0


def test_an_opening_whose_file_does_not_mark_its_pickup_is_continued_in_its_bars(tmp_path):
    path, rest = written_without_the_rest(EXAMPLES[2], tmp_path)
    piece = api.compose_continuation(None, path.read_bytes(), seed=1, bars=2, audio=False)
    assert "(its pickup of 1 beat found)" in piece.description and pickup_rest(piece.roll) == rest
    assert piece.roll.notes[:, 1].min() == 0 and midi.read(piece.midi).notes[:, 1].min() == rest
