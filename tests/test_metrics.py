"""musicgan.metrics: each statistic on hand-made music, the two-sample test and the copy check."""
import math

import numpy as np
import pytest

from musicgan import data, metrics
from musicgan.midi import Roll

from conftest import EXAMPLES


def roll(notes, **meta):
    from musicgan.midi import _sorted_notes

    return Roll(notes=_sorted_notes(np.array(notes, dtype=np.int32).reshape(-1, 4)), **meta)


C_MAJOR_SCALE = roll([(60 + p, 4 * i, 4 * i + 4, 80) for i, p in enumerate([0, 2, 4, 5, 7, 9, 11, 12])])
CHORDS = roll([(p, 0, 16, 80) for p in (48, 52, 55, 60)] + [(p, 16, 32, 80) for p in (43, 50, 55, 59)])


def test_pitch_statistics_of_a_scale():
    assert metrics.pitch_range(C_MAJOR_SCALE) == 12
    assert metrics.pitch_classes_used(C_MAJOR_SCALE) == 7
    assert metrics.scale_consistency(C_MAJOR_SCALE) == 1.0
    # C twice, six other notes once: H = -(2/8 log 2/8 + 6 * 1/8 log 1/8)
    assert metrics.pitch_class_entropy(C_MAJOR_SCALE) == pytest.approx(-(0.25 * math.log2(0.25) + 6 / 8 * math.log2(1 / 8)))


def test_chromatic_music_is_less_scale_consistent():
    chromatic = roll([(60 + i, i, i + 1, 80) for i in range(12)])
    assert metrics.scale_consistency(chromatic) == pytest.approx(7 / 12)
    assert metrics.pitch_class_entropy(chromatic) == pytest.approx(math.log2(12))


def test_polyphony_density_and_empty_beats():
    assert metrics.polyphony(CHORDS) == 4.0
    assert metrics.polyphony(C_MAJOR_SCALE) == 1.0
    assert metrics.note_density(CHORDS) == 4.0  # 8 notes in 2 bars
    gappy = roll([(60, 0, 4, 80), (60, 8, 12, 80)])  # beat 2 of 3 is silent
    assert metrics.empty_beat_rate(gappy) == pytest.approx(1 / 3)


def test_duration_histogram():
    hist = metrics.duration_histogram(roll([(60, 0, 1, 80), (62, 1, 5, 80), (64, 5, 25, 80)]))
    assert hist.sum() == pytest.approx(1)
    assert hist[metrics.DURATION_BINS.index(1)] == pytest.approx(1 / 3)
    assert hist[metrics.DURATION_BINS.index(4)] == pytest.approx(1 / 3)
    assert hist[-1] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def clips():
    windows = data.Windows(data.load(EXAMPLES, cache_dir=False).rolls, data.WindowConfig(window_bars=2, hop_bars=1))
    return [windows[i] for i in range(len(windows))]


def test_two_sample_test_cannot_split_real_from_real(clips):
    rng = np.random.default_rng(0)
    order = rng.permutation(len(clips))
    half = len(order) // 2
    a, b = [clips[i] for i in order[:half]], [clips[i] for i in order[half:]]
    assert metrics.two_sample_accuracy(a, b) < 0.7


def test_two_sample_test_spots_random_notes(clips):
    rng = np.random.default_rng(1)
    noise = [roll([(rng.integers(40, 80), s, s + rng.integers(1, 5), 80) for s in range(0, 32, 2)]) for _ in clips]
    assert metrics.two_sample_accuracy(noise, clips) > 0.9


def test_copy_check_finds_copies_in_any_transposition(clips):
    training = data.load(EXAMPLES, cache_dir=False).rolls
    copied = clips[3].transpose(2)
    assert metrics.longest_copy([copied], training) == 2
    fresh = roll([(40 + (7 * i) % 30, i, i + 1, 80) for i in range(32)])
    assert metrics.longest_copy([fresh], training) == 0
    assert metrics.copy_runs([fresh, copied, fresh], training) == [0, 2, 0]
    assert metrics.copy_runs([], training) == [] and metrics.longest_copy([], training) == 0


def test_evaluation_table_has_every_statistic(clips):
    result = metrics.evaluate(clips[:20], clips[20:40], training=None)
    text = result.format()
    for name in metrics.STATISTICS:
        assert name in text
    assert "two-sample" in text


# --------------------------------------------------------------------------- metre and texture

def rhythm(pattern: list[int], bars: int, numerator: int, denominator: int = 4, pitch: int = 60):
    """A one-line roll repeating the onsets ``pattern`` (steps from each bar line) for ``bars``
    bars, written in numerator/denominator; each note lasts until the next onset."""
    from musicgan import metre

    bar = metre.bar_steps((numerator, denominator), 4)
    starts = [b * bar + p for b in range(bars) for p in pattern]
    ends = starts[1:] + [bars * bar]
    return roll([(pitch + i % 3, s, e, 80) for i, (s, e) in enumerate(zip(starts, ends))],
                time_signatures=((0, numerator, denominator),))


def test_onsets_on_downbeats_and_beats_follow_the_written_metre():
    waltz = rhythm([0, 4, 8], 4, 3)  # a note on every beat of 3/4
    assert metrics.downbeat_onsets(waltz) == pytest.approx(1 / 3) and metrics.beat_onsets(waltz) == 1.0
    jig = rhythm([0, 2, 4, 6, 8, 10], 4, 6, 8)  # six eighths a bar: the beats are dotted quarters
    assert metrics.downbeat_onsets(jig) == pytest.approx(1 / 6) and metrics.beat_onsets(jig) == pytest.approx(1 / 3)


def test_groove_consistency_tells_a_waltz_from_four_four_written_as_three_four():
    waltz = rhythm([0, 6, 8], 8, 3)  # long-short-short in every bar
    assert metrics.groove_consistency(waltz) == 1.0
    four = rhythm([0, 6, 8, 12], 6, 4)  # the same kind of rhythm in bars of 4/4 ...
    misread = roll(four.notes.tolist(), time_signatures=((0, 3, 4),))  # ... written as 3/4: bars disagree
    assert metrics.groove_consistency(misread) < metrics.groove_consistency(four) == 1.0


def test_repeated_bars_counts_bars_that_come_back_within_a_few_bars():
    a, b, c = [(60, 0, 8), (64, 8, 16)], [(62, 0, 16)], [(67, 0, 4), (65, 4, 16)]

    def bars(*contents):
        return roll([(p, 16 * i + s, 16 * i + e, 80) for i, bar in enumerate(contents) for p, s, e in bar],
                    time_signatures=((0, 4, 4),))

    # A B A C C (rest) C: bar 3 repeats bar 1, bar 5 bar 4, bar 7 bar 5; B and the first C are new
    assert metrics.repeated_bars(bars(a, b, a, c, c, [], c)) == pytest.approx(3 / 5)
    assert metrics.repeated_bars(bars(a, b, c, [(60, 0, 8), (64, 8, 15)])) == 0.0  # one note shorter: new
    assert metrics.repeated_bars(bars(a, b, b, c, c, c, a), back=4) == pytest.approx(3 / 6)  # bar 1 is 6 bars back
    assert metrics.repeated_bars(bars(a, b, b, c, c, c, a)) == pytest.approx(4 / 6)  # (8 bars back by default)
    held = roll([(60, 0, 32, 80)], time_signatures=((0, 4, 4),))  # one note held over the barline: 2 whole bars
    assert metrics.repeated_bars(held) == 1.0
    waltz = rhythm([0, 4, 8], 4, 3)  # pitches cycle over 3 notes: every bar is the one before
    four = roll(waltz.notes.tolist(), time_signatures=((0, 4, 4),))  # read in bars of 4/4: none is
    assert metrics.repeated_bars(waltz) == 1.0 and metrics.repeated_bars(four) == 0.0


def test_onset_profile_correlation_needs_the_same_metre():
    waltzes = [rhythm([0, 4, 8], 4, 3), rhythm([0, 6, 8], 4, 3)]
    assert metrics.profile_correlation(waltzes, waltzes) == pytest.approx(1.0)
    marches = [rhythm([0, 4, 8, 12], 4, 4)]
    assert metrics.profile_correlation(marches, waltzes) == 0.0  # no bar of 3/4 at all
    assert metrics.metres_written(waltzes + marches) == {"3/4": 0.667, "4/4": 0.333}


def test_texture_statistics():
    duet = roll([(60, 0, 8, 80), (64, 4, 8, 80), (67, 8, 16, 80)])
    assert metrics.polyphony_rate(duet) == pytest.approx(4 / 16)
    assert metrics.notes_per_beat(duet) == pytest.approx(3 / 4)
    assert metrics.pitches_used(duet) == 3


def test_two_sample_splits_average_several_splits(clips):
    rng = np.random.default_rng(0)
    order = rng.permutation(len(clips))
    a, b = [clips[i] for i in order[::2]], [clips[i] for i in order[1::2]]
    one = [metrics.two_sample_accuracy(a, b, seed=k) for k in range(3)]
    assert metrics.two_sample_accuracy(a, b, splits=3) == pytest.approx(np.mean(one))
