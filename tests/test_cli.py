"""python -m musicgan train / generate / evaluate, as a user runs them."""
import subprocess
import sys

import pytest
import torch

from musicgan import midi

from conftest import EXAMPLES, ROOT, make_midi, meta, off, on, scale_midi

TINY = ["--steps", "4", "--batch-size", "8", "--window-bars", "2", "--quiet"]


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "musicgan", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    result = run("train", *EXAMPLES[:3], "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    assert "done after 4 steps" in result.stderr and "8 a step," in result.stderr  # the batch asked for
    return out


def test_train_writes_a_checkpoint(trained):
    assert (trained / "model.safetensors").exists() and (trained / "config.json").exists()


def test_generate_twice_with_one_seed_gives_identical_bytes(trained, tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    assert run("generate", trained, "--out", a, "--seed", 4, "--bars", 4).returncode == 0
    assert run("generate", trained, "--out", b, "--seed", 4, "--bars", 4).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def test_generate_in_a_chosen_key(trained, tmp_path):
    result = run("generate", trained, "--out", tmp_path / "a.mid", "--seed", 4, "--bars", 4, "--key", "f# minor")
    assert result.returncode == 0 and "F# minor" in result.stdout
    drawn = run("generate", trained, "--out", tmp_path / "b.mid", "--seed", 4, "--bars", 4)
    assert drawn.returncode == 0 and ("major" in drawn.stdout or "minor" in drawn.stdout)
    bad = run("generate", trained, "--out", tmp_path / "c.mid", "--key", "H major")
    assert bad.returncode == 1 and "not a key" in bad.stderr and "Traceback" not in bad.stderr
    # the pretrained model takes a key too
    pretrained = run("generate", "--out", tmp_path / "d.mid", "--key", "C major", "--bars", 4)
    assert pretrained.returncode == 0 and "C major" in pretrained.stdout


def test_generate_without_a_checkpoint_uses_the_pretrained_model(tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    result = run("generate", "--out", a, "--seed", 1)
    assert result.returncode == 0, result.stderr
    run("generate", "--out", b, "--seed", 1)
    roll = midi.read(a)
    assert len(roll.notes) > 50 and roll.n_bars <= 16
    assert a.read_bytes() == b.read_bytes()


def test_generate_options_num_tempo_program(tmp_path):
    out = tmp_path / "piece.mid"
    result = run("generate", "--out", out, "--num", 2, "--tempo", 72, "--program", 19, "--bars", 2)
    assert result.returncode == 0, result.stderr
    rolls = [midi.read(tmp_path / f"piece-{i}.mid") for i in (1, 2)]
    assert all(r.tempo_bpm == 72 and r.program == 19 for r in rolls)
    assert midi.to_midi_bytes(rolls[0]) != midi.to_midi_bytes(rolls[1])


def test_recalibrate_fits_the_biases_again_and_keeps_the_weights(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    import numpy as np

    from musicgan import checkpoint as ckpt, data, form

    copy = tmp_path / "model"
    shutil.copytree(trained, copy)
    before = load_file(copy / "model.safetensors")
    # a model from before a bias existed: its saved biases gone
    save_file({k: v for k, v in before.items() if not k.startswith("sampling.")}, copy / "model.safetensors",
              metadata={"format": ckpt.FORMAT})
    result = run("recalibrate", copy, *EXAMPLES[:3])
    assert result.returncode == 0, result.stderr
    assert "its weights are as they were" in result.stdout
    assert "phrases that come back: in none of its pieces" in result.stdout  # (none of the three repeats a phrase)
    after = load_file(copy / "model.safetensors")
    assert set(after) == set(before)  # every bias the training run wrote is back
    for name, tensor in before.items():  # the same weights, and the same biases: calibration is deterministic
        assert torch.equal(after[name], tensor), name
    assert ckpt.load(copy).clamped == ckpt.load(trained).clamped
    # the forms and parallels alone, of music that repeats its opening phrases (bwv256, bwv260, bwv262)
    result = run("recalibrate", copy, *EXAMPLES, "--music-only")
    assert result.returncode == 0, result.stderr
    assert "its weights and sampling biases are as they were" in result.stdout
    with_forms = load_file(copy / "model.safetensors")
    assert set(with_forms) == set(before) | {ckpt.FORMS}
    assert all(torch.equal(with_forms[name], tensor) for name, tensor in before.items())
    assert np.array_equal(ckpt.load(copy).forms, form.build(data.load(EXAMPLES, cache_dir=False).rolls))
    from musicgan import voiceleading
    assert ckpt.load(copy).parallels == round(voiceleading.pooled_parallels(data.load(EXAMPLES, cache_dir=False).rolls), 3)
    assert f"parallel fifths and octaves: {ckpt.load(copy).parallels:.2f} per 100 beats" in result.stdout
    from musicgan import ending, upbeat  # ... and how its pieces end and begin, as a trainer reads them
    said = ckpt.load(copy).meta["data"]
    assert said["ends"] == ending.habit(data.load(EXAMPLES, cache_dir=False).rolls)
    assert said["opens"] == upbeat.habit(data.load(EXAMPLES, cache_dir=False).rolls) and said["opens"]["pickup"] > 0.5
    assert f"pieces opening with a pickup: {said['opens']['pickup']:.0%}" in result.stdout
    entering = upbeat.entering(data.load(EXAMPLES, cache_dir=False).rolls, ckpt.load(copy).model.voices)
    assert said.get("entries") == entering and ckpt.load(copy).generator.entering == entering
    assert entering is None or f"pieces whose voices come in one by one: {entering['share']:.0%}" in result.stdout


def test_resume_continues_the_run(trained, tmp_path):
    import shutil
    copy = tmp_path / "model"
    shutil.copytree(trained, copy)
    result = run("train", *EXAMPLES[:3], "--out", copy, "--resume", "--steps", 6, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "done after 6 steps" in result.stderr


def test_fine_tuning_starts_from_a_trained_model(tmp_path):
    import json

    out = tmp_path / "tuned"
    result = run("train", *EXAMPLES[3:5], "--out", out, "--start-from", "pretrained", *TINY)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    pretrained = json.loads((ROOT / "checkpoints" / "bach-chorales" / "config.json").read_text())
    from musicgan.models import ModelConfig

    assert ModelConfig.from_dict(config["model"]) == ModelConfig.from_dict(pretrained["model"])
    assert config["steps"] == 4
    assert config["started_from"] == {"checkpoint": "bach-chorales", "steps": pretrained["steps"]}
    # music the model's pitch range cannot hold is a clear error
    high = tmp_path / "high.mid"
    high.write_bytes(scale_midi(n=16, first=110))
    result = run("train", high, "--out", tmp_path / "x", "--start-from", "pretrained", *TINY)
    assert result.returncode == 1 and "pitch range (33-93)" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["generate", "{tmp}/nowhere", "--out", "{tmp}/x.mid"], "no such checkpoint"),
    (["generate", "--out", "{tmp}/x.mid", "--program", "300"], "0-127"),
    (["generate", "--out", "{tmp}/x.mid", "--bars", "0"], "bars"),
    (["train", "README.md", "--out", "{tmp}/x", "--steps", "1"], "no usable MIDI"),
    (["recalibrate", "{tmp}/nowhere", "examples"], "a checkpoint folder"),
], ids=["missing-checkpoint", "program", "bars", "no-midi", "recalibrate-nothing"])
def test_mistakes_give_one_line_errors(args, message, tmp_path):
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_music_a_model_refuses_names_the_shipped_model_that_takes_it(tmp_path):
    """A chorale in 3/4 is no music for the fiddle model, nor is a melody to harmonise: each error
    names the chorale model's checkpoint; a melody in 5/4, which neither reads, names none."""
    reel = ROOT / "examples" / "tunes" / "ryansMammoth-7thRegimentReel.mid"
    waltz = ROOT / "examples" / "bwv122.6.mid"
    result = run("continue", waltz, "checkpoints/fiddle-tunes", "--out", tmp_path / "x.mid")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("error: the opening is in 3/4; this model knows 2/4, 2/2, 6/8, 4/4, 9/8. "
                                     "checkpoints/bach-chorales can continue it: give it as the checkpoint")
    result = run("harmonise", reel, "checkpoints/fiddle-tunes", "--out", tmp_path / "x.mid")
    assert result.returncode == 1 and "one voice" in result.stderr
    assert "checkpoints/bach-chorales can harmonise it" in result.stderr
    five = tmp_path / "five.mid"
    five.write_bytes(make_midi([[(0, meta("time_signature", numerator=5, denominator=4))]
                                + [e for i in range(10) for e in ((0, on(72 + i % 3)), (480, off(72 + i % 3)))]]))
    result = run("harmonise", five, "--out", tmp_path / "x.mid")
    assert result.stderr.strip() == "error: the melody is in 5/4; this model knows 4/4, 3/4"
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    result = run("train", *EXAMPLES[:1], "--out", tmp_path / "m", "--device", "cuda", "--steps", "1")
    assert result.returncode == 1 and "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_evaluate_prints_the_comparison():
    result = run("evaluate", "--reference", *EXAMPLES, "--num", 20)
    assert result.returncode == 0, result.stderr
    assert "two-sample classifier accuracy" in result.stdout and "scale consistency" in result.stdout


def test_prepare_then_train_from_the_prepared_corpus(tmp_path):
    result = run("prepare", *EXAMPLES[:4], "--out", tmp_path / "cache", "--workers", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "4 file(s) read" in result.stdout and "files/s with 2 worker(s)" in result.stdout
    result = run("train", tmp_path / "cache", "--out", tmp_path / "m", *TINY)
    assert result.returncode == 0, result.stderr
    assert "done after 4 steps" in result.stderr


def test_generate_in_a_chosen_metre(tmp_path):
    """The examples hold chorales in 4/4 and 3/4: a model of them writes either, as asked."""
    out = tmp_path / "model"
    assert run("train", *EXAMPLES, "--out", out, *TINY).returncode == 0
    waltz = run("generate", out, "--out", tmp_path / "w.mid", "--seed", 4, "--bars", 4, "--metre", "3/4")
    assert waltz.returncode == 0 and "4 bars of 3/4" in waltz.stdout
    roll = midi.read(tmp_path / "w.mid")
    assert roll.time_signatures == ((0, 3, 4),) and roll.n_steps <= 48
    bad = run("generate", out, "--out", tmp_path / "x.mid", "--metre", "6/8")
    assert bad.returncode == 1 and "knows the metres 4/4, 3/4" in bad.stderr and "Traceback" not in bad.stderr
    seeds = [run("generate", out, "--out", tmp_path / f"s{s}.mid", "--seed", s, "--bars", 2).stdout for s in range(12)]
    assert {"of 3/4" in text for text in seeds} == {True, False}  # each seed draws one of the music's metres
