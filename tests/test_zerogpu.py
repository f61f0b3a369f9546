"""Training on ZeroGPU: a run as short GPU calls, each in a process of its own and cut off at its
duration (musicgan.zerogpu.StandIn plays the part of ``spaces.GPU``)."""
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from musicgan import api, checkpoint as ckpt, data, zerogpu
from musicgan.train import Budget, TrainConfig, Trainer, model_config_for
from musicgan.zerogpu import GPUError, Part, StandIn

from conftest import EXAMPLES

TINY = dict(latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)


@pytest.fixture(scope="module")
def rolls():
    return data.load(EXAMPLES, cache_dir=False).rolls


def tiny(rolls, steps):
    config = TrainConfig(batch_size=8, window_bars=2, transpose=1, d_warmup_steps=1, warmup=0.5)
    return config, model_config_for(rolls, transpose=1, **TINY), Budget(steps=steps)


@pytest.mark.parametrize("warmup", [0.5, 1.0])  # switching to the critic at step 20; not at all
def test_a_run_in_short_parts_is_the_run_in_one_go(rolls, tmp_path, monkeypatch, warmup):
    config, model, budget = tiny(rolls, 40)
    config = dataclasses.replace(config, warmup=warmup)
    clock = iter(range(10 ** 6))  # a clock that moves one second each time a part looks at it
    monkeypatch.setattr(zerogpu, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    whole = Trainer(rolls, model, config, device="cpu", budget=budget)
    whole.run()
    whole.save(tmp_path / "whole", with_train_state=False)
    parts, statuses = 0, []
    while not statuses or statuses[-1] == "paused":
        # a call of 12 "seconds" (steps) of training after its saving: the run goes on over 4 calls
        part = Part(rolls, config, budget, str(tmp_path / "run"), seconds=zerogpu.SAVE_S + 12, device="cpu",
                    model=model)
        events = list(zerogpu.train_part(part))
        assert events[-1]["event"] == "part"
        statuses.append(events[-1]["status"])
        parts += 1
        # a part spends its call on steps: it saves what the next resumes from, and fits nothing
        assert not any(e["event"] == "calibrated" for e in events) or statuses[-1] == "paused" and warmup < 1
    assert parts == 4 and statuses[-1] == "done" and set(statuses[:-1]) == {"paused"}
    run = ckpt.load(tmp_path / "run", with_discriminator=True)
    assert run.steps == 40 and run.meta["adversarial_from"] == (20 if warmup < 1 else None)
    for a, b in zip(whole.G.state_dict().values(), run.generator.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(whole.D.state_dict().values(), run.discriminator.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    if warmup == 1.0:  # not fitted in the calls ...
        assert not run.generator.onset_bias.any() and run.copy_index is None and run.forms is None
    # ... but once finished (on the CPU, after the last call), the model is the one saved in one go
    trainer = zerogpu.finish(part, tmp_path / "finished")
    one, finished = ckpt.load(tmp_path / "whole"), ckpt.load(tmp_path / "finished")
    assert finished.generator.onset_bias.any() and not finished.train_state
    for name in ckpt.SAMPLING_BIASES:
        assert torch.equal(getattr(one.generator, name), getattr(finished.generator, name)), name
    assert finished.clamped == one.clamped and finished.candidates == one.candidates
    assert np.array_equal(finished.copy_index, one.copy_index) and np.array_equal(finished.forms, one.forms)
    for key in ("steps", "adversarial_from", "budget", "sampling", "held_out"):
        assert finished.meta.get(key) == one.meta.get(key), key
    assert trainer.sample().notes.size


def test_a_part_keeps_for_saving_what_the_last_part_took_to_save(rolls, tmp_path, monkeypatch):
    # a saving that takes longer than the call keeps for it would be cut off, and the part's
    # steps lost (and every later part's alike): each part keeps what the last one measured
    assert zerogpu.reserve_for_saving(None) == zerogpu.SAVE_S
    assert zerogpu.reserve_for_saving(1.0) == zerogpu.SAVE_S  # never less than the default
    assert zerogpu.reserve_for_saving(20.0) == zerogpu.SAVE_MARGIN * 20.0
    assert zerogpu.reserve_for_saving(1e4) == zerogpu.CALL_S - zerogpu.SETUP_S
    assert zerogpu.call_seconds(Budget(minutes=0.5), 0.0, 50.0) == 30 + zerogpu.SETUP_S + 50
    monkeypatch.setattr(zerogpu, "SAVE_S", 0.01)  # so that the reserve is the measure and its margin
    parts, reported = [], []

    def calls(part):  # the first call ends after 2 seconds of it, the next goes on to the end
        parts.append(part)
        if len(parts) == 1:
            part.seconds = part.save_s + 2
        for event in zerogpu.train_part(part):
            if event["event"] == "part":
                reported.append(event["save_s"])
            yield event

    job = api.TrainingJob(rolls, tmp_path / "model", budget=Budget(minutes=0.2), gpu_calls=calls)
    assert job.start()
    job.wait(120)
    assert job.state.status == "done", job.state.message
    assert len(parts) == 2 and parts[0].save_s == 0.01 and reported[0] > 0
    assert parts[1].save_s == pytest.approx(zerogpu.SAVE_MARGIN * reported[0])
    # a part stops training once its call has no more than its reserve left (after one step at least:
    # a call that keeps all its time for saving makes one step, where a reserve of SAVE_S would make 1,000)
    config, model, budget = tiny(rolls, 1000)
    far = Part(rolls, config, budget, str(tmp_path / "run"), seconds=100, save_s=100, device="cpu", model=model)
    end = list(zerogpu.train_part(far))[-1]
    assert end["status"] == "paused" and end["step"] == 1


def _sleep(seconds):
    yield "started"
    time.sleep(seconds)
    yield "finished"


def _fail():
    raise ValueError("the music was not there")
    yield


def test_the_stand_in_streams_refuses_and_cuts_off_as_zerogpu_does():
    gpu = StandIn(max_duration_s=60, quota_s=40)
    assert list(gpu(duration=30)(_sleep)(0.1)) == ["started", "finished"]
    with pytest.raises(GPUError, match="maximum"):
        list(gpu(duration=61)(_sleep)(0.1))
    streamed = []
    with pytest.raises(GPUError, match="aborted"):
        for item in gpu(duration=lambda seconds: 10)(_sleep)(60):  # the duration from the call's arguments
            streamed.append(item)
    assert streamed == ["started"] and gpu.calls[-1][1] < 15  # cut off at its duration
    with pytest.raises(GPUError, match="quota"):  # 30 s asked, of 40 s, after 10 and more used
        list(gpu(duration=30)(_sleep)(0.1))
    with pytest.raises(GPUError, match="the music was not there"):
        list(StandIn()(duration=5)(_fail)())


def wait_for(condition, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_five_minutes_of_training_complete_through_short_gpu_calls(rolls, tmp_path):
    gpu = StandIn(max_duration_s=120)
    job = api.TrainingJob(rolls, tmp_path / "model", budget=Budget(minutes=5), sample_every_s=30,
                          gpu_calls=zerogpu.in_calls(gpu))
    assert job.start()
    seen_calls = set()
    while job.running:  # progress streams while the calls come and go
        time.sleep(1)
        seen_calls.add(len(gpu.calls))
    state = job.state
    assert state.status == "done", state.message
    assert len(gpu.calls) >= 3 and all(asked <= 120 and ran <= asked for asked, ran in gpu.calls), gpu.calls
    steps = [h["step"] for h in state.history]
    assert steps == list(range(1, len(steps) + 1))  # one run: no step lost or repeated between calls
    assert state.history[-1]["elapsed_s"] >= 300 and state.sample is not None and len(seen_calls) >= 3
    model = ckpt.load(state.checkpoint, with_discriminator=True)
    assert model.steps == steps[-1] and not model.train_state  # the model alone, as a visitor downloads it
    assert not (tmp_path / "model-run").exists()  # the run carried between calls is cleaned up


@pytest.mark.slow
def test_stop_ends_a_gpu_call_and_keeps_the_model(rolls, tmp_path):
    gpu = StandIn()
    job = api.TrainingJob(rolls, tmp_path / "model", budget=Budget(minutes=5), gpu_calls=zerogpu.in_calls(gpu))
    assert job.start()
    wait_for(lambda: len(job.state.history) >= 10, 90)
    job.stop()
    wait_for(lambda: gpu.calls, zerogpu.SAVE_S + 15)  # the GPU call ends after the step it was in ...
    wait_for(lambda: not job.running, 60)  # ... and the model is finished on the CPU
    assert job.state.status == "stopped" and not api.TrainingJob.busy()
    assert ckpt.load(job.state.checkpoint).steps >= 10


@pytest.mark.slow
def test_a_refused_call_ends_the_run_with_a_clear_message_and_keeps_the_model(rolls, tmp_path):
    gpu = StandIn()
    first = zerogpu.in_calls(gpu)

    def calls(part):  # the first call is short; then the visitor's quota is spent
        if gpu.calls:
            raise GPUError("You have exceeded your GPU quota (20s left vs. 120s requested)")
        part.seconds = zerogpu.SAVE_S + 30
        yield from first(part)

    job = api.TrainingJob(rolls, tmp_path / "model", budget=Budget(minutes=5), gpu_calls=calls)
    assert job.start()
    wait_for(lambda: not job.running, 300)
    state = job.state
    assert state.status == "stopped" and "quota" in state.message and "is kept" in state.message, state.message
    assert ckpt.load(state.checkpoint).steps == state.history[-1]["step"] > 0

    refused = api.TrainingJob(rolls, tmp_path / "other", budget=Budget(minutes=5),
                              gpu_calls=zerogpu.in_calls(StandIn(quota_s=30)))
    assert refused.start()
    refused.wait(30)
    assert refused.state.status == "failed" and "quota" in refused.state.message
    assert refused.state.checkpoint is None and not Path(tmp_path / "other").exists()
