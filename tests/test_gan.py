"""The recurrent GAN: voices encoding, models, trainer, checkpoints, generation."""
import dataclasses
import json
import os
import pickle

import numpy as np
import pytest
import torch

from musicgan import checkpoint as ckpt, copyguard, data, generate, midi, voices
from musicgan.models import ModelConfig
from musicgan.voices import FIRST_PITCH, HOLD, REST
from musicgan.train import Budget, DeviceError, TrainConfig, Trainer, TrainingError, pick_device

from conftest import EXAMPLES, file_beats

TINY = dict(latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)


@pytest.fixture(scope="module")
def rolls():
    return data.load(EXAMPLES, cache_dir=False).rolls


def tiny_trainer(rolls, steps=4, **config):
    from musicgan.train import model_config_for

    config.setdefault("d_warmup_steps", 1)
    config.setdefault("warmup", 0.5)
    cfg = TrainConfig(batch_size=8, window_bars=2, transpose=1, **config)
    model = model_config_for(rolls, transpose=cfg.transpose, **TINY)
    return Trainer(rolls, model, cfg, device="cpu", budget=Budget(steps=steps))


# --------------------------------------------------------------------------- voices

def test_voice_tokens_round_trip_chorale_windows(rolls):
    windows = data.Windows(rolls, data.WindowConfig(pitch_range=(36, 84), hop_bars=4))
    onset, sustain = windows.pianorolls()
    tokens = voices.encode(onset, sustain, 4)
    extra = 0
    for i in range(len(tokens)):
        o2, s2 = voices.decode(tokens[i], 36).pianoroll(36, 84, windows.config.window_steps)
        assert not (sustain[i] & ~s2).any() or sustain[i].sum(-1).max() > 4  # only a 5th voice is dropped
        assert not (s2 & ~sustain[i]).any()
        extra += (o2 & ~onset[i]).sum()
    assert extra <= 0.03 * onset.sum()  # voice crossings re-strike a few held notes


def test_voice_tokens_mean_rest_hold_and_onset():
    # a held E above C, C, rest, C again: the upper voice holds, the lower re-strikes
    roll = midi.Roll(notes=np.array([[60, 0, 1, 80], [64, 0, 4, 80], [60, 2, 4, 80]], dtype=np.int32))
    onset, sustain = roll.pianoroll(60, 64, 4)
    tokens = voices.encode(onset, sustain, 2)
    c, e, H, R = voices.FIRST_PITCH, voices.FIRST_PITCH + 4, voices.HOLD, voices.REST
    assert tokens.tolist() == [[e, c], [H, R], [H, c], [H, H]]
    assert np.array_equal(voices.decode(tokens, 60).notes, roll.notes)


def test_window_tokens_agree_with_direct_encoding(rolls):
    windows = data.Windows(rolls, data.WindowConfig(transpose=(-2, 2), pitch_range=(30, 90)))
    fast = voices.window_tokens(windows, 30, 4)
    idx = list(range(0, len(windows), 17))
    onset, sustain = windows.pianorolls(idx)
    assert np.array_equal(fast[idx], voices.encode(onset, sustain, 4))


# --------------------------------------------------------------------------- training

@pytest.mark.parametrize("g_adversarial", [False, True])
def test_tiny_model_trains_both_phases_with_finite_losses(rolls, g_adversarial):
    events = []
    trainer = tiny_trainer(rolls, steps=6, g_adversarial=g_adversarial)
    trainer.callback = events.append
    for _ in range(3):
        trainer.step()
    g_before, d_before = ([p.detach().clone() for p in m.parameters()] for m in (trainer.G, trainer.D))
    assert trainer.run() == "done"
    steps = [e for e in events if e["event"] == "step"]
    assert [e["phase"] for e in steps] == ["mle"] * 3 + ["adversarial"] * 3
    for e in steps:
        values = [v for k, v in e.items() if k in ("mle", "d_loss", "g_loss", "fm", "d_accuracy", "diversity")]
        assert values and all(np.isfinite(values))
    assert 0 <= steps[-1]["d_accuracy"] <= 1 and steps[-1]["diversity"] > 0
    assert ("g_loss" in steps[-1]) == g_adversarial  # a critic learns alone: G stays as it is
    g_moved = any(not torch.equal(a, b) for a, b in zip(g_before, trainer.G.parameters()))
    assert g_moved == g_adversarial
    assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.D.parameters()))


def test_diversity_counted_per_position_is_the_mean_over_every_pair():
    from musicgan.train import diversity
    gen = torch.Generator().manual_seed(0)
    for n, vocab in ((2, 3), (7, 5), (33, 62)):
        tokens = torch.randint(0, vocab, (n, 16, 4), generator=gen)
        tokens[1] = tokens[0]  # a repeated sequence: pairs that agree everywhere
        flat = tokens.reshape(n, -1)
        pairs = [(flat[i] != flat[j]).float().mean().item() for i in range(n) for j in range(n) if i != j]
        assert diversity(tokens) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)
    same = torch.zeros(5, 8, 3, dtype=torch.long)
    assert diversity(same) == 0.0 and diversity(same[:1]) == 0.0


def test_likelihood_warmup_lowers_the_loss(rolls):
    trainer = tiny_trainer(rolls, steps=60, warmup=1.0, lr_mle=1e-2)
    first = trainer.step()["mle"]
    trainer.run()
    last = np.mean([trainer.step()["mle"] for _ in range(5)])
    assert last < 0.6 * first


def test_the_likelihood_rate_cools_down_linearly_over_the_end_of_the_warm_up(rolls):
    trainer = tiny_trainer(rolls, steps=16, warmup=0.5, cooldown=0.5, lr_mle=1e-2)
    rates = []
    while trainer.phase == "mle" or not rates:
        trainer.step()
        if trainer.phase == "mle":
            rates.append(trainer.opt_mle.param_groups[0]["lr"])
    # 8 warm-up steps, the last half of them cooling: full, then 4/4, 3/4, 2/4, 1/4 of the rate
    assert rates == pytest.approx([1e-2] * 5 + [7.5e-3, 5e-3, 2.5e-3])
    constant = tiny_trainer(rolls, steps=16, warmup=0.5, cooldown=0.0, lr_mle=1e-2)
    for _ in range(8):
        constant.step()
    assert constant.opt_mle.param_groups[0]["lr"] == 1e-2
    # a longer budget (a resumed run asked for more) puts the rate back up until its own end nears
    trainer.budget = Budget(steps=64)
    assert trainer.mle_rate() == 1e-2 and trainer.config.lr_mle == 1e-2


@pytest.mark.parametrize("g_adversarial", [False, True])
def test_resume_continues_exactly(rolls, tmp_path, g_adversarial):
    straight = tiny_trainer(rolls, steps=6, g_adversarial=g_adversarial)
    straight.run()

    first = tiny_trainer(rolls, steps=6, g_adversarial=g_adversarial)
    for _ in range(4):  # stop inside the adversarial phase
        first.step()
    first.save(tmp_path / "run")
    second = tiny_trainer(rolls, steps=6, g_adversarial=g_adversarial)
    second.restore(ckpt.load(tmp_path / "run", with_discriminator=True))
    assert second.step_count == 4 and second.adversarial_from == 3
    second.run()
    for a, b in zip(straight.G.state_dict().values(), second.G.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(straight.D.state_dict().values(), second.D.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_fine_tuning_starts_from_the_weights_of_a_trained_model(rolls, tmp_path):
    base = tiny_trainer(rolls[:5], steps=6)
    base.run()
    base.save(tmp_path / "base")
    loaded = ckpt.load(tmp_path / "base", with_discriminator=True)
    tuned = Trainer(rolls[5:], loaded.model, TrainConfig(batch_size=8, window_bars=2), device="cpu",
                    budget=Budget(steps=2))
    tuned.start_from(loaded)
    for module, start in ((tuned.G, base.G), (tuned.D, base.D)):
        for a, b in zip(module.state_dict().values(), start.state_dict().values()):
            assert torch.equal(a, b)
    tuned.run()
    assert tuned.step_count == 2 and tuned.meta()["started_from"] == {"checkpoint": "base", "steps": 6}
    # its copy guard knows both its own music and the music of the model it started from
    assert np.array_equal(tuned.copy_index(), np.union1d(copyguard.build(rolls[:5]), copyguard.build(rolls[5:])))
    import dataclasses

    other = Trainer(rolls[5:], dataclasses.replace(loaded.model, hidden=16), TrainConfig(batch_size=8, window_bars=2),
                    device="cpu")
    with pytest.raises(TrainingError, match="other settings"):
        other.start_from(loaded)


def test_nan_loss_is_skipped_and_never_applied(rolls, monkeypatch):
    trainer = tiny_trainer(rolls, steps=10, warmup=1.0)
    trainer.step()
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    real_loss = Trainer._mle_loss
    monkeypatch.setattr(Trainer, "_mle_loss", lambda self, *a: real_loss(self, *a) * float("nan"))
    event = trainer.step()
    assert event["skipped"] and trainer.skipped == 1
    for k, v in trainer.G.state_dict().items():
        assert torch.equal(v, before[k])
    monkeypatch.setattr(Trainer, "_mle_loss", real_loss)
    assert not trainer.step()["skipped"]
    assert all(torch.isfinite(v).all() for v in trainer.G.state_dict().values())


def test_training_stops_with_a_message_when_losses_stay_nan(rolls, monkeypatch):
    trainer = tiny_trainer(rolls, steps=50, warmup=1.0, max_bad_steps=3)
    monkeypatch.setattr(Trainer, "_mle_loss", lambda self, *a: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingError, match="not finite"):
        trainer.run()


def test_a_nan_model_never_reaches_a_checkpoint(rolls, tmp_path):
    trainer = tiny_trainer(rolls)
    with torch.no_grad():
        next(trainer.G.parameters()).fill_(float("nan"))
    with pytest.raises(ckpt.CheckpointError, match="NaN"):
        trainer.save(tmp_path / "bad")
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def test_stop_switch_stops_and_the_checkpoint_is_valid(rolls, tmp_path):
    trainer = tiny_trainer(rolls, steps=1000)
    calls = iter(range(100))
    assert trainer.run(should_stop=lambda: next(calls) >= 3) == "stopped"
    assert trainer.step_count == 3
    trainer.save(tmp_path / "stopped")
    assert ckpt.load(tmp_path / "stopped").steps == 3


def test_no_data_is_a_clear_error_and_a_short_piece_is_padded(rolls):
    with pytest.raises(TrainingError, match="no usable music"):
        Trainer([], device="cpu")
    short = midi.Roll(notes=np.array([[60, 0, 4, 80], [64, 4, 8, 80]], dtype=np.int32))
    trainer = Trainer([short], device="cpu", config=TrainConfig(transpose=0))  # shorter than a window: padded
    assert len(trainer.windows) == 1


def test_device_selection():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(DeviceError):
        pick_device("tpu9")


# --------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def trained(rolls, tmp_path_factory):
    trainer = tiny_trainer(rolls, steps=4)
    trainer.run()
    path = tmp_path_factory.mktemp("ck") / "tiny"
    trainer.save(path)
    return path


def test_checkpoint_round_trip(trained, rolls):
    loaded = ckpt.load(trained, with_discriminator=True)
    config = json.loads((trained / "config.json").read_text())
    assert config["steps"] == 4 and config["library_version"]
    # the parallels of the music it learnt, as the benches count them, for generation to keep to
    from musicgan import voiceleading
    assert loaded.parallels == round(voiceleading.pooled_parallels(rolls), 3) > 0
    assert loaded.sampling["parallels"] == loaded.parallels
    assert config["data"]["files"] == len(EXAMPLES)
    assert loaded.model == ModelConfig.from_dict(config["model"])
    assert config["data"]["keys"] == loaded.generator.key_weights.tolist() and sum(config["data"]["keys"]) > 0
    z, noise = generate.noise_for(1, 16, loaded.model)
    z = loaded.generator.condition(z[None], torch.tensor([3]))
    again = ckpt.load(trained)
    codes = torch.from_numpy(loaded.model.metre_codes(loaded.model.metres[0], 16))[None]
    with torch.no_grad():
        a = loaded.generator.sample(z, noise[None], codes)[0]
        b = again.generator.sample(z, noise[None], codes)[0]
    assert torch.equal(a, b)


def test_checkpoint_zip_loads_like_the_folder(trained, tmp_path):
    archive = tmp_path / "model.zip"
    archive.write_bytes(ckpt.zip_bytes(trained))
    assert ckpt.load(archive).model == ckpt.load(trained).model


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_disguised_as_a_checkpoint_is_refused_without_running(trained, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text((trained / "config.json").read_text())
    marker = tmp_path / "pwned"
    boom = _Boom()
    boom.marker = marker
    (evil / "model.safetensors").write_bytes(pickle.dumps({"generator.embed": boom}))
    torch.save({"x": boom}, evil / "model.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a valid safetensors"):
        ckpt.load(evil)
    assert not marker.exists()
    (evil / "model.safetensors").unlink()
    with pytest.raises(ckpt.CheckpointError, match="never reads pickled"):
        ckpt.load(evil)
    assert not marker.exists()


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.update(format="something-else"), "not a musicgan checkpoint"),
    (lambda c: c["model"].update(hidden=10 ** 9), "outside"),
    (lambda c: c["model"].update(hidden=64), "shape"),
    (lambda c: c["model"].update(evil="__import__('os')"), "unknown model settings"),
    (lambda c: c.update(format_version=99), "newer musicgan"),
    (lambda c: c["data"].update(keys=[1] * 23), "count for each of the 24 keys"),
    (lambda c: c["data"].update(keys=["C major"] * 24), "count for each of the 24 keys"),
    (lambda c: c["model"].update(key_input="yes"), "not true or false"),
    (lambda c: c["sampling"].update(parallels="a few"), "not a count of parallels"),
    (lambda c: c["sampling"].update(parallels=-1), "not a count of parallels"),
], ids=["format", "huge", "shape", "unknown-key", "version", "keys-short", "keys-text", "key-flag",
        "parallels-text", "parallels-negative"])
def test_configs_that_are_not_ours_are_refused(trained, tmp_path, mutate, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((trained / "model.safetensors").read_bytes())
    config = json.loads((trained / "config.json").read_text())
    mutate(config)
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load(bad)


def test_missing_and_non_json_checkpoints(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint"):
        ckpt.load(tmp_path / "nothing")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text("{not json")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.load(tmp_path / "c")


# --------------------------------------------------------------------------- generation

def test_same_seed_same_midi_bytes(trained):
    g = ckpt.load(trained).generator
    a = midi.to_midi_bytes(generate.sample_rolls(g, [7], bars=4)[0])
    b = midi.to_midi_bytes(generate.sample_rolls(ckpt.load(trained).generator, [7], bars=4)[0])
    c = midi.to_midi_bytes(generate.sample_rolls(g, [8], bars=4)[0])
    assert a == b and a != c


def test_a_longer_piece_starts_like_the_shorter_one(trained):
    g = ckpt.load(trained).generator
    short, long = generate.sample_rolls(g, [3], bars=2)[0], generate.sample_rolls(g, [3], bars=4)[0]
    o1, s1 = short.pianoroll(0, 127, 32)
    o2, s2 = long.pianoroll(0, 127, 32)
    assert np.array_equal(o1, o2)


@pytest.mark.parametrize("layers,temperature,sounding_input", [(1, 1.0, True), (2, 0.7, True), (2, 1.0, False)])
def test_fast_sampling_draws_what_the_step_by_step_loop_draws(layers, temperature, sounding_input):
    """Generation's lean loop and the differentiable reference loop make the same Gumbel-max draw
    (tiny float differences may flip a near-tie, after which a sequence goes its own way)."""
    from musicgan.models import Generator

    torch.manual_seed(0)
    cfg = ModelConfig(pitch_low=40, pitch_high=70, sounding_input=sounding_input, metres=((4, 4), (3, 4), (6, 8)),
                      **{**TINY, "layers": layers})
    g = Generator(cfg).eval()
    g.onset_bias.normal_(0, 1)  # the calibrated biases are part of the draw on both paths
    g.rest_bias.normal_(0, 1)
    g.tonal_bias.normal_(0, 1)
    g.interval_bias.normal_(0, 1)
    g.echo_bias.fill_(0.8)  # (reads what each voice did a bar before, in each piece's own metre)
    seeds = range(16)
    noise = [generate.noise_for(s, 32, g.cfg) for s in seeds]
    z, step_noise = torch.stack([n[0] for n in noise]), torch.stack([n[1] for n in noise])
    z = g.condition(z, torch.arange(len(z)) % 24)
    # every piece in a metre of its own: each row's codes are its own
    codes = torch.from_numpy(np.stack([cfg.metre_codes(cfg.metres[s % 3], 32) for s in seeds]))
    with torch.no_grad():
        fast, fast_one_hot = g.sample(z, step_noise, codes, temperature=temperature)
    with torch.enable_grad():
        slow, _ = g.sample(z, step_noise, codes, temperature=temperature)
    assert fast.shape == slow.shape == (16, 32, g.cfg.voices)
    assert torch.equal(fast_one_hot.argmax(-1), fast)
    assert (fast == slow).float().mean() > 0.9
    assert len({tuple(t.flatten().tolist()) for t in fast}) == 16


@pytest.mark.parametrize("layers,sounding_input", [(1, True), (2, False)])
def test_a_piece_drawn_in_parts_is_the_piece_drawn_in_one(layers, sounding_input):
    """Long pieces are drawn a window at a time, each window's candidates carrying on from the
    state the chosen one ended in: the parts must join into exactly the one draw."""
    from musicgan.models import DrawState, Generator

    torch.manual_seed(2)
    cfg = ModelConfig(pitch_low=40, pitch_high=70, sounding_input=sounding_input, **{**TINY, "layers": layers})
    g = Generator(cfg).eval()
    for bias in (g.onset_bias, g.rest_bias, g.tonal_bias, g.interval_bias):
        bias.normal_(0, 1)
    g.parallel_bias.fill_(2.0)  # the penalty reads the step before: across a join too
    g.echo_bias.fill_(3.0)  # and the echo what each voice did a bar before: across the joins (5, 16) too
    with torch.no_grad():  # what a piece drew steers its next step, as in a trained model (else the noise decides)
        for weight in [g.embed] + [p for p in (g.pitch_embed,) if p is not None] + [h[2].weight for h in g.heads]:
            weight.mul_(20)
        g.lstm.weight_ih_l0[:, -12:].mul_(50)  # and so does the pitch-class memory, carried across the joins
    z, step_a, _, codes = two_draws(g)
    with torch.no_grad():
        whole, _ = g.sample(z, step_a, codes)
    state = g.begin(z)
    parts = []
    for a, b in ((0, 5), (5, 16), (16, 32)):  # joins on and off the bar lines
        tokens, state = g.draw_on(state, step_a[:, a:b], codes[:, a:b])
        parts.append(tokens)
    assert state.steps == 32 and torch.equal(torch.cat(parts, 1), whole)
    # candidates carrying on from chosen pieces: rows taken (twice, out of order) and joined again
    _, half = g.draw_on(g.begin(z), step_a[:, :16], codes[:, :16])
    picked = DrawState.cat([half.rows([3, 3]), half.rows([0])])
    on, _ = g.draw_on(picked, step_a[[3, 3, 0], 16:], codes[:3, 16:])
    assert torch.equal(on, whole[[3, 3, 0], 16:])
    with pytest.raises(ValueError, match="different steps"):
        DrawState.cat([half, g.begin(z)])


def two_draws(g):
    """12 pieces of 32 steps of 4/4, each in its own key: (z, step noise a, step noise b, codes),
    the noises from two sets of seeds."""
    noise_a = [generate.noise_for(s, 32, g.cfg) for s in range(12)]
    noise_b = [generate.noise_for(100 + s, 32, g.cfg) for s in range(12)]
    z = g.condition(torch.stack([n[0] for n in noise_a]), torch.arange(12) % 24)
    step_a, step_b = torch.stack([n[1] for n in noise_a]), torch.stack([n[1] for n in noise_b])
    return z, step_a, step_b, torch.from_numpy(g.cfg.metre_codes((4, 4), 32)).expand(12, -1)


def test_given_tokens_are_kept_and_set_the_state_as_the_models_own_draws_do():
    """Continuing an opening: the given steps come out as given on both sampling paths, and the
    model reads them as it reads its own draws (the opening sets the state)."""
    from musicgan.models import Generator

    torch.manual_seed(1)
    g = Generator(ModelConfig(pitch_low=40, pitch_high=70, **TINY)).eval()
    g.onset_bias.normal_(0, 1)
    z, step_a, step_b, codes = two_draws(g)
    with torch.no_grad():
        a, _ = g.sample(z, step_a, codes)
        b, _ = g.sample(z, step_b, codes)
        given = torch.full_like(a, -1)
        given[:, :16] = a[:, :16]
        again, _ = g.sample(z, step_a, codes, given=given)  # its own opening, given: the same draw
        given[:, :16] = b[:, :16]
        fast, _ = g.sample(z, step_a, codes, given=given)  # another opening, then noise a
    with torch.enable_grad():
        slow, _ = g.sample(z, step_a, codes, given=given)
    assert torch.equal(again, a)
    assert torch.equal(fast[:, :16], b[:, :16]) and torch.equal(slow[:, :16], b[:, :16])
    assert (fast == slow).float().mean() > 0.9
    melody = torch.full_like(a, -1)
    melody[:, :, 0] = b[:, :, 0]  # one voice given all through
    with torch.no_grad():
        held, _ = g.sample(z, step_a, codes, given=melody)
    assert torch.equal(held[:, :, 0], b[:, :, 0])


def test_a_voice_given_strike_draws_a_note_there_on_both_sampling_paths():
    """STRIKE in the given tokens: the model draws that voice's note there (a voice coming in,
    musicgan.upbeat), among pitches only; where it struck a note anyway, the draw is its own."""
    from musicgan.models import STRIKE, Generator

    torch.manual_seed(1)
    g = Generator(ModelConfig(pitch_low=40, pitch_high=70, **TINY)).eval()
    g.rest_bias.fill_(4.0)  # a model that would rather rest
    z, step_a, _, codes = two_draws(g)
    with torch.no_grad():
        plain, _ = g.sample(z, step_a, codes)
        given = torch.full_like(plain, -1)
        given[:, :8] = REST
        given[:, 8, 1] = STRIKE
        given[:, 12] = STRIKE
        fast, _ = g.sample(z, step_a, codes, given=given)
        on, _ = g.draw_on(g.begin(z), step_a, codes, given=given)
    with torch.enable_grad():
        slow, _ = g.sample(z, step_a, codes, given=given)
    assert (plain[:, 8, 1] < FIRST_PITCH).any() and (plain[:, 12] < FIRST_PITCH).any()  # it would not have
    for drawn in (fast, slow, on):
        assert (drawn[:, :8] == REST).all() and (drawn[:, 8, 1] >= FIRST_PITCH).all() and (drawn[:, 12] >= FIRST_PITCH).all()
    assert torch.equal(fast, on) and (fast == slow).float().mean() > 0.9
    struck = plain >= FIRST_PITCH
    again = torch.where(struck, STRIKE, -1)
    with torch.no_grad():
        assert torch.equal(g.sample(z, step_a, codes, given=again)[0], plain)


def test_a_given_bass_is_the_lowest_voice_on_both_sampling_paths():
    """Harmonising a bass: the voices split each step highest first, so the bass is whichever voice
    sounds lowest. Where the given bass sounds, the drawn voices play above it until one takes it,
    and the rest are silent; the two sampling paths draw alike."""
    from musicgan.harmonise import bottom_line
    from musicgan.models import Generator, sounding

    torch.manual_seed(2)
    g = Generator(ModelConfig(pitch_low=40, pitch_high=70, **TINY)).eval()
    g.rest_bias.normal_(0, 1)
    z, step_a, step_b, codes = two_draws(g)
    with torch.no_grad():
        b, _ = g.sample(z, step_b, codes)
        bass, _ = bottom_line(b)
        free, _ = g.sample(z, step_a, codes)
        fast, _ = g.sample(z, step_a, codes, bass=bass)
    with torch.enable_grad():
        slow, _ = g.sample(z, step_a, codes, bass=bass)
    want = sounding(bass[..., None])[..., 0]
    assert (want != 0).float().mean() > 0.5
    for drawn in (fast, slow):
        heard = sounding(drawn)  # each voice's sounding token (pitch tokens rise with the pitch)
        lowest = torch.where(heard >= 2, heard, 10 ** 6).min(-1).values
        assert torch.equal(lowest[want != 0], want[want != 0])  # the bass, and nothing under it
        assert torch.equal(sounding(bottom_line(drawn)[0][..., None])[..., 0][want != 0], want[want != 0])
    assert (fast == slow).float().mean() > 0.9
    assert (fast != free).any()


def test_a_given_bass_takes_the_place_of_the_models_lowest_voice():
    """A model that writes two voices, given a bass under them, writes one voice over it: the lowest
    voice it drew is its bass, so the given bass takes that voice's place (with the voice below it
    silent, see models.bass_swap), not a place of its own under a chord that had its bass already.
    Where it would write four voices, its lowest takes the bass and none is added. Both paths alike.
    With the swap bias far below 0, the bass comes under the voices the model wrote instead."""
    from musicgan.models import Generator, sounding

    torch.manual_seed(3)
    g = Generator(ModelConfig(pitch_low=40, pitch_high=70, **TINY)).eval()
    z, step_a, _, codes = two_draws(g)
    bass = torch.full((12, 32), HOLD)
    bass[:, ::8] = FIRST_PITCH + 2  # a low note struck every 2 beats
    for voices_drawn in (2, 4):
        with torch.no_grad():
            for v, head in enumerate(g.heads):  # voice v strikes pitch 28 - 6v, or rests
                head[2].bias.zero_()
                head[2].bias[REST if v >= voices_drawn else FIRST_PITCH + 28 - 6 * v] = 50.0
            free, _ = g.sample(z, step_a, codes)
            fast, _ = g.sample(z, step_a, codes, bass=bass)
        with torch.enable_grad():
            slow, _ = g.sample(z, step_a, codes, bass=bass)
        assert ((sounding(free) != REST).sum(-1) == voices_drawn).all()
        for drawn in (fast, slow):
            heard = sounding(drawn)
            assert ((heard != REST).sum(-1) == voices_drawn).all()  # as many voices as the model writes
            assert (heard[..., voices_drawn - 1] == FIRST_PITCH + 2).all()  # its lowest is the bass
            assert torch.equal(heard[..., :voices_drawn - 1], sounding(free)[..., :voices_drawn - 1])
        assert torch.equal(fast, slow)
        with torch.no_grad():  # a swap bias far below 0: the voice above is never taken for the bass,
            kept, _ = g.sample(z, step_a, codes, bass=bass, swap_bias=-100.0)  # which comes as a voice of its own
        heard = sounding(kept)
        assert ((heard != REST).sum(-1) == min(voices_drawn + 1, g.cfg.voices)).all()
        assert torch.equal(heard[..., :voices_drawn], sounding(free)[..., :voices_drawn]) == (voices_drawn < g.cfg.voices)


@pytest.mark.parametrize("sounding_input", [True, False])
def test_teacher_forcing_sees_what_sampling_saw(sounding_input):
    """The likelihood loss trains the model that generates: teacher forcing on a drawn piece gives
    the logits its draw was made from, so the same Gumbel noise picks the same tokens again.
    This holds only if both paths feed each voice the same inputs (token and sounding pitch)."""
    from musicgan.models import Generator, gumbel_from_normal

    torch.manual_seed(1)
    g = Generator(ModelConfig(pitch_low=40, pitch_high=70, sounding_input=sounding_input, **TINY)).eval()
    with torch.no_grad():  # large embeddings and memory weights: a wrong input would change the draw
        for table in (g.embed, g.pitch_embed):
            if table is not None:
                table.normal_(0, 3)
        g.lstm.weight_ih_l0[:, -12:].normal_(0, 3)
        for head in g.heads:  # and many holds (as in music), whose sounding pitch must be carried
            head[2].bias[HOLD] += 4
    noise = [generate.noise_for(s, 48, g.cfg) for s in range(8)]
    z, step_noise = torch.stack([n[0] for n in noise]), torch.stack([n[1] for n in noise])
    z = g.condition(z, torch.arange(len(z)) % 24)
    codes = torch.from_numpy(g.cfg.metre_codes((4, 4), 48)).expand(len(z), -1)
    with torch.no_grad():
        tokens, _ = g.sample(z, step_noise, codes)
        logits = g.teacher_forced(tokens, z, codes)
    assert (tokens == HOLD).float().mean() > 0.3 and (tokens >= 2).any()
    redrawn = (logits + gumbel_from_normal(step_noise)).argmax(-1)
    assert (redrawn == tokens).float().mean() > 0.99


def test_the_pitch_class_memory_is_one_recurrence_on_every_path():
    """Teacher forcing reads the memory of all steps at once (a product with a matrix of decays);
    the samplers run the recurrence step by step. Both give each step the same memory: the
    fading share of the last beats in which each pitch class sounded, in any voice."""
    from musicgan.models import Generator, sounding

    cfg = ModelConfig(pitch_low=40, pitch_high=70, **TINY)
    torch.manual_seed(0)
    g = Generator(cfg)
    tokens = torch.randint(0, cfg.vocab, (3, 40, cfg.voices))
    tokens[:, ::5] = HOLD  # holds keep their pitch class sounding; rests sound none
    memory, expected = g.memory(tokens), []
    m = torch.zeros(3, 12)
    for t in range(40):
        expected.append(m)
        m = g._remember(m, sounding(tokens)[:, t])
    assert torch.allclose(memory, torch.stack(expected, 1), atol=1e-6)
    assert memory.max() <= 1 and (memory[:, 0] == 0).all() and (memory[:, 10:].sum(-1) > 0).all()
    # a pitch class that stops sounding fades: after 2 beats of silence, to e^-1 or less
    silent = torch.cat([torch.full((1, 8, cfg.voices), 2 + 20), torch.full((1, 9, cfg.voices), REST)], 1)
    fading = g.memory(silent)[0, :, (40 + 20) % 12]
    assert fading[8] > 0.6 and fading[16] < fading[8] * 0.37
    # a checkpoint from before the memory loads without it, its LSTM reading no memory
    legacy = ModelConfig.from_dict({"voices": 4})
    assert not legacy.pitch_memory and legacy.memory_dim == 0
    assert Generator(dataclasses.replace(legacy, pitch_memory=True)).lstm.input_size == Generator(legacy).lstm.input_size + 12


def test_sounding_pitch_is_carried_through_holds():
    from musicgan.models import sounding

    tokens = torch.tensor([[HOLD, 5, HOLD, REST, HOLD, 6, 6, HOLD]]).T  # (T, 1 voice)
    assert sounding(tokens)[:, 0].tolist() == [REST, 5, 5, REST, REST, 6, 6, 6]


def test_generation_options(trained):
    g = ckpt.load(trained).generator
    roll = generate.sample_rolls(g, [1], bars=3, tempo_bpm=73, program=40)[0]
    # three whole bars, in the roll and in its file (the last beat may rest)
    assert roll.n_steps == 3 * 16 and file_beats(midi.to_midi_bytes(roll)) == 12
    assert roll.tempo_bpm == 73 and roll.program == 40
    again = midi.read(midi.to_midi_bytes(roll))
    assert again.program == 40 and again.tempo_bpm == 73
    with pytest.raises(ValueError, match="bars"):
        generate.sample_rolls(g, [1], bars=0)
    with pytest.raises(ValueError, match="temperature"):
        generate.sample_rolls(g, [1], temperature=0)


class _Picky(torch.nn.Module):
    """A critic certain that candidate ``favourite`` is the real one."""

    def __init__(self, cfg, favourite):
        super().__init__()
        self.cfg, self.favourite, self.window_bars = cfg, favourite, 0

    def forward(self, one_hot, codes):
        logits = torch.full((one_hot.shape[0],), -50.0)
        logits[self.favourite] = 50.0
        return logits, None


class _Fickle(_Picky):
    """A critic certain of candidate ``favourites[0]`` the first time it judges, of the next the next time..."""

    def __init__(self, cfg, favourites):
        super().__init__(cfg, favourites[0])
        self.favourites, self.calls = favourites, 0

    def forward(self, one_hot, codes):
        self.favourite = self.favourites[self.calls % len(self.favourites)]
        self.calls += 1
        return super().forward(one_hot, codes)


def test_the_critic_chooses_among_the_candidates(trained):
    g = ckpt.load(trained).generator
    for favourite in (0, 2):
        chosen = generate.sample_rolls(g, [5], bars=2, critic=_Picky(g.cfg, favourite), candidates=4)[0]
        # every candidate of a seed is in the seed's key and metre
        plain = generate.sample_rolls(g, [generate.candidate_seed(5, favourite)], bars=2, key=generate.key_for(5, g),
                                      metre=generate.metre_for(5, g))[0]
        assert np.array_equal(chosen.notes, plain.notes)
    # several seeds in one call: each chooses among its own candidates
    both = generate.sample_rolls(g, [5, 6], bars=2, critic=_Picky(g.cfg, 0), candidates=1)
    assert [r.notes.tolist() for r in both] == [r.notes.tolist() for r in generate.sample_rolls(g, [5, 6], bars=2)]


def test_with_a_critic_a_long_piece_is_chosen_a_window_at_a_time(trained):
    from musicgan.batches import window_steps

    g = ckpt.load(trained).generator
    cfg, piece_metre = g.cfg, g.cfg.metres[0]
    bar, W = g.cfg.bar_steps(piece_metre), window_steps(g.cfg)
    assert generate.segments(_Picky(cfg, 0), 4, 10 * bar, piece_metre) == ([W, 2 * W, 10 * bar], W)
    assert generate.segments(None, 4, 10 * bar, piece_metre) == generate.segments(_Picky(cfg, 0), 1, 10 * bar, piece_metre)
    # each segment carries on from the candidate chosen before it, exactly as that candidate would
    # have gone on: a critic that always takes candidate 2 gets candidate 2's whole piece
    kwargs = dict(key=generate.key_for(5, g), metre=piece_metre)
    always = generate.sample_rolls(g, [5], bars=10, critic=_Picky(cfg, 2), candidates=4, metre=piece_metre)[0]
    assert np.array_equal(always.notes, generate.sample_rolls(g, [generate.candidate_seed(5, 2)], bars=10, **kwargs)[0].notes)
    # a critic that changes its mind: candidate 0's first window, then a continuation of it
    piece = generate.sample_rolls(g, [5], bars=10, critic=_Fickle(cfg, [0, 2]), candidates=4, metre=piece_metre)[0]
    first = generate.sample_rolls(g, [5], bars=10, **kwargs)[0]
    assert np.array_equal(data.cut(piece, 0, W).notes, data.cut(first, 0, W).notes)
    assert not np.array_equal(piece.notes, first.notes)


def test_the_critic_judges_a_long_piece_window_by_window(trained):
    from musicgan.batches import window_steps
    from musicgan.models import Discriminator

    model = ckpt.load(trained, with_discriminator=True)
    cfg = model.generator.cfg
    # the critic knows the length of the windows it learned on (the tiny trainer's are 2 bars)
    assert model.discriminator.window_bars == 2 and window_steps(cfg, 2) < window_steps(cfg)
    for window_bars in (0, 2):
        window = window_steps(cfg, window_bars)
        for piece_metre in cfg.metres:
            bar = cfg.bar_steps(piece_metre)
            assert generate.critic_windows(cfg, window - bar, piece_metre, window_bars) == ([0], window - bar)
            for n_bars in (16, 17, 33):
                T = n_bars * bar
                starts, W = generate.critic_windows(cfg, T, piece_metre, window_bars)
                # whole bars, about as long as a training window, from the first step to the last, none left out
                assert W % bar == 0 and abs(W - window) <= bar / 2 + 1e-9 and W < T
                assert starts[0] == 0 and starts[-1] + W == T and all(s % bar == 0 for s in starts)
                assert all(b - a <= W for a, b in zip(starts, starts[1:])) and starts == sorted(set(starts))
    # its logit for a piece is the mean of its logits for those windows, each judged on its own
    torch.manual_seed(0)
    critic = Discriminator(cfg).eval()
    piece_metre = cfg.metres[0]
    T = 16 * cfg.bar_steps(piece_metre)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab, size=(3, T, cfg.voices))
    starts, W = generate.critic_windows(cfg, T, piece_metre)
    each = [generate.critic_logits(critic, tokens[:, s:s + W], piece_metre) for s in starts]
    assert torch.allclose(generate.critic_logits(critic, tokens, piece_metre), torch.stack(each).mean(0), atol=1e-5)


def test_a_trained_critic_is_saved_loaded_and_used_deterministically(rolls, tmp_path, monkeypatch):
    from musicgan import api, train

    monkeypatch.setattr(train, "MIN_CRITIC_STEPS", 2)
    trainer = tiny_trainer(rolls, steps=6, candidates=4)
    trainer.run()
    trainer.save(tmp_path / "critic")
    model = ckpt.load(tmp_path / "critic")  # loads D because generation needs it
    assert model.candidates == 4 and model.discriminator is not None
    assert set(model.sampling) == {"critic", "candidates", "avoid", "forms", "parallels"} and not model.discriminator.training
    assert np.array_equal(model.copy_index, copyguard.build(rolls))  # the copy guard knows the training music
    pieces = [api.compose(model, seed=s, bars=2, audio=False).midi for s in (3, 3, 4)]
    assert pieces[0] == pieces[1] != pieces[2]
    options = [midi.to_midi_bytes(r) for r in generate.sample_rolls(
        model.generator, [generate.candidate_seed(3, j) for j in range(4)], bars=2,
        tempo_bpm=generate.defaults(model)[0], program=generate.defaults(model)[1])]
    assert len(set(options)) > 1
    # without enough critic training (or with --candidates 1) generation draws once
    monkeypatch.setattr(train, "MIN_CRITIC_STEPS", 50)
    trainer.save(tmp_path / "early")
    assert ckpt.load(tmp_path / "early").sampling.keys() == {"avoid", "forms", "parallels"}


def test_interpolation_ends_at_both_seeds(trained):
    g = ckpt.load(trained).generator
    path = generate.interpolate_rolls(g, 1, 2, n=4, bars=2)
    a, b = generate.sample_rolls(g, [1, 2], bars=2)
    assert len(path) == 4
    assert np.array_equal(path[0].notes, a.notes) and np.array_equal(path[-1].notes, b.notes)
    joined = generate.concatenate(path)
    assert joined.n_steps > 3 * 32


def test_variations_differ_from_each_other(trained):
    g = ckpt.load(trained).generator
    pieces = generate.variation_rolls(g, 5, n=3, bars=2)
    assert len({midi.to_midi_bytes(p) for p in pieces}) == 3


def test_discriminator_sees_only_untransposed_music(rolls):
    trainer = tiny_trainer(rolls)
    untransposed = trainer.data.untransposed.numpy()
    assert len(untransposed) < len(trainer.data)
    assert (trainer.windows.index[untransposed, 2] == 0).all()
    assert set(trainer.windows.index[:, 2]) == {-1, 0, 1}
    for _ in range(5):
        batch = trainer._batch(untransposed=True)
        assert batch.tokens.shape[0] == trainer.config.batch_size


# --------------------------------------------------------------------------- keys

def test_key_estimates_of_scales_and_chorales(rolls):
    from musicgan import keys

    def notes(pitches):
        return np.array([[p, 2 * i, 2 * i + 2, 80] for i, p in enumerate(pitches)], dtype=np.int32)

    assert keys.estimate(notes([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60])) == keys.parse("C major")
    assert keys.estimate(notes([57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57])) == keys.parse("A minor")
    assert keys.estimate(np.zeros((0, 4), dtype=np.int32)) == 0
    for roll in rolls[:3]:  # moving the music moves its key
        key = keys.estimate(roll.notes)
        for shift in (-5, 1, 7):
            moved = roll.notes.copy()
            moved[:, 0] += shift
            assert keys.estimate(moved) == keys.transpose(key, shift)
    assert [keys.parse(keys.name(k)) for k in range(24)] == list(range(24))
    assert keys.parse("f# minor") == keys.parse("Gb minor") == 18 and keys.parse("Bb") == 10
    for bad in ("H major", "C dorian", "", "C major minor"):
        with pytest.raises(ValueError, match="not a key"):
            keys.parse(bad)


def test_a_model_knows_how_its_music_ends_and_a_checkpoint_that_says_otherwise_is_refused(trained, rolls, tmp_path):
    import shutil

    from musicgan import ending, metre, upbeat

    config = json.loads((trained / "config.json").read_text())
    said = ending.habit(rolls)
    assert config["data"]["ends"] == said and 0 <= said["downbeat"] <= 1 and said["beats"]["4/4"] > 0
    loaded = ckpt.load(trained)
    assert loaded.generator.ends.tolist() == pytest.approx(
        [said["downbeat"]] + [said["beats"].get(metre.name(m), 0) for m in loaded.model.metres])
    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    config["data"]["ends"] = {"downbeat": "often", "beats": {"4/4": 1}}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="data.ends"):
        ckpt.load(bad)
    del config["data"]["ends"]  # a model from before: closes as then
    (bad / "config.json").write_text(json.dumps(config))
    assert not ckpt.load(bad).generator.ends.any()
    # ... and how it begins: the example chorales mostly open with a pickup of a beat
    opens = upbeat.habit(rolls)
    assert json.loads((trained / "config.json").read_text())["data"]["opens"] == opens
    assert opens["pickup"] > 0.5 and opens["beats"]["4/4"] == 1.0
    assert loaded.generator.opens.tolist() == pytest.approx(
        [opens["pickup"]] + [opens["beats"].get(metre.name(m), 0) for m in loaded.model.metres])
    config["data"]["opens"] = {"pickup": 0.5, "beats": {"4/4": -1}}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="data.opens"):
        ckpt.load(bad)
    del config["data"]["opens"]  # a model from before: every piece opens on its downbeat
    (bad / "config.json").write_text(json.dumps(config))
    assert not ckpt.load(bad).generator.opens.any()
    # ... and how its voices come in (the example chorales': together, or one by one now and then)
    entering = upbeat.entering(rolls, loaded.model.voices)
    assert json.loads((trained / "config.json").read_text())["data"].get("entries") == entering
    assert loaded.generator.entering == entering
    config["data"]["entries"] = {"share": 0.5, "beats": [[0.0]]}  # one voice's entries, for a model of more
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="data.entries"):
        ckpt.load(bad)
    config["data"]["entries"] = {"share": 0.5, "beats": [[0.0] + [2.0] * (loaded.model.voices - 1)]}
    (bad / "config.json").write_text(json.dumps(config))
    assert ckpt.load(bad).generator.entering == config["data"]["entries"]


def test_a_whole_piece_is_in_the_key_it_ends_in_and_its_windows_are_told_so(rolls):
    import mido

    from musicgan import keys

    def signed(path):  # the key signature Bach's editors wrote
        sig = next(m.key for t in mido.MidiFile(path).tracks for m in t if m.type == "key_signature")
        return keys.parse(sig[:-1] + " minor" if sig.endswith("m") else sig)

    # bwv254 is in D Dorian, written without a flat (as A minor): D minor, its final, either way
    written = [keys.parse("D minor") if path.stem == "bwv254" else signed(path) for path in EXAMPLES]
    pieces = [midi.read(path).notes for path in EXAMPLES]
    # the profiles alone hear half of the example chorales a fifth or a third away (the dominant's, the relative's key)
    assert sum(keys.estimate(n) == k for n, k in zip(pieces, written)) == 5
    assert [keys.of_piece(n) for n in pieces] == written  # by where they end, all ten as written
    assert keys.final(pieces[0]) == keys.estimate(pieces[0], keys.final(pieces[0])) % 12
    assert keys.final(np.zeros((0, 4), dtype=np.int32)) is None

    def notes(pitches):
        return np.array([[p, 2 * i, 2 * i + 2, 80] for i, p in enumerate(pitches)], dtype=np.int32)

    scale = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 62, 64, 65, 62, 59]
    assert keys.of_piece(notes(scale + [60])) == keys.parse("C major")
    assert keys.of_piece(notes(scale + [66])) == keys.parse("C major")  # a final no key of these notes has
    # what training tells each window: its piece's key, moved with the window
    trainer = tiny_trainer(rolls)
    index, told = trainer.data.windows.index, trainer.data.keys.numpy()
    piece_keys = [keys.of_piece(r.notes) for r in rolls]
    assert len(index) and all(told[i] == keys.transpose(piece_keys[p], shift) for i, (p, _, shift) in enumerate(index))
    assert trainer.data_meta["keys"] == np.bincount(piece_keys, minlength=keys.KEYS).tolist()


def test_the_key_is_drawn_from_the_training_music_and_can_be_chosen(trained):
    g = ckpt.load(trained).generator
    counts = json.loads((trained / "config.json").read_text())["data"]["keys"]
    drawn = [generate.key_for(seed, g) for seed in range(200)]
    assert all(counts[k] > 0 for k in drawn)  # only keys the music has
    assert drawn == [generate.key_for(seed, g) for seed in range(200)]
    a = generate.sample_rolls(g, [3], bars=2, key=0)[0]
    assert np.array_equal(a.notes, generate.sample_rolls(g, [3], bars=2, key=0)[0].notes)
    in_c, in_c_sharp_minor = (generate.sample_rolls(g, range(8), bars=4, key=k) for k in (0, 13))
    assert any(not np.array_equal(x.notes, y.notes) for x, y in zip(in_c, in_c_sharp_minor))
    own = generate.sample_rolls(g, [3], bars=2, key=generate.key_for(3, g))[0]
    assert np.array_equal(own.notes, generate.sample_rolls(g, [3], bars=2)[0].notes)
    walk = generate.interpolate_rolls(g, 3, 4, n=3, bars=2)
    assert np.array_equal(walk[0].notes, own.notes)


# --------------------------------------------------------------------------- calibration

def test_calibration_brings_free_running_onsets_and_rests_to_the_musics_rates(rolls):
    from musicgan.train import _rates

    trainer = tiny_trainer(rolls, steps=30, warmup=1.0, lr_mle=1e-2)
    trainer.run()
    n, T = trainer.model.codes, trainer.windows.config.window_steps
    real_tokens, real_codes, real_keys = trainer.data.sample(4096, 0)
    target_on, target_rest, seen = _rates(real_tokens, real_codes, n)
    often = seen >= 64
    seeds = list(range(500, 756))

    def gaps():
        tokens, codes, _ = generate.draw_windows(trainer.G.eval(), seeds, T)
        on, rest, _ = _rates(tokens, codes, n)
        return np.abs(on - target_on)[often].mean(), np.abs(rest - target_rest)[often].mean()

    onsets_before, rests_before = gaps()
    trainer.calibrate()
    onset_bias, rest_bias = trainer.G.onset_bias.clone(), trainer.G.rest_bias.clone()
    onsets_after, rests_after = gaps()
    assert onset_bias.abs().max() > 0.1 and onsets_after < 0.5 * onsets_before
    assert rests_after < rests_before
    trainer.calibrate()
    assert torch.equal(trainer.G.onset_bias, onset_bias)  # the same weights give the same biases
    assert torch.equal(trainer.G.rest_bias, rest_bias)


def test_calibration_draws_enough_windows_for_every_metrical_code():
    """A rate drawn on few steps is noisy and a fit in log-odds to it overshoots: a model of many
    codes (metres x places in the bar on a fine grid) draws more windows a round, within bounds."""
    from musicgan.train import CALIBRATION_CLIPS, CALIBRATION_STEPS_PER_CODE, calibration_clips

    assert calibration_clips(16, 64) == CALIBRATION_CLIPS  # few codes: the default
    for codes, steps in ((72, 64), (288, 108)):  # the chorales', the quartets'
        clips = calibration_clips(codes, steps)
        assert clips > CALIBRATION_CLIPS and clips * steps >= CALIBRATION_STEPS_PER_CODE * codes
        assert (clips - 1) * steps < CALIBRATION_STEPS_PER_CODE * codes  # no more than it takes
    assert calibration_clips(10 ** 4, 32) == 4 * CALIBRATION_CLIPS


def test_calibration_moves_less_each_round():
    """Each round's draws are noisy: a fixed step let the last round set the biases alone (a quartet
    model's 2/4 pieces were fitted anywhere from 6.0 to 10.5 notes a beat; the music has 7.3)."""
    from musicgan.train import calibration_step

    steps = [calibration_step(r) for r in range(8)]
    assert steps[0] == pytest.approx(0.7)
    assert all(a > b > 0 for a, b in zip(steps, steps[1:]))
    assert sum(steps[:4]) > 1.5  # still far enough to close most of a gap in the default 4 rounds


def test_calibration_keeps_draws_in_the_key_as_the_music_is(rolls):
    """Drawn notes off the pitch classes of their key are brought to the music's share of them."""
    from musicgan.train import _tonal_shares

    trainer = tiny_trainer(rolls, steps=30, warmup=1.0, lr_mle=1e-2)
    trainer.run()
    T, low = trainer.windows.config.window_steps, trainer.model.pitch_low
    real_tokens, _, real_keys = trainer.data.sample(4096, 0)
    target = _tonal_shares(real_tokens, real_keys, low)
    major = np.array([0, 2, 4, 5, 7, 9, 11])

    def off_the_scale():  # the share of new notes in major keys off the major scale
        tokens, _, piece_keys = generate.draw_windows(trainer.G.eval(), list(range(500, 756)), T)
        return 1 - _tonal_shares(tokens, piece_keys, low)[0, major].sum()

    before = off_the_scale()
    trainer.calibrate()
    wanted = 1 - target[0, major].sum()
    assert trainer.G.tonal_bias.abs().max() > 0.1
    assert abs(off_the_scale() - wanted) < 0.5 * abs(before - wanted)


def test_calibration_brings_the_intervals_between_voices_to_the_musics(rolls):
    """The vertical intervals of drawn music (interval classes between voices, where a note is
    struck) are brought toward the music's; a model of one voice has no interval bias."""
    from musicgan.models import interval_counts

    trainer = tiny_trainer(rolls, steps=30, warmup=1.0, lr_mle=1e-2)
    trainer.run()
    T = trainer.windows.config.window_steps
    real_tokens, _, _ = trainer.data.sample(4096, 0)
    target = interval_counts(real_tokens) / interval_counts(real_tokens).sum()

    def distance():  # total variation between the drawn and the music's interval shares
        tokens, _, _ = generate.draw_windows(trainer.G.eval(), list(range(500, 756)), T)
        counts = interval_counts(tokens)
        return 0.5 * np.abs(counts / counts.sum() - target).sum()

    before = distance()
    trainer.calibrate()
    assert trainer.G.interval_bias.abs().max() > 0.1
    assert distance() < 0.7 * before, before


def test_calibration_brings_rests_to_the_musics_rate_where_voices_rest(rolls):
    """Music whose lower voices drop out every other bar (as voices enter one by one in a motet):
    free-running draws rest as often as it does once the rest bias is fitted."""
    from dataclasses import replace

    from musicgan.train import _rates

    sparse = []
    for roll in rolls:
        notes = roll.notes
        resting = ((notes[:, 1] // 16) % 2 == 1) & (notes[:, 0] < 62)
        sparse.append(replace(roll, notes=notes[~resting]))
    # a rough model (a constant rate, no cool-down) whose draws rest far from the music's rate
    trainer = tiny_trainer(sparse, steps=30, warmup=1.0, lr_mle=1e-2, cooldown=0.0)
    trainer.run()
    n, T = trainer.model.codes, trainer.windows.config.window_steps
    real_tokens, real_codes, _ = trainer.data.sample(4096, 0)
    _, target_rest, seen = _rates(real_tokens, real_codes, n)
    often = seen >= 64
    assert target_rest[often].mean() > 0.2

    def gap():
        tokens, codes, _ = generate.draw_windows(trainer.G.eval(), list(range(500, 756)), T)
        return np.abs(_rates(tokens, codes, n)[1] - target_rest)[often].mean()

    before = gap()
    trainer.calibrate()
    assert trainer.G.rest_bias.abs().max() > 0.1 and gap() < 0.5 * before


@pytest.mark.parametrize("name", ["onset_bias", "rest_bias"])
def test_the_sampling_biases_are_saved_loaded_and_checked(trained, tmp_path, name):
    import shutil

    from safetensors.torch import load_file, save_file

    key = ckpt.SAMPLING_BIASES[name]
    loaded = ckpt.load(trained)
    assert getattr(loaded.generator, name).abs().max() > 0  # the trained fixture passed the switch
    tensors = load_file(trained / "model.safetensors")
    assert torch.equal(tensors[key], getattr(loaded.generator, name))
    for bad in (torch.zeros(3, 3), torch.full_like(tensors[key], 1e6), torch.full_like(tensors[key], float("nan"))):
        copy = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        shutil.copytree(trained, copy)
        save_file({**tensors, key: bad}, copy / "model.safetensors")
        with pytest.raises(ckpt.CheckpointError, match="not a sampling bias"):
            ckpt.load(copy)


def test_a_calibrated_model_draws_its_pitches_at_its_pitch_temperature(trained, tmp_path):
    """Calibration fits the biases on draws at a pitch temperature of 1, then gives the model
    PITCH_TEMPERATURE (its free draws' choice among pitches, kept in the checkpoint); a checkpoint
    from before has none and draws at 1; one that says something else is refused."""
    import shutil

    from safetensors.torch import load_file, save_file

    from musicgan.train import PITCH_TEMPERATURE

    loaded = ckpt.load(trained)
    G = loaded.generator
    assert float(G.pitch_temperature) == pytest.approx(PITCH_TEMPERATURE) and PITCH_TEMPERATURE != 1
    noise = [generate.noise_for(s, 32, G.cfg) for s in range(8)]
    z = G.condition(torch.stack([n[0] for n in noise]), torch.arange(8) % 24)
    step_noise, codes = torch.stack([n[1] for n in noise]), torch.from_numpy(G.cfg.metre_codes(G.cfg.metres[0], 32))
    with torch.no_grad():
        own, _ = G.sample(z, step_noise, codes.expand(8, -1))
        said, _ = G.sample(z, step_noise, codes.expand(8, -1), pitch_temperature=PITCH_TEMPERATURE)
        plain, _ = G.sample(z, step_noise, codes.expand(8, -1), pitch_temperature=1.0)
    assert torch.equal(own, said) and not torch.equal(own, plain)
    tensors = load_file(trained / "model.safetensors")
    key = ckpt.SAMPLING_BIASES["pitch_temperature"]
    before = tmp_path / "before"
    shutil.copytree(trained, before)
    save_file({k: v for k, v in tensors.items() if k != key}, before / "model.safetensors")
    assert float(ckpt.load(before).generator.pitch_temperature) == 1.0
    for bad in (torch.tensor([0.1]), torch.tensor([6.0]), torch.tensor([0.0])):
        save_file({**tensors, key: bad}, before / "model.safetensors")
        with pytest.raises(ckpt.CheckpointError, match="not a sampling bias"):
            ckpt.load(before)


def test_parallel_targets_name_the_note_that_would_move_in_parallel_fifths_or_octaves():
    from musicgan.models import parallel_rate, parallel_targets

    P = lambda pitch: voices.FIRST_PITCH + pitch  # noqa: E731  (the token of a pitch above the lowest)
    before = torch.tensor([[P(19), P(12), P(0)]])  # G, C, and C an octave below
    now = torch.tensor([[P(21), P(12), P(0)]])  # the top voice moves up a tone
    struck = torch.tensor([[True, False, False]])
    assert parallel_targets(before, now, struck, 1).tolist() == [[P(14)]]  # C -> D: parallel fifths
    assert parallel_targets(before, now, struck, 2).tolist() == [[P(2), -1]]  # a twelfth, with the top voice
    held = torch.tensor([[False, False, False]])  # the top voice holds its note: nothing is parallel
    assert parallel_targets(before, before, held, 1).tolist() == [[-1]]
    third = torch.tensor([[P(16), P(12), P(0)]])  # a third apart is no perfect interval
    assert parallel_targets(third, now, struck, 1).tolist() == [[-1]]
    # counted in music: two voices an octave apart, both moving up a tone at step 2
    tokens = np.array([[[P(19), P(7)], [HOLD, HOLD], [P(21), P(9)], [P(24), P(14)]]])
    assert parallel_rate(tokens) == (1, 3)


def test_the_parallel_bias_makes_fewer_parallels_and_both_samplers_agree():
    from musicgan.models import parallel_rate

    g = ckpt.load(generate.DEFAULT_CHECKPOINT).generator  # a copy of its own (its bias is changed here)
    seeds = list(range(48))
    counts = []
    for beta in (0.0, 3.0):
        g.parallel_bias.fill_(beta)
        tokens, _, _ = generate.draw_windows(g, seeds, 48)
        counts.append(parallel_rate(tokens)[0])
    noise = [generate.noise_for(s, 32, g.cfg) for s in range(6)]
    z = g.condition(torch.stack([n[0] for n in noise]), torch.arange(6))
    codes = torch.from_numpy(g.cfg.metre_codes((4, 4), 32)).expand(6, -1)
    with torch.no_grad():
        fast, _ = g.sample(z, torch.stack([n[1] for n in noise]), codes)
    with torch.enable_grad():
        slow, _ = g.sample(z, torch.stack([n[1] for n in noise]), codes)
    assert counts[0] > 20 and counts[1] < counts[0] / 2, counts
    assert (fast == slow).float().mean() > 0.9


def test_pieces_keep_near_the_parallels_of_the_music_the_model_learnt():
    """The critic's candidates that keep a piece nearest its music's parallel fifths and octaves
    between beats (the chorales': 3.7 per 100 beats) go first, window by window: the pieces come
    nearer that many than the critic's choice alone, which writes more; for music with more, they
    have more."""
    from musicgan import voiceleading

    model = ckpt.load(generate.DEFAULT_CHECKPOINT)
    rate, critics_alone = model.parallels, {k: v for k, v in model.sampling.items() if k != "parallels"}
    assert model.sampling["parallels"] == rate and 3 < rate < 4

    def pieces(bars, **sampling):
        return generate.sample_rolls(model.generator, range(12), bars, **sampling)

    def off(roll, seed):  # how far from the piece's share of the music's parallels
        n, beats = voiceleading.parallel_count(roll)
        return abs(n - generate.parallels_share(rate, beats, seed))
    for bars in (4, 16):  # (one window of the critic's, and four)
        taken, critics = pieces(bars, **model.sampling), pieces(bars, **critics_alone)
        assert rate < voiceleading.pooled_parallels(critics)
        if bars == 4:  # one choice: never further from the piece's share than the critic's own
            assert all(off(a, s) <= off(b, s) for s, (a, b) in enumerate(zip(taken, critics)))
        else:  # the pieces near the music's rate, the critic's choices far above it
            assert abs(voiceleading.pooled_parallels(taken) - rate) < abs(voiceleading.pooled_parallels(critics) - rate) / 3
    many = pieces(8, **critics_alone, parallels=50.0)
    assert voiceleading.pooled_parallels(many) > voiceleading.pooled_parallels(pieces(8, **critics_alone))


def test_parallel_targets_match_the_definition_pair_by_pair():
    """The samplers work out the step before's intervals once a step (perfect_intervals) and every
    voice reads them; checked here against the definition, one pair of voices at a time."""
    from musicgan.models import parallel_penalty, parallel_targets, perfect_intervals
    from musicgan.voices import FIRST_PITCH

    rng = torch.Generator().manual_seed(0)
    found = 0
    for _ in range(10):
        before = torch.randint(0, 40, (32, 5), generator=rng)
        now = torch.where(torch.rand(32, 5, generator=rng) < 0.5, before, torch.randint(0, 40, (32, 5), generator=rng))
        struck = torch.rand(32, 5, generator=rng) < 0.6
        intervals = perfect_intervals(before)
        for v in range(1, 5):
            targets = parallel_targets(before, now, struck, v, intervals)
            assert torch.equal(targets, parallel_targets(before, now, struck, v))
            penalty = parallel_penalty(before, now, struck, v, 2.0, 40, intervals)
            for b in range(32):
                want = []
                for u in range(v):
                    a, c, moved_to = int(before[b, u]), int(before[b, v]), int(now[b, u])
                    d = a - c
                    ok = bool(struck[b, u]) and moved_to != a and a >= FIRST_PITCH and c >= FIRST_PITCH \
                        and d > 0 and d % 12 in (0, 7) and moved_to - d >= FIRST_PITCH
                    want.append(moved_to - d if ok else -1)
                assert targets[b].tolist() == want
                hits = torch.zeros(40)
                for target in want:
                    if target >= 0:
                        hits[target] -= 2.0
                assert torch.equal(penalty[b], hits)
                found += sum(t >= 0 for t in want)
    assert found > 20  # (the case is exercised)
