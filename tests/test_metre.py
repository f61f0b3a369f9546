"""Metre: bar lines and positions from time signatures, windows on bar lines, and metre written back."""
import numpy as np
import pytest

from musicgan import data, given, metre, midi
from musicgan.midi import Roll
from musicgan.models import ModelConfig

from conftest import make_midi, meta, off, on


def test_bar_lengths_follow_the_time_signature():
    assert [metre.bar_steps(m, 4) for m in ((4, 4), (3, 4), (6, 8), (2, 2), (4, 2), (9, 8), (3, 8))] == \
        [16, 12, 12, 16, 32, 18, 6]


def test_a_change_of_metre_starts_a_bar_where_it_changes():
    signatures = ((0, 3, 4), (36, 2, 4), (52, 6, 8))  # 3 bars of 3/4, 2 of 2/4, then 6/8
    assert metre.bar_lines(signatures, 76, 4).tolist() == [0, 12, 24, 36, 44, 52, 64]
    position, which, metres = metre.positions(signatures, 70, 4)
    assert metres == [(3, 4), (2, 4), (6, 8)]
    assert position[[0, 11, 12, 36, 43, 44, 52, 63, 64]].tolist() == [0, 11, 0, 0, 7, 0, 0, 11, 0]
    assert which[[35, 36, 52]].tolist() == [0, 1, 2]
    assert metre.metre_at(signatures, 40) == (2, 4)


def test_metres_parse_and_refuse():
    assert metre.parse("6/8") == (6, 8) and metre.name((6, 8)) == "6/8"
    for bad in ("6", "3/5", "a/b", "0/4"):
        with pytest.raises(ValueError, match="not a metre"):
            metre.parse(bad)


def test_a_metre_is_alike_another_when_its_bars_are_as_long_and_beat_the_same_way():
    assert metre.alike((2, 2), [(3, 4), (4, 4)]) == (4, 4) and metre.alike((4, 8), [(2, 4)]) == (2, 4)
    assert metre.alike((12, 8), [(6, 4)]) == (6, 4)
    for mine, known in (((6, 8), [(3, 4)]), ((3, 2), [(6, 4)]), ((2, 4), [(4, 4)]), ((5, 4), [(4, 4), (3, 4)])):
        assert metre.alike(mine, known) is None


def test_a_metre_is_read_as_one_alike_or_as_two_bars_or_half_a_bar_of_one():
    chorales = [(4, 4), (3, 4)]
    assert metre.read_as((2, 2), [(2, 4), (4, 4)]) == (4, 4)  # (as long comes first)
    assert metre.read_as((2, 4), chorales) == (4, 4) and metre.read_as((6, 4), chorales) == (3, 4)
    assert metre.read_as((3, 8), [(6, 8)]) == (6, 8) and metre.read_as((6, 8), [(3, 8)]) == (3, 8)
    assert metre.read_as((4, 4), [(2, 4)]) == (2, 4) and metre.read_as((12, 8), [(6, 8)]) == (6, 8)
    for mine, known in (((6, 8), chorales), ((9, 8), [(3, 8)]), ((3, 4), [(6, 8)]), ((5, 4), chorales)):
        assert metre.read_as(mine, known) is None  # (9/8 halves inside a beat; 6/8 is in twos)


def test_a_pickup_leads_into_the_bar_line_of_the_metre_it_is_read_in():
    cfg = ModelConfig(metres=((4, 4), (3, 4)))  # (4 steps a beat)
    roll = lambda first, ts: Roll(np.array([[60, first, first + 4, 80]], np.int32), time_signatures=((0, *ts),))  # noqa: E731
    assert given.lead(cfg, roll(4, (2, 4)), (4, 4)) == 8  # (a one-beat pickup: on beat 4, not beat 2)
    assert given.lead(cfg, roll(0, (2, 4)), (4, 4)) == 0 and given.lead(cfg, roll(12, (4, 4)), None) == 0
    assert given.lead(cfg, roll(12, (4, 4)), (2, 4)) == -8  # (the empty half of its bar left out)
    assert given.lead(cfg, roll(4, (4, 4)), (2, 4)) == 0  # (a pickup of three beats)
    assert given.lead(cfg, roll(20, (2, 2)), (4, 4)) == -16  # (a whole bar of rest left out)
    read, read_as, lead, written, swung = given.in_known_metres(cfg, roll(4, (2, 4)))
    assert read_as == {(2, 4): (4, 4)} and lead == 8 and written == ((0, 2, 4),) and not swung
    assert read.time_signatures == ((0, 4, 4),) and read.notes[0, 1] == 12


def test_a_roll_moved_earlier_is_cut_at_its_start_and_keeps_the_settings_in_force_there():
    roll = Roll(np.array([[60, 0, 6, 80], [64, 4, 12, 80], [67, 12, 16, 80]], np.int32), tempos=((0, 100.0), (8, 90.0)),
                time_signatures=((0, 3, 4), (4, 2, 4), (12, 4, 4)), length=20)
    moved = roll.later(-8)
    assert moved.notes[:, :3].tolist() == [[64, 0, 4], [67, 4, 8]] and moved.length == 12
    assert moved.tempos == ((0, 90.0),) and moved.time_signatures == ((0, 2, 4), (4, 4, 4))
    assert roll.later(8).later(-8).notes.tolist() == roll.notes.tolist() and roll.later(0) is roll


def test_step_codes_give_each_metre_its_own_positions():
    cfg = ModelConfig(metres=((3, 4), (6, 8), (4, 4)))
    codes = cfg.step_codes(((0, 3, 4), (24, 6, 8)), 40)
    assert codes[:12].tolist() == list(range(12)) and codes[12] == 0
    assert codes[24] == cfg.longest_bar and codes[35] == cfg.longest_bar + 11 and codes[36] == cfg.longest_bar
    assert (cfg.step_codes(((0, 5, 4),), 8) == -1).all()  # a metre the model does not know
    # a model from before metres counts 4/4 bars from the first step, whatever the piece says
    legacy = ModelConfig.from_dict({"voices": 4})
    assert not legacy.metre_input and legacy.metres == ((4, 4),)
    assert legacy.step_codes(((0, 3, 4),), 20).tolist() == list(range(16)) + [0, 1, 2, 3]


def waltz_then_march() -> Roll:
    """A quarter note on every beat: 4 bars of 3/4, then 4 bars of 2/4 (the file says so)."""
    events = [(0, meta("time_signature", numerator=3, denominator=4))]
    notes = []
    for beat in range(12):
        notes += [(0, on(60 + beat % 3 * 4)), (480, off(60 + beat % 3 * 4))]
    notes += [(0, meta("time_signature", numerator=2, denominator=4))]
    for beat in range(8):
        notes += [(0, on(67 - beat % 2 * 7)), (480, off(67 - beat % 2 * 7))]
    return midi.read(make_midi([events + notes]))


def test_a_piece_that_changes_metre_keeps_its_changes():
    roll = waltz_then_march()
    assert roll.time_signatures == ((0, 3, 4), (48, 2, 4))
    assert midi.read(midi.to_midi_bytes(roll)).time_signatures == roll.time_signatures
    clips = data.clips([roll], bars=2)
    assert [c.n_steps for c in clips] == [24, 24, 16, 16]
    assert clips[2].time_signatures == ((0, 2, 4),)


def test_windows_start_on_the_pieces_own_bar_lines():
    roll = waltz_then_march()
    config = data.WindowConfig(follow_metre=True, length=24)
    windows = data.Windows([roll], config)
    assert windows.index[:, 1].tolist() == [0, 12, 24, 36, 48, 56]
    crossing = windows[3]  # from bar 4 of 3/4 into the 2/4 bars
    assert crossing.time_signatures == ((0, 3, 4), (12, 2, 4))
    cfg = ModelConfig(metres=((3, 4), (2, 4)))
    codes = windows.step_codes(cfg)
    assert codes[3, :12].tolist() == list(range(12)) and codes[3, 12] == cfg.longest_bar
    # models from before metres: 4/4 bars from the first step, whatever the file says
    legacy = data.Windows([roll], data.WindowConfig(window_bars=1))
    assert legacy.index[:, 1].tolist() == [0, 16, 32, 48, 64]
    assert legacy[1].time_signatures == ((0, 4, 4),)


def test_the_main_metre_is_the_one_with_most_bars():
    roll = waltz_then_march()
    assert metre.bars_per_metre([roll]) == {(3, 4): 4.0, (2, 4): 4.0}
    longer = Roll(notes=np.array([[60, 0, 96, 80]], dtype=np.int32), time_signatures=((0, 6, 8),))
    assert metre.main_metre([roll, longer]) == (6, 8)
