"""The copy guard: its index agrees with the copy check of the metrics, and generation passes over
candidates that copy the training music."""
import numpy as np
import pytest
import torch

from musicgan import checkpoint as ckpt, copyguard, data, generate, metrics, midi
from musicgan.midi import Roll

from conftest import EXAMPLES


@pytest.fixture(scope="module")
def rolls():
    return data.load(EXAMPLES, cache_dir=False).rolls


def crop(roll: Roll, start: int, length: int) -> Roll:
    notes = roll.notes[(roll.notes[:, midi.START] < start + length) & (roll.notes[:, midi.END] > start)].copy()
    notes[:, midi.START:midi.END + 1] = np.clip(notes[:, midi.START:midi.END + 1] - start, 0, length)
    return Roll(notes=notes, steps_per_beat=roll.steps_per_beat)


def probes(rolls):
    """4-bar clips: quotes (bar-aligned, beat-shifted, transposed), pieces never trained on, and
    bars of different pieces spliced together."""
    bar = 4 * rolls[0].steps_per_beat
    out = []
    for i, roll in enumerate(rolls):
        for start in range(0, roll.n_steps - 4 * bar, 3 * roll.steps_per_beat):
            out.append(crop(roll, start, 4 * bar).transpose(start % 5 - 2))
    for a, b in zip(rolls, rolls[1:]):  # one bar of a, then one bar of b, alternating
        parts = [crop(a if j % 2 == 0 else b, (j + 2) * bar, bar).notes + [0, j * bar, j * bar, 0] for j in range(4)]
        out.append(Roll(notes=midi._sorted_notes(np.concatenate(parts)), steps_per_beat=a.steps_per_beat))
    return out


def test_the_index_finds_exactly_the_runs_the_copy_check_finds(rolls):
    training = rolls[:5]
    index = copyguard.build(training)
    assert index.dtype == np.int64 and np.all(np.diff(index) > 0)
    clips = probes(rolls)
    runs = metrics.copy_runs(clips, training)
    guarded = [copyguard.copies(c, index) for c in clips]
    assert guarded == [r >= copyguard.COPY_BARS for r in runs]
    assert 20 < sum(guarded) < len(clips) - 20  # both kinds are well represented


def test_a_quote_that_starts_off_the_four_beat_grid_is_found(rolls):
    """8 beats of the training music that begin on beat 3 of a piece (as in a piece in 3/4 or 9/8)."""
    spb = rolls[0].steps_per_beat
    training = rolls[:5]
    quote = crop(rolls[1], 8 * spb, 8 * spb).transpose(1).notes + [0, 3 * spb, 3 * spb, 0]
    lead = np.array([[60, 0, 3 * spb, 80]])  # 3 beats of one held note first
    tail = np.array([[62, 11 * spb, 12 * spb, 80]])
    piece = Roll(notes=midi._sorted_notes(np.concatenate([lead, quote, tail])), steps_per_beat=spb)
    index = copyguard.build(training)
    assert metrics.copy_runs([piece], training) == [2]
    assert copyguard.copies(piece, index)
    shifted = Roll(notes=piece.notes + [0, spb, spb, 0], steps_per_beat=spb)  # and one beat later
    assert copyguard.copies(shifted, index)


def test_the_index_is_empty_for_music_without_two_bars_and_refuses_huge_corpora(rolls, monkeypatch):
    one_bar = crop(rolls[0], 0, 4 * rolls[0].steps_per_beat)
    assert len(copyguard.build([one_bar])) == 0
    assert not copyguard.copies(rolls[0], copyguard.build([one_bar]))
    monkeypatch.setattr(copyguard, "MAX_INDEX", 10)
    assert copyguard.build(rolls) is None


@pytest.fixture(scope="module")
def generator():
    from musicgan.models import Generator, ModelConfig

    torch.manual_seed(0)
    return Generator(ModelConfig(latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)).eval()


def test_generation_passes_over_candidates_that_copy(generator):
    seeds = [1, 2, 3]
    plain = generate.sample_rolls(generator, seeds, bars=4)
    index = copyguard.build(plain)  # as if the model had learned these very pieces
    assert all(copyguard.copies(r, index) for r in plain)
    guarded = generate.sample_rolls(generator, seeds, bars=4, avoid=index)
    again = generate.sample_rolls(generator, seeds, bars=4, avoid=index)
    for p, g, a in zip(plain, guarded, again):
        assert not copyguard.copies(g, index)
        assert not np.array_equal(p.notes, g.notes)
        assert np.array_equal(g.notes, a.notes)  # still the same music for the same seed
    # the guard changes nothing where nothing copies
    other = generate.sample_rolls(generator, [4, 5], bars=4, avoid=index)
    assert [r.notes.tolist() for r in other] == [r.notes.tolist() for r in generate.sample_rolls(generator, [4, 5], bars=4)]


def test_with_a_critic_the_guard_takes_its_next_choice(generator):
    from test_gan import _Picky

    # a seed's candidates are drawn in its key and metre, each with noise of its own
    own = dict(key=generate.piece_key(5, generator, None), metre=generate.piece_metre(5, generator, None))
    index = copyguard.build(generate.sample_rolls(generator, [generate.candidate_seed(5, 2)], bars=4, **own))
    chosen = generate.sample_rolls(generator, [5], bars=4, critic=_Picky(generator.cfg, 2), candidates=4, avoid=index)[0]
    assert not copyguard.copies(chosen, index)
    options = generate.sample_rolls(generator, [generate.candidate_seed(5, j) for j in (0, 1, 3)], bars=4, **own)
    assert any(np.array_equal(chosen.notes, o.notes) for o in options)


def test_the_guard_reads_every_segment_of_a_long_piece(generator):
    from test_gan import _Picky

    critic = _Picky(generator.cfg, 0)
    unguarded = generate.sample_rolls(generator, [7, 8], bars=12, critic=critic, candidates=4)
    index = copyguard.build(unguarded)
    for piece in generate.sample_rolls(generator, [7, 8], bars=12, critic=critic, candidates=4, avoid=index):
        assert not copyguard.copies(piece, index)
    # a quote of the last 2 bars alone is found too (the guard reads each segment with the 7 beats before it)
    ending = copyguard.build([data.cut(r, r.n_steps - 8 * r.steps_per_beat, 8 * r.steps_per_beat) for r in unguarded])
    for piece, before in zip(generate.sample_rolls(generator, [7, 8], bars=12, critic=critic, candidates=4,
                                                   avoid=ending), unguarded):
        assert not copyguard.copies(piece, ending)
        bar = 4 * piece.steps_per_beat
        assert np.array_equal(data.cut(piece, 0, 8 * bar).notes, data.cut(before, 0, 8 * bar).notes)


def test_a_continuation_that_copies_is_passed_over(generator):
    opening = generate.sample_rolls(generator, [3], bars=2)[0]
    plain = generate.continue_rolls(generator, opening, [1, 2], bars=4, primer_bars=2, whole=False)
    index = copyguard.build(plain)  # as if the model had learned these very continuations
    guarded = generate.continue_rolls(generator, opening, [1, 2], bars=4, primer_bars=2, whole=False, avoid=index)
    for p, g in zip(plain, guarded):
        assert copyguard.copies(p, index) and not copyguard.copies(g, index) and not np.array_equal(p.notes, g.notes)


def test_when_every_draw_copies_the_first_choice_is_kept(generator, monkeypatch):
    monkeypatch.setattr(copyguard, "copies", lambda roll, index: True)
    index = np.zeros(1, dtype=np.int64)
    kept = generate.sample_rolls(generator, [9], bars=2, avoid=index)[0]
    assert np.array_equal(kept.notes, generate.sample_rolls(generator, [9], bars=2)[0].notes)


def test_the_index_travels_in_the_checkpoint_and_a_bad_one_is_refused(generator, rolls, tmp_path):
    index = copyguard.build(rolls[:3])
    ckpt.save(tmp_path / "a", generator, meta={}, copy_index=index)
    loaded = ckpt.load(tmp_path / "a")
    assert np.array_equal(loaded.copy_index, index) and loaded.sampling.keys() == {"avoid"}
    ckpt.save(tmp_path / "b", generator, meta={})
    assert ckpt.load(tmp_path / "b").copy_index is None and ckpt.load(tmp_path / "b").sampling == {}
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "a" / ckpt.WEIGHTS)
    for bad in (tensors[ckpt.COPY_INDEX].double(), tensors[ckpt.COPY_INDEX].reshape(-1, 1)):
        save_file({**tensors, ckpt.COPY_INDEX: bad}, tmp_path / "a" / ckpt.WEIGHTS)
        with pytest.raises(ckpt.CheckpointError, match="copy-guard"):
            ckpt.load(tmp_path / "a")


def test_each_extra_round_of_the_guard_draws_hotter_than_the_one_before():
    heats, sizes = [], []

    def more(done, size, heat):
        heats.append(heat)
        sizes.append((done, size))
        return f"round from {done}"

    def offer(candidates, round_):  # every candidate copies
        return f"first of {candidates}", None

    assert generate.guarded_choice("round 0", more, offer, 2) == "first of round 0"  # kept all the same
    assert generate.GUARD_HEAT > 1 and heats == [generate.GUARD_HEAT ** r for r in range(1, generate.GUARD_ROUNDS + 1)]
    # new candidates each round, at least GUARD_ROUND of them
    assert sizes == [(2 + 4 * r, 4) for r in range(generate.GUARD_ROUNDS)] and generate.GUARD_ROUNDS >= 6
    # a round that finds one that does not copy ends the search
    heats.clear()
    assert generate.guarded_choice("round 0", more, lambda c, r: ("first", c if r == 2 else None), 4) == "round from 8"
    assert heats == [generate.GUARD_HEAT, generate.GUARD_HEAT ** 2]
    # ... and the last round's is kept when it is the first that does not copy
    last = generate.GUARD_ROUNDS
    assert generate.guarded_choice("round 0", more, lambda c, r: ("first", c if r == last else None), 4) == \
        f"round from {4 + 4 * (last - 1)}"
