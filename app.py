"""musicgan web app (Gradio). UI only: layout, events and formatting; the music comes from
``musicgan.api``. Each handler is a short function the tests call directly."""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

import musicgan
from musicgan import api, checkpoint as ckpt, data, generate as gen, keys, render
from musicgan.train import Budget, TrainConfig, pick_device, device_label

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted((ROOT / "examples").glob("*.mid"))
PIANOROLL_JS = (ROOT / "static" / "pianoroll.js").read_text()

PRETRAINED, TRAINED, UPLOADED = "Pretrained: Bach chorales", "My trained model", "Uploaded checkpoint"
KEY_AUTO = "From the seed"
UPLOAD_LIMITS = data.Limits(max_files=200, max_file_bytes=4 * 1024 * 1024, max_zip_members=1000,
                            max_zip_bytes=64 * 1024 * 1024)
MAX_UPLOAD = "32mb"
LIMITS_TEXT = (f"Up to {UPLOAD_LIMITS.max_files} MIDI files or .zip archives, each file at most "
               f"{UPLOAD_LIMITS.max_file_bytes // 2 ** 20} MB, uploads at most {MAX_UPLOAD.upper()}.")
MAX_TRAIN_MINUTES = float(os.environ.get("MUSICGAN_MAX_TRAIN_MINUTES", 30))


def _instrument_choices():
    import pretty_midi

    return [("Model default", -1)] + [(f"{i} · {pretty_midi.program_to_instrument_name(i)}", i) for i in range(128)]


try:  # ZeroGPU Spaces: run the GPU work inside a GPU-holding call; elsewhere nothing changes
    import spaces

    gpu = spaces.GPU(duration=int(MAX_TRAIN_MINUTES * 60) + 60)
except ImportError:
    def gpu(fn):
        return fn


# ------------------------------------------------------------------------------ session state

class Session:
    """One browser tab's state: its uploads, its training job, its files. Freed when the tab closes."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="musicgan-"))
        self.rolls: list = []
        self.job: api.TrainingJob | None = None
        self.trained: str | None = None
        self.uploaded: ckpt.Checkpoint | None = None
        self.counter = 0

    def path(self, suffix: str) -> Path:
        self.counter += 1
        return self.dir / f"musicgan-{self.counter}{suffix}"

    def close(self):
        if self.job is not None:
            self.job.stop()
            self.job.wait(60)  # it saves once more when it stops: let it, then remove everything
        shutil.rmtree(self.dir, ignore_errors=True)


def close_session(session):
    if isinstance(session, Session):
        session.close()


def _session(session) -> Session:
    return session if isinstance(session, Session) else Session()


# ------------------------------------------------------------------------------ generate tab

def _model(choice: str, session: Session):
    if choice == TRAINED:
        if not session.trained:
            raise gr.Error("No trained model yet: train one in the Train tab first.")
        return api.load_model(session.trained)
    if choice == UPLOADED:
        if session.uploaded is None:
            raise gr.Error("No checkpoint uploaded yet: upload a musicgan checkpoint (.zip) first.")
        return session.uploaded
    return api.load_model()


def roll_html(piece: api.Piece) -> str:
    """The playable piano roll: notes, timing and the audio for static/pianoroll.js."""
    roll = piece.roll
    notes = roll.notes.tolist()
    pitches = [n[0] for n in notes] or [60]
    payload = {"notes": notes, "steps": max(roll.n_steps, 1), "steps_per_bar": roll.steps_per_bar,
               "seconds_per_step": render.seconds_per_step(roll), "low": min(pitches), "high": max(pitches),
               "audio": "data:audio/wav;base64," + base64.b64encode(piece.audio.wav_bytes()).decode()}
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return (f'<div class="mg-roll" data-piece="{encoded}"><canvas title="click to play from here"></canvas>'
            '<div class="mg-bar"><button class="mg-play" type="button">▶ Play</button>'
            '<span class="mg-time"></span></div><audio preload="auto"></audio></div>')


def _outputs(piece: api.Piece, session: Session):
    midi_path, png_path, wav_path = session.path(".mid"), session.path(".png"), session.path(".wav")
    midi_path.write_bytes(piece.midi)
    png_path.write_bytes(piece.png)
    wav_path.write_bytes(piece.audio.wav_bytes())
    engine = piece.audio.engine
    status = (f"**{piece.description}** · {len(piece.roll.notes)} notes · audio: "
              + ("FluidSynth with the General MIDI soundfont" if engine == "fluidsynth"
                 else "simple built-in synth (FluidSynth is not installed on this server)"))
    return roll_html(piece), str(wav_path), str(midi_path), str(png_path), status


def _program(instrument):
    return None if instrument in (None, -1, "-1") else int(instrument)


def _key(model, choice):
    """The key chosen in the dropdown, or None (the seed's; and for models trained without keys)."""
    if choice in (None, KEY_AUTO):
        return None
    if not model.model.key_input:
        gr.Warning("This model was trained without keys, so it cannot be asked for one.")
        return None
    return keys.parse(choice)


def generate(choice, seed, bars, tempo, instrument, temperature, key=KEY_AUTO, session=None):
    session = _session(session)
    try:
        model = _model(choice, session)
        piece = api.compose(model, int(seed), int(bars), float(tempo), _program(instrument),
                            float(temperature), key=_key(model, key))
    except ValueError as e:
        raise gr.Error(str(e))
    return (*_outputs(piece, session), session)


def interpolate(choice, seed, seed_b, steps, tempo, instrument, temperature, key=KEY_AUTO, session=None):
    session = _session(session)
    try:
        model = _model(choice, session)
        piece = api.compose_interpolation(model, int(seed), int(seed_b), int(steps), 4, float(tempo),
                                          _program(instrument), float(temperature), key=_key(model, key))
    except ValueError as e:
        raise gr.Error(str(e))
    return (*_outputs(piece, session), session)


def variations(choice, seed, amount, tempo, instrument, temperature, key=KEY_AUTO, session=None):
    session = _session(session)
    try:
        model = _model(choice, session)
        piece = api.compose_variations(model, int(seed), 3, float(amount), 4, float(tempo),
                                       _program(instrument), float(temperature), key=_key(model, key))
    except ValueError as e:
        raise gr.Error(str(e))
    return (*_outputs(piece, session), session)


def roll_dice():
    return random.randint(0, 99_999)


def upload_checkpoint(file, session=None):
    """Load an uploaded checkpoint (.zip) safely; a bad one gives a message, never a traceback."""
    session = _session(session)
    if not file:
        return gr.update(), "", session
    try:
        session.uploaded = ckpt.load(file)
    except ckpt.CheckpointError as e:
        session.uploaded = None
        raise gr.Error(f"That checkpoint cannot be used: {e}")
    steps = session.uploaded.steps
    return gr.update(value=UPLOADED), f"Loaded checkpoint ({steps} training steps).", session


# ------------------------------------------------------------------------------ train tab

def read_uploads(files, session=None):
    """Read uploaded MIDI/zip files and report what was read and skipped."""
    session = _session(session)
    if not files:
        session.rolls = []
        return "Upload MIDI files (or a .zip of them) to train on.", gr.update(interactive=False), session
    # Gradio keeps each upload's original name as the last part of its temporary path
    corpus = data.load([Path(f if isinstance(f, str) else f.name) for f in files], limits=UPLOAD_LIMITS)
    session.rolls = corpus.rolls
    report = corpus.report
    lines = [f"**{len(report.read)} file(s) read**, {len(report.skipped)} skipped: "
             f"{report.notes:,} notes in {report.bars:,.0f} bars."]
    lines += [f"- skipped `{name}`: {reason}" for name, reason in report.skipped[:50]]
    if len(report.skipped) > 50:
        lines.append(f"- … and {len(report.skipped) - 50} more")
    if not corpus.rolls:
        lines.append("\nNothing usable to train on yet.")
    return "\n".join(lines), gr.update(interactive=bool(corpus.rolls)), session


def progress_html(fraction: float, elapsed_s: float, text: str, done: bool = False) -> str:
    left = ""
    if 0.02 < fraction < 1 and not done:
        left = f" · about {max(elapsed_s / fraction - elapsed_s, 0):.0f} s left"
    return (f'<div class="mg-progress"><div class="mg-progress-fill" style="width:{100 * fraction:.1f}%"></div></div>'
            f'<div class="mg-progress-text">{100 * fraction:.0f}% · {text}{left}</div>')


def _train_config(batch_size, window_bars, lr_g, lr_d, warmup, g_adversarial=False):
    return TrainConfig(batch_size=int(batch_size), window_bars=int(window_bars), lr_g=float(lr_g),
                       lr_d=float(lr_d), warmup=float(warmup), g_adversarial=bool(g_adversarial))


@gpu
def train(session, minutes, batch_size, window_bars, lr_g, lr_d, warmup, g_adversarial=False, from_pretrained=False,
          poll_s: float = 1.0):
    """Start a training job and stream its progress until it ends (a generator of UI updates)."""
    session = _session(session)
    if not session.rolls:
        raise gr.Error("Upload some MIDI files first.")
    if api.TrainingJob.busy():
        raise gr.Error("Another training job is running on this server. Please try again in a few minutes.")
    minutes = min(float(minutes), MAX_TRAIN_MINUTES)
    job = api.TrainingJob(session.rolls, session.dir / "model", _train_config(batch_size, window_bars, lr_g, lr_d, warmup, g_adversarial),
                          Budget(minutes=minutes), sample_every_s=max(5.0, minutes * 6),
                          start_from=gen.DEFAULT_CHECKPOINT if from_pretrained else None)
    if not job.start():
        raise gr.Error("Another training job is running on this server. Please try again in a few minutes.")
    session.job = job
    shown_sample = -1
    sample_png = sample_wav = previous_curves = None
    while True:
        done = not job.running
        state = job.state
        if state.sample is not None and state.sample_step != shown_sample:
            shown_sample = state.sample_step
            sample_png, sample_wav = session.path(".png"), session.path(".wav")
            sample_png.write_bytes(render.piano_roll_png(state.sample, f"sample at step {shown_sample}"))
            sample_wav.write_bytes(render.synthesize(state.sample).wav_bytes())
        download = None
        if done and state.checkpoint:
            session.trained = state.checkpoint
            download = session.path(".zip")
            download.write_bytes(ckpt.zip_bytes(state.checkpoint))
        status = f"**{state.status}**: {state.message}"
        curves = session.path(".png")
        curves.write_bytes(render.training_curves_png(state.history))
        if previous_curves is not None:
            previous_curves.unlink(missing_ok=True)  # the page already has it; keep the session folder small
        previous_curves = curves
        yield (progress_html(1.0 if done and state.status == "done" else state.progress, state.elapsed_s,
                             state.message, done),
               str(curves), str(sample_png) if sample_png else None,
               str(sample_wav) if sample_wav else None, status, str(download) if download else None,
               gr.update(interactive=done and bool(state.checkpoint)), session)
        if done:
            return
        time.sleep(poll_s)


def stop(session=None):
    session = _session(session)
    if session.job is not None and session.job.running:
        session.job.stop()
        return "Stopping… the model trained so far is kept."
    return "Nothing is training."


def use_trained(session=None):
    session = _session(session)
    if not session.trained:
        raise gr.Error("Train a model first.")
    return gr.update(value=TRAINED), gr.Tabs(selected="generate")


# ------------------------------------------------------------------------------ closeness tab

def closeness(choice, session=None):
    session = _session(session)
    model = _model(choice, session)
    if choice == PRETRAINED:
        reference, what = data.load(EXAMPLES).rolls, "the example chorales (from its training music)"
    else:
        reference, what = session.rolls, "the music you uploaded"
        if not reference:
            raise gr.Error("Upload the training music in the Train tab to compare with it.")
    try:
        result = api.closeness(model, reference)
    except ValueError as e:
        raise gr.Error(str(e))
    path = session.path(".png")
    path.write_bytes(result.png)
    text = (f"**{result.verdict}**\n\nCompared with {what}: a simple classifier told generated 4-bar clips "
            f"from real ones {100 * result.two_sample:.0f}% of the time (50% would mean it cannot tell them "
            f"apart). Generated music plays {result.generated['polyphony']:.1f} notes at once and "
            f"{result.generated['notes per bar']:.1f} notes per bar; the real music "
            f"{result.reference['polyphony']:.1f} and {result.reference['notes per bar']:.1f}.")
    return str(path), text


# ------------------------------------------------------------------------------ layout

PLACEHOLDER = ('<div class="mg-empty">Press <b>Generate</b> or pick an example below: the piano roll '
               'appears here and plays in step with the audio (click the roll to jump).</div>')

CSS = """
.mg-empty { min-height: 260px; display: flex; align-items: center; justify-content: center; text-align: center;
            border: 1px dashed #b8b8c8; border-radius: 8px; color: #666; padding: 16px; }
.mg-roll canvas { width: 100%; border-radius: 8px; cursor: pointer; display: block; }
.mg-bar { display: flex; gap: 12px; align-items: center; margin-top: 6px; }
.mg-play { padding: 4px 14px; border-radius: 6px; border: 1px solid #00798c; background: #00798c; color: white; }
.mg-progress { height: 12px; background: #e6e6ef; border-radius: 6px; overflow: hidden; }
.mg-progress-fill { height: 100%; background: #00798c; transition: width 0.5s; }
.mg-progress-text { font-size: 0.9em; margin-top: 4px; }
"""


def build() -> gr.Blocks:
    model = api.load_model()
    tempo_default, _ = gen.defaults(model)
    device = device_label(pick_device("auto"))
    with gr.Blocks(title="musicgan") as demo:
        session = gr.State(Session, delete_callback=close_session, time_to_live=6 * 3600)
        gr.Markdown(f"# musicgan\nA recurrent GAN that learns from MIDI files and writes new music. "
                    f"Generate with the pretrained Bach-chorale model, or train on your own files. "
                    f"<small>v{musicgan.__version__}</small>")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        choice = gr.Radio([PRETRAINED, TRAINED, UPLOADED], value=PRETRAINED, label="Model")
                        with gr.Accordion("Upload a checkpoint", open=False):
                            ck_file = gr.File(label="musicgan checkpoint (.zip)", file_types=[".zip"])
                            ck_status = gr.Markdown()
                        with gr.Row():
                            seed = gr.Number(value=0, precision=0, label="Seed", minimum=0, scale=3)
                            dice = gr.Button("Random seed", scale=1, min_width=80)
                        bars = gr.Slider(1, 64, value=16, step=1, label="Length (bars)")
                        tempo = gr.Slider(40, 200, value=round(tempo_default), step=1, label="Tempo (beats per minute)")
                        instrument = gr.Dropdown(_instrument_choices(), value=-1, label="Instrument (General MIDI)")
                        temperature = gr.Slider(0.5, 1.5, value=1.0, step=0.05,
                                                label="Temperature (lower: safer, higher: wilder)")
                        key = gr.Dropdown([KEY_AUTO, *keys.NAMES], value=KEY_AUTO, label="Key",
                                          info="Models trained with this version take a key; the seed "
                                               "picks one from the training music's keys.")
                        go = gr.Button("Generate", variant="primary")
                        with gr.Accordion("Interpolate and vary", open=False):
                            seed_b = gr.Number(value=1, precision=0, label="Second seed", minimum=0)
                            steps = gr.Slider(2, 12, value=5, step=1, label="Interpolation steps (4 bars each)")
                            interp = gr.Button("Interpolate seed → second seed")
                            amount = gr.Slider(0.05, 1.0, value=0.3, step=0.05, label="Variation amount")
                            vary = gr.Button("3 variations of this seed")
                    with gr.Column(scale=2):
                        roll = gr.HTML(PLACEHOLDER, label="Piano roll", js_on_load=PIANOROLL_JS,
                                       elem_id="pianoroll", min_height=300)
                        status = gr.Markdown()
                        audio = gr.Audio(label="Audio", type="filepath", interactive=False)
                        with gr.Row():
                            midi_file = gr.File(label="MIDI", interactive=False)
                            png_file = gr.File(label="Piano roll image", interactive=False)
                outputs = [roll, audio, midi_file, png_file, status, session]
                sound = [tempo, instrument, temperature, key]
                go.click(generate, [choice, seed, bars, *sound, session], outputs, api_name="generate")
                interp.click(interpolate, [choice, seed, seed_b, steps, *sound, session], outputs,
                             api_name="interpolate")
                vary.click(variations, [choice, seed, amount, *sound, session], outputs, api_name="variations")
                dice.click(roll_dice, None, seed, api_name=False)
                ck_file.upload(upload_checkpoint, [ck_file, session], [choice, ck_status, session],
                               api_name="upload_checkpoint")
                gr.Examples([[PRETRAINED, 0, 8, round(tempo_default), -1, 1.0, KEY_AUTO],
                             [PRETRAINED, 42, 16, 80, 19, 0.9, KEY_AUTO],
                             [PRETRAINED, 7, 8, 110, 52, 1.1, KEY_AUTO]],
                            [choice, seed, bars, *sound], outputs, fn=generate, run_on_click=True,
                            cache_examples=False, label="Try one (one click makes music)")

            with gr.Tab("Train", id="train"):
                gr.Markdown(f"Upload your MIDI files, look at what was read, then train. {LIMITS_TEXT} "
                            f"Training runs on **{device}**.")
                uploads = gr.File(file_count="multiple", file_types=[".mid", ".midi", ".zip"], label="MIDI files or .zip")
                report = gr.Markdown("Upload MIDI files (or a .zip of them) to train on.")
                with gr.Row():
                    minutes = gr.Slider(0.5, MAX_TRAIN_MINUTES, value=3, step=0.5, label="Training time (minutes)")
                    batch = gr.Dropdown([16, 32, 64, 128], value=64, label="Batch size")
                    window = gr.Slider(1, 8, value=4, step=1, label="Window (bars)")
                from_pretrained = gr.Checkbox(
                    False, label="Start from the pretrained Bach model (fine-tune)",
                    info="Begins with what the chorale model knows; your music is read in its pitch range (33-93).")
                with gr.Accordion("GAN settings", open=False):
                    with gr.Row():
                        warmup = gr.Slider(0, 1, value=TrainConfig.warmup, step=0.05,
                                           label="Share of time for the likelihood warm-up (1 = no GAN phase)")
                        g_adversarial = gr.Checkbox(
                            False, label="Generator learns from the discriminator",
                            info="Off: the discriminator becomes a critic that picks among the generator's drafts "
                                 "(measured better). On: classic straight-through GAN updates.")
                        lr_g = gr.Number(value=1e-4, label="Generator learning rate (when it learns from D)")
                        lr_d = gr.Number(value=1e-3, label="Discriminator learning rate")
                with gr.Row():
                    start = gr.Button("Start training", variant="primary", interactive=False)
                    halt = gr.Button("Stop (keeps the model)")
                progress = gr.HTML(progress_html(0, 0, "not started"))
                train_status = gr.Markdown()
                losses = gr.Image(label="Losses and D accuracy (live)", type="filepath", interactive=False,
                                  elem_id="curves")
                with gr.Row():
                    sample_png = gr.Image(label="Latest sample", type="filepath", interactive=False)
                    sample_audio = gr.Audio(label="Latest sample (audio)", type="filepath", interactive=False)
                with gr.Row():
                    download = gr.File(label="Checkpoint (.zip: model.safetensors + config.json)", interactive=False)
                    use = gr.Button("Use this model in Generate", interactive=False)
                uploads.change(read_uploads, [uploads, session], [report, start, session], api_name="read_uploads")
                start.click(train, [session, minutes, batch, window, lr_g, lr_d, warmup, g_adversarial, from_pretrained],
                            [progress, losses, sample_png, sample_audio, train_status, download, use, session],
                            api_name="train", concurrency_limit=1, concurrency_id="training")
                halt.click(stop, session, train_status, api_name="stop")
                use.click(use_trained, session, [choice, tabs], api_name=False)

            with gr.Tab("How close is it?", id="closeness"):
                gr.Markdown("Generated music next to the music the model learned from: which notes it uses, "
                            "how long they are, how many sound at once, and how easily a classifier tells "
                            "them apart.")
                close_choice = gr.Radio([PRETRAINED, TRAINED, UPLOADED], value=PRETRAINED, label="Model")
                compare = gr.Button("Compare", variant="primary")
                close_text = gr.Markdown()
                close_png = gr.Image(type="filepath", interactive=False, label="Generated vs. real")
                compare.click(closeness, [close_choice, session], [close_png, close_text], api_name="closeness")
    return demo


def launch(demo: gr.Blocks | None = None, **kwargs):
    demo = demo or build()
    demo.queue(default_concurrency_limit=4)
    return demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                       server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                       css=CSS, theme=gr.themes.Soft(primary_hue="teal"), max_file_size=MAX_UPLOAD, **kwargs)


if __name__ == "__main__":
    launch()
