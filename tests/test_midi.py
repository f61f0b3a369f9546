"""musicgan.midi: reading real-world MIDI into a Roll and writing it back."""
import dataclasses
import io

import numpy as np
import pretty_midi
import pytest

from musicgan import midi
from musicgan.midi import MidiError, Roll

from conftest import EXAMPLES, file_beats, make_midi, meta, off, on, scale_midi


def notes_of(roll):
    return [tuple(n) for n in roll.notes.tolist()]


# --------------------------------------------------------------------------- round trip

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip_exactly(path):
    roll = midi.read(path)
    again = midi.read(midi.to_midi_bytes(roll))
    assert np.array_equal(roll.notes, again.notes)
    assert roll.tempos == again.tempos
    assert roll.time_signatures == again.time_signatures
    assert roll.program == again.program
    assert len(roll.notes) > 50


def test_examples_exist():
    assert 8 <= len(EXAMPLES) <= 12


def test_edge_cases_round_trip(tmp_path):
    data = make_midi([[(0, meta("set_tempo", tempo=500000)), (0, meta("time_signature", numerator=3, denominator=4)),
                       (960, meta("set_tempo", tempo=400000))],
                      [(0, on(60)), (0, on(64)), (240, off(60)), (0, on(60)), (1, off(64)),  # repeated pitch
                       (5, on(67)), (0, off(67)),  # zero length
                       (479, off(60)), (0, on(72))]])  # 72 left hanging
    roll = midi.read(data)
    path = midi.write(roll, tmp_path / "out.mid")
    again = midi.read(path)
    assert notes_of(again) == notes_of(roll)
    assert again.tempos == roll.tempos and again.time_signatures == roll.time_signatures


def test_write_is_deterministic():
    roll = midi.read(EXAMPLES[0])
    assert midi.to_midi_bytes(roll) == midi.to_midi_bytes(midi.read(EXAMPLES[0]))


def test_read_accepts_path_bytes_and_file_object():
    path = EXAMPLES[0]
    a, b = midi.read(path), midi.read(path.read_bytes())
    c = midi.read(io.BytesIO(path.read_bytes()))
    assert notes_of(a) == notes_of(b) == notes_of(c)
    assert a.name == path.name


def test_pianoroll_and_back_is_identity():
    roll = midi.read(EXAMPLES[1])
    onset, sustain = roll.pianoroll()
    back = Roll.from_pianoroll(onset, sustain, velocity=90)
    assert np.array_equal(back.notes[:, :3], roll.notes[:, :3])


# --------------------------------------------------------------------------- timing

def test_positions_are_beats_whatever_the_tempo():
    # tempo doubles after two beats; a quarter note is still 4 steps
    data = make_midi([[(0, meta("set_tempo", tempo=500000)), (960, meta("set_tempo", tempo=250000))],
                      [(0, on(60)), (480, off(60)), (1440, on(62)), (480, off(62))]])
    roll = midi.read(data)
    assert notes_of(roll) == [(60, 0, 4, 80), (62, 16, 20, 80)]
    assert roll.tempos == ((0, 120.0), (8, 240.0))


def test_time_signature_is_kept():
    data = make_midi([[(0, meta("time_signature", numerator=3, denominator=4)), (0, on(60)), (480, off(60))]])
    roll = midi.read(data)
    assert roll.time_signatures == ((0, 3, 4),)
    assert roll.steps_per_bar == 12


def test_a_pickup_written_as_a_short_bar_of_its_own_is_read_as_the_end_of_a_whole_bar():
    """A notation program's export of a one-beat pickup: 1/4 for it, then 3/4 (a tempo change on
    the downbeat). Read as rolls hold a pickup: a whole bar of 3/4 whose last beat it is."""
    ts = lambda n, d: meta("time_signature", numerator=n, denominator=d)  # noqa: E731
    data = make_midi([[(0, ts(1, 4)), (0, meta("set_tempo", tempo=500000)), (0, on(67)), (480, off(67)), (0, ts(3, 4)), (0, meta("set_tempo", tempo=600000)),
                       (0, on(72)), (960, off(72)), (0, ts(2, 4)), (0, on(71)), (480, off(71))]])
    roll = midi.read(data)
    assert roll.time_signatures == ((0, 3, 4), (20, 2, 4)) and roll.tempos == ((0, 120.0), (12, 100.0))
    assert [tuple(n[:3]) for n in roll.notes.tolist()] == [(67, 8, 12), (72, 12, 20), (71, 20, 24)]
    for first, second in (((2, 4), (2, 4)), ((3, 4), (2, 4))):  # (bars as long, a shorter second bar)
        data = make_midi([[(0, ts(*first)), (0, on(67)), (960, off(67)), (0, ts(*second)), (0, on(72)), (960, off(72))]])
        assert midi.read(data).notes[0, 1] == 0


def test_steps_per_beat_sets_the_grid():
    roll = midi.read(scale_midi(2), steps_per_beat=12)
    assert notes_of(roll)[1][1:3] == (12, 24)


def test_type0_file_with_several_channels():
    data = make_midi([[(0, mido_program(1, 40)), (0, on(60, ch=0)), (0, on(67, ch=1)), (480, off(60, ch=0)),
                       (0, off(67, ch=1))]], type=0)
    roll = midi.read(data)
    assert sorted(n[0] for n in notes_of(roll)) == [60, 67]


def mido_program(ch, program):
    import mido
    return mido.Message("program_change", channel=ch, program=program)


def test_tracks_are_merged_and_most_used_program_kept():
    a = [(0, mido_program(0, 0)), (0, on(60)), (480, off(60))]
    b = [(0, mido_program(1, 73))] + [e for i in range(3) for e in ((0, on(70 + i, ch=1)), (480, off(70 + i, ch=1)))]
    roll = midi.read(make_midi([a, b]))
    assert len(roll.notes) == 4
    assert roll.program == 73


def test_empty_tracks_are_fine():
    roll = midi.read(make_midi([[], [(0, on(60)), (480, off(60))], []]))
    assert len(roll.notes) == 1


# --------------------------------------------------------------------------- messy events

def test_running_status_and_velocity_zero_note_off():
    # raw bytes: note_on 60, then running status note_on 60 vel 0 (= off), note_on 62, off
    track = bytes([0x00, 0x90, 60, 100, 0x83, 0x60, 60, 0, 0x00, 62, 90, 0x83, 0x60, 62, 0, 0x00, 0xFF, 0x2F, 0x00])
    data = b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 0x01, 0xE0]) + b"MTrk" + len(track).to_bytes(4, "big") + track
    roll = midi.read(data)
    assert notes_of(roll) == [(60, 0, 4, 100), (62, 4, 8, 90)]


def test_overlapping_same_pitch_is_cut_at_the_next_onset():
    roll = midi.read(make_midi([[(0, on(60)), (480, on(60)), (480, off(60)), (480, off(60))]]))
    starts_ends = [(n[1], n[2]) for n in notes_of(roll)]
    assert starts_ends[0] == (0, 4)
    assert len(starts_ends) == 2 and starts_ends[1][0] == 4


def test_zero_length_note_lasts_one_step():
    roll = midi.read(make_midi([[(0, on(60)), (0, off(60)), (0, on(62)), (10, off(62))]]))
    assert notes_of(roll) == [(60, 0, 1, 80), (62, 0, 1, 80)]


def test_hanging_note_ends_with_the_last_note_event():
    roll = midi.read(make_midi([[(0, on(60)), (0, on(64)), (960, off(64))]]))
    assert notes_of(roll) == [(60, 0, 8, 80), (64, 0, 8, 80)]


def test_huge_ticks_that_pretty_midi_refuses_are_read():
    data = make_midi([[(0, on(60)), (480, off(60)), (0x0FFFFFF0, meta("end_of_track"))]])
    with pytest.raises(Exception, match="tick"):
        pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert notes_of(midi.read(data)) == [(60, 0, 4, 80)]


def test_drums_are_left_out_and_counted():
    data = make_midi([[(0, on(60)), (0, on(36, ch=9)), (480, off(60)), (0, off(36, ch=9))]])
    roll = midi.read(data)
    assert notes_of(roll) == [(60, 0, 4, 80)]
    assert roll.drum_notes == 1
    assert len(midi.read(data, keep_drums=True).notes) == 2


def test_transpose():
    roll = midi.read(scale_midi(3))
    assert list(roll.transpose(2).notes[:, 0]) == [62, 63, 64]
    with pytest.raises(ValueError):
        roll.transpose(100)


# --------------------------------------------------------------------------- bad input

def one_line_error(source, **kw) -> str:
    with pytest.raises(MidiError) as err:
        midi.read(source, **kw)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_text_file_renamed_mid(tmp_path):
    path = tmp_path / "notes.mid"
    path.write_text("these are my notes, not MIDI")
    message = one_line_error(path)
    assert message.startswith("notes.mid:") and "not a MIDI file" in message


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.mid"
    path.write_bytes(EXAMPLES[0].read_bytes()[:700])
    assert "truncated" in one_line_error(path)
    assert "truncated" in one_line_error(EXAMPLES[0].read_bytes()[:10])


def test_empty_file_and_empty_midi(tmp_path):
    (tmp_path / "zero.mid").write_bytes(b"")
    assert "empty" in one_line_error(tmp_path / "zero.mid")
    assert "no notes" in one_line_error(make_midi([[(0, meta("set_tempo", tempo=500000))]]), name="empty.mid")


def test_drum_only_file():
    data = make_midi([[(0, on(36, ch=9)), (240, off(36, ch=9))]])
    assert "only drums" in one_line_error(data, name="beat.mid")


def test_too_large_and_too_long(tmp_path):
    assert "too large" in one_line_error(EXAMPLES[0], max_bytes=100)
    data = make_midi([[(0, on(60)), (480 * 100_000, off(60))]])
    assert "too long" in one_line_error(data, name="drone.mid")


def test_missing_file_and_folder(tmp_path):
    assert "cannot be opened" in one_line_error(tmp_path / "nope.mid")
    assert "folder" in one_line_error(tmp_path)


def test_random_garbage_after_a_header_never_escapes_as_another_error():
    rng = np.random.default_rng(0)
    header = EXAMPLES[0].read_bytes()[:22]
    for _ in range(300):
        data = header + rng.integers(0, 256, rng.integers(0, 400)).astype(np.uint8).tobytes()
        try:
            midi.read(data)
        except MidiError:
            pass


def test_a_roll_in_a_known_key_writes_its_key_signature():
    import mido

    from musicgan import keys

    roll = midi.Roll(notes=np.array([[60, 0, 4, 80], [64, 4, 8, 80]], dtype=np.int32))
    assert not [m for m in mido.MidiFile(file=io.BytesIO(midi.to_midi_bytes(roll))).tracks[0]
                if m.type == "key_signature"]  # a key nobody told us: none written
    for key in range(keys.KEYS):
        written = mido.MidiFile(file=io.BytesIO(midi.to_midi_bytes(dataclasses.replace(roll, key=key))))
        found = [m.key for m in written.tracks[0] if m.type == "key_signature"]
        assert found == [keys.signature(key)]
        # the signature names the same key: its tonic and mode
        assert keys.parse(found[0].rstrip("m") + (" minor" if found[0].endswith("m") else " major")) == key
    # as few accidentals as the key allows: Db major (5 flats), not C# (7 sharps); G# minor, not Ab minor
    assert keys.signature(1) == "Db" and keys.signature(20) == "G#m"


def test_a_rest_at_the_end_lasts_in_the_file():
    notes = np.array([[60, 0, 4, 80], [64, 4, 10, 80]], dtype=np.int32)
    roll = midi.Roll(notes=notes, steps_per_beat=4, time_signatures=((0, 3, 4),))
    assert roll.n_steps == 10 and file_beats(midi.to_midi_bytes(roll)) == 2.5  # ends with its last note
    whole = dataclasses.replace(roll, length=12)  # a bar of 3/4, its last half beat a rest
    assert whole.n_steps == 12 and file_beats(midi.to_midi_bytes(whole)) == 3
    assert whole.on_grid(8).n_steps == 24 and whole.on_grid(8).notes[-1, 2] == 20
    # a length shorter than the notes never cuts them
    assert dataclasses.replace(roll, length=6).n_steps == 10
