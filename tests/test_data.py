"""musicgan.data: files, folders and zips -> rolls -> windows; zip safety; the cache."""
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from musicgan import data
from musicgan.data import Limits, WindowConfig, Windows

from conftest import EXAMPLES, ROOT, make_midi, on, off


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "music"
    (root / "deep" / "er").mkdir(parents=True)
    shutil.copy(EXAMPLES[0], root / EXAMPLES[0].name)
    shutil.copy(EXAMPLES[1], root / "deep" / "er" / "SECOND.MIDI")
    (root / "readme.txt").write_text("ignored")
    (root / "broken.mid").write_bytes(b"MThd\x00")
    return root


def test_folders_are_walked_recursively(folder):
    corpus = data.load([folder], cache_dir=False)
    assert sorted(corpus.report.read) == sorted([EXAMPLES[0].name, "SECOND.MIDI"])
    assert corpus.report.skipped == [("broken.mid", "truncated (the MIDI header is incomplete)")]
    assert corpus.report.notes == sum(len(r.notes) for r in corpus.rolls)


def test_links_to_files_are_read_and_linked_folders_are_not_walked(folder, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    (links / "linked.mid").symlink_to(folder / EXAMPLES[0].name)
    (links / "loop").symlink_to(links, target_is_directory=True)  # walking it would never end
    (links / "elsewhere").symlink_to(folder / "deep", target_is_directory=True)
    corpus = data.load([links], cache_dir=False)
    assert corpus.report.read == ["linked.mid"] and corpus.report.skipped == []


def test_report_counts_bars_and_formats_in_words():
    corpus = data.load(EXAMPLES, cache_dir=False)
    report = corpus.report
    assert len(report.read) == len(EXAMPLES) and not report.skipped
    assert report.bars == pytest.approx(sum(r.n_bars for r in corpus.rolls))
    assert f"{len(EXAMPLES)} file(s) read, 0 skipped" in report.format()
    assert report.to_dict()["files_read"] == len(EXAMPLES)


def test_the_report_names_the_grid_the_music_was_read_on(tmp_path):
    """Triplet quavers: on 4 steps a beat two of each three move, and the grid read "auto" is 12."""
    events = []
    for i in range(24):
        events += [(0, on(60 + i % 5)), (160, off(60 + i % 5))]
    path = tmp_path / "triplets.mid"
    path.write_bytes(make_midi([events]))
    coarse = data.load([path], 4, cache_dir=False).report
    assert coarse.steps_per_beat == 4 and coarse.off_grid == (16, 16)
    assert "grid: 4 steps a beat; it moves the onsets of 16 notes (66.7%), 100% of them triplets" in coarse.format()
    fine = data.load([path], "auto", cache_dir=False).report
    assert fine.steps_per_beat == 12 and fine.off_grid == (0, 0) and fine.to_dict()["steps_per_beat"] == 12
    assert "grid: 12 steps a beat; it moves the onsets of 0 notes (0.0%)" in fine.format()


def test_missing_path_is_reported_not_raised(tmp_path):
    corpus = data.load([tmp_path / "nothing-here"], cache_dir=False)
    assert corpus.rolls == [] and "no such file" in corpus.report.skipped[0][1]


def test_drum_notes_are_reported():
    path_data = make_midi([[(0, on(60)), (0, on(36, ch=9)), (480, off(60)), (0, off(36, ch=9))]])
    corpus = data.load([_write(path_data)], cache_dir=False)
    assert corpus.report.drum_notes == 1
    assert "drum notes left out" in corpus.report.format()


def _write(blob, name="x.mid"):
    import tempfile, pathlib
    path = pathlib.Path(tempfile.mkdtemp()) / name
    path.write_bytes(blob)
    return path


# --------------------------------------------------------------------------- zip archives

def make_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in members:
            z.writestr(name, blob)
    return path


def test_zip_members_are_read(tmp_path):
    z = make_zip(tmp_path / "set.zip", [(f"chorales/{p.name}", p.read_bytes()) for p in EXAMPLES[:3]])
    corpus = data.load([z], cache_dir=False)
    assert len(corpus.rolls) == 3
    assert corpus.report.read[0].startswith("set.zip/chorales/")


def test_zip_path_traversal_and_absolute_names_are_skipped(tmp_path):
    good = EXAMPLES[0].read_bytes()
    z = make_zip(tmp_path / "evil.zip", [("../../escape.mid", good), ("/etc/abs.mid", good), ("ok.mid", good)])
    corpus = data.load([z], cache_dir=False)
    assert corpus.report.read == ["evil.zip/ok.mid"]
    reasons = dict(corpus.report.skipped)
    assert "unsafe path" in reasons["evil.zip/../../escape.mid"]
    assert "unsafe path" in reasons["evil.zip//etc/abs.mid"]
    assert not (tmp_path.parent / "escape.mid").exists()


def test_zip_bomb_is_refused_without_reading_it(tmp_path):
    bomb = make_zip(tmp_path / "bomb.zip", [("huge.mid", b"MThd" + b"\0" * 3_000_000)])
    corpus = data.load([bomb], cache_dir=False)
    assert corpus.rolls == [] and "zip bomb" in corpus.report.skipped[0][1]


def test_zip_total_size_and_member_count_are_capped(tmp_path):
    members = [(f"{i}.mid", p.read_bytes()) for i, p in enumerate(EXAMPLES)]
    z = make_zip(tmp_path / "many.zip", members)
    few = data.load([z], cache_dir=False, limits=Limits(max_zip_members=3))
    assert few.rolls == [] and "entries" in few.report.skipped[0][1]
    small = data.load([z], cache_dir=False, limits=Limits(max_zip_bytes=5_000))
    assert 0 < len(small.rolls) < len(EXAMPLES)
    assert any("more than" in reason for _, reason in small.report.skipped)


def test_nested_archives_and_non_midi_members_are_skipped(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", [("a.mid", EXAMPLES[0].read_bytes())]).read_bytes()
    z = make_zip(tmp_path / "outer.zip", [("inner.zip", inner), ("notes.txt", b"hi"), ("b.mid", EXAMPLES[1].read_bytes())])
    corpus = data.load([z], cache_dir=False)
    assert corpus.report.read == ["outer.zip/b.mid"]
    reasons = dict(corpus.report.skipped)
    assert "nested archive" in reasons["outer.zip/inner.zip"]
    assert "not a MIDI file name" in reasons["outer.zip/notes.txt"]


def test_a_file_that_is_not_a_zip_is_reported(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not really")
    corpus = data.load([fake], cache_dir=False)
    assert "not a readable zip" in corpus.report.skipped[0][1]


# --------------------------------------------------------------------------- cache

def test_cache_serves_the_second_load_by_content(tmp_path):
    cache = tmp_path / "c"
    first = data.load(EXAMPLES, cache_dir=cache)
    assert first.report.cached == 0
    renamed = tmp_path / "renamed.mid"
    shutil.copy(EXAMPLES[0], renamed)
    second = data.load(EXAMPLES + [renamed], cache_dir=cache)
    assert second.report.cached == len(EXAMPLES) + 1
    assert second.rolls[-1].name == "renamed.mid"
    for a, b in zip(first.rolls, second.rolls):
        assert np.array_equal(a.notes, b.notes) and a.tempos == b.tempos and a.time_signatures == b.time_signatures


def test_cache_remembers_failures_and_survives_corrupt_entries(tmp_path):
    cache = tmp_path / "c"
    bad = _write(b"not midi at all", "bad.mid")
    assert data.load([bad], cache_dir=cache).report.skipped[0][1].startswith("not a MIDI file")
    assert data.load([bad], cache_dir=cache).report.skipped[0][1].startswith("not a MIDI file")
    for entry in cache.rglob("*"):
        if entry.is_file():
            entry.write_bytes(b"garbage")
    again = data.load(EXAMPLES[:2] + [bad], cache_dir=cache)
    assert len(again.rolls) == 2 and again.report.cached == 0


# --------------------------------------------------------------------------- windows

def test_windows_have_fixed_length_and_hop():
    rolls = data.load(EXAMPLES, cache_dir=False).rolls
    cfg = WindowConfig(window_bars=2, hop_bars=1)
    windows = Windows(rolls, cfg)
    assert len(windows) > 50
    onset, sustain = windows.pianorolls(range(5))
    assert onset.shape == (5, 32, 128)
    starts = [s for r, s, _ in windows.index if r == 0]
    assert starts[:3] == [0, 16, 32]
    w = windows[1]
    assert w.notes[:, 1].min() >= 0 and w.notes[:, 2].max() <= 32


def test_window_content_matches_the_source_roll():
    roll = data.load(EXAMPLES[:1], cache_dir=False).rolls[0]
    windows = Windows([roll], WindowConfig(window_bars=1))
    onset, sustain = roll.pianoroll()
    w_onset, w_sustain = windows.pianorolls([1])
    assert np.array_equal(w_sustain[0], sustain[16:32])


def test_transposition_augmentation_stays_in_range():
    rolls = data.load(EXAMPLES, cache_dir=False).rolls
    plain = Windows(rolls, WindowConfig(pitch_range=(36, 84)))
    augmented = Windows(rolls, WindowConfig(transpose=(-3, 3), pitch_range=(36, 84)))
    assert len(plain) < len(augmented) <= 7 * len(plain)
    for i in range(0, len(augmented), 37):
        notes = augmented[i].notes
        assert notes[:, 0].min() >= 36 and notes[:, 0].max() <= 84
    assert set(augmented.index[:, 2]) == set(range(-3, 4))


def test_windows_are_deterministic_and_skip_silence():
    roll_data = make_midi([[(0, on(60)), (480, off(60)), (480 * 7, on(62)), (1920, off(62))]])
    rolls = data.load([_write(roll_data)], cache_dir=False).rolls
    windows = Windows(rolls, WindowConfig(window_bars=1))
    assert [s for _, s, _ in windows.index] == [0, 32]  # bar 2 is silent
    again = Windows(data.load(EXAMPLES, cache_dir=False).rolls, WindowConfig(transpose=(-1, 1)))
    assert np.array_equal(again.index, Windows(data.load(EXAMPLES, cache_dir=False).rolls,
                                                WindowConfig(transpose=(-1, 1))).index)


# --------------------------------------------------------------------------- CLI

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "musicgan", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_cli_stats_reads_every_example():
    result = run_cli("stats", "examples/")
    assert result.returncode == 0, result.stderr
    every = len(list((ROOT / "examples").rglob("*.mid")))  # the chorales and the melodies to harmonise
    assert result.stdout.startswith(f"{every} file(s) read, 0 skipped")


def test_cli_stats_json():
    import json
    result = run_cli("stats", "examples/", "--json")
    report = json.loads(result.stdout)
    assert report["files_read"] == len(list((ROOT / "examples").rglob("*.mid"))) and report["files_skipped"] == 0


@pytest.mark.parametrize("blob,reason", [
    (b"", "empty"),
    (b"just some text", "not a MIDI file"),
    (EXAMPLES[0].read_bytes()[:600], "truncated"),
    (make_midi([[(0, on(36, ch=9)), (240, off(36, ch=9))]]), "only drums"),
    (make_midi([[]]), "no notes"),
], ids=["empty", "text", "truncated", "drums", "no-notes"])
def test_cli_bad_files_give_one_line_reason_and_no_traceback(tmp_path, blob, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(blob)
    result = run_cli("stats", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    skipped = [line for line in result.stdout.splitlines() if "skipped bad.mid" in line]
    assert len(skipped) == 1 and reason in skipped[0]
    assert "no usable MIDI" in result.stderr


def test_the_voice_count_keeps_the_notes_of_nearly_every_step():
    from musicgan.voices import voices_needed

    def chords(sizes):  # one quarter note (4 steps) per chord, ``size`` notes each
        return np.array([(60 + 3 * k, 4 * i, 4 * i + 4, 80) for i, size in enumerate(sizes) for k in range(size)])

    assert voices_needed([chords([4] * 90 + [5] * 10)]) == 5  # a fifth part on 10% of the steps
    assert voices_needed([chords([4] * 98 + [5] * 2)]) == 4  # ... on 2%: not worth a voice
    assert voices_needed([chords([1] * 50), chords([2] * 50)]) == 2  # counted over all pieces
    assert voices_needed([chords([12] * 10)]) == 6  # at most 6 by itself
    assert voices_needed([np.zeros((0, 4))]) == 1
    assert voices_needed(r.notes for r in data.load(EXAMPLES).rolls) == 4  # four-part chorales
