"""musicgan web app (Gradio). UI only: layout, events and formatting; the music comes from
``musicgan.api``. Each handler is a short function the tests call directly; it returns
``{component: value}`` for the components it changes (the components live in ``ui``, made by
:func:`build`).

Many visitors share one process (a Space): each browser tab has a :class:`Session` (its files,
uploads and models) in ``gr.State``; every event passes it in, so no click can swap it for a new
one. The files a tab sees are served straight from its session folder (a static path), so
nothing is copied into Gradio's cache, and each kind of output keeps only its latest files.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

import musicgan
from musicgan import api, checkpoint as ckpt, data, generate as gen, keys, metre as metres, render, settings, zerogpu
from musicgan.train import Budget, TrainConfig, pick_device, device_label

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted((ROOT / "examples").glob("*.mid"))
TUNES = sorted((ROOT / "examples" / "tunes").glob("*.mid"))
PIANOROLL_JS = (ROOT / "static" / "pianoroll.js").read_text()
# every session's files live here, served to the page as they are (gr.set_static_paths)
SESSIONS = Path(tempfile.gettempdir()) / "musicgan-sessions"

PRETRAINED, FIDDLE = "Pretrained: Bach chorales", "Pretrained: fiddle tunes"
TRAINED, UPLOADED = "My trained model", "Uploaded checkpoint"
MODELS = (PRETRAINED, FIDDLE, TRAINED, UPLOADED)


@dataclass(frozen=True)
class Shipped:
    """A pretrained model that comes with musicgan, and the words and music the page shows of it."""
    folder: Path
    examples: list  # MIDI files of its training music (How close is it? compares with them)
    examples_named: str  # "the example chorales"
    model_named: str  # "The Bach chorale model" (Start from a pretrained model)
    piece_of: str = ""  # " of a fiddle tune" (an example's button, where the first model's would not say)


SHIPPED = {PRETRAINED: Shipped(gen.DEFAULT_CHECKPOINT, EXAMPLES, "the example chorales", "The Bach chorale model"),
           FIDDLE: Shipped(ROOT / "checkpoints" / "fiddle-tunes", TUNES, "the example fiddle tunes",
                           "The fiddle-tune model", " of a fiddle tune")}
KEY_AUTO = METRE_AUTO = "From the seed"
UPLOAD_LIMITS = data.Limits(max_files=200, max_file_bytes=4 * 1024 * 1024, max_zip_members=1000,
                            max_zip_bytes=64 * 1024 * 1024)
MAX_UPLOAD = "32mb"
LIMITS_TEXT = (f"Up to {UPLOAD_LIMITS.max_files} MIDI files or .zip archives: each MIDI file at most "
               f"{UPLOAD_LIMITS.max_file_bytes // 2 ** 20} MB, each file uploaded (a .zip too) at most "
               f"{MAX_UPLOAD[:-2]} MB.")
MAX_TRAIN_MINUTES = float(os.environ.get("MUSICGAN_MAX_TRAIN_MINUTES", 30))
# the training settings the Train tab offers, in the order of its widgets (defaults and help: TrainConfig)
SLOT_WAIT_S = 20.0  # how long Start waits for a job that is finishing before it says the server is busy
TRAIN_SETTINGS = ("batch_size", "window_bars", "warmup", "g_adversarial", "lr_g", "lr_d")
# the CPU-heavy events share one queue group. Its handlers wait for api.cpu_slot (one per core, less
# the core a running training job holds), so that pieces waiting there can be drawn together
# (api.Composers): the group lets in two batches' worth, one being drawn and one gathering
CPU = {"concurrency_id": "cpu", "concurrency_limit": 2 * api.TOGETHER}
COMPOSERS = api.Composers(api.cpu_slot.cores)  # the processes that make the pieces

ui = SimpleNamespace()  # the components, by name (filled by build)


def _instrument_choices():
    import pretty_midi

    return [("Model default", -1)] + [(f"{i} · {pretty_midi.program_to_instrument_name(i)}", i) for i in range(128)]


def _example_label(choice: str, seed: int, bars: int, tempo: int, program: int) -> str:
    """What an example button says: 'Seed 42: 16 bars, Church Organ, 80 bpm' (of the chorale
    model; of another: 'Seed 1: 16 bars of a fiddle tune, Violin, 120 bpm')."""
    import pretty_midi

    instrument = f"{pretty_midi.program_to_instrument_name(program)}, " if program >= 0 else ""
    return f"Seed {seed}: {bars} bars{SHIPPED[choice].piece_of}, {instrument}{tempo} bpm"


try:  # ZeroGPU Spaces: a training run is a sequence of short GPU calls (musicgan.zerogpu)
    import spaces

    GPU_CALLS = zerogpu.in_calls(spaces.GPU) if getattr(spaces.config.Config, "zero_gpu", False) else None
except (ImportError, AttributeError):
    GPU_CALLS = None
if os.environ.get("MUSICGAN_GPU_STANDIN"):  # the same path on any machine, through zerogpu.StandIn
    GPU_CALLS = zerogpu.in_calls(zerogpu.StandIn(max_duration_s=float(os.environ["MUSICGAN_GPU_STANDIN"])))


# ------------------------------------------------------------------------------ session state

class Session:
    """One browser tab's state: its uploads, its training runs, its files. Freed when the tab
    has been closed for a while (Gradio's State lifetime), and its training stops as soon as
    the tab closes (:func:`leave`)."""

    def __init__(self):
        # an unguessable name: the folder is served to whoever knows its path
        self.dir = SESSIONS / secrets.token_urlsafe(16)
        self.rolls: list = []
        self.job: api.TrainingJob | None = None
        self.trained: str | None = None  # the folder of the latest trained model
        self.uploaded: str | None = None  # an uploaded checkpoint (.zip), copied into the folder
        self.runs = 0
        self._outputs: dict[str, list[Path]] = {}
        self._counter = 0

    def save(self, kind: str, files: dict) -> dict:
        """Write one output's files ({suffix: bytes}) and return {suffix: path}. The files of the
        previous output of the same kind are removed: the page shows only the latest."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        paths = {suffix: self.dir / f"musicgan-{self._counter}{suffix}" for suffix in files}
        for suffix, blob in files.items():
            paths[suffix].write_bytes(blob)
        for old in self._outputs.get(kind, []):
            old.unlink(missing_ok=True)
        self._outputs[kind] = list(paths.values())
        return {suffix: str(path) for suffix, path in paths.items()}

    def new_run(self) -> Path:
        """The folder for the next training run's model: a new one each run, so starting another
        run never overwrites the model of the last one before the new one has been saved."""
        self.runs += 1
        return self.dir / f"model-{self.runs}"

    def keep_model(self, folder: str) -> None:
        """``folder`` becomes the session's trained model; the one before it is removed."""
        previous, self.trained = self.trained, folder
        if previous and previous != folder:
            shutil.rmtree(previous, ignore_errors=True)

    def close(self):
        if self.job is not None:
            self.job.stop()
            self.job.wait(60)  # it saves once more when it stops: let it, then remove everything
        shutil.rmtree(self.dir, ignore_errors=True)


def close_session(session):
    if isinstance(session, Session):
        session.close()


def _need(session) -> Session:
    if not isinstance(session, Session):
        raise gr.Error("This page's session has ended. Reload the page to start a new one.")
    return session


def leave(request: gr.Request):
    """The tab was closed or reloaded: stop its training job, so that the server's one training
    slot is free for the next visitor at once (Gradio keeps a closed tab's state for an hour)."""
    api.TrainingJob.stop_owned_by(getattr(request, "session_hash", None))


def file_url(path) -> str:
    """The page's address of a file in a session folder (a static path: served as it is)."""
    return "gradio_api/file=" + urllib.parse.quote(str(path))


# ------------------------------------------------------------------------------ generate tab

def _model_path(choice: str, session: Session) -> str:
    """Where the chosen model is, for the worker that plays it."""
    if choice == TRAINED:
        if not session.trained:
            raise gr.Error("No trained model yet: train one in the Train tab first.")
        return session.trained
    if choice == UPLOADED:
        if session.uploaded is None:
            raise gr.Error("No checkpoint uploaded yet: upload a musicgan checkpoint (.zip) first.")
        return session.uploaded
    return str(SHIPPED[choice].folder)


def roll_html(roll, audio_path, title: str = "", given=None) -> str:
    """The playable piano roll: notes, timing and the address of its audio for static/pianoroll.js.
    It is the page's one audio player: the audio goes to the page once, as a file it fetches.
    The notes ``given`` marks (a bool per note: the visitor's own opening or melody) get a colour of their own."""
    notes = roll.notes.tolist()
    pitches = [n[0] for n in notes] or [60]
    steps = max(roll.n_steps, 1)
    payload = {"notes": notes, "steps": steps, "bars": metres.bar_lines(roll.time_signatures, steps + 1,
                                                                        roll.steps_per_beat).tolist(),
               "seconds_per_step": 60.0 / roll.tempo_bpm / roll.steps_per_beat, "low": min(pitches),
               "high": max(pitches), "audio": file_url(audio_path), "title": title,
               "given": [] if given is None else [int(g) for g in given]}
    encoded = urllib.parse.quote(json.dumps(payload, separators=(",", ":")))
    return (f'<div class="mg-roll" data-piece="{encoded}"><div class="mg-scroll"><canvas title="click to play '
            'from here"></canvas></div><div class="mg-bar"><button class="mg-play" type="button">▶ Play</button>'
            f'<span class="mg-time"></span><span class="mg-links"><a class="mg-audio" href="{file_url(audio_path)}" '
            'download>Audio (MP3)</a> · <a class="mg-save" href="#" download="musicgan-piano-roll.png">Image (PNG)'
            '</a></span></div><audio preload="auto"></audio></div>')


def _engine_text(engine: str) -> str:
    return ("FluidSynth with the General MIDI soundfont" if engine == "fluidsynth"
            else "simple built-in synth (FluidSynth is not installed on this server)")


def _compose(session, choice, tempo, instrument, temperature, key, piece_metre, kind: str, **arguments) -> dict:
    """The one path of Generate, Interpolate and Variations (``kind``, see api.web_piece): the
    piece is made in a worker process, its files land in the session folder."""
    session = _need(session)
    path = _model_path(choice, session)
    sound = {"tempo_bpm": float(tempo), "program": _program(instrument), "temperature": float(temperature),
             "key": _key(path, key), "metre": _metre(path, piece_metre)}
    return _made(session, choice, path, kind, **sound, **arguments)


def _program(instrument) -> int | None:
    return None if instrument in (None, -1, "-1") else int(instrument)


def _made(session, choice, path, kind: str, **arguments) -> dict:
    """A piece made in a worker process (``kind``, see api.web_piece), its files in the session folder."""
    try:
        piece = COMPOSERS.web_piece(kind, path, **arguments)  # (it waits for a CPU slot)
    except ValueError as e:
        raise gr.Error(_sentence(e) + _elsewhere(session, choice, kind, arguments))
    except RuntimeError as e:
        raise gr.Error(_sentence(e))
    paths = session.save("piece", {".mid": piece.midi, ".mp3": piece.mp3})
    status = f"**{piece.description}** · {choice} · {len(piece.roll.notes)} notes · audio: {_engine_text(piece.engine)}"
    return {ui.roll: roll_html(piece.roll, paths[".mp3"], piece.description, piece.given),
            ui.midi_file: paths[".mid"],
            ui.status: status, ui.session: session}


def _elsewhere(session: Session, choice: str, kind: str, arguments: dict) -> str:
    """Words that name the models the visitor can choose that take the music ``choice`` refused for
    ``kind`` (a jig for the chorale model: the fiddle-tune model takes it): "" for none, and for
    kinds that are given no music."""
    if kind not in api.READS:
        return ""
    others = {name: _model_path(name, session) for name in MODELS if name != choice and
              (name != TRAINED or session.trained) and (name != UPLOADED or session.uploaded is not None)}
    able = api.takers(kind, others, **arguments)
    if not able:
        return ""
    return (f" {' and '.join(f'“{name}”' for name in able)} can {api.CAN[kind]}: choose "
            f"{'it' if len(able) == 1 else 'one'} under Model.")


def _sentence(error: Exception) -> str:
    """The library's words for ``error`` ("the opening is in 6/8; ...") as a message on the page:
    a sentence ("The opening is in 6/8; ....")."""
    text = str(error).strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _key(model_path, choice):
    """The key chosen in the dropdown, or None (the seed's; and for models trained without keys)."""
    if choice in (None, KEY_AUTO):
        return None
    if not api.load_model(model_path).model.key_input:
        gr.Warning("This model was trained without keys, so it cannot be asked for one.")
        return None
    return keys.parse(choice)


def _metre(model_path, choice):
    """The metre chosen in the dropdown, or None (the seed's); one the model does not know is a message."""
    if choice in (None, METRE_AUTO):
        return None
    chosen, known = metres.parse(choice), api.load_model(model_path).model.metres
    if chosen not in known:
        raise gr.Error(f"This model knows {', '.join(map(metres.name, known))} only; it cannot write in {choice}.")
    return chosen


def metre_choices(choice, session=None):
    """The Metre menu of the chosen model: its metres (a model trained on waltzes knows 3/4)."""
    try:
        known = api.load_model(_model_path(choice, _need(session))).model.metres
    except gr.Error:  # no such model yet: leave the menu as it is (Generate will say why)
        return gr.update()
    return gr.update(choices=[METRE_AUTO, *map(metres.name, known)], value=METRE_AUTO)


def generate(choice, seed, bars, tempo, instrument, temperature, key=KEY_AUTO, piece_metre=METRE_AUTO, session=None):
    return _compose(session, choice, tempo, instrument, temperature, key, piece_metre, "piece", seed=int(seed),
                    bars=int(bars))


def interpolate(choice, seed, seed_b, steps, tempo, instrument, temperature, key=KEY_AUTO, piece_metre=METRE_AUTO,
                session=None):
    return _compose(session, choice, tempo, instrument, temperature, key, piece_metre, "interpolation",
                    seed_a=int(seed), seed_b=int(seed_b), steps=int(steps), bars=4)


def variations(choice, seed, amount, tempo, instrument, temperature, key=KEY_AUTO, piece_metre=METRE_AUTO,
               session=None):
    return _compose(session, choice, tempo, instrument, temperature, key, piece_metre, "variations", seed=int(seed),
                    n=3, amount=float(amount), bars=4)


def continue_music(choice, opening, seed, add_bars, opening_bars, instrument, temperature, session=None,
                   find_pickups=True):
    """Carry on from the first bars of an uploaded MIDI file, in its metre, key and tempo.
    ``find_pickups``: a file that opens with a pickup it does not mark gets a whole first bar."""
    session = _need(session)
    opening_bytes = _uploaded_midi(opening, "Upload a MIDI file whose opening the model should continue.")
    return _made(session, choice, _model_path(choice, session), "continuation", opening=opening_bytes,
                 seed=int(seed), bars=int(add_bars), opening_bars=int(opening_bars), program=_program(instrument),
                 temperature=float(temperature), find_pickups=bool(find_pickups))


def harmonise_music(choice, melody, seed, instrument, temperature, session=None, voice="top", find_pickups=True):
    """Keep the melody (the top line) of an uploaded MIDI file, or its bass (``voice`` "bottom"),
    and write the other voices."""
    session = _need(session)
    line = "melody (its top line)" if voice == "top" else "bass (its lowest notes)"
    melody_bytes = _uploaded_midi(melody, f"Upload a MIDI file whose {line} the model should harmonise.")
    return _made(session, choice, _model_path(choice, session), "harmonisation", melody=melody_bytes,
                 seed=int(seed), program=_program(instrument), temperature=float(temperature), voice=voice,
                 find_pickups=bool(find_pickups))


def harmonise_melody(choice, melody, seed, instrument, temperature, session=None, find_pickups=True):
    return harmonise_music(choice, melody, seed, instrument, temperature, session, voice="top",
                           find_pickups=find_pickups)


def harmonise_bass(choice, melody, seed, instrument, temperature, session=None, find_pickups=True):
    return harmonise_music(choice, melody, seed, instrument, temperature, session, voice="bottom",
                           find_pickups=find_pickups)


def _uploaded_midi(path, missing: str) -> bytes:
    if not path:
        raise gr.Error(missing)
    try:
        return Path(path).read_bytes()
    except OSError:
        raise gr.Error("The uploaded file could not be read; please upload it again.")


def roll_dice():
    return random.randint(0, 99_999)


def upload_checkpoint(file, session=None):
    """Load an uploaded checkpoint (.zip) safely; a bad one gives a message, never a traceback."""
    session = _need(session)
    if not file:
        return {ui.ck_status: ""}
    try:
        steps = ckpt.load(file).steps
    except ckpt.CheckpointError as e:
        raise gr.Error(f"That checkpoint cannot be used: {e}")
    # a copy of its own in the session folder: Gradio's upload cache is cleaned on its own schedule
    session.uploaded = session.save("upload", {".zip": Path(file).read_bytes()})[".zip"]
    return {ui.choice: UPLOADED, ui.ck_status: f"Loaded checkpoint ({steps} training steps).", ui.session: session}


# ------------------------------------------------------------------------------ train tab

def read_uploads(files, session=None, find_pickups: bool = True):
    """Read uploaded MIDI/zip files and report what was read and skipped. ``find_pickups``: a
    piece that opens with a pickup its file does not mark gets a whole first bar (musicgan.pickup)."""
    session = _need(session)
    if not files:
        session.rolls = []
        return {ui.report: "Upload MIDI files (or a .zip of them) to train on.", ui.start: gr.update(interactive=False),
                ui.session: session}
    # Gradio keeps each upload's original name as the last part of its temporary path
    corpus = data.load([Path(f if isinstance(f, str) else f.name) for f in files], "auto", limits=UPLOAD_LIMITS,
                       find_pickups=bool(find_pickups))
    session.rolls = corpus.rolls
    report = corpus.report
    lines = [f"**{len(report.read)} file(s) read**, {len(report.skipped)} skipped: "
             f"{report.notes:,} notes in {report.bars:,.0f} bars."]
    if report.metres:
        lines.append("Metres: " + ", ".join(report.metres) + (f"; a grid of {corpus.rolls[0].steps_per_beat} steps a "
                                                             f"beat keeps its triplets" if corpus.rolls and
                                                             corpus.rolls[0].steps_per_beat != 4 else "") + ".")
    if report.pickups:
        lines.append(f"Pickups: {len(report.pickups)} file(s) open with a pickup the file does not mark; each first bar "
                     f"is made whole with a rest before it: {report.pickups_named('`')}.")
    lines += [f"- skipped `{name}`: {reason}" for name, reason in report.skipped[:50]]
    if len(report.skipped) > 50:
        lines.append(f"- … and {len(report.skipped) - 50} more")
    if not corpus.rolls:
        lines.append("\nNothing usable to train on yet.")
    return {ui.report: "\n".join(lines), ui.start: gr.update(interactive=bool(corpus.rolls)), ui.session: session}


def progress_html(fraction: float, elapsed_s: float, text: str, done: bool = False) -> str:
    left = ""
    if 0.02 < fraction < 1 and not done:
        left = f" · about {max(elapsed_s / fraction - elapsed_s, 0):.0f} s left"
    return (f'<div class="mg-progress"><div class="mg-progress-fill" style="width:{100 * fraction:.1f}%"></div></div>'
            f'<div class="mg-progress-text">{100 * fraction:.0f}% · {text}{left}</div>')


LOSSES = {"mle": "likelihood loss", "d_loss": "D loss", "g_loss": "G loss"}
# (short names: each plot's legend is one row, and it must fit a phone's width)
CRITIC = {"d_accuracy": "D accuracy", "diversity": "diversity", "diversity_real": "real diversity"}
COLORS = {"likelihood loss": "#00798c", "D loss": "#d1495b", "G loss": "#edae49", "D accuracy": "#d1495b",
          "diversity": "#30638e", "real diversity": "#999999"}
MAX_POINTS = 300  # per series: the page gets a light table however long the run


def curves(history: list[dict], series: dict) -> pd.DataFrame:
    """The live plot's table (step, value, series) of the 'step' events: each series thinned to
    at most MAX_POINTS points, each point the mean of the steps it stands for (GAN losses are noisy).
    Every table spans the run's steps so far, so that the two plots share their step axis (the
    critic's is empty until the GAN phase: without this it showed a lone '0.000000')."""
    # a blank point of every series first: the page fixes the plot's colours by the series of its first
    # table; and one at the latest step
    last = float(max((h["step"] for h in history), default=0))
    rows = [(step, float("nan"), label) for step in (0.0, last) for label in series.values()]
    for key, label in series.items():
        points = [(h["step"], h[key]) for h in history if key in h]
        k = max(1, -(-len(points) // MAX_POINTS))
        for i in range(0, len(points), k):
            chunk = points[i:i + k]
            rows.append((chunk[-1][0], sum(v for _, v in chunk) / len(chunk), label))
    step, value, name = zip(*rows)
    # typed columns even when empty: the plot picks its scales (numbers, not categories) from them
    return pd.DataFrame({"step": pd.Series(step, dtype="float64"), "value": pd.Series(value, dtype="float64"),
                         "series": pd.Series(name, dtype="object")})


def _train_config(values: dict) -> TrainConfig:
    kinds = {name: settings.describe(TrainConfig, name).kind for name in values}
    return TrainConfig(**{name: kinds[name](value) for name, value in values.items()})


def train(session, minutes, start_from, batch_size, window_bars, warmup, g_adversarial, lr_g, lr_d,
          request: gr.Request = None, poll_s: float = 1.0):
    """Start a training job and stream its progress until it ends (a generator of UI updates).
    ``start_from``: a pretrained model's choice (PRETRAINED, FIDDLE) to fine-tune, or "" for none."""
    session = _need(session)
    if not session.rolls:
        raise gr.Error("Upload some MIDI files first.")
    config = _train_config(dict(zip(TRAIN_SETTINGS, (batch_size, window_bars, warmup, g_adversarial, lr_g, lr_d))))
    minutes = min(float(minutes), MAX_TRAIN_MINUTES)
    job = api.TrainingJob(session.rolls, session.new_run(), config, Budget(minutes=minutes),
                          sample_every_s=max(5.0, minutes * 6), owner=getattr(request, "session_hash", None),
                          start_from=SHIPPED[start_from].folder if start_from else None, gpu_calls=GPU_CALLS)
    # a job that was just stopped (its visitor left) frees the slot once its model is saved: wait for that
    deadline = time.monotonic() + SLOT_WAIT_S
    while not job.start():
        if time.monotonic() > deadline:
            raise gr.Error("Another training job is running on this server. Please try again in a few minutes.")
        yield {ui.progress: progress_html(0, 0, "waiting for the server's training slot")}
        time.sleep(min(poll_s, 0.5))
    session.job = job
    shown_sample, shown_steps = -1, -1
    first = True
    while True:
        done = not job.running
        state = job.state
        update = {ui.progress: progress_html(1.0 if done and state.status == "done" else state.progress,
                                             state.elapsed_s, state.message, done),
                  ui.train_status: f"**{state.status}**: {state.message}"}
        if first:
            update.update({ui.session: session, ui.download: None, ui.use: gr.update(interactive=False)})
            first = False
        if len(state.history) != shown_steps:
            shown_steps = len(state.history)
            update[ui.losses], update[ui.critic] = curves(state.history, LOSSES), curves(state.history, CRITIC)
        if state.sample is not None and state.sample_step != shown_sample:
            shown_sample = state.sample_step
            sample = state.sample
            with api.cpu_slot():
                audio = render.synthesize(sample)
                path = session.save("sample", {".mp3": audio.mp3_bytes()})[".mp3"]
            update[ui.sample] = roll_html(sample, path, f"sample at step {shown_sample}")
        if state.checkpoint and session.trained != state.checkpoint:  # saved: usable at once
            session.keep_model(state.checkpoint)
            update[ui.download] = session.save("checkpoint", {".zip": ckpt.zip_bytes(state.checkpoint)})[".zip"]
            update[ui.use] = gr.update(interactive=True)
        yield update
        if done:
            return
        time.sleep(poll_s)


def stop(session=None):
    session = _need(session)
    if session.job is not None and session.job.running:
        session.job.stop()
        return {ui.train_status: "Stopping… the model trained so far is kept."}
    return {ui.train_status: "Nothing is training."}


def use_trained(session=None):
    session = _need(session)
    if not session.trained:
        raise gr.Error("Train a model first.")
    return {ui.choice: TRAINED, ui.tabs: gr.Tabs(selected="generate")}


# ------------------------------------------------------------------------------ closeness tab

def closeness(choice, session=None):
    session = _need(session)
    model = api.load_model(_model_path(choice, session))
    with api.cpu_slot():
        if choice in SHIPPED:
            reference = data.load(SHIPPED[choice].examples).rolls
            what = f"{SHIPPED[choice].examples_named} (from its training music)"
        else:
            reference, what = session.rolls, "the music you uploaded"
            if not reference:
                raise gr.Error("Upload the training music in the Train tab to compare with it.")
        try:
            result = api.closeness(model, reference)
        except ValueError as e:
            raise gr.Error(_sentence(e))
        path = session.save("closeness", {".png": result.png})[".png"]
    against = "" if result.yardstick is None else (
        f" It tells half of these real pieces from the other half {100 * result.yardstick:.0f}% of the time: "
        f"clips of one piece share its key, metre and texture, so with few pieces that is the yardstick.")
    text = (f"**{result.verdict}**\n\nCompared with {what}: a simple classifier told generated 4-bar clips, "
            f"each in the key and metre of a real one, from real ones {100 * result.two_sample:.0f}% of the time "
            f"(50% would mean it cannot tell them apart).{against} Generated music plays "
            f"{result.generated['polyphony']:.1f} notes at once and "
            f"{result.generated['notes per bar']:.1f} notes per bar; the real music "
            f"{result.reference['polyphony']:.1f} and {result.reference['notes per bar']:.1f}.")
    return {ui.close_png: path, ui.close_text: text, ui.session: session}


# ------------------------------------------------------------------------------ layout

# the text sits in one <span>: in a flex box, bare text and <b> would be separate items and lose the spaces between them
PLACEHOLDER = ('<div class="mg-empty"><span>Press <b>Generate</b> or pick an example below: the piano roll '
               'appears here and plays in step with the audio (click the roll to jump).</span></div>')
SAMPLE_PLACEHOLDER = '<div class="mg-empty">A sample of what the model plays appears here while it learns.</div>'

CSS = """
.mg-empty { min-height: 200px; display: flex; align-items: center; justify-content: center; text-align: center;
            border: 1px dashed #b8b8c8; border-radius: 8px; color: #666; padding: 16px; }
.mg-scroll { overflow-x: auto; border-radius: 8px; }
.mg-roll canvas { border-radius: 8px; cursor: pointer; display: block; }
.mg-bar { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin-top: 6px; }
.mg-play { padding: 6px 16px; border-radius: 6px; border: 1px solid #00798c; background: #00798c; color: white; }
.mg-links { margin-left: auto; }
.mg-progress { height: 12px; background: #e6e6ef; border-radius: 6px; overflow: hidden; }
.mg-progress-fill { height: 100%; background: #00798c; transition: width 0.5s; }
.mg-progress-text { font-size: 0.9em; margin-top: 4px; }
/* the plots' legends sit below their charts, outside the box Gradio sizes: let them show */
.mg-curves, .mg-curves .wrap, .mg-curves svg.marks { overflow: visible !important; }
.mg-curves { padding-bottom: 40px !important; }
"""


def _setting_widget(cls, name: str, choices=None, **overrides):
    """A widget for one setting of a config dataclass: its default, bounds and help live there
    (``overrides`` narrow them for the page, e.g. a smaller maximum)."""
    s = settings.describe(cls, name)
    info = {"info": s.help} if s.help != s.label else {}
    if s.kind is bool:
        return gr.Checkbox(s.default, label=s.label, **info)
    if choices is not None:
        return gr.Dropdown(choices, value=s.default, label=s.label, **info)
    bounds = {"minimum": s.minimum, "maximum": s.maximum, **overrides}
    if s.step is not None and None not in bounds.values():
        return gr.Slider(value=s.default, step=s.step, label=s.label, **bounds, **info)
    return gr.Number(value=s.default, label=s.label, **bounds, **info)


def build() -> gr.Blocks:
    model = api.load_model()
    tempo_default, _ = gen.defaults(model)
    device = "the GPU, in short calls (ZeroGPU)" if GPU_CALLS else device_label(pick_device("auto"))
    SESSIONS.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([SESSIONS])
    # uploads are copied into Gradio's cache: remove them an hour after they came (checked every 10 minutes)
    with gr.Blocks(title="musicgan", delete_cache=(600, 3600)) as demo:
        ui.session = session = gr.State(Session, delete_callback=close_session, time_to_live=6 * 3600)
        gr.Markdown(f"# musicgan\nA recurrent GAN that learns from MIDI files and writes new music. "
                    f"Generate with a pretrained model (Bach chorales, or fiddle tunes), or train on your own files. "
                    f"<small>v{musicgan.__version__}</small>")
        with gr.Tabs() as ui.tabs:
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        ui.choice = gr.Radio(list(MODELS), value=PRETRAINED, label="Model")
                        with gr.Accordion("Upload a checkpoint", open=False):
                            ck_file = gr.File(label="musicgan checkpoint (.zip)", file_types=[".zip"])
                            ui.ck_status = gr.Markdown()
                        with gr.Row():
                            seed = gr.Number(value=0, precision=0, label="Seed", minimum=0, scale=3, min_width=120)
                            dice = gr.Button("Random seed", scale=1, min_width=80)
                        bars = gr.Slider(1, 64, value=16, step=1, label="Length (bars)")
                        tempo = gr.Slider(40, 200, value=round(tempo_default), step=1, label="Tempo (beats per minute)")
                        instrument = gr.Dropdown(_instrument_choices(), value=-1, label="Instrument (General MIDI)")
                        temperature = gr.Slider(0.5, 1.5, value=1.0, step=0.05,
                                                label="Temperature (lower: safer, higher: wilder)")
                        with gr.Row():
                            key = gr.Dropdown([KEY_AUTO, *keys.NAMES], value=KEY_AUTO, label="Key", min_width=180,
                                              info="The seed picks one of the training music's keys.")
                            piece_metre = gr.Dropdown([METRE_AUTO, *map(metres.name, model.model.metres)],
                                                      value=METRE_AUTO, label="Metre", min_width=180,
                                                      info="The seed picks one of the training music's metres.")
                        go = gr.Button("Generate", variant="primary")
                        with gr.Accordion("Interpolate and vary", open=False):
                            seed_b = gr.Number(value=1, precision=0, label="Second seed", minimum=0)
                            steps = gr.Slider(2, 12, value=5, step=1, label="Interpolation steps (4 bars each)")
                            interp = gr.Button("Interpolate seed → second seed")
                            amount = gr.Slider(0.05, 1.0, value=0.3, step=0.05, label="Variation amount")
                            vary = gr.Button("3 variations of this seed")
                        with gr.Accordion("Start from your music", open=False):
                            opening = gr.File(label="A MIDI file of yours: an opening to continue, or a melody "
                                                    "(or a bass) to harmonise", file_types=[".mid", ".midi"], elem_id="opening")
                            with gr.Row():
                                opening_bars = gr.Slider(1, 16, value=4, step=1, label="Bars of it the model reads")
                                add_bars = gr.Slider(1, 32, value=8, step=1, label="Bars to add")
                            given_pickup = gr.Checkbox(True, label="Find a pickup the file does not mark",
                                                       info="A file that opens with an upbeat from its first tick "
                                                            "gets a whole first bar; the piece's line says so. "
                                                            "Untick to count bars from its first note.",
                                                       elem_id="given-pickup")
                            with gr.Row():
                                go_on = gr.Button("Continue it", elem_id="continue", min_width=120)
                                harmonise = gr.Button("Harmonise its melody", elem_id="harmonise", min_width=120)
                                harmonise_low = gr.Button("Harmonise its bass", elem_id="harmonise-bass",
                                                          min_width=120)
                            gr.Markdown("<small>Harmonise keeps the file's top line (or its bass: its lowest "
                                        "notes) note for note and writes the other voices.</small>")
                    with gr.Column(scale=2, min_width=300):
                        ui.roll = gr.HTML(PLACEHOLDER, label="Piano roll", js_on_load=PIANOROLL_JS,
                                          elem_id="pianoroll", min_height=300)
                        ui.status = gr.Markdown(elem_id="piece-status")
                        ui.midi_file = gr.File(label="MIDI", interactive=False)
                outputs = [ui.roll, ui.midi_file, ui.status, session]
                sound = [tempo, instrument, temperature, key, piece_metre]
                ui.choice.change(metre_choices, [ui.choice, session], piece_metre, api_name=False)
                go.click(generate, [ui.choice, seed, bars, *sound, session], outputs, api_name="generate", **CPU)
                interp.click(interpolate, [ui.choice, seed, seed_b, steps, *sound, session], outputs,
                             api_name="interpolate", **CPU)
                vary.click(variations, [ui.choice, seed, amount, *sound, session], outputs, api_name="variations",
                           **CPU)
                go_on.click(continue_music, [ui.choice, opening, seed, add_bars, opening_bars, instrument, temperature,
                                             session, given_pickup], outputs, api_name="continue", **CPU)
                harmonise.click(harmonise_melody, [ui.choice, opening, seed, instrument, temperature, session,
                                                   given_pickup], outputs, api_name="harmonise", **CPU)
                harmonise_low.click(harmonise_bass, [ui.choice, opening, seed, instrument, temperature, session,
                                                     given_pickup], outputs, api_name="harmonise_bass", **CPU)
                dice.click(roll_dice, None, seed, api_name=False)
                ck_file.upload(upload_checkpoint, [ck_file, session], [ui.choice, ui.ck_status, session],
                               api_name="upload_checkpoint")
                # an example fills in the controls, then generates like the button (with this tab's session)
                # labelled, not a table of eight columns (which a phone scrolls sideways)
                rows = [[PRETRAINED, 0, 8, round(tempo_default), -1, 1.0, KEY_AUTO, METRE_AUTO],
                        [PRETRAINED, 42, 16, 80, 19, 0.9, KEY_AUTO, METRE_AUTO],
                        [PRETRAINED, 7, 8, 110, 52, 1.1, KEY_AUTO, METRE_AUTO],
                        [FIDDLE, 1, 16, 120, 40, 1.0, KEY_AUTO, METRE_AUTO]]
                examples = gr.Examples(rows, [ui.choice, seed, bars, *sound], label="Try one (one click makes music)",
                                       example_labels=[_example_label(*row[:5]) for row in rows])
                examples.load_input_event.then(generate, [ui.choice, seed, bars, *sound, session], outputs,
                                               api_name=False, **CPU)

            with gr.Tab("Train", id="train"):
                gr.Markdown(f"Upload your MIDI files, look at what was read, then train. {LIMITS_TEXT} "
                            f"Training runs on **{device}**.")
                uploads = gr.File(file_count="multiple", file_types=[".mid", ".midi", ".zip"], label="MIDI files or .zip")
                find_pickups = gr.Checkbox(True, label="Find pickups the files do not mark",
                                           info="A piece that opens with an upbeat written from the file's first "
                                                "note has its bars moved to where they begin; untick to count bars "
                                                "from each file's first note.")
                ui.report = gr.Markdown("Upload MIDI files (or a .zip of them) to train on.")
                with gr.Row():
                    minutes = gr.Slider(0.5, MAX_TRAIN_MINUTES, value=3, step=0.5, label="Training time (minutes)")
                    batch = _setting_widget(TrainConfig, "batch_size",
                                            choices=[("Auto", 0)] + [(str(n), n) for n in (16, 32, 64, 128, 256, 512)])
                    window = _setting_widget(TrainConfig, "window_bars", maximum=8)
                fiddle = api.load_model(SHIPPED[FIDDLE].folder).model
                start_from = gr.Radio(
                    [("Nothing", "")] + [(shipped.model_named, name) for name, shipped in SHIPPED.items()],
                    value="", label="Start from a pretrained model (fine-tune)",
                    info=f"Begins with what that model knows; your music is read in its voices and pitch range "
                         f"(the chorales: {model.model.voices} voices, {model.model.pitch_low}-{model.model.pitch_high}; "
                         f"the fiddle tunes: one line, {fiddle.pitch_low}-{fiddle.pitch_high}).")
                with gr.Accordion("GAN settings", open=False):
                    with gr.Row():
                        warmup = _setting_widget(TrainConfig, "warmup")
                        g_adversarial = _setting_widget(TrainConfig, "g_adversarial")
                        lr_g = _setting_widget(TrainConfig, "lr_g")
                        lr_d = _setting_widget(TrainConfig, "lr_d")
                with gr.Row():
                    ui.start = gr.Button("Start training", variant="primary", interactive=False)
                    halt = gr.Button("Stop (keeps the model)")
                ui.progress = gr.HTML(progress_html(0, 0, "not started"))
                ui.train_status = gr.Markdown()
                with gr.Row():
                    ui.losses = gr.LinePlot(curves([], LOSSES), x="step", y="value", color="series",
                                            label="Losses (live)", elem_id="curves", height=260, min_width=300,
                                            y_title="loss", color_title="", elem_classes="mg-curves",
                                            color_map={v: COLORS[v] for v in LOSSES.values()})
                    ui.critic = gr.LinePlot(curves([], CRITIC), x="step", y="value", color="series", y_lim=[0, 1],
                                            label="D accuracy and diversity (GAN phase)",
                                            height=260, min_width=300, y_title="share", color_title="", elem_classes="mg-curves",
                                            color_map={v: COLORS[v] for v in CRITIC.values()})
                ui.sample = gr.HTML(SAMPLE_PLACEHOLDER, label="Latest sample", js_on_load=PIANOROLL_JS,
                                    elem_id="sample")
                with gr.Row():
                    ui.download = gr.File(label="Checkpoint (.zip: model.safetensors + config.json)", interactive=False)
                    ui.use = gr.Button("Use this model in Generate", interactive=False)
                uploads.change(read_uploads, [uploads, session, find_pickups], [ui.report, ui.start, session],
                               api_name="read_uploads")
                find_pickups.change(read_uploads, [uploads, session, find_pickups], [ui.report, ui.start, session],
                                    api_name=False)
                ui.start.click(train, [session, minutes, start_from, batch, window, warmup, g_adversarial, lr_g, lr_d],
                               [ui.progress, ui.losses, ui.critic, ui.sample, ui.train_status, ui.download, ui.use,
                                session], api_name="train", concurrency_limit=1, concurrency_id="training")
                halt.click(stop, session, ui.train_status, api_name="stop", concurrency_limit=None)
                ui.use.click(use_trained, session, [ui.choice, ui.tabs], api_name=False)

            with gr.Tab("How close is it?", id="closeness"):
                gr.Markdown("Generated music next to the music the model learned from: which notes it uses, "
                            "how long they are, how many sound at once, and how easily a classifier tells "
                            "them apart.")
                close_choice = gr.Radio(list(MODELS), value=PRETRAINED, label="Model")
                compare = gr.Button("Compare", variant="primary")
                ui.close_text = gr.Markdown()
                ui.close_png = gr.Image(type="filepath", interactive=False, label="Generated vs. real")
                compare.click(closeness, [close_choice, session], [ui.close_png, ui.close_text, session],
                              api_name="closeness", **CPU)
        demo.unload(leave)
    return demo


def launch(demo: gr.Blocks | None = None, **kwargs):
    api.serve_on_shared_cores()
    demo = demo or build()
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), css=CSS,
                theme=gr.themes.Soft(primary_hue="teal"), max_file_size=MAX_UPLOAD, prevent_thread_lock=True, **kwargs)
    # the workers that make the pieces start once the page is served (torch and the model: seconds)
    COMPOSERS.warm()
    demo.block_thread()


if __name__ == "__main__":
    launch()
