"""The rhythm of one bar kept in the next (musicgan.echo) and the sampling bias fitted to it."""
import numpy as np
import pytest
import torch

from musicgan import echo, generate, midi
from musicgan.models import ModelConfig
from musicgan.voices import FIRST_PITCH, HOLD, REST

BAR = 16  # one 4/4 bar of the grid of 4 steps a beat


def tokens_of(strikes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, T, V) booleans (strike or hold) -> tokens, each strike on a pitch of its own (so
    no bar repeats the one before it note for note)."""
    out = np.where(strikes, FIRST_PITCH + rng.integers(0, 24, strikes.shape), HOLD)
    out[:, 0] = FIRST_PITCH + 1  # every voice sounds from the first step
    return out


def codes_of(n: int, steps: int) -> np.ndarray:
    return np.tile(np.arange(steps) % BAR, (n, 1))


def test_a_rhythm_kept_bar_after_bar_is_counted_and_a_drawn_one_is_not():
    rng = np.random.default_rng(0)
    n, steps = 200, 4 * BAR
    chance = np.tile([0.9, 0.2, 0.5, 0.2] * 4, 4)  # each place of the bar struck at its own rate
    free = rng.random((n, steps, 2)) < chance[None, :, None]
    kept = np.tile(free[:, :BAR], (1, 4, 1))  # each piece's first bar's rhythm, bar after bar
    assert echo.odds_ratio(echo.counts(tokens_of(kept, rng), codes_of(n, steps), BAR)) > 50
    # rhythms drawn afresh each bar: nothing beyond each place's own rate (which the strata take out)
    assert echo.odds_ratio(echo.counts(tokens_of(free, rng), codes_of(n, steps), BAR)) == pytest.approx(1, abs=0.15)
    swapped = kept.copy()  # every other bar the rhythm's opposite
    swapped[:, BAR:2 * BAR] = ~kept[:, BAR:2 * BAR]
    swapped[:, 3 * BAR:] = ~kept[:, 3 * BAR:]
    assert echo.odds_ratio(echo.counts(tokens_of(swapped, rng), codes_of(n, steps), BAR)) < 0.02


def test_bars_that_repeat_the_one_before_and_silent_voices_are_not_counted():
    rng = np.random.default_rng(1)
    bar = tokens_of(rng.random((1, BAR, 1)) < 0.5, rng)
    other = tokens_of(rng.random((1, BAR, 1)) < 0.5, rng)
    # bar 2 repeats bar 1 note for note (a form's repeat): only bar 3 against bar 2 is counted
    tokens = np.concatenate([bar, bar, other], 1)
    assert echo.counts(tokens, codes_of(1, 3 * BAR), BAR).sum() == BAR
    resting = np.concatenate([bar, np.full_like(bar, REST), other], 1)  # a voice silent in bar 2
    assert echo.counts(resting, codes_of(1, 3 * BAR), BAR).sum() == 0
    assert echo.odds_ratio(np.zeros((4, 1, 2, 2))) == 1.0


def test_the_fit_moves_the_bias_toward_the_musics_ratio_within_bounds():
    assert echo.move(0.0, 0.6, 0.2, 0.5) == pytest.approx(0.2)
    assert echo.move(0.5, 0.2, 0.6, 0.5) == pytest.approx(0.3)
    assert echo.move(2.9, 9.0, 0.0, 0.7) == echo.MOST
    assert echo.move(0.1, 0.0, 2.0, 0.7) == 0.0  # never below 0 (see echo.move)


def test_the_echo_bias_keeps_a_drawn_rhythm_in_the_next_bar():
    """The bias is a term of each voice's logits from what it did a bar before, in each piece's
    own metre: raised, free draws keep their rhythms from bar to bar more, at about the same
    density; a model without it draws as before."""
    from musicgan.models import Generator

    torch.manual_seed(0)
    cfg = ModelConfig(pitch_low=48, pitch_high=72, latent_dim=8, embed_dim=8, hidden=32, layers=1,
                      d_hidden=16, d_embed=16, metres=((4, 4), (3, 4)))
    G = Generator(cfg).eval()
    seeds = list(range(64))

    def draw():
        tokens, codes, _ = generate.draw_windows(G, seeds, 4 * BAR)
        return echo.odds_ratio(echo.counts(tokens, codes, cfg.longest_bar)), (tokens >= FIRST_PITCH).mean()

    (plain, density), before = draw(), generate.draw_windows(G, seeds, 4 * BAR)[0]
    G.echo_bias.fill_(1.5)
    (kept, kept_density), after = draw(), generate.draw_windows(G, seeds, 4 * BAR)[0]
    assert plain == pytest.approx(1, abs=0.3) and kept > 3 * plain
    assert kept_density == pytest.approx(density, rel=0.25)
    bar = min(np.nonzero(cfg.metre_codes(m, 64) % cfg.longest_bar == 0)[0][1] for m in cfg.metres)  # the shortest bar
    assert np.array_equal(before[:, :bar], after[:, :bar])  # the first bar has no bar before it
    G.echo_bias.zero_()
    assert np.array_equal(generate.draw_windows(G, seeds, 4 * BAR)[0], before)


def patterned_pieces(n: int = 16, bars: int = 8, seed: int = 0) -> list:
    """Two-voice pieces in 4/4, each keeping a rhythm of its own bar after bar (drawn for it: a
    model cannot tell it from the place in the bar), on pitches drawn afresh (so no bar repeats
    the one before it note for note)."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    scale = np.array([60, 62, 64, 65, 67, 69, 71, 72])
    pieces = []
    for i in range(n):
        rhythm = np.flatnonzero((rng.random(BAR) < 0.35) | (np.arange(BAR) == 0))
        notes = []
        for b in range(bars):
            starts = b * BAR + rhythm
            ends = np.append(starts[1:], (b + 1) * BAR)
            notes += [[int(rng.choice(scale)), s, e, 80] for s, e in zip(starts, ends)]
            notes += [[48 + int(rng.integers(0, 5)), b * BAR, b * BAR + 8, 80], [43, b * BAR + 8, (b + 1) * BAR, 80]]
        roll = midi.Roll(notes=np.array(sorted(notes, key=lambda x: (x[1], x[0])), dtype=np.int32))
        pieces.append(replace(roll, name=f"piece {i}", key=0))
    return pieces


def test_calibration_fits_the_echo_bias_to_the_musics_rhythm():
    """Music whose rhythm comes back bar after bar: a rough model's free draws keep theirs far less;
    calibration raises the echo bias and brings the draws' odds ratio toward the music's."""
    from test_gan import tiny_trainer

    trainer = tiny_trainer(patterned_pieces(), steps=30, warmup=1.0, lr_mle=1e-2)
    trainer.run()
    T, bar = trainer.windows.config.window_steps, trainer.model.longest_bar
    real_tokens, real_codes, _ = trainer.data.sample(4096, 0)
    want = echo.log_odds(real_tokens, real_codes, bar)

    def drawn():
        tokens, codes, _ = generate.draw_windows(trainer.G.eval(), list(range(500, 756)), T)
        return echo.log_odds(tokens, codes, bar)

    before = drawn()
    assert want > before + 1
    trainer.calibrate()
    assert float(trainer.G.echo_bias) > 0.3
    assert abs(drawn() - want) < 0.5 * abs(before - want)
