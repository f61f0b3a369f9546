"""musicgan.metrics: each statistic on hand-made music, the two-sample test and the copy check."""
import math

import numpy as np
import pytest

from musicgan import data, metrics
from musicgan.midi import Roll

from conftest import EXAMPLES


def roll(notes):
    return Roll(notes=np.array(notes, dtype=np.int32).reshape(-1, 4))


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
