"""Compound time read in swing (musicgan.swing): a jig's 6/8 harmonised and continued by the
chorale model, which knows 4/4 and 3/4, with its bars, beats and notes where they were; and a
hymn's 3/2 at half its note values."""
import dataclasses

import numpy as np
import pytest

from musicgan import api, midi, swing
from musicgan.midi import Roll

from conftest import ROOT

JIG = ROOT / "examples" / "tunes" / "ryansMammoth-BloomingMeadowsJig.mid"  # 6/8, eighths and quarters only
SLIP_JIG = ROOT / "examples" / "tunes" / "ryansMammoth-HopJig.mid"  # 9/8
# by hand, on sixteenths: a dotted beat's six steps as a quarter's four, and back
BY_HAND = {0: 0, 2: 1, 4: 2, 5: 3}
BACK = {0: 0, 1: 2, 2: 4, 3: 5}


@pytest.fixture(scope="module")
def model():
    return api.load_model()


def test_which_metres_are_read_in_swing_or_at_half_their_note_values():
    assert [swing.simple(m) for m in ((6, 8), (9, 8), (12, 8))] == [(2, 4), (3, 4), (4, 4)]
    assert [swing.simple(m) for m in ((3, 8), (6, 4), (2, 4), (5, 8))] == [None] * 4
    assert swing.readable((6, 8), 4) and swing.readable((6, 8), 12) and not swing.readable((6, 8), 6)
    assert swing.simple((3, 2)) == (3, 4) and swing.readable((3, 2), 6) and not swing.readable((3, 4), 4)
    assert swing.words((3, 2)) == ", its halves as quarters" and swing.words((6, 8)) == " in swing"


def test_half_notes_as_quarters_and_back_is_the_music_again():
    """Bars of 3/2 are read at half their note values (a bar of 24 steps as one of 12), a bar of
    9/8 after them in swing, and the notes come back where they were."""
    rows = ((0, 3, 2), (48, 9, 8))
    starts = [0, 2, 4, 8, 16, 24, 30, 32, 40, 48, 52, 54, 60, 66]
    notes = np.array([[60 + i % 7, s, starts[i + 1] if i + 1 < len(starts) else 72, 80] for i, s in enumerate(starts)],
                     np.int32)
    roll = Roll(notes, 4, time_signatures=rows, tempos=((0, 100.0), (24, 90.0)))
    read, written = swing.swung(roll, {(3, 2), (9, 8)})
    assert read.time_signatures == ((0, 3, 4), (24, 3, 4)) and written == ((0, 3, 2), (24, 9, 8))
    assert read.tempos == ((0, 100.0), (12, 90.0)) and read.notes[:10, 1].tolist() == [0, 1, 2, 4, 8, 12, 15, 16, 20, 24]
    back = swing.unswung(dataclasses.replace(read, time_signatures=written), {(3, 2), (9, 8)})
    assert np.array_equal(back.notes, roll.notes) and back.time_signatures == rows and back.tempos == roll.tempos


def test_a_chorale_in_3_2_is_harmonised_and_continued_as_itself_in_3_4(model):
    """The chorale model knows 3/4, not 3/2. A chorale in 3/4 written at twice its note values in
    3/2 (as hymn books write many) is harmonised and continued as the 3/4 chorale is, note for
    note at twice the note values, and written in 3/2."""
    chorale = midi.read(ROOT / "examples" / "bwv122.6.mid", 4)
    assert chorale.time_signatures == ((0, 3, 4),)
    in_3_2 = chorale.retimed(lambda t: np.asarray(t) * 2, ((0, 3, 2),))
    for voice in ("top", "bottom"):
        piece = api.compose_harmonisation(model, in_3_2, seed=3, voice=voice, audio=False)
        assert "(its 3/2 read as 3/4, its halves as quarters)" in piece.description
        alike = midi.read(api.compose_harmonisation(model, chorale, seed=3, voice=voice, audio=False).midi, 4)
        written = midi.read(piece.midi, 4)
        assert written.time_signatures == ((0, 3, 2),)
        assert np.array_equal(written.notes[:, :3], alike.notes[:, :3] * [1, 2, 2])
    going_on = api.compose_continuation(model, in_3_2, seed=1, bars=4, audio=False)
    alike = midi.read(api.compose_continuation(model, chorale, seed=1, bars=4, audio=False).midi, 4)
    assert going_on.description.startswith("seed 1 · opening and 4 bars of 3/2 (its 3/2 read as 3/4, its halves")
    assert np.array_equal(midi.read(going_on.midi, 4).notes[:, :3], alike.notes[:, :3] * [1, 2, 2])
    first_bar = dataclasses.replace(in_3_2, notes=in_3_2.notes[in_3_2.notes[:, 1] < 24], length=24)
    assert "a melody of 1 bar harmonised (its 3/2" in api.compose_harmonisation(model, first_bar, audio=False).description
    with pytest.raises(ValueError, match=r"^the melody is in 5/2; this model knows 4/4, 3/4$"):
        api.compose_harmonisation(model, in_3_2.retimed(lambda t: t, ((0, 5, 2),)), audio=False)


@pytest.mark.parametrize("steps_per_beat", [4, 12])
def test_swing_and_back_is_the_music_again(steps_per_beat):
    """Bars of 6/8 and 9/8 go in swing (a dotted beat of 6 sixteenths to a quarter of 4), a bar of
    2/4 between them does not, and the notes on the steps the reading keeps come back where they were."""
    u = steps_per_beat // 4
    rows = ((0, 6, 8), (24 * u, 2, 4), (32 * u, 9, 8))
    starts = [0, 5, 6, 10, 12, 16, 22, 24, 28, 32, 36, 38, 44, 48]  # (on 0, 2, 4, 5 of the dotted beats)
    notes = np.array([[60 + i % 7, s * u, (starts[i + 1] if i + 1 < len(starts) else 50) * u, 80]
                      for i, s in enumerate(starts)], np.int32)
    roll = Roll(notes, steps_per_beat, time_signatures=rows, tempos=((0, 100.0), (24 * u, 90.0)))
    read, written = swing.swung(roll, {(6, 8), (9, 8)})
    assert read.time_signatures == ((0, 2, 4), (16 * u, 2, 4), (24 * u, 3, 4))  # (bars of 8, 8 and 12 steps)
    assert written == ((0, 6, 8), (16 * u, 2, 4), (24 * u, 9, 8)) and read.tempos == ((0, 100.0), (16 * u, 90.0))
    assert read.notes[:8, 1].tolist() == [0, 3 * u, 4 * u, 6 * u, 8 * u, 10 * u, 14 * u, 16 * u]  # (0 5|6 10|12 16|22|24)
    back = swing.unswung(dataclasses.replace(read, time_signatures=written), {(6, 8), (9, 8)})
    assert np.array_equal(back.notes, roll.notes) and back.time_signatures == rows and back.tempos == roll.tempos


def test_a_jig_is_harmonised_as_the_same_tune_in_swung_2_4_barred_by_hand(model):
    """The chorale model knows no 6/8. The jig read in swing is the tune a person would write in
    2/4 with its eighths in long-short pairs as sixteenth-sixteenth-eighth: the model's voices
    under it are those it writes under that tune, each beat's steps put back (0 1 2 3 -> 0 2 4 5)."""
    jig = midi.read(JIG)
    assert jig.time_signatures == ((0, 6, 8),) and set(np.unique(jig.notes[:, 1:3] % 6)) <= set(BY_HAND)
    moved = lambda t, table, beat, to: (t // beat) * to + np.vectorize(table.get)(t % beat)  # noqa: E731
    notes = jig.notes.copy()
    notes[:, 1:3] = moved(notes[:, 1:3], BY_HAND, 6, 4)
    by_hand = dataclasses.replace(jig, notes=notes, time_signatures=((0, 2, 4),))
    for voice in ("top", "bottom"):
        read = api.compose_harmonisation(model, jig, seed=3, voice=voice, audio=False)
        hand = api.compose_harmonisation(model, by_hand, seed=3, voice=voice, audio=False)
        assert "(its 6/8 read as 4/4 in swing, two bars as one)" in read.description
        assert "(its 2/4 read as 4/4, two bars as one)" in hand.description
        assert read.roll.time_signatures == ((0, 6, 8),) and midi.read(read.midi).time_signatures == ((0, 6, 8),)
        wrote = hand.roll.notes[~hand.given].copy()
        wrote[:, 1:3] = moved(wrote[:, 1:3], BACK, 4, 6)
        assert np.array_equal(read.roll.notes[~read.given], wrote[np.lexsort((wrote[:, 0], wrote[:, 1]))])
        assert np.array_equal(read.roll.notes[read.given][:, :3], api.harmonise.line_notes(jig, voice)[:, :3])
    # a listener hears two beats a bar: most of the voices' notes begin on them, few between the eighths
    voices = read.roll.notes[~read.given]
    assert np.isin(voices[:, 1] % 12, [0, 6]).mean() > 0.45 and (voices[:, 1] % 2).mean() < 0.1


def test_a_tune_with_notes_between_the_swung_eighths_comes_back_note_for_note(model):
    """A dotted figure (a dotted eighth and a sixteenth: steps 0 and 3 of a beat) is heard a
    sixteenth off in swing; the melody in the piece is the file's, and no pitch sounds twice."""
    jig = midi.read(JIG)
    notes = jig.notes.copy()
    quarters = np.nonzero((notes[:, 2] - notes[:, 1] == 4) & (notes[:, 1] % 6 == 0))[0][:6]
    notes[quarters, 2] -= 1  # a dotted eighth ...
    extra = notes[quarters].copy()
    extra[:, 1], extra[:, 2] = extra[:, 2], extra[:, 2] + 1  # ... and a sixteenth a step higher
    extra[:, 0] += 2
    dotted = dataclasses.replace(jig, notes=midi._sorted_notes(np.concatenate([notes, extra])))
    piece = api.compose_harmonisation(model, dotted, seed=1, audio=False)
    assert np.array_equal(piece.roll.notes[piece.given][:, :3], api.harmonise.line_notes(dotted, "top")[:, :3])
    assert midi.sounding_counts(piece.roll.notes).max() <= model.model.voices
    for pitch in np.unique(piece.roll.notes[:, 0]):
        same = piece.roll.notes[piece.roll.notes[:, 0] == pitch]
        assert (same[1:, 1] >= same[:-1, 2]).all()


def test_a_jig_opening_goes_on_in_6_8_and_a_slip_jig_is_harmonised_in_9_8(model):
    piece = api.compose_continuation(model, JIG, seed=2, bars=4, opening_bars=4, audio=False)
    jig = midi.read(JIG)
    assert piece.description.startswith("seed 2 · opening and 4 bars of 6/8 (its 6/8 read as 4/4 in swing")
    assert piece.roll.time_signatures == ((0, 6, 8),) and piece.roll.n_steps == 8 * 12
    opening = jig.notes[jig.notes[:, 1] < 48]
    assert np.array_equal(piece.roll.notes[piece.given][:, :2], opening[:, :2])
    assert (piece.roll.notes[:, 1] >= 48).sum() > 8
    alone = api.compose_continuation(model, JIG, seed=2, bars=4, opening_bars=4, audio=False, whole=False)
    assert alone.roll.time_signatures == ((0, 6, 8),) and alone.roll.n_steps == 4 * 12
    assert np.array_equal(alone.roll.notes[:, :3], piece.roll.notes[piece.roll.notes[:, 1] >= 48][:, :3] - [0, 48, 48])
    slip = api.compose_harmonisation(model, SLIP_JIG, seed=1, audio=False)
    # (the slip jig opens with a pickup of an eighth: written from it, a bar of 1/8, then its 9/8)
    assert "(its 9/8 read as 3/4 in swing)" in slip.description and slip.roll.time_signatures == ((0, 1, 8), (2, 9, 8))
    assert midi.read(slip.midi).time_signatures == ((0, 9, 8),)


def test_a_few_short_bars_are_named_where_they_are(model):
    """A jig whose strains end in a bar of 1/8 (as some books write it) is not "in 1/8": the
    refusal says it has a few bars of it."""
    jig = midi.read(JIG)
    rows = ((0, 6, 8), (36, 1, 8), (38, 6, 8), (86, 1, 8), (88, 6, 8))
    with pytest.raises(ValueError, match=r"^the melody has 2 bars of 1/8; this model knows 4/4, 3/4$"):
        api.compose_harmonisation(model, dataclasses.replace(jig, time_signatures=rows), audio=False)
    with pytest.raises(ValueError, match=r"^the melody is in 5/8; this model knows"):
        api.compose_harmonisation(model, dataclasses.replace(jig, time_signatures=((0, 5, 8), (300, 6, 8))), audio=False)
