"""The Gradio app's handlers, called directly (fast), and the audio it plays."""
import base64
import json
import re
import zipfile

import gradio as gr
import numpy as np
import pytest

import app
from musicgan import midi, render
from musicgan.models import ModelConfig

from conftest import EXAMPLES, ROOT


@pytest.fixture
def session():
    s = app.Session()
    yield s
    s.close()


def test_generate_gives_roll_audio_midi_and_image(session):
    html, wav, mid, png, status, _ = app.generate(app.PRETRAINED, 5, 4, 90, -1, 1.0, app.KEY_AUTO, session)
    payload = json.loads(base64.b64decode(re.search(r'data-piece="([^"]+)"', html).group(1)))
    assert payload["notes"] and payload["audio"].startswith("data:audio/wav;base64,")
    assert payload["seconds_per_step"] == pytest.approx(60 / 90 / 4)
    roll = midi.read(mid)
    assert len(roll.notes) > 10 and roll.tempo_bpm == 90
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "seed 5" in status
    samples = _wav_samples(wav)
    assert np.sqrt((samples ** 2).mean()) > 0.01


def test_same_inputs_same_music(session):
    first = app.generate(app.PRETRAINED, 11, 4, 100, 0, 1.0, app.KEY_AUTO, session)
    second = app.generate(app.PRETRAINED, 11, 4, 100, 0, 1.0, app.KEY_AUTO, session)
    other = app.generate(app.PRETRAINED, 12, 4, 100, 0, 1.0, app.KEY_AUTO, session)
    read = lambda out: open(out[2], "rb").read()
    assert read(first) == read(second) != read(other)


def test_instrument_choice_is_written_to_the_midi(session):
    out = app.generate(app.PRETRAINED, 1, 2, 100, 40, 1.0, app.KEY_AUTO, session)
    assert midi.read(out[2]).program == 40


def test_interpolation_and_variations(session):
    out = app.interpolate(app.PRETRAINED, 1, 2, 3, 100, -1, 1.0, app.KEY_AUTO, session)
    assert midi.read(out[2]).n_bars > 8
    out = app.variations(app.PRETRAINED, 1, 0.3, 100, -1, 1.0, app.KEY_AUTO, session)
    assert midi.read(out[2]).n_bars > 12


def test_trained_model_is_required_before_use(session):
    with pytest.raises(gr.Error, match="train one"):
        app.generate(app.TRAINED, 1, 4, 100, -1, 1.0, app.KEY_AUTO, session)


def test_bad_checkpoint_upload_gives_a_message(session, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("model.safetensors", b"not really")
        z.writestr("config.json", "{}")
    with pytest.raises(gr.Error, match="cannot be used"):
        app.upload_checkpoint(str(bad), session)
    with pytest.raises(gr.Error, match="No checkpoint uploaded"):
        app.generate(app.UPLOADED, 1, 4, 100, -1, 1.0, app.KEY_AUTO, session)


def test_good_checkpoint_upload_is_used(session, tmp_path):
    from musicgan import checkpoint as ckpt
    archive = tmp_path / "model.zip"
    archive.write_bytes(ckpt.zip_bytes(app.ROOT / "checkpoints" / "bach-chorales"))
    choice, message, _ = app.upload_checkpoint(str(archive), session)
    assert "Loaded" in message
    out = app.generate(app.UPLOADED, 3, 2, 100, -1, 1.0, app.KEY_AUTO, session)
    expected = app.generate(app.PRETRAINED, 3, 2, 100, -1, 1.0, app.KEY_AUTO, session)
    assert open(out[2], "rb").read() == open(expected[2], "rb").read()


def test_uploads_report_what_was_read_and_skipped(session, tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"hello")
    text, start, _ = app.read_uploads([str(EXAMPLES[0]), str(bad)], session)
    assert "1 file(s) read" in text and "broken.mid" in text and "not a MIDI file" in text
    assert start["interactive"] is True and len(session.rolls) == 1
    text, start, _ = app.read_uploads([str(bad)], session)
    assert start["interactive"] is False and "Nothing usable" in text


def test_training_streams_progress_and_ends_with_a_checkpoint(session):
    app.read_uploads([str(p) for p in EXAMPLES[:4]], session)
    updates = list(app.train(session, 0.04, 16, 2, 1e-4, 1e-3, 0.5, poll_s=0.2))
    progress, losses, sample_png, sample_wav, status, download, use, _ = updates[-1]
    assert "done" in status
    assert open(losses, "rb").read(4) == b"\x89PNG"
    assert any("mle" in h for h in session.job.state.history)
    assert download.endswith(".zip") and zipfile.ZipFile(download).namelist()
    assert sample_png and sample_wav and use["interactive"] is True
    assert session.trained
    out = app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, session)
    assert midi.read(out[2]).n_steps > 0
    in_d_minor = app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, "D minor", session)
    assert "D minor" in in_d_minor[4] and midi.read(in_d_minor[2]).n_steps > 0


def test_training_can_fine_tune_the_pretrained_model(session):
    app.read_uploads([str(p) for p in EXAMPLES[4:7]], session)
    updates = list(app.train(session, 0.02, 16, 2, 1e-4, 1e-3, 1.0, False, True, poll_s=0.2))
    assert "done" in updates[-1][4]
    config = json.loads((app.Path(session.trained) / "config.json").read_text())
    assert config["started_from"]["checkpoint"] == "bach-chorales"
    base = json.loads((ROOT / "checkpoints" / "bach-chorales" / "config.json").read_text())["model"]
    assert ModelConfig.from_dict(config["model"]) == ModelConfig.from_dict(base)


def test_stop_keeps_the_model(session):
    app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
    updates = app.train(session, 5, 16, 2, 1e-4, 1e-3, 0.5, poll_s=0.2)
    next(updates)
    while not session.job.state.history:  # until a step has been made
        next(updates)
    assert "Stopping" in app.stop(session)
    last = list(updates)[-1]
    assert "stopped" in last[4] and last[5].endswith(".zip")


def test_closeness_panel_for_the_pretrained_model(session):
    png, text = app.closeness(app.PRETRAINED, session)
    assert open(png, "rb").read(4) == b"\x89PNG" and "%" in text


# --------------------------------------------------------------------------- audio

def _wav_samples(path):
    import wave
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768


@pytest.mark.parametrize("engine", ["fluidsynth", "numpy"])
def test_audio_is_neither_silent_nor_clipped(engine, tmp_path):
    if engine == "fluidsynth" and not render.fluidsynth_available():
        pytest.skip("libfluidsynth is not installed")
    roll = midi.read(EXAMPLES[0])
    audio = render.synthesize(roll, engine=engine)
    assert audio.engine.startswith(engine)
    x = audio.samples
    assert len(x) / audio.sample_rate == pytest.approx(roll.n_steps * render.seconds_per_step(roll), abs=2.5)
    assert np.sqrt((x ** 2).mean()) > 0.02  # not silent
    assert np.abs(x).max() <= render.PEAK + 1e-6  # not clipped
    path = tmp_path / "a.wav"
    path.write_bytes(audio.wav_bytes())
    assert np.abs(_wav_samples(path)).max() < 0.999


def test_fluidsynth_is_available_where_ci_installs_it():
    import shutil
    if shutil.which("fluidsynth"):
        assert render.fluidsynth_available()


def test_closing_a_session_stops_its_job_and_frees_its_files():
    session = app.Session()
    app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
    updates = app.train(session, 5, 16, 2, 1e-4, 1e-3, 0.5, poll_s=0.2)
    next(updates)
    assert session.job.running and session.dir.exists()
    app.close_session(session)
    session.job.wait(30)
    assert not session.job.running and not session.dir.exists()


def test_a_second_training_job_waits_for_the_first(session):
    other = app.Session()
    try:
        app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
        app.read_uploads([str(p) for p in EXAMPLES[:2]], other)
        first = app.train(session, 5, 16, 2, 1e-4, 1e-3, 0.5, poll_s=0.2)
        next(first)
        with pytest.raises(gr.Error, match="Another training job"):
            next(app.train(other, 1, 16, 2, 1e-4, 1e-3, 0.5))
        app.stop(session)
        list(first)
    finally:
        other.close()
