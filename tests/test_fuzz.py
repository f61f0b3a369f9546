"""Property-based fuzzing: broken MIDI bytes and hostile zip archives never escape as anything but
our own errors (or a report line), and never hang. The default run tries a few hundred cases;
the slow run (CI) tries thousands."""
import io
import struct
import time
import zipfile

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from musicgan import data, midi
from musicgan.midi import MidiError

from conftest import EXAMPLES

SEEDS = [p.read_bytes() for p in EXAMPLES[:4]]
TIME_LIMIT_S = 2.0  # one file, however broken, is read or refused within this
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def broken_midi(draw):
    blob = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "delete", "length"]))
        if not blob:
            break
        at = draw(st.integers(0, len(blob) - 1))
        if kind == "flip":
            blob[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del blob[at:]
        elif kind == "splice":
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(other) - 1))
            blob[at:at + draw(st.integers(0, 64))] = other[start:start + draw(st.integers(0, 200))]
        elif kind == "insert":
            blob[at:at] = draw(st.binary(max_size=32))
        elif kind == "delete":
            del blob[at:at + draw(st.integers(1, 16))]
        elif kind == "length":  # a chunk length field that lies
            blob[at:at + 4] = struct.pack(">I", draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(blob)])))
    return bytes(blob)


def read_or_refuse(blob):
    t0 = time.perf_counter()
    try:
        roll = midi.read(blob, name="fuzz.mid")
        assert len(roll.notes) > 0
        midi.read(midi.to_midi_bytes(roll))  # whatever we read, we can write and read back
    except MidiError as e:
        assert e.reason and "\n" not in str(e)
    assert time.perf_counter() - t0 < TIME_LIMIT_S


@FAST
@given(broken_midi())
def test_broken_midi_is_read_or_refused(blob):
    read_or_refuse(blob)


@pytest.mark.slow
@THOROUGH
@given(broken_midi())
def test_broken_midi_is_read_or_refused_thoroughly(blob):
    read_or_refuse(blob)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_are_refused(blob):
    read_or_refuse(b"MThd" + blob if blob[:1] == b"\x00" else blob)


# --------------------------------------------------------------------------- zip archives

NAMES = st.sampled_from(["a.mid", "../a.mid", "../../etc/x.mid", "/abs.mid", "C:/win.mid", "d/../../up.mid",
                         "inner.zip", "notes.txt", "deep/er/b.midi", "..\\back.mid", "ok.MID", ""])


@st.composite
def hostile_zip(draw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(draw(st.integers(0, 6))):
            name = draw(NAMES) or f"blank{i}.mid"
            kind = draw(st.sampled_from(["midi", "broken", "zeros", "nested"]))
            if kind == "midi":
                payload = draw(st.sampled_from(SEEDS))
            elif kind == "broken":
                payload = draw(broken_midi())
            elif kind == "zeros":  # compresses extremely well: a small bomb
                payload = b"MThd" + bytes(draw(st.integers(0, 2_000_000)))
            else:
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w") as iz:
                    iz.writestr("x.mid", SEEDS[0])
                payload = inner.getvalue()
            z.writestr(f"{i}-{name}" if name.startswith("..") is False and not name.startswith("/") else name, payload)
    blob = bytearray(buf.getvalue())
    if draw(st.booleans()) and len(blob) > 30:  # lie about sizes in the central directory
        at = blob.rfind(b"PK\x01\x02")
        if at >= 0:
            blob[at + 24:at + 28] = struct.pack("<I", draw(st.sampled_from([0, 1, 2 ** 31, 2 ** 32 - 1])))
    return bytes(blob)


def load_zip(blob, tmp_path):
    path = tmp_path / "upload.zip"
    path.write_bytes(blob)
    t0 = time.perf_counter()
    corpus = data.load([path], cache_dir=False, limits=data.Limits(max_zip_bytes=4 * 1024 * 1024))
    assert time.perf_counter() - t0 < 10
    for name in corpus.report.read:
        assert ".." not in name.split("/") and not name.split("/", 1)[1].startswith("/")
    assert not (tmp_path.parent / "a.mid").exists() and not (tmp_path.parent / "up.mid").exists()
    return corpus


@FAST
@given(blob=hostile_zip())
def test_hostile_zips_only_give_reports(blob, tmp_path_factory):
    load_zip(blob, tmp_path_factory.mktemp("zip"))


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=hostile_zip())
def test_hostile_zips_only_give_reports_thoroughly(blob, tmp_path_factory):
    load_zip(blob, tmp_path_factory.mktemp("zip"))


# --------------------------------------------------------------------------- music given to a model

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_midi(), st.sampled_from(["continuation", "harmonisation"]))
def test_broken_music_to_continue_or_harmonise_is_played_or_refused_in_words(blob, kind):
    """What Continue and Harmonise are given is read or refused in words (api.refusal reads it as
    they do); a refusal pickles whole, as it must to come back from the app's worker process; and
    music that is read is made."""
    import pickle

    from musicgan import api

    given_music = {"opening": blob} if kind == "continuation" else {"melody": blob}
    words = api.refusal(kind, None, **given_music)
    event("made" if words is None else "refused")
    if words is None:
        maker = api.compose_continuation if kind == "continuation" else api.compose_harmonisation
        piece = maker(None, blob, seed=1, audio=False, **({"bars": 1, "opening_bars": 1} if kind == "continuation" else {}))
        assert len(piece.roll.notes) and midi.read(piece.midi)
    else:
        assert words and "\n" not in words and "Traceback" not in words
        try:
            midi.read(blob)
        except MidiError as e:
            assert str(pickle.loads(pickle.dumps(e))) == str(e)
