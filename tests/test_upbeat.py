"""Openings: a new piece begins with a pickup as often as its model's music does, ends as much
early, and is written and played from its first note."""
import numpy as np
import pytest
import torch

from musicgan import api, generate, metre, midi, upbeat
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
    together, up to its usual texture; a chorale's voices all come in on its first note."""
    one_by_one = midi.Roll(notes=np.array([[67, 4, 64, 80], [60, 12, 64, 80], [55, 20, 64, 80]], np.int32),
                           steps_per_beat=4, time_signatures=((0, 4, 4),))
    assert upbeat.entries(one_by_one, 4).tolist() == [0, 2, 4, 4]  # (the first note a beat in: a pickup)
    chord = midi.Roll(notes=np.array([[67, 0, 16, 80], [60, 0, 16, 80], [52, 0, 8, 80]], np.int32), steps_per_beat=4)
    assert upbeat.entries(chord, 5).tolist() == [0] * 5
    table = np.array([[0, 2, 4, 4], [0, 0, 0, 0]])
    drawn = {tuple(upbeat.entries_for(s, table, 4)) for s in range(20)}
    assert drawn == {(0, 8, 16, 16), (0, 0, 0, 0)} and tuple(upbeat.entries_for(3, table, 4)) in drawn


def test_each_voice_rests_until_its_entry_and_the_pieces_stay_the_seeds():
    given = generate._resting([np.array([4, 8, 12]), np.zeros(3, int)], 1, 0, 16, 3)
    assert (given[0, :4] == REST).all() and (given[0, 4:8, 1:] == REST).all() and (given[0, 8:12, 2] == REST).all()
    assert (given[0, 4:, 0] == -1).all() and (given[0, 8:, 1] == -1).all() and (given[0, 12:] == -1).all()
    assert (given[1] == -1).all()
    model = api.load_model()
    table = np.array([[0, 4, 8, 8, 8]], float)  # the top voice alone for 4 beats, then two for 4
    pieces = generate.sample_rolls(model.generator, range(4), 4, metre=(4, 4), ending=True, opening=True,
                                   entries=table, **model.sampling)
    again = generate.sample_rolls(model.generator, range(4), 4, metre=(4, 4), ending=True, opening=True,
                                  entries=table, **model.sampling)
    assert [midi.to_midi_bytes(r) for r in pieces] == [midi.to_midi_bytes(r) for r in again]
    for piece in pieces:
        first = int(piece.notes[:, 1].min())
        counts = midi.sounding_counts(piece.notes)
        assert counts[first:first + 16].max() <= 1 and counts[first + 16:first + 32].max() <= 2
        assert counts[first + 32:].max() >= 3
