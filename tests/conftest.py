import io
from pathlib import Path

import mido
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.mid"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own roll cache, so tests never see each other's entries."""
    monkeypatch.setenv("MUSICGAN_CACHE", str(tmp_path / "cache"))


def make_midi(tracks, ticks_per_beat=480, type=1) -> bytes:
    """Build a MIDI file from lists of (delta_ticks, message) per track."""
    f = mido.MidiFile(type=type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        t = mido.MidiTrack()
        for delta, msg in events:
            t.append(msg.copy(time=delta))
        f.tracks.append(t)
    buf = io.BytesIO()
    f.save(file=buf)
    return buf.getvalue()


def on(note, vel=80, ch=0):
    return mido.Message("note_on", note=note, velocity=vel, channel=ch)


def off(note, ch=0):
    return mido.Message("note_off", note=note, velocity=0, channel=ch)


def meta(kind, **kw):
    return mido.MetaMessage(kind, **kw)


def file_beats(data: bytes) -> float:
    """How long a MIDI file lasts in beats: to the last event of its longest track (its end of
    track included), as a player or notation program reads it."""
    parsed = mido.MidiFile(file=io.BytesIO(data))
    return max(sum(m.time for m in track) for track in parsed.tracks) / parsed.ticks_per_beat


def pickup_rest(roll) -> int:
    """The steps of rest a piece written from its pickup (a short first bar, ``midi.with_pickup_bar``)
    leaves out of its first bar, as the reader puts it back; 0 for a piece that begins on its downbeat."""
    from musicgan import midi

    return midi._whole_first_bar(roll).n_steps - roll.n_steps


def scale_midi(n=8, beat=480, ch=0, first=60, **kw) -> bytes:
    """n quarter notes going up from ``first``."""
    events = []
    for i in range(n):
        events += [(0, on(first + i, ch=ch)), (beat, off(first + i, ch=ch))]
    return make_midi([events], ticks_per_beat=beat, **kw)
