"""Openings: a new piece begins with a pickup as often as its model's music does, ends as much
early, and is written and played from its first note."""
import copy
import json

import numpy as np
import pytest
import torch

from conftest import EXAMPLES
from musicgan import api, checkpoint as ckpt, data, form, generate, metre, midi, upbeat
from musicgan.models import STRIKE
from musicgan.train import Budget, TrainConfig, Trainer, model_config_for
from musicgan.voices import REST


def roll(first: int, time_signatures=((0, 4, 4),), length: int = 0) -> midi.Roll:
    """A C that sounds from step ``first`` to the end of the first bar, then a G for a bar."""
    bar = metre.bar_steps(time_signatures[0][1:], 4)
    notes = np.array([[60, first, bar, 80], [67, bar, 2 * bar, 80]], np.int32)
    return midi.Roll(notes=notes, steps_per_beat=4, time_signatures=time_signatures, length=length)


def test_how_a_musics_pieces_begin_is_read_from_their_first_notes():
    chorale, tune, march = roll(12), roll(10, ((0, 6, 8),)), roll(0)
    assert upbeat.pickup(chorale) == ((4, 4), 4) and upbeat.pickup(tune) == ((6, 8), 2)
    assert upbeat.pickup(march) == ((4, 4), 0)
    assert upbeat.pickup(roll(16)) == ((4, 4), 0)  # a first bar all rest: no pickup, a late start
    said = upbeat.habit([chorale, chorale, tune, march])
    assert said == {"pickup": 0.75, "beats": {"4/4": 1.0, "6/8": 0.5}}
    assert upbeat.habit([midi.Roll(notes=np.zeros((0, 4), np.int32))]) is None
    assert upbeat.opens_of(said, [(3, 4), (6, 8), (4, 4)]).tolist() == [0.75, 0.0, 0.5, 1.0]
    assert upbeat.opens_of(None, [(4, 4)]).tolist() == [0.0, 0.0]
    for bad in ({"pickup": 1.5, "beats": {}}, {"pickup": 0.5, "beats": {"4/4": "a beat"}}, [0.5]):
        with pytest.raises(ValueError, match="data.opens"):
            upbeat.opens_of(bad, [(4, 4)])


def test_a_seed_opens_with_a_pickup_as_often_as_the_music_and_always_the_same_way():
    opens = torch.tensor([0.7, 1.0, 0.5])  # 4/4: a beat; 6/8: an eighth
    metres = [(4, 4), (6, 8)]
    got = [upbeat.pickup_for(s, opens, metres, (4, 4), 4) for s in range(400)]
    assert set(got) == {0, 4} and 0.63 < np.mean(np.array(got) > 0) < 0.77
    assert got == [upbeat.pickup_for(s, opens, metres, (4, 4), 4) for s in range(400)]
    assert {upbeat.pickup_for(s, opens, metres, (6, 8), 4) for s in range(50)} == {0, 2}
    assert upbeat.pickup_for(0, opens, metres, (3, 4), 4) == 0  # a metre the model does not know
    assert not any(upbeat.pickup_for(s, torch.tensor([0.7, 0.0, 0.5]), metres, (4, 4), 4) for s in range(50))
    assert not any(upbeat.pickup_for(s, torch.tensor([1.0, 4.0, 0.5]), metres, (4, 4), 4) for s in range(50))  # a bar


def test_a_pickup_is_written_as_a_short_first_bar_and_read_back_as_it_was():
    chorale = roll(12, ((0, 4, 4), (32, 3, 4)), length=44)
    written = midi.with_pickup_bar(chorale)
    assert written.time_signatures == ((0, 1, 4), (4, 4, 4), (20, 3, 4))
    assert written.notes[:, 1].min() == 0 and written.n_steps == 32
    assert midi.read(midi.to_midi_bytes(written)).notes.tolist() == chorale.notes.tolist()
    assert midi.read(midi.to_midi_bytes(written)).time_signatures == chorale.time_signatures
    assert midi.with_pickup_bar(roll(10, ((0, 6, 8),))).time_signatures == ((0, 1, 8), (2, 6, 8))
    assert midi.with_pickup_bar(roll(14)).time_signatures == ((0, 1, 8), (2, 4, 4))  # an eighth of 4/4
    for same in (roll(0), roll(16), midi.Roll(notes=np.zeros((0, 4), np.int32))):
        assert midi.with_pickup_bar(same) is same
    from musicgan import render  # the piano roll counts bars of 4/4, the pickup's a quarter of one
    assert render.bar_unit(written) == 16 and render.bar_unit(roll(0, ((0, 3, 4), (12, 4, 4)), length=80)) == 16
    assert render.piano_roll_png(written).startswith(b"\x89PNG")
    third = midi.Roll(notes=np.array([[60, 44, 48, 80]], np.int32), steps_per_beat=12)  # a third of a beat
    assert midi.with_pickup_bar(third) is third


def test_new_pieces_open_with_a_pickup_end_as_much_early_and_are_played_from_it():
    model = api.load_model()
    G, own = model.generator, model.generator.opens.clone()
    seeds, bars = list(range(8)), 4
    try:
        G.opens.zero_()  # a model that does not say: every piece as before
        before = generate.sample_rolls(G, seeds, bars, metre=(4, 4), ending=True, opening=True, **model.sampling)
        plain = generate.sample_rolls(G, seeds, bars, metre=(4, 4), ending=True, **model.sampling)
        G.opens.copy_(upbeat.opens_of({"pickup": 0.5, "beats": {"4/4": 1.0}}, model.model.metres))
        after = generate.sample_rolls(G, seeds, bars, metre=(4, 4), ending=True, opening=True, **model.sampling)
        again = generate.sample_rolls(G, seeds, bars, metre=(4, 4), ending=True, opening=True, **model.sampling)
        pieces = api.compose_many(model, seeds[:2], bars, metre=(4, 4))
    finally:
        G.opens.copy_(own)
    assert [midi.to_midi_bytes(r) for r in before] == [midi.to_midi_bytes(r) for r in plain]
    assert [midi.to_midi_bytes(r) for r in after] == [midi.to_midi_bytes(r) for r in again]  # same seed, same music
    ups = [upbeat.pickup_for(s, G.opens.new_tensor([0.5] + [1.0] * len(model.model.metres)),
                             model.model.metres, (4, 4), 4) for s in seeds]
    assert 0 < sum(map(bool, ups)) < len(seeds)
    for b, a, up in zip(before, after, ups):
        if not up:
            assert midi.to_midi_bytes(a) == midi.to_midi_bytes(b)  # no pickup: the piece it was
            continue
        assert a.notes[:, 1].min() >= 12  # every voice rests up to the pickup
        assert a.n_steps == bars * 16 - 4 and a.notes[:, 2].max() <= bars * 16 - 4  # the last bar a beat short
        written = midi.with_pickup_bar(a)
        assert written.time_signatures[:2] == ((0, 1, 4), (4, 4, 4)) or written.notes[:, 1].min() > 0
    for piece, up in zip(pieces, ups):  # a piece the app makes starts on its first note
        assert piece.roll.notes[:, 1].min() == 0
        assert (piece.roll.time_signatures[0][1:] != (4, 4)) == bool(up)
        assert midi.read(piece.midi).notes[:, 1].min() == (12 if up else 0)  # read back: the pickup's bar whole


def test_a_pickups_rest_is_given_to_every_candidate_and_only_up_to_it():
    given = generate._resting([12, 0], 2, 0, 32, 3)
    assert given.shape == (4, 32, 3)
    assert (given[:2, :12] == REST).all() and (given[:2, 12:] == -1).all() and (given[2:] == -1).all()
    assert (generate._resting([12, 0], 2, 8, 32, 3)[:2, :4] == REST).all()  # a draw from step 8
    assert generate._resting([12, 0], 2, 16, 32, 3) is None and generate._resting(None, 2, 0, 32, 3) is None


def test_voices_come_in_as_the_musics_do():
    """A piece's entries: the beats after its first note at which 1, 2, 3 ... notes first sound
    together, up to its usual texture; a chorale's voices all come in on its first note. A model
    keeps the share of its pieces whose voices come in one by one and their entries, and a seed
    draws them as often."""
    one_by_one = midi.Roll(notes=np.array([[67, 4, 64, 80], [60, 12, 64, 80], [55, 20, 64, 80]], np.int32),
                           steps_per_beat=4, time_signatures=((0, 4, 4),))
    assert upbeat.entries(one_by_one, 4).tolist() == [0, 2, 4, 4]  # (the first note a beat in: a pickup)
    chord = midi.Roll(notes=np.array([[67, 0, 16, 80], [60, 0, 16, 80], [52, 0, 8, 80]], np.int32), steps_per_beat=4)
    assert upbeat.entries(chord, 5).tolist() == [0] * 5
    said = upbeat.entering([one_by_one, chord, chord, chord], 4)
    assert said == {"share": 0.25, "beats": [[0.0, 2.0, 4.0, 4.0]]} and upbeat.entering([chord], 4) is None
    assert upbeat.entering_of(json.loads(json.dumps(said)), 4) == said and upbeat.entering_of(None, 4) is None
    for bad in ({"share": 0.25, "beats": [[0, 2, 4]]}, {"share": 2, "beats": [[0, 2, 4, 4]]}, [0, 2, 4, 4],
                {"share": 0.25, "beats": [[0, 2, "4", 4]]}, {"share": 0.25, "beats": []}):
        with pytest.raises(ValueError, match="data.entries"):
            upbeat.entering_of(bad, 4)
    drawn = [upbeat.entries_for(s, said, 4) for s in range(400)]
    apart = [d for d in drawn if d is not None]
    assert all(d.tolist() == [0, 8, 16, 16] for d in apart) and 0.2 < len(apart) / 400 < 0.3
    assert all(upbeat.entries_for(s, None, 4) is None for s in range(20))
    assert [str(upbeat.entries_for(s, said, 4)) for s in range(20)] == [str(d) for d in drawn[:20]]


def test_each_voice_rests_until_its_entry_strikes_there_and_the_pieces_stay_the_seeds():
    given = generate._resting([np.array([4, 8, 12]), np.zeros(3, int)], 1, 0, 16, 3)
    assert (given[0, :4] == REST).all() and (given[0, 4:8, 1:] == REST).all() and (given[0, 8:12, 2] == REST).all()
    # each voice strikes a note at its entry, then draws freely; a piece whose voices come in together does not
    assert given[0, 4, 0] == STRIKE and given[0, 8, 1] == STRIKE and given[0, 12, 2] == STRIKE
    assert (given[0, 5:, 0] == -1).all() and (given[0, 9:, 1] == -1).all() and (given[0, 13:] == -1).all()
    assert (given[1] == -1).all() and (generate._resting([np.full(3, 4)], 1, 0, 16, 3)[0, 4:] == -1).all()
    assert generate._resting([np.array([4, 8, 12])], 1, 12, 16, 3)[0, 0].tolist() == [-1, -1, STRIKE]
    assert generate._resting([np.array([4, 8, 12])], 1, 13, 16, 3) is None
    model = api.load_model()
    generator = copy.deepcopy(model.generator)
    generator.entering = {"share": 1.0, "beats": [[0, 4, 8, 8, 8]]}  # the top voice alone for 4 beats, then two for 4
    pieces = generate.sample_rolls(generator, range(4), 4, metre=(4, 4), ending=True, opening=True, **model.sampling)
    again = generate.sample_rolls(generator, range(4), 4, metre=(4, 4), ending=True, opening=True, **model.sampling)
    assert [midi.to_midi_bytes(r) for r in pieces] == [midi.to_midi_bytes(r) for r in again]
    for seed, piece in enumerate(pieces):
        first = int(piece.notes[:, 1].min())
        drawn = generate.piece_pickup(seed, generator, (4, 4), 4)
        assert first == (16 - drawn if drawn else 0)  # the top voice strikes at the piece's start (after its pickup's rest)
        counts = midi.sounding_counts(piece.notes)
        assert counts[first:first + 16].max() <= 1 and counts[first + 16:first + 32].max() <= 2
        assert counts[first + 32:].max() >= 3
        starts = set(piece.notes[:, 1].tolist())
        assert {first + 16, first + 32} <= starts  # the second voice strikes a note at its entry, the third at its


def test_a_pieces_opening_bars_neither_repeat_nor_come_back_so_its_voices_come_in_as_drawn():
    forms = np.full((1, form.FORM_BARS), -1, np.int8)
    forms[0, 2:4], forms[0, 5:7] = [1, 1], [0, 1]  # the second bar twice again, then the first two
    assert generate.opening_bars(np.array([12, 12, 12]), 16) == 1  # a pickup of a beat: its bar alone
    assert generate.opening_bars(np.array([0, 16, 40]), 16) == 3 and generate.opening_bars(np.zeros(3, int), 16) == 0
    assert generate.piece_form(0, forms, 8, False, 0).tolist() == [-1, -1, 1, 1, -1, 0, 1, -1]
    assert generate.piece_form(0, forms, 8, False, 1).tolist() == [-1, -1, 1, 1, -1, -1, 1, -1]
    assert generate.piece_form(0, forms, 8, False, 3).tolist() == [-1] * 8
    model = api.load_model()
    generator = copy.deepcopy(model.generator)
    generator.entering = {"share": 1.0, "beats": [[0, 4, 8, 8, 8]]}  # bars 1, 2 and 3 each bring a voice in
    sampling = {**model.sampling, "forms": forms, "metre": (4, 4), "ending": True, "opening": True}
    for seed, piece in enumerate(generate.sample_rolls(generator, range(3), 8, **sampling)):
        first = int(piece.notes[:, 1].min())
        counts, starts = midi.sounding_counts(piece.notes), set(piece.notes[:, 1].tolist())
        assert counts[first:first + 16].max() <= 1 and counts[first + 16:first + 32].max() <= 2
        # each voice strikes at its entry: no repeat of the second bar (a voice alone) silences the third's three
        assert {first + 16, first + 32} <= starts and counts[first + 32] >= 3


def test_a_trainer_reads_how_its_musics_voices_come_in_and_its_checkpoint_keeps_it(tmp_path):
    chorales = data.load(EXAMPLES[:4], cache_dir=False).rolls
    motet = midi.Roll(notes=np.array([[72, 0, 64, 80], [67, 8, 64, 80], [60, 16, 64, 80], [48, 24, 64, 80]],
                                     np.int32), steps_per_beat=4, time_signatures=((0, 4, 4),))
    rolls = chorales + [motet]
    config = TrainConfig(batch_size=8, window_bars=2)
    trainer = Trainer(rolls, model_config_for(rolls, latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16,
                                              d_embed=16), config, device="cpu", budget=Budget(steps=1))
    said = upbeat.entering(rolls, trainer.model.voices)
    assert said["share"] == 0.2 and said["beats"][0][:4] == [0.0, 2.0, 4.0, 6.0]
    assert trainer.data_meta["entries"] == said and trainer.G.entering == said
    trainer.save(tmp_path / "model")
    assert ckpt.load(tmp_path / "model").generator.entering == said
    assert trainer._cpu_generator().entering == said
    model = ckpt.load(tmp_path / "model")
    seeds = range(12)
    apart = [upbeat.entries_for(s, said, model.model.steps_per_beat) for s in seeds]
    assert 0 < sum(a is not None for a in apart) < len(apart)
    for entry, piece in zip(apart, api.compose_many(model, seeds, 4, metre=(4, 4))):
        # a piece whose voices come in one by one says so (the motet's last voice comes in 6 beats after its first)
        assert ("voices entering over 6 beats" in piece.description) == (entry is not None), piece.description
