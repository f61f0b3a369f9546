"""Forms: which bars of a piece come back, read from the training music and given to the pieces made."""
import numpy as np
import pytest
import torch

from musicgan import checkpoint as ckpt, data, form, generate, metre, metrics, midi
from musicgan.midi import Roll
from musicgan.voices import FIRST_PITCH, HOLD, REST

from conftest import EXAMPLES


def _bars(*bars, spb=4):
    """A one-line roll in 4/4, a list of (pitch, start beat, beats) per bar (None: an empty bar)."""
    notes = [[p, (i * 4 + s) * spb, (i * 4 + s + n) * spb, 80] for i, bar in enumerate(bars) for p, s, n in bar or []]
    return Roll(notes=np.array(notes, dtype=np.int32).reshape(-1, 4), steps_per_beat=spb, length=len(bars) * 4 * spb)


A, B, C = [(60, 0, 2), (64, 2, 2)], [(62, 0, 4)], [(67, 0, 1), (65, 1, 3)]


def test_a_phrase_that_comes_back_repeats_the_first_bars_with_its_notes():
    D = [(69, 0, 4)]
    sources = form.of(_bars(A, B, C, A, B, D, None, A, B, C, B))
    assert sources.dtype == np.int8 and len(sources) == form.FORM_BARS
    # bars 3-4 and 7-9 are phrases that come back; bar 10 (B) comes back alone: the model's to write
    assert sources[:11].tolist() == [-1, -1, -1, 0, 1, -1, -1, 0, 1, 2, -1]
    assert (sources[11:] == -1).all()  # after the piece: bars of its own


def test_a_note_held_over_the_bar_line_is_cut_there_as_repeated_bars_reads_it():
    # bar 1 holds its 60 into bar 2, which strikes 60 again; bars 3-5 come back to them, bar 5
    # striking both 60s
    tied = _bars(B, [(60, 2, 4)], [(60, 2, 2)], B, [(60, 2, 2)], [(60, 0, 2), (60, 2, 2)])
    assert form.of(tied)[:6].tolist() == [-1, -1, -1, 0, 1, 2]
    assert metrics.repeated_bars(tied) == 3 / 5
    alone = _bars(B, [(60, 2, 4)], [(60, 2, 2)], [(60, 0, 2), (60, 2, 2)])
    assert form.of(alone)[:4].tolist() == [-1, -1, -1, -1]  # bar 3 is bar 2 again, but alone


def test_a_figure_that_comes_back_alone_is_part_of_the_form_and_a_held_bar_is_not():
    F = [(60, 0, 1), (62, 1, 1), (64, 2, 1), (65, 3, 0.5), (67, 3.5, 0.5)]  # struck 5 times in 4 beats
    H = [(60, 0, 3), (64, 3, 1)]  # struck twice: long notes
    assert form.figures(_bars(A, F, H, B))[:4].tolist() == [False, True, False, False]
    sources = form.of(_bars(F, A, H, F, B, H, C))
    assert sources[:7].tolist() == [-1, -1, -1, 0, -1, -1, -1]  # the figure comes back; the held bar is the model's
    assert form.build([_bars(A, F, C, F)]) is not None


def test_a_form_counted_in_other_bars_names_the_same_repeats():
    sources = np.array([-1, -1, 0, 1])  # (bars of 16 steps: bars 3-4 repeat 1-2)
    assert form.rebarred(sources, 16, [0, 16, 32, 48]).tolist() == sources.tolist()
    halves = form.rebarred(sources, 16, range(0, 64, 8))  # (two bars of 8 to each)
    assert halves.tolist() == [-1, -1, -1, -1, 0, 1, 2, 3] and form.describe(halves) == "bars 5-8 repeat 1-4"
    late = form.rebarred(sources, 16, range(8, 64, 8))  # (the same, its first bar line a half bar in)
    assert late.tolist() == [-1, -1, -1, -1, 0, 1, 2] and form.describe(late) == "bars 5-7 repeat 1-3"
    assert form.rebarred(sources, 8, [0, 16]).tolist() == [-1, 0]  # (two bars as one)
    assert form.rebarred(np.array([-1, -1, -1, 0]), 8, [0, 16]).tolist() == [-1, -1]  # (one of its two drawn)
    assert form.rebarred(np.array([-1, 0, 1, 2]), 8, [0, 16]).tolist() == [-1, -1]  # (a half bar back)


def test_forms_of_music_that_never_repeats_are_none_and_bad_forms_are_refused():
    assert form.build([_bars(A, B, C)]) is None
    assert form.build([_bars(A, B, C, A)]) is None  # a bar again alone is no phrase
    forms = form.build([_bars(A, B, C), _bars(A, B, A, B)])
    assert forms.shape == (2, form.FORM_BARS) and forms[1, :4].tolist() == [-1, -1, 0, 1]
    bad = forms.copy()
    bad[1, 4] = 2  # repeats a bar that is itself a repeat
    with pytest.raises(ValueError, match="itself a repeat"):
        form.check(bad)
    bad[1, 4] = 5  # repeats a later bar
    with pytest.raises(ValueError, match="not before it"):
        form.check(bad)
    with pytest.raises(ValueError, match="int8"):
        form.check(forms.astype(np.int64))


def test_parts_never_mix_drawn_and_repeated_bars():
    sources = np.array([[-1, -1, 0, 1, -1, -1], [-1, -1, -1, 0, 0, -1]])
    assert form.parts(sources, 0, 6) == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert form.parts(sources[:1], 1, 6) == [(1, 2), (2, 4), (4, 6)]


def test_a_repeated_bar_strikes_what_it_held_there_when_something_else_sounds_here():
    c, d, e = FIRST_PITCH + 12, FIRST_PITCH + 14, FIRST_PITCH + 16
    # bar 0: c held into bar 1, which then plays d; bar 2 ends on e
    piece = np.array([[c], [HOLD], [HOLD], [d], [e], [HOLD], [HOLD], [HOLD]])
    again = generate.repeated(piece, [1], 2)  # bar 1 again after e: c is struck, not e held on
    assert again[:, 0].tolist() == [c, d]
    tied = np.array([[e], [HOLD], [c], [HOLD]])
    assert generate.repeated(tied, [0, 1], 2)[:, 0].tolist() == [e, HOLD, c, HOLD]  # c sounds before bar 1 there and here
    resting = np.array([[REST], [HOLD], [c], [HOLD]])
    assert generate.repeated(resting, [0], 2)[:, 0].tolist() == [REST, HOLD]


@pytest.fixture(scope="module")
def generator():
    from musicgan.models import Generator, ModelConfig

    torch.manual_seed(0)
    return Generator(ModelConfig(latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)).eval()


FORMS = np.full((3, form.FORM_BARS), -1, np.int8)
FORMS[0, 4:8] = [0, 1, 2, 3]  # a repeated 4-bar phrase
FORMS[1, [2, 9, 10, 11]] = [0, 3, 0, 4]  # repeats here and there, three in a row from different bars
FORMS[2, 1] = 0  # the first bar at once again


def _assert_follows(piece: Roll, sources: np.ndarray):
    spans = metre.bar_spans(piece.time_signatures, piece.n_steps, piece.steps_per_beat)
    block = lambda b: metrics._block(piece.notes, spans[b][0], spans[b][1] - spans[b][0]).tobytes()  # noqa: E731
    for b, a in enumerate(sources):
        if a >= 0:
            assert block(b) == block(a), (b, a)


@pytest.mark.parametrize("critic", [False, True], ids=["one draw", "critic, a window at a time"])
def test_each_piece_repeats_its_bars_where_its_form_says(generator, critic):
    from test_gan import _Fickle

    sampling = {"critic": _Fickle(generator.cfg, [2, 0, 3, 1]), "candidates": 4} if critic else {}
    seeds = list(range(8))
    pieces = generate.sample_rolls(generator, seeds, bars=12, forms=FORMS, **sampling)
    taken = [form.for_seed(s, FORMS, 12) for s in seeds]
    assert len({tuple(t) for t in taken}) == 3  # every form is drawn by some seed
    for piece, sources in zip(pieces, taken):
        _assert_follows(piece, sources)
    assert np.mean([metrics.repeated_bars(p) for p in pieces]) > 0.2
    again = generate.sample_rolls(generator, seeds, bars=12, forms=FORMS, **sampling)
    assert [p.notes.tolist() for p in again] == [p.notes.tolist() for p in pieces]  # same seed, same music


def test_the_bars_before_a_first_repeat_are_the_piece_without_a_form(generator):
    for seed in range(6):
        sources = form.for_seed(seed, FORMS, 12)
        first = int(np.argmax(sources >= 0))
        plain = generate.sample_rolls(generator, [seed], bars=12)[0]
        formed = generate.sample_rolls(generator, [seed], bars=12, forms=FORMS)[0]
        cut = first * 16
        assert data.cut(formed, 0, cut).notes.tolist() == data.cut(plain, 0, cut).notes.tolist()
        assert formed.notes.tolist() != plain.notes.tolist()


def test_training_saves_the_forms_of_its_music_and_generation_uses_them(tmp_path):
    from test_gan import tiny_trainer

    rolls = data.load(EXAMPLES, cache_dir=False).rolls
    trainer = tiny_trainer(rolls, steps=2)
    trainer.run()
    trainer.save(tmp_path / "model")
    model = ckpt.load(tmp_path / "model")
    assert np.array_equal(model.forms, form.build(rolls))
    assert model.sampling["forms"] is model.forms
    pieces = generate.sample_rolls(model.generator, range(6), bars=12, **model.sampling)
    for seed, piece in enumerate(pieces):
        _assert_follows(piece, form.for_seed(seed, model.forms, 12))


def test_a_checkpoint_with_broken_forms_is_refused_in_words(tmp_path):
    from safetensors.torch import load_file, save_file

    from musicgan.models import Generator, ModelConfig

    ckpt.save(tmp_path / "m", Generator(ModelConfig(latent_dim=8, embed_dim=8, hidden=32, layers=1)), forms=FORMS)
    assert np.array_equal(ckpt.load(tmp_path / "m").forms, FORMS)
    tensors = load_file(tmp_path / "m" / ckpt.WEIGHTS)
    tensors[ckpt.FORMS][0, 3] = 9
    save_file(tensors, tmp_path / "m" / ckpt.WEIGHTS, metadata={"format": ckpt.FORMAT})
    with pytest.raises(ckpt.CheckpointError, match="not a set of forms"):
        ckpt.load(tmp_path / "m")


def test_the_phrases_that_come_back_are_told_in_words():
    sources = np.full(16, -1)
    assert form.describe(sources) == ""
    sources[4:8], sources[12:14] = [0, 1, 2, 3], [8, 9]
    assert form.describe(sources) == "bars 5-8 repeat 1-4, bars 13-14 repeat 9-10"
    sources[15] = 2
    assert form.describe(sources).endswith(", bar 16 repeats 3")
    # a tune that repeats bar after bar: its three longest phrases named, in order, the rest counted
    tune = np.array([-1, -1, -1, 1, -1, -1, 2, 1, -1, 1, 2, 1, 4, 5, 2, -1])
    assert form.describe(tune) == ("bar 4 repeats 2, bars 10-11 repeat 2-3, bars 13-14 repeat 5-6, "
                                   "and 4 more bars repeat earlier ones")
    tune[12:15] = -1
    assert form.describe(tune, most=9).count("repeat") == 5 and "more" not in form.describe(tune, most=9)


def test_the_pretrained_model_repeats_the_chorales_phrases_and_says_so():
    from musicgan import api

    model = api.load_model()
    assert model.forms is not None and len(model.forms) == 387  # the training split's chorales
    def sources(s):  # (a piece that opens with a pickup repeats no pickup's bar: musicgan.upbeat)
        rests = generate.piece_opening(s, model.generator, generate.metre_for(s, model.generator), 16)[1]
        return generate.piece_form(s, model.forms, 16, True, generate.opening_bars(rests, 16))
    seed = next(s for s in range(50) if (sources(s) >= 0).any() and generate.piece_pickup(
        s, model.generator, generate.metre_for(s, model.generator), 16))
    piece = api.compose(model, seed=seed, audio=False)
    assert piece.roll.time_signatures[0][1:] == (1, 4)  # written from its pickup: the bars as drawn, the first short
    _assert_follows(piece.roll, sources(seed))
    assert piece.description.endswith(" · " + form.describe(sources(seed)))


def test_a_continuation_plays_the_opening_again_where_its_form_says(generator):
    from conftest import scale_midi
    from test_gan import _Picky

    primer = midi.read(scale_midi(8))  # 2 bars of 4/4: eight quarter notes going up
    forms = np.full((1, form.FORM_BARS), -1, np.int8)
    forms[0, 4:6], forms[0, 8:10] = [0, 1], [6, 7]  # the opening again, then two bars drawn after it
    sources = forms[0, :10].astype(np.int64)
    opened, tokens, last = generate.opening(generator, primer, 2)
    assert np.array_equal(generate.continuation_form(generator.cfg, opened, len(tokens), last, 8, 3, forms), sources)
    for sampling in ({}, {"critic": _Picky(generator.cfg, 2), "candidates": 3}):
        piece = generate.continue_rolls(generator, primer, [3], bars=8, primer_bars=2, forms=forms, **sampling)[0]
        _assert_follows(piece, sources)
        assert piece.notes[piece.notes[:, 1] // 16 == 4, 0].tolist()[:4] == [60, 61, 62, 63]  # the opening, in bar 5
        plain = generate.continue_rolls(generator, primer, [3], bars=8, primer_bars=2, **sampling)[0]
        assert data.cut(piece, 0, 64).notes.tolist() == data.cut(plain, 0, 64).notes.tolist()  # drawn alike up to it
        again = generate.continue_rolls(generator, primer, [3], bars=8, primer_bars=2, forms=forms, **sampling)[0]
        assert again.notes.tolist() == piece.notes.tolist()
    # an opening whose form repeats nothing after it is continued as without forms
    assert generate.continuation_form(generator.cfg, opened, len(tokens), last, 2, 3, forms) is None
    # and a continuation begins with bars of its own: a phrase the form brings back at once is drawn
    at_once = np.full((1, form.FORM_BARS), -1, np.int8)
    at_once[0, 2:4], at_once[0, 6:8] = [0, 1], [0, 1]
    assert generate.continuation_form(generator.cfg, opened, len(tokens), last, 6, 3, at_once).tolist() == \
        [-1] * 6 + [0, 1]
    at_once[0, 6:8] = -1
    assert generate.continuation_form(generator.cfg, opened, len(tokens), last, 6, 3, at_once) is None
