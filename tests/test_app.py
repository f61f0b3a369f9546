"""The Gradio app's handlers, called directly (fast), and the audio it plays."""
import json
import time
import re
import urllib.parse
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile

import app
from types import SimpleNamespace

from musicgan import api, harmonise, midi, render
from musicgan.models import ModelConfig

from conftest import EXAMPLES, ROOT, make_midi, meta, off, on


@pytest.fixture(scope="module", autouse=True)
def page():
    """The app's components (handlers return {component: value} for them)."""
    return app.build()


@pytest.fixture
def session():
    s = app.Session()
    yield s
    s.close()


def ui(name):
    return getattr(app.ui, name)


def payload_of(html):
    return json.loads(urllib.parse.unquote(re.search(r'data-piece="([^"]+)"', html).group(1)))


def audio_path(payload) -> Path:
    assert payload["audio"].startswith("gradio_api/file=")
    return Path(urllib.parse.unquote(payload["audio"][len("gradio_api/file="):]))


def test_generate_gives_roll_audio_and_midi(session):
    out = app.generate(app.PRETRAINED, 5, 4, 90, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    payload = payload_of(out[ui("roll")])
    # the roll plays the session's audio file by its address: the page fetches it once
    audio = audio_path(payload)
    assert payload["notes"] and audio.parent == session.dir and audio.suffix == ".mp3"
    assert payload["seconds_per_step"] == pytest.approx(60 / 90 / 4)
    roll = midi.read(out[ui("midi_file")])
    assert len(roll.notes) > 10 and roll.tempo_bpm == 90
    assert "seed 5" in out[ui("status")]
    samples, rate = soundfile.read(audio)
    assert rate == render.SAMPLE_RATE and np.sqrt((samples ** 2).mean()) > 0.01


def test_a_session_keeps_only_its_latest_piece(session):
    first = app.generate(app.PRETRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    second = app.generate(app.PRETRAINED, 2, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    assert not audio_path(payload_of(first[ui("roll")])).exists() and not Path(first[ui("midi_file")]).exists()
    assert audio_path(payload_of(second[ui("roll")])).exists()
    assert sorted(p.suffix for p in session.dir.iterdir()) == [".mid", ".mp3"]


def test_same_inputs_same_music(session):
    read = lambda out: open(out[ui("midi_file")], "rb").read()
    first = read(app.generate(app.PRETRAINED, 11, 4, 100, 0, 1.0, app.KEY_AUTO, app.METRE_AUTO, session))
    second = read(app.generate(app.PRETRAINED, 11, 4, 100, 0, 1.0, app.KEY_AUTO, app.METRE_AUTO, session))
    other = read(app.generate(app.PRETRAINED, 12, 4, 100, 0, 1.0, app.KEY_AUTO, app.METRE_AUTO, session))
    assert first == second != other


def test_instrument_choice_is_written_to_the_midi(session):
    out = app.generate(app.PRETRAINED, 1, 2, 100, 40, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    assert midi.read(out[ui("midi_file")]).program == 40


def test_interpolation_and_variations(session):
    out = app.interpolate(app.PRETRAINED, 1, 2, 3, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    assert midi.read(out[ui("midi_file")]).n_bars > 8
    out = app.variations(app.PRETRAINED, 1, 0.3, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    assert midi.read(out[ui("midi_file")]).n_bars > 12


def test_continue_an_uploaded_opening(session, tmp_path):
    out = app.continue_music(app.PRETRAINED, str(EXAMPLES[4]), 3, 4, 2, -1, 1.0, session)
    payload = payload_of(out[ui("roll")])
    opening = midi.read(EXAMPLES[4])
    bar = opening.steps_per_bar
    # (bwv256 opens with a pickup of a beat: the piece is drawn from it, its first bar line a beat in)
    rest = bar - payload["bars"][1]
    assert rest == opening.notes[:, 1].min() == 12
    # the visitor's notes are drawn in their own colour: those of the opening, and only those
    assert payload["given"] == [int(n[1] + rest < 2 * bar) for n in payload["notes"]] and any(payload["given"])
    roll = midi.read(out[ui("midi_file")])
    # 6 bars (a roll ends where its last note does: the last beat may rest)
    assert 5 * bar < roll.n_steps <= 6 * bar and roll.tempo_bpm == pytest.approx(opening.tempo_bpm, rel=0.01)
    given = opening.notes[opening.notes[:, 1] < 2 * bar]
    assert np.array_equal(roll.notes[roll.notes[:, 1] < 2 * bar][:, :2], given[:, :2])
    with pytest.raises(gr.Error, match="Upload a MIDI file"):
        app.continue_music(app.PRETRAINED, None, 3, 4, 2, -1, 1.0, session)
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd not really")
    with pytest.raises(gr.Error) as refused:
        app.continue_music(app.PRETRAINED, str(broken), 3, 4, 2, -1, 1.0, session)
    assert refused.value.message == "The opening: corrupt MIDI header."  # (a sentence, as the page shows it)


def test_harmonise_an_uploaded_melody(session):
    melody_file = ROOT / "examples" / "melodies" / "old-hundredth.mid"
    out = app.harmonise_music(app.PRETRAINED, str(melody_file), 3, -1, 1.0, session)
    payload = payload_of(out[ui("roll")])
    melody = midi.read(melody_file)
    given = [n for n, g in zip(payload["notes"], payload["given"]) if g]  # drawn in their own colour
    assert [n[:3] for n in given] == melody.notes[:, :3].tolist()
    assert len(payload["notes"]) > 2 * len(given)
    roll = midi.read(out[ui("midi_file")])
    assert roll.n_steps == melody.n_steps and "harmonised" in out[ui("status")]
    with pytest.raises(gr.Error, match="Upload a MIDI file"):
        app.harmonise_music(app.PRETRAINED, None, 3, -1, 1.0, session)


def test_harmonise_the_bass_of_an_uploaded_chorale(session):
    chorale = EXAMPLES[9]
    out = app.harmonise_bass(app.PRETRAINED, str(chorale), 3, -1, 1.0, session)
    payload = payload_of(out[ui("roll")])
    model = api.load_model()
    bass = harmonise.line_of(model.generator, midi.read(chorale, model.model.steps_per_beat), "bottom").roll
    given = [n for n, g in zip(payload["notes"], payload["given"]) if g]
    rest = bass.steps_per_bar - payload["bars"][1]  # (bwv306: a pickup of a beat, drawn from it)
    assert rest == 8 and [n[:3] for n in given] == bass.later(-rest).notes[:, :3].tolist()
    assert min(n[0] for n in payload["notes"]) == bass.notes[:, 0].min()
    assert len(payload["notes"]) > 2 * len(given) and "a bass line of" in out[ui("status")]
    with pytest.raises(gr.Error, match="its lowest notes"):
        app.harmonise_bass(app.PRETRAINED, None, 3, -1, 1.0, session)


def test_the_pretrained_fiddle_model_plays_tunes_and_carries_on_a_jig(session, tmp_path):
    """The second shipped model: one line, in the fiddle tunes' metres. It goes on from a jig and
    says it has no voices to harmonise with; a refusal names the model that takes the music."""
    model = api.load_model(app._model_path(app.FIDDLE, session))
    assert model.model.voices == 1 and {(6, 8), (2, 4), (2, 2)} <= set(model.model.metres)
    out = app.generate(app.FIDDLE, 4, 8, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    roll = midi.read(out[ui("midi_file")])
    assert len(roll.notes) > 20 and midi.sounding_counts(roll.notes).max() == 1
    assert tuple(roll.time_signatures[0][1:]) in model.model.metres
    jig = next(t for t in app.TUNES if t.stem.endswith("Jig") and midi.read(t).time_signatures[0][1:] == (6, 8))
    out = app.continue_music(app.FIDDLE, str(jig), 3, 4, 2, -1, 1.0, session)
    assert "opening and 4 bars of 6/8" in out[ui("status")]
    # a refusal names the models the visitor can choose that take the music
    waltz = next(e for e in app.EXAMPLES if midi.read(e).time_signatures[0][1:] == (3, 4))
    with pytest.raises(gr.Error) as refused:
        app.continue_music(app.FIDDLE, str(waltz), 3, 4, 2, -1, 1.0, session)
    assert refused.value.message == ("The opening is in 3/4; this model knows 2/4, 2/2, 6/8, 4/4, 9/8. “Pretrained: "
                                     "Bach chorales” can continue it: choose it under Model.")
    for tune in (jig, next(t for t in app.TUNES if midi.read(t).time_signatures[0][1:] == (2, 4))):
        with pytest.raises(gr.Error) as refused:
            app.harmonise_music(app.FIDDLE, str(tune), 3, -1, 1.0, session)
        assert refused.value.message == ("This model writes one voice: there are no other voices to write with the "
                                         "melody. “Pretrained: Bach chorales” can harmonise it: choose it under Model.")
    five = tmp_path / "five.mid"  # (no model here knows 5/4)
    five.write_bytes(make_midi([[(0, meta("time_signature", numerator=5, denominator=4))]
                                + [e for i in range(10) for e in ((0, on(72 + i % 3)), (480, off(72 + i % 3)))]]))
    with pytest.raises(gr.Error) as refused:
        app.harmonise_music(app.FIDDLE, str(five), 3, -1, 1.0, session)
    assert refused.value.message == "This model writes one voice: there are no other voices to write with the melody."
    out = app.closeness(app.FIDDLE, session)
    assert "Compared with the example fiddle tunes (from its training music)" in out[ui("close_text")]


def test_a_handler_without_its_session_says_so():
    with pytest.raises(gr.Error, match="Reload the page"):
        app.generate(app.PRETRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, None)


def test_trained_model_is_required_before_use(session):
    with pytest.raises(gr.Error, match="train one"):
        app.generate(app.TRAINED, 1, 4, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)


def test_bad_checkpoint_upload_gives_a_message(session, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("model.safetensors", b"not really")
        z.writestr("config.json", "{}")
    with pytest.raises(gr.Error, match="cannot be used"):
        app.upload_checkpoint(str(bad), session)
    with pytest.raises(gr.Error, match="No checkpoint uploaded"):
        app.generate(app.UPLOADED, 1, 4, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)


def test_good_checkpoint_upload_is_used(session, tmp_path):
    from musicgan import checkpoint as ckpt
    archive = tmp_path / "model.zip"
    archive.write_bytes(ckpt.zip_bytes(app.ROOT / "checkpoints" / "bach-chorales"))
    out = app.upload_checkpoint(str(archive), session)
    assert "Loaded" in out[ui("ck_status")] and out[ui("choice")] == app.UPLOADED
    read = lambda out: open(out[ui("midi_file")], "rb").read()
    uploaded = read(app.generate(app.UPLOADED, 3, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session))
    assert uploaded == read(app.generate(app.PRETRAINED, 3, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session))


def test_uploads_report_what_was_read_and_skipped(session, tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"hello")
    out = app.read_uploads([str(EXAMPLES[0]), str(bad)], session)
    text = out[ui("report")]
    assert "1 file(s) read" in text and "broken.mid" in text and "not a MIDI file" in text
    assert out[ui("start")]["interactive"] is True and len(session.rolls) == 1
    out = app.read_uploads([str(bad)], session)
    assert out[ui("start")]["interactive"] is False and "Nothing usable" in out[ui("report")]


def test_uploads_report_the_pickups_found_and_can_be_read_as_written(session, tmp_path):
    from musicgan import midi, pickup
    unmarked = tmp_path / "unmarked.mid"  # bwv253, written from its one-beat pickup
    midi.write(pickup.as_written(midi.read(EXAMPLES[1]))[0], unmarked)
    text = app.read_uploads([str(unmarked), str(EXAMPLES[0])], session)[ui("report")]
    assert "Pickups: 1 file(s)" in text and "`unmarked.mid` (1 beat)" in text
    assert session.rolls[0].notes[:, 1].min() == 12  # (a rest of three beats, then the pickup)
    text = app.read_uploads([str(unmarked), str(EXAMPLES[0])], session, False)[ui("report")]
    assert "Pickups" not in text and session.rolls[0].notes[:, 1].min() == 0


def test_a_given_melodys_pickup_is_found_unless_the_box_is_unticked(session, tmp_path):
    from musicgan import midi, pickup
    unmarked = tmp_path / "unmarked.mid"  # bwv253, written from its one-beat pickup
    midi.write(pickup.as_written(midi.read(EXAMPLES[1]))[0], unmarked)
    for find, first, said in ((True, 12, True), (False, 0, False)):
        out = app.harmonise_melody(app.PRETRAINED, str(unmarked), 3, -1, 1.0, session, find)
        assert ("pickup of 1 beat found" in out[ui("status")]) == said
        assert midi.read(out[ui("midi_file")], 4).notes[:, 1].min() == first
        out = app.continue_music(app.PRETRAINED, str(unmarked), 3, 2, 2, -1, 1.0, session, find)
        assert ("pickup of 1 beat found" in out[ui("status")]) == said


SETTINGS = (16, 2, 0.5, False, 1e-4, 1e-3)  # batch, window bars, warm-up, G adversarial, lr G, lr D


def last(updates) -> dict:
    """Everything the streamed updates set, the later ones winning."""
    merged = {}
    for update in updates:
        merged.update(update)
    return merged


def test_training_streams_progress_and_ends_with_a_checkpoint(session):
    app.read_uploads([str(p) for p in EXAMPLES[:4]], session)
    out = last(app.train(session, 0.04, "", *SETTINGS, poll_s=0.2))
    assert "done" in out[ui("train_status")]
    losses = out[ui("losses")].dropna()
    assert set(losses.columns) == {"step", "value", "series"} and "likelihood loss" in set(losses.series)
    assert len(losses) <= app.MAX_POINTS * len(app.LOSSES)
    assert any("mle" in h for h in session.job.state.history)
    download = out[ui("download")]
    assert download.endswith(".zip") and zipfile.ZipFile(download).namelist()
    assert payload_of(out[ui("sample")])["notes"] and out[ui("use")]["interactive"] is True
    assert session.trained
    out = app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    assert midi.read(out[ui("midi_file")]).n_steps > 0
    in_d_minor = app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, "D minor", app.METRE_AUTO, session)
    assert "D minor" in in_d_minor[ui("status")] and midi.read(in_d_minor[ui("midi_file")]).n_steps > 0
    # the Metre menu offers the trained model's metres (the examples are in 4/4 and 3/4), and each is written
    menu = app.metre_choices(app.TRAINED, session)["choices"]
    assert menu == [app.METRE_AUTO, "4/4", "3/4"]
    waltz = app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, "3/4", session)
    roll = midi.read(waltz[ui("midi_file")])
    assert roll.time_signatures == ((0, 3, 4),) and roll.n_steps <= 24 and "bars of 3/4" in waltz[ui("status")]
    assert payload_of(waltz[ui("roll")])["bars"] == [0, 12, 24]
    with pytest.raises(gr.Error, match="knows 4/4, 3/4 only"):
        app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, "6/8", session)
    # "Start from your music" with the model just trained: it continues an opening, and it
    # harmonises a melody by clamping it (it has no harmoniser), and says so
    chorale = midi.read(EXAMPLES[0])
    out = app.continue_music(app.TRAINED, str(EXAMPLES[0]), 3, 2, 2, -1, 1.0, session)
    roll, bar = midi.read(out[ui("midi_file")]), chorale.steps_per_bar
    opening = chorale.notes[chorale.notes[:, 1] < 2 * bar]
    assert np.array_equal(roll.notes[roll.notes[:, 1] < 2 * bar][:, :2], opening[:, :2]) and roll.n_steps > 2 * bar
    out = app.harmonise_music(app.TRAINED, str(EXAMPLES[0]), 3, -1, 1.0, session)
    payload = payload_of(out[ui("roll")])
    melody = harmonise.line_of(api.load_model(session.trained).generator, chorale).roll
    assert [n[:3] for n, g in zip(payload["notes"], payload["given"]) if g] == melody.notes[:, :3].tolist()
    assert "clamped: this model has no harmoniser" in out[ui("status")]


def test_on_zerogpu_the_train_tab_trains_in_short_gpu_calls(session, monkeypatch):
    from musicgan import zerogpu

    gpu = zerogpu.StandIn()
    monkeypatch.setattr(app, "GPU_CALLS", zerogpu.in_calls(gpu))
    app.read_uploads([str(p) for p in EXAMPLES[:4]], session)
    out = last(app.train(session, 0.1, "", *SETTINGS, poll_s=0.2))
    assert "done" in out[ui("train_status")] and "GPU calls" in out[ui("train_status")], out[ui("train_status")]
    assert len(gpu.calls) >= 1 and session.trained
    assert out[ui("download")].endswith(".zip") and out[ui("use")]["interactive"] is True
    out = app.generate(app.TRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    assert len(midi.read(out[ui("midi_file")]).notes) > 0


def test_a_second_run_replaces_the_first_model_only_once_it_is_saved(session):
    app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
    last(app.train(session, 0.02, "", *SETTINGS, poll_s=0.2))
    first = session.trained
    updates = app.train(session, 5, "", *SETTINGS, poll_s=0.2)
    next(updates)
    assert session.trained == first and Path(first, "model.safetensors").exists()  # still there while it runs
    while not session.job.state.history:
        next(updates)
    app.stop(session)
    last(updates)
    assert session.trained != first and Path(session.trained, "model.safetensors").exists()
    assert not Path(first).exists()


def test_curves_thin_long_runs_and_average_what_they_drop():
    history = [{"step": i + 1, "mle": float(i % 2)} for i in range(1000)]
    table = app.curves(history, app.LOSSES).dropna()
    assert len(table) <= app.MAX_POINTS and table.value.mean() == pytest.approx(0.5)
    assert table.step.iloc[-1] == 1000


def test_both_curves_span_the_steps_so_far_before_the_gan_phase():
    history = [{"step": i + 1, "mle": 1.0} for i in range(40)]
    losses, critic = app.curves(history, app.LOSSES), app.curves(history, app.CRITIC)
    assert critic.dropna().empty  # nothing to draw yet, but the same axis as the losses
    assert (critic.step.min(), critic.step.max()) == (losses.step.min(), losses.step.max()) == (0, 40)
    assert set(critic.series) == set(app.CRITIC.values())


@pytest.mark.parametrize("choice, folder, files", [(app.PRETRAINED, "bach-chorales", EXAMPLES[4:7]),
                                                   (app.FIDDLE, "fiddle-tunes", app.TUNES)])
def test_training_can_fine_tune_a_pretrained_model(session, choice, folder, files):
    app.read_uploads([str(p) for p in files], session)
    out = last(app.train(session, 0.02, choice, 16, 2, 1.0, False, 1e-4, 1e-3, poll_s=0.2))
    assert "done" in out[ui("train_status")]
    config = json.loads((app.Path(session.trained) / "config.json").read_text())
    assert config["started_from"]["checkpoint"] == folder
    base = json.loads((ROOT / "checkpoints" / folder / "config.json").read_text())["model"]
    assert ModelConfig.from_dict(config["model"]) == ModelConfig.from_dict(base)


def test_stop_keeps_the_model(session):
    app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
    updates = app.train(session, 5, "", *SETTINGS, poll_s=0.2)
    next(updates)
    while not session.job.state.history:  # until a step has been made
        next(updates)
    assert "Stopping" in app.stop(session)[ui("train_status")]
    out = last(updates)
    assert "stopped" in out[ui("train_status")] and out[ui("download")].endswith(".zip")


def test_leaving_the_page_stops_its_training_job(session):
    app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
    updates = app.train(session, 5, "", *SETTINGS, request=SimpleNamespace(session_hash="tab-1"), poll_s=0.2)
    next(updates)
    while not session.job.state.history:
        next(updates)
    app.leave(SimpleNamespace(session_hash="another tab"))
    assert session.job.running
    app.leave(SimpleNamespace(session_hash="tab-1"))
    session.job.wait(30)
    assert not session.job.running and not api.TrainingJob.busy()
    # nobody is left to use that model: the slot is freed at once, without saving it
    assert session.job.state.status == "stopped" and session.job.state.checkpoint is None


def test_closeness_panel_for_the_pretrained_model(session):
    out = app.closeness(app.PRETRAINED, session)
    assert open(out[ui("close_png")], "rb").read(4) == b"\x89PNG" and "%" in out[ui("close_text")]
    assert "half of these real pieces from the other half" in out[ui("close_text")]  # the yardstick


def test_closeness_reads_the_score_against_the_real_pieces_told_from_one_another():
    from musicgan import data

    model, rolls = api.load_model(), data.load(EXAMPLES).rolls
    result = api.closeness(model, rolls)
    # 10 chorales are few: clips of one piece share its key, metre and texture, so the classifier
    # tells half of them from the other half well above chance, and that is the yardstick
    assert 0.5 < result.yardstick < 1 and 0 < result.two_sample <= 1
    assert result.verdict == api.verdict(result.two_sample, result.yardstick)
    assert api.closeness(model, rolls[:3]).yardstick is None  # too few pieces to halve
    assert api.verdict(0.74, 0.72).startswith("As close as this music can show")
    assert api.verdict(0.8, 0.52).startswith("Recognisably related") and api.verdict(0.8).startswith("Recognisably")
    assert api.verdict(0.645, 0.567).startswith("Close")
    assert api.verdict(0.98, 0.55).startswith("Far")


def test_every_kind_of_piece_writes_the_key_it_is_in_as_its_key_signature(tmp_path):
    import io

    import mido

    from musicgan import keys

    def signature(piece):
        return [m.key for m in mido.MidiFile(file=io.BytesIO(piece.midi)).tracks[0] if m.type == "key_signature"]

    model = api.load_model()
    for seed in range(4):
        piece = api.compose(model, seed=seed, bars=2, audio=False)
        assert signature(piece) == [keys.signature(piece.roll.key)] and keys.name(piece.roll.key) in piece.description
    assert signature(api.compose(model, seed=0, bars=2, key=keys.parse("Eb minor"), audio=False)) == ["Ebm"]
    # a continuation is in its opening's key, a harmonisation in its line's (as the model was told)
    for piece in (api.compose_continuation(model, EXAMPLES[0], seed=1, bars=2, audio=False),
                  api.compose_harmonisation(model, EXAMPLES[0], seed=1, audio=False)):
        assert piece.roll.key is not None and signature(piece) == [keys.signature(piece.roll.key)]


def test_keys_and_metres_can_be_given_one_per_seed():
    from musicgan import generate

    g = api.load_model().generator
    keys, metres = [0, 13, None], [(3, 4), None, (4, 4)]
    together = generate.sample_rolls(g, [3, 4, 5], bars=2, key=keys, metre=metres)
    for seed, key, metre, piece in zip([3, 4, 5], keys, metres, together):
        alone = generate.sample_rolls(g, [seed], bars=2, key=key, metre=metre)[0]
        assert np.array_equal(alone.notes, piece.notes) and alone.time_signatures == piece.time_signatures
    assert together[0].time_signatures[0][1:] == (3, 4)
    with pytest.raises(ValueError, match="one key and one metre per seed"):
        generate.sample_rolls(g, [1, 2], bars=2, key=[0])


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
    app.generate(app.PRETRAINED, 1, 2, 100, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
    updates = app.train(session, 5, "", *SETTINGS, poll_s=0.2)
    next(updates)
    assert session.job.running and session.dir.exists()
    app.close_session(session)
    session.job.wait(30)
    assert not session.job.running and not session.dir.exists()


def test_a_second_training_job_waits_for_the_first(session, monkeypatch):
    monkeypatch.setattr(app, "SLOT_WAIT_S", app.SLOT_WAIT_S)
    other = app.Session()
    try:
        app.read_uploads([str(p) for p in EXAMPLES[:2]], session)
        app.read_uploads([str(p) for p in EXAMPLES[:2]], other)
        first = app.train(session, 5, "", *SETTINGS, poll_s=0.2)
        next(first)
        app.SLOT_WAIT_S = 0.5
        waiting = app.train(other, 1, "", *SETTINGS, poll_s=0.1)
        assert "waiting for the server's training slot" in next(waiting)[ui("progress")]
        with pytest.raises(gr.Error, match="Another training job"):
            list(waiting)
        app.stop(session)
        list(first)
    finally:
        other.close()


def test_the_app_plays_what_the_library_plays(session):
    """Same seed, same music: the app's worker process gives the bytes this process gives."""
    out = app.generate(app.PRETRAINED, 9, 4, 120, -1, 1.0, app.KEY_AUTO, app.METRE_AUTO, session)
    here = api.compose(api.load_model(), 9, 4, 120.0, None, 1.0, audio=False)
    assert open(out[ui("midi_file")], "rb").read() == here.midi


def test_pieces_are_made_on_one_thread_in_worker_processes():
    import os
    import torch

    pool = app.COMPOSERS._executor()
    assert pool.submit(torch.get_num_threads).result() == 1
    assert pool.submit(os.getpid).result() != os.getpid()


def test_the_cpu_heavy_clicks_share_one_queue_group(page):
    """One group, as wide as a batch of pieces: its handlers then wait for a CPU slot (one per core)."""
    heavy = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in page.fns.values()
             if fn.name in ("generate", "interpolate", "variations", "closeness")}
    assert len(heavy) == 4 and set(heavy.values()) == {("cpu", 2 * api.TOGETHER)}


def test_pieces_drawn_together_are_the_pieces_drawn_alone():
    model = api.load_model()
    seeds = [3, 11, 12, 40, 41]
    for seed, piece in zip(seeds, api.compose_many(model, seeds, bars=4, tempo_bpm=90)):
        alone = api.compose(model, seed, bars=4, tempo_bpm=90, audio=False)
        assert piece.midi == alone.midi and piece.description == alone.description


def test_a_draw_that_cannot_start_says_so_and_frees_its_slot():
    class ShutDown:  # a pool shut down while a visitor waited
        def submit(self, *args, **kwargs):
            raise RuntimeError("cannot schedule new futures after shutdown")

    pool = api.Composers(1, api.CpuSlots(cores=1))
    pool._pool = ShutDown()
    with pytest.raises(RuntimeError, match="could not be made"):
        pool.web_piece("piece", None, seed=1, bars=4)
    assert pool.slots._busy == 0 and not pool._waiting


def test_a_refusal_in_a_worker_comes_back_as_itself_and_the_worker_stays():
    """Errors cross from a worker process pickled: one whose arguments are not its message (a
    MIDI file that cannot be read) once came back as a broken pool ("a worker process stopped"),
    and every worker started again."""
    import pickle

    from musicgan import given, models

    for error in (midi.MidiError("the opening", "corrupt MIDI header"),
                  given.OutOfRange("the melody", 20, 110, models.ModelConfig())):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
    pool = api.Composers(1, api.CpuSlots(cores=1))
    arguments = dict(seed=3, bars=4, opening_bars=2, program=None, temperature=1.0, find_pickups=True)
    try:
        for _ in range(2):
            with pytest.raises(midi.MidiError, match="^the opening: corrupt MIDI header$"):
                pool.web_piece("continuation", None, opening=b"MThd not really", **arguments)
        workers = set(pool._pool._processes)
        with pytest.raises(ValueError, match="in 3/4; this model knows 2/4"):
            pool.web_piece("continuation", str(app.SHIPPED[app.FIDDLE].folder), opening=app.EXAMPLES[0].read_bytes(),
                           **arguments)
        assert set(pool._pool._processes) == workers  # (the same worker, not a new one)
    finally:
        pool.close()


def test_a_piece_made_before_is_handed_out_again_until_its_model_changes(tmp_path):
    import os
    import shutil

    model = tmp_path / "model"
    shutil.copytree(ROOT / "checkpoints" / "bach-chorales", model)
    pool = api.Composers(1, api.CpuSlots(cores=1))
    arguments = {"bars": 2, "tempo_bpm": 100.0, "program": None, "temperature": 1.0, "key": None, "metre": None}
    try:
        first = pool.web_piece("piece", str(model), seed=3, **arguments)
        assert pool.web_piece("piece", str(model), seed=3, **arguments) is first  # the examples, seed 0 ...
        assert pool.batches == [1] and pool.kept_hits == 1
        assert pool.web_piece("piece", str(model), seed=4, **arguments) is not first and pool.batches == [1, 1]
        later = os.stat(model / "model.safetensors").st_mtime + 10
        os.utime(model / "model.safetensors", (later, later))  # a model trained again in the same place
        again = pool.web_piece("piece", str(model), seed=3, **arguments)
        assert again is not first and pool.batches == [1, 1, 1] and again.midi == first.midi
        walk = dict(seed_a=1, seed_b=2, steps=2, bars=2, tempo_bpm=100.0, program=None, temperature=1.0, key=None,
                    metre=None)
        assert pool.web_piece("interpolation", str(model), **walk) is pool.web_piece("interpolation", str(model), **walk)
    finally:
        pool.close()


def test_cpu_slots_go_in_turn_and_those_behind_go_last():
    import threading

    slots, order = api.CpuSlots(cores=1), []

    def wait_for_slot(name, behind):
        assert slots.take(behind=behind)
        order.append(name)
        slots.give()

    slots.take()  # the one core is busy
    threads = []
    for name, behind in [("draw", True), ("audio 1", False), ("audio 2", False)]:
        threads.append(threading.Thread(target=wait_for_slot, args=(name, behind)))
        threads[-1].start()
        while len(slots._line) < len(threads):
            time.sleep(0.01)
    slots.give()
    for t in threads:
        t.join(10)
    assert order == ["audio 1", "audio 2", "draw"]
    slots.take()
    t0 = time.monotonic()
    assert not slots.take(give_up=lambda: True) and time.monotonic() - t0 < 1
    assert not slots.take(timeout=0.1)
    slots.give()


def test_visitors_waiting_for_a_core_are_drawn_together_each_with_their_own_music():
    import threading

    slots = api.CpuSlots(cores=1)
    pool = api.Composers(1, slots)
    seeds, made = [5, 6, 7, 8, 9], {}
    arguments = {"bars": 4, "tempo_bpm": 120.0, "program": None, "temperature": 1.0, "key": None, "metre": None}

    def visitor(seed):
        made[seed] = pool.web_piece("piece", None, seed=seed, **arguments)

    try:
        pool.warm()
        threads = [threading.Thread(target=visitor, args=(s,)) for s in seeds]
        with slots():  # the one core is busy: every visitor's piece waits
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while sum(map(len, pool._waiting.values())) < len(seeds) and time.monotonic() < deadline:
                time.sleep(0.01)
        for t in threads:
            t.join(60)
        assert pool.batches == [len(seeds)]  # one draw for all five
        model = api.load_model()
        for seed in seeds:
            assert made[seed].midi == api.compose(model, seed, **arguments, audio=False).midi
            assert len(made[seed].mp3) > 1000
        pool.web_piece("piece", None, seed=1, **arguments)
        assert pool.batches == [len(seeds), 1]  # alone, a piece is drawn at once
        with pytest.raises(ValueError, match="bars"):
            pool.web_piece("piece", None, seed=1, **{**arguments, "bars": 0})
    finally:
        pool.close()


def test_a_training_job_keeps_a_core_of_its_own(monkeypatch):
    import threading

    slots = api.CpuSlots(cores=2)
    monkeypatch.setattr(api.TrainingJob, "busy", staticmethod(lambda: True))
    inside, peak, lock = [0], [0], threading.Lock()

    def work():
        with slots():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1  # 2 cores, 1 of them training's
    monkeypatch.setattr(api.TrainingJob, "busy", staticmethod(lambda: False))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_widgets_and_flags_take_their_defaults_from_the_configs(page):
    from musicgan import cli, settings
    from musicgan.train import TrainConfig

    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions}
    for name in settings.public(TrainConfig):
        s = settings.describe(TrainConfig, name)
        assert flags[name].default is None and (s.kind is bool or str(s.default) in flags[name].help)
    assert train.parse_args(["x", "--out", "y"]).warmup is None  # not given: the config decides
    widgets = {b.label: b for b in page.blocks.values() if getattr(b, "label", None)}
    for name in app.TRAIN_SETTINGS:
        s = settings.describe(TrainConfig, name)
        assert widgets[s.label].value == s.default


def test_worker_processes_end_with_the_server(tmp_path):
    """Killed or stopped, the server cannot tell its workers; they notice and end."""
    import os
    import signal
    import subprocess
    import sys

    script = ("import os, sys, time\n"
              "from musicgan import api\n"
              "pool = api.Composers(2)\n"
              "pool.warm()\n"
              "print(' '.join(str(pool._executor().submit(os.getpid).result()) for _ in range(4)), flush=True)\n"
              "time.sleep(600)\n")
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if not os.path.exists(f"/proc/{server.pid}"):
        pytest.skip("needs /proc to see processes")
    workers = {int(p) for p in server.stdout.readline().split()}
    assert workers and server.pid not in workers
    server.send_signal(signal.SIGKILL)
    server.wait()

    def alive(pid):  # a process that has ended but not yet been reaped (a zombie) counts as ended
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in workers)
