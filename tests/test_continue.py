"""Continuing an opening: the model reads the first bars of a file and carries on."""

import numpy as np
import pytest

from musicgan import api, cli, generate, midi
from musicgan.models import Generator, ModelConfig

from conftest import EXAMPLES, ROOT, file_beats, make_midi, meta, off, on, pickup_rest


@pytest.fixture(scope="module")
def model():
    return api.load_model()


def opening_notes(roll, n_steps):
    notes = roll.notes[roll.notes[:, 1] < n_steps]
    return notes[:, :2], np.minimum(notes[:, 2], n_steps)


@pytest.mark.parametrize("example", [0, 3])
def test_the_opening_comes_out_note_for_note_and_the_piece_goes_on(model, example):
    opening = midi.read(EXAMPLES[example], model.model.steps_per_beat)
    piece = api.compose_continuation(model, EXAMPLES[example], seed=5, bars=8, opening_bars=4, audio=False)
    roll = midi.read(piece.midi, model.model.steps_per_beat)
    bar = opening.steps_per_bar
    P = 4 * bar
    starts, ends = opening_notes(opening, P)
    got_starts, got_ends = opening_notes(roll, P)
    assert np.array_equal(starts, got_starts)  # every note of the opening, at its place
    cut = ends < P  # notes that end inside the opening end where they did (one sounding at its end may go on)
    assert np.array_equal(ends[cut], got_ends[cut])
    assert roll.time_signatures[0][1:] == opening.time_signatures[0][1:]
    # 8 more bars, with music in them; the file lasts all 12 bars (its last beat may rest)
    assert 11 * bar < roll.n_steps <= 12 * bar and (roll.notes[:, 1] >= P).sum() > 20
    # (an opening with a pickup is written from it, in a short first bar: the rest before it left out)
    rest = pickup_rest(piece.roll)
    assert rest == (opening.notes[:, 1].min() if example == 3 else 0)
    assert piece.roll.n_steps == 12 * bar - rest and file_beats(piece.midi) * opening.steps_per_beat == 12 * bar - rest
    assert roll.tempo_bpm == pytest.approx(opening.tempo_bpm, rel=0.01)
    # the opening keeps a track of its own in the MIDI file
    import io

    import mido

    tracks = mido.MidiFile(file=io.BytesIO(piece.midi)).tracks
    names = [next((m.name for m in t if m.type == "track_name"), None) for t in tracks[1:]]
    struck = [sum(m.type == "note_on" for m in t) for t in tracks[1:]]
    assert names == ["given", "musicgan"] and struck[0] == len(starts) and struck[1] > 20


def test_the_same_file_model_and_seed_give_the_same_bytes_and_the_continuation_alone(model):
    first = api.compose_continuation(model, EXAMPLES[1], seed=2, bars=4, audio=False)
    again = api.compose_continuation(model, EXAMPLES[1].read_bytes(), seed=2, bars=4, audio=False)
    other = api.compose_continuation(model, EXAMPLES[1], seed=3, bars=4, audio=False)
    assert first.midi == again.midi and first.midi != other.midi
    alone = api.compose_continuation(model, EXAMPLES[1], seed=2, bars=4, audio=False, whole=False)
    whole, new = midi.read(first.midi, 4), alone.roll  # (read back: the opening's pickup bar whole again)
    assert pickup_rest(first.roll) == 12 and pickup_rest(new) == 0
    P = whole.n_steps - 4 * whole.steps_per_bar
    assert new.n_steps == 4 * whole.steps_per_bar
    later = whole.notes[whole.notes[:, 1] >= P].copy()
    later[:, 1:3] -= P
    assert all(tuple(n) in {tuple(m) for m in new.notes} for n in later)


def test_an_opening_in_2_2_goes_on_as_in_4_4_and_stays_in_2_2(model):
    import dataclasses
    opening = midi.read(EXAMPLES[1], model.model.steps_per_beat)
    assert opening.time_signatures[0][1:] == (4, 4)
    cut_time = dataclasses.replace(opening, time_signatures=((0, 2, 2),))
    as_written = api.compose_continuation(model, opening, seed=3, bars=4, audio=False)
    read_as = api.compose_continuation(model, cut_time, seed=3, bars=4, audio=False)
    assert np.array_equal(read_as.roll.notes, as_written.roll.notes)
    # (written from its pickup: a bar of 1/4, then its own bars)
    assert read_as.roll.time_signatures[0][1:] == (1, 4) and {ts[1:] for ts in read_as.roll.time_signatures[1:]} == {(2, 2)}
    assert "4 bars of 2/2 (its 2/2 read as 4/4)" in read_as.description
    mixed = dataclasses.replace(opening, time_signatures=((0, 4, 4), (32, 2, 2)))  # (2/2 from bar 3)
    alone = api.compose_continuation(model, mixed, seed=3, bars=4, whole=False, audio=False)
    assert alone.roll.time_signatures == ((0, 2, 2),) and "4 bars of 2/2" in alone.description


def test_an_opening_in_2_4_goes_on_two_bars_as_one_of_4_4_and_stays_in_2_4(model):
    """A 2/4 opening to a model of 4/4: bar counts in its own bars, its pickup led into the model's
    bar line, and the continuation (and its phrases) written back in 2/4."""
    import dataclasses
    opening = midi.read(EXAMPLES[1], model.model.steps_per_beat)  # (4/4, a pickup of one beat)
    as_written = api.compose_continuation(model, opening, seed=1, bars=8, audio=False)
    assert as_written.description.endswith("8 bars of 4/4 · 120 bpm · bars 7-10 repeat 2-5")
    # the same notes barred in 2/4 (its first bar empty), and moved two beats earlier (no empty bar)
    for earlier, opening_bars, phrases in ((0, 8, "bars 13-20 repeat 3-10"), (8, 7, "bars 12-19 repeat 2-9")):
        in_2_4 = dataclasses.replace(opening, time_signatures=((0, 2, 4),)).later(-earlier)
        piece = api.compose_continuation(model, in_2_4, seed=1, bars=16, opening_bars=opening_bars, audio=False)
        # (read back: each written from its pickup, a short first bar, is the roll drawn)
        read, written = midi.read(piece.midi, 4), midi.read(as_written.midi, 4)
        assert np.array_equal(read.notes, written.later(-earlier).notes)
        assert np.array_equal(piece.given, as_written.given)
        assert read.time_signatures == ((0, 2, 4),)
        assert f"opening and 16 bars of 2/4 (its 2/4 read as 4/4, two bars as one) · 120 bpm · {phrases}" in \
            piece.description
    alone = api.compose_continuation(model, in_2_4, seed=1, bars=16, opening_bars=7, whole=False, audio=False)
    by_hand = api.compose_continuation(model, opening, seed=1, bars=8, whole=False, audio=False)
    assert np.array_equal(alone.roll.notes, by_hand.roll.notes) and alone.roll.time_signatures == ((0, 2, 4),)


def test_an_opening_above_the_models_range_is_read_an_octave_lower_and_moved_back(model):
    opening = midi.read(EXAMPLES[1], model.model.steps_per_beat)
    high = opening.transpose(24)
    assert high.notes[:, 0].max() > model.model.pitch_high >= opening.notes[:, 0].max() + 12
    by_hand = api.compose_continuation(model, opening.transpose(12), seed=3, bars=4, audio=False)
    piece = api.compose_continuation(model, high, seed=3, bars=4, audio=False)
    assert np.array_equal(piece.roll.notes, by_hand.roll.transpose(12).notes)
    assert "(read an octave lower, in this model's range)" in piece.description


def test_an_opening_the_model_cannot_read_gets_a_clear_message(model, tmp_path):
    wide = make_midi([[(0, on(20)), (480, off(20)), (0, on(110)), (480, off(110))]])
    with pytest.raises(ValueError, match="no whole octave up or down brings all of them into that range"):
        api.compose_continuation(model, wide, audio=False)
    waltz = make_midi([[(0, meta("time_signature", numerator=3, denominator=4))]
                       + [e for i in range(12) for e in ((0, on(60 + i % 5)), (480, off(60 + i % 5)))]])
    g = Generator(ModelConfig(pitch_low=40, pitch_high=80, metres=((4, 4), (2, 4))))
    with pytest.raises(ValueError, match="in 3/4; this model knows 4/4, 2/4"):
        generate.continue_rolls(g, midi.read(waltz), [0])
    (tmp_path / "not.mid").write_bytes(b"not a MIDI file at all")
    assert cli.main(["continue", str(tmp_path / "not.mid"), "--out", str(tmp_path / "out.mid")]) == 1
    assert not (tmp_path / "out.mid").exists()


@pytest.mark.parametrize("checkpoint", [None, "checkpoints/fiddle-tunes"])
def test_what_a_model_refuses_to_read_is_what_it_refuses_to_make(checkpoint, tmp_path):
    """api.refusal reads given music as Continue and Harmonise read it, and draws nothing: it says
    None where they make music, and their words where they refuse (5/4 for both models, a
    chorale in 3/4 and a melody to harmonise for the one-voice fiddle model, a file that is not
    MIDI for both)."""
    model = api.load_model(checkpoint)
    (tmp_path / "not.mid").write_bytes(b"not a MIDI file at all")
    (tmp_path / "five.mid").write_bytes(make_midi([[(0, meta("time_signature", numerator=5, denominator=4))] + [
        e for i in range(20) for e in ((0, on(67 + i % 5)), (480, off(67 + i % 5)))]]))
    tunes = sorted((ROOT / "examples" / "tunes").glob("*.mid"))
    makers = {"continuation": api.compose_continuation, "harmonisation": api.compose_harmonisation}
    said = []
    for music in [EXAMPLES[0], tunes[0], next(t for t in tunes if "Jig" in t.stem), tmp_path / "five.mid",
                  tmp_path / "not.mid"]:
        for kind, arguments in [("continuation", dict(bars=2, opening_bars=2)), ("harmonisation", dict(voice="top"))]:
            given = {"opening" if kind == "continuation" else "melody": music.read_bytes()}
            words = api.refusal(kind, checkpoint, **given, **arguments, seed=1)
            try:
                makers[kind](model, *given.values(), **arguments, seed=1, audio=False)
            except ValueError as e:
                assert words == str(e)
            else:
                assert words is None
            said.append(words)
    assert 2 <= sum(words is None for words in said) <= 6  # (some are read, some are not)
    assert any("is in 5/4; this model knows" in words for words in said if words)


def test_a_continuation_keeps_near_the_musics_parallels_between_beats(model, monkeypatch):
    """As a harmonisation (test_harmonise): of the candidates the critic offers, one nearest the
    chorales' parallel fifths and octaves between beats goes on, never one further from their
    share than the critic's own first choice."""
    from musicgan import voiceleading

    def offs():  # how far each continuation is from the chorales' share, in parallels
        rolls = [api.compose_continuation(model, EXAMPLES[3], seed=s, bars=8, audio=False, whole=False).roll
                 for s in range(6)]
        return [abs(n - generate.parallels_share(model.parallels, beats, s))
                for s, (n, beats) in enumerate(map(voiceleading.parallel_count, rolls))]
    taken = offs()
    monkeypatch.setattr(generate, "parallels_first", lambda order, roll_of, rate, seed: order)
    critics = offs()
    assert all(a <= b for a, b in zip(taken, critics)) and sum(taken) < sum(critics), (taken, critics)


def test_the_cli_continues_a_file(tmp_path, capsys):
    out = tmp_path / "more.mid"
    assert cli.main(["continue", str(EXAMPLES[2]), "--out", str(out), "--bars", "4", "--opening-bars", "2",
                     "--seed", "7", "--program", "40"]) == 0
    roll = midi.read(out)
    assert roll.program == 40 and roll.n_steps == 6 * roll.steps_per_bar
    assert "4 bars" in capsys.readouterr().out
