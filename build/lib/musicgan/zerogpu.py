"""Training on ZeroGPU Spaces: one run as a sequence of short GPU calls.

A ZeroGPU Space holds a GPU only inside a function decorated with ``spaces.GPU(duration=...)``.
Each call runs in a process of its own and is cut off when its duration is spent; a call may last
a few minutes at most, and each visitor has a daily quota. A training run of up to 30 minutes
therefore runs as :class:`Part` after part, each at most :data:`CALL_S` seconds: a part continues
the run saved by the one before (weights, optimisers, random streams, step count and training
clock, as ``--resume`` does), trains until its call's time is nearly spent, saves the run and
ends. In steps, the parts make exactly the run one call would have made. The events of each part
(steps, samples) stream back as it trains, so the live curves go on between calls.

A part saves only what the next one resumes from (``Trainer.save(finish=False)``, a fraction of
a second). What generating needs besides, and the steps do not (the sampling biases fitted to
the music, its forms, the copy guard's index: 7 s of a 2-minute call for 20 quartet movements
on 2 cores, more on a busy machine), is CPU work: :func:`finish` does it once, after the last
call, outside the GPU's time, so no call spends the visitor's quota on it or is cut off in the
middle of it. Each part still reports how long its saving took, and the next keeps that much of
its call, and a margin, for its own: a part that saved past its call's end would be cut off and
lose its steps, and so would every part after it.

:class:`StandIn` behaves as ``spaces.GPU`` does where it matters here (a process per call, a
hard cut at the duration, a maximum duration and a quota, generators streamed), so that the
tests and a local run can check all of this without a Space.
"""
from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as ckpt
from .models import ModelConfig
from .train import Budget, TrainConfig, Trainer

CALL_S = 120  # the longest GPU call a part asks for
SETUP_S = 25  # of each call: starting its process, reading the music, building the model
SAVE_S = 5  # of each call: saving the run at its end (writing its weights and optimisers' state),
# until a part has measured it (then SAVE_MARGIN times that, see reserve_for_saving)
SAVE_MARGIN = 1.5
MIN_CALL_S = 45  # a part shorter than this would spend most of its call on setting up
STOP_FILE = "STOP"  # in the run's folder: the visitor pressed Stop (or left)


class GPUError(RuntimeError):
    """A GPU call that was refused or cut off (quota, duration), in ZeroGPU's words."""


@dataclass
class Part:
    """One GPU call of a training run: everything it needs travels with it (it runs in a process of
    its own). ``folder``: where the run is carried from part to part."""

    rolls: list
    config: TrainConfig
    budget: Budget
    folder: str
    seconds: int  # the call's duration
    start_from: str | None = None  # a checkpoint to fine-tune (the first part only)
    stop_file: str = ""  # the visitor pressed Stop (or left) when this file exists
    sample_every_s: float | None = None
    device: str = "auto"
    model: ModelConfig | None = None  # a new run's model (None: the trainer's choice for the music)
    save_s: float = SAVE_S  # of the call, kept for saving the run at its end (reserve_for_saving)

    @property
    def resumes(self) -> bool:
        return (Path(self.folder) / ckpt.CONFIG).is_file()


def part_seconds(part: Part) -> int:
    """The duration a part asks the GPU for (``spaces.GPU(duration=...)`` calls this with the
    part, as it does with a decorated function's arguments)."""
    return part.seconds


def reserve_for_saving(measured_s: float | None) -> float:
    """The seconds a part keeps for saving at the end of its call: :data:`SAVE_S` until a part has
    measured its saving, then :data:`SAVE_MARGIN` times the last measure (no less than
    :data:`SAVE_S`), at most what a call of :data:`CALL_S` has after its setup."""
    if measured_s is None:
        return float(SAVE_S)
    return float(min(CALL_S - SETUP_S, max(SAVE_S, SAVE_MARGIN * measured_s)))


def call_seconds(budget: Budget, elapsed_s: float, save_s: float = SAVE_S) -> int:
    """The duration of the next call: what is left of a time budget and the call's own setup
    and saving (``save_s``), at most :data:`CALL_S` and at least :data:`MIN_CALL_S` seconds."""
    if not budget.minutes:
        return CALL_S
    left = 60 * budget.minutes - elapsed_s
    return int(max(MIN_CALL_S, min(CALL_S, left + SETUP_S + save_s)))


def train_part(part: Part):
    """Run one part (inside a GPU call): a generator of the trainer's events, ending with a
    ``{"event": "part", "status": ..., "save_s": ...}`` event. Status 'done' (the budget is spent),
    'stopped' (the stop file appeared) or 'paused' (the call's time is up: the next part goes on);
    ``save_s``: how long saving the run took. The run saved is to resume from: :func:`finish` it
    (on the CPU) for a model to generate with."""
    began = time.monotonic()
    folder, stop_file = Path(part.folder), Path(part.stop_file) if part.stop_file else None
    pending: list = []
    trainer = _trainer(part, part.device, pending.append)
    first_step = trainer.step_count
    stopped = lambda: stop_file is not None and stop_file.exists()  # noqa: E731
    # every call makes at least one step, however short it is: the run always moves on
    time_up = lambda: trainer.step_count > first_step and time.monotonic() - began > part.seconds - part.save_s  # noqa: E731
    steps = trainer.steps(part.budget, lambda: stopped() or time_up(), part.sample_every_s)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            status = end.value
            break
        yield from pending  # the step's event, and the phase switch or the sample it brought
        pending.clear()
    if status == "stopped" and not stopped():
        status = "paused"
    saving = time.monotonic()
    trainer.save(folder, finish=False)
    save_s = time.monotonic() - saving
    yield from pending
    yield {"event": "part", "status": status, "step": trainer.step_count, "elapsed_s": trainer.elapsed_s,
           "save_s": save_s}


def _trainer(part: Part, device, callback=None) -> Trainer:
    """The run's trainer on ``device``: as the last part saved it, or new (fine-tuning
    ``part.start_from``, if any) when no part has run yet."""
    resumes = part.resumes
    base = ckpt.load(part.folder if resumes else part.start_from, with_discriminator=True) \
        if resumes or part.start_from else None
    trainer = Trainer(part.rolls, base.model if base else part.model, config=part.config, device=device,
                      callback=callback, budget=part.budget)
    if resumes:
        trainer.restore(base)
    elif base:
        trainer.start_from(base)
    return trainer


def finish(part: Part, directory) -> Trainer:
    """Finish the run that ``part`` (or any part of it) saved, on the CPU, outside the GPU calls:
    fit its sampling biases, read its music's forms, build its copy guard's index (as a run saved
    in one go has them; see ``Trainer.save``), and save the model alone (no training state) into
    ``directory``. The same run finished gives the same model, to the bit, as one that trained
    in one go. Returns the trainer, on the CPU, for a sample."""
    trainer = _trainer(part, "cpu")
    trainer.budget = trainer.cut_budget(part.budget)  # (as its steps had it)
    trainer.save(directory, with_train_state=False)
    return trainer


def _child(fn, args, kwargs, out) -> None:
    out.put(("begun", None))  # the process is up: the call's clock starts (ZeroGPU forks a warm one)
    try:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            for item in result:
                out.put(("item", item))
        else:
            out.put(("item", result))
        out.put(("done", None))
    except BaseException as e:  # noqa: BLE001 - the parent raises it in its own words
        out.put(("error", str(e) or type(e).__name__))


class StandIn:
    """A stand-in for ``spaces.GPU`` on a machine without ZeroGPU. Use it as that decorator:
    ``StandIn(max_duration_s=120)(duration=fn)(function)``. Each call runs ``function`` in a new
    process (spawned: its arguments must pickle) and streams what a generator yields; a call that
    asks for more than ``max_duration_s``, or more than is left of ``quota_s``, is refused before
    it starts; a call that runs past its duration, counted from when its process is up (ZeroGPU
    forks an already warm one), is killed (ZeroGPU's "GPU task aborted")."""

    def __init__(self, max_duration_s: float = CALL_S, quota_s: float | None = None):
        self.max_duration_s, self.quota_s = max_duration_s, quota_s
        self.used_s, self.calls = 0.0, []  # the seconds used, and each call's (asked, ran)

    def __call__(self, fn=None, *, duration=60):
        if fn is not None:  # bare @StandIn() use
            return self(duration=duration)(fn)

        def decorate(function):
            def call(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                if seconds > self.max_duration_s:
                    raise GPUError(f"The requested GPU duration ({seconds}s) is larger than the maximum allowed")
                if self.quota_s is not None and self.used_s + seconds > self.quota_s:
                    left = max(0, int(self.quota_s - self.used_s))
                    raise GPUError(f"You have exceeded your GPU quota ({left}s left vs. {seconds}s requested)")
                yield from self._run(function, args, kwargs, seconds)
            return call
        return decorate

    def _run(self, function, args, kwargs, seconds):
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        process = context.Process(target=_child, args=(function, args, kwargs, out), daemon=True)
        began = time.monotonic()
        process.start()
        try:
            while True:
                try:
                    kind, value = out.get(timeout=0.2)
                except queue.Empty:
                    if time.monotonic() - began > seconds:
                        raise GPUError("GPU task aborted: the call ran past its duration") from None
                    if not process.is_alive():
                        raise GPUError("the GPU process ended without an answer") from None
                    continue
                if kind == "begun":  # the spawn and its imports are the stand-in's own cost, not the call's
                    began = time.monotonic()
                elif kind == "item":
                    yield value
                elif kind == "error":
                    raise GPUError(value)
                else:
                    return
        finally:
            ran = time.monotonic() - began
            self.used_s += min(ran, seconds)
            self.calls.append((seconds, ran))
            if process.is_alive():
                process.kill()
            process.join(5)


def in_calls(gpu):
    """``train_part`` wrapped by ``gpu`` (``spaces.GPU`` or a :class:`StandIn`), each call asking
    for its part's duration."""
    return gpu(duration=part_seconds)(train_part)
