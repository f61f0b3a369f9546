"""The trainer sizes itself to its device: the automatic batch and learning rates, and the
critic's draws replayed from a CUDA graph (run on a GPU where there is one; the rest on a CPU)."""
import math

import pytest
import torch

from musicgan import data
from musicgan.cudagraph import Draw
from musicgan.train import (BASE_BATCH, BASE_WIDTH, BASE_WINDOW, GPU_BATCH, LR_MLE, LR_MLE_MANY, MANY_PIECES,
                            Budget, TrainConfig, Trainer)

from conftest import EXAMPLES

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def rolls():
    return data.load(EXAMPLES, cache_dir=False).rolls


def test_automatic_batch_is_64_on_a_cpu_and_larger_on_a_gpu_with_scaled_rates():
    config = TrainConfig()
    assert config.batch_size == 0  # left to the trainer
    # the rates as they are (the likelihood's, left to the trainer, is LR_MLE for a BASE_WIDTH generator;
    # on CUDA scaled with the batch)
    assert config.sized_for(torch.device("cpu")) == TrainConfig(batch_size=BASE_BATCH, lr_mle=LR_MLE)
    gpu = config.sized_for(torch.device("cuda"))
    scale = math.sqrt(GPU_BATCH / BASE_BATCH)
    assert gpu.batch_size == GPU_BATCH > BASE_BATCH
    assert (gpu.lr_mle, gpu.lr_g, gpu.lr_d) == pytest.approx((LR_MLE * scale, config.lr_g * scale,
                                                              config.lr_d * scale))
    assert gpu.sized_for(torch.device("cuda")) == gpu  # sized once: a resumed run is not scaled again
    assert config.sized_for(torch.device("cpu"), world=3).batch_size == 66  # splits over 3 processes
    assert config.sized_for(torch.device("cuda"), world=8).batch_size == GPU_BATCH


def test_on_a_cpu_longer_windows_come_fewer_to_a_batch():
    config, cpu = TrainConfig(), torch.device("cpu")
    # windows of a 4-a-beat grid: 4 bars of 4/4, 6 of 3/4, 2 of 4/2 (and on a GPU any window)
    for steps in (64, BASE_WINDOW):
        assert config.sized_for(cpu, window=steps).batch_size == BASE_BATCH
    # the quartets' 12-a-beat grid: 3 bars of 3/4 are 108 steps; a step reads about as many steps as before
    quartets = config.sized_for(cpu, window=108)
    assert quartets.batch_size == 43 and quartets.lr_mle == LR_MLE  # the rates as they are
    assert abs(43 * 108 - BASE_BATCH * BASE_WINDOW) < 108
    assert config.sized_for(cpu, world=2, window=108).batch_size == 44  # split evenly
    assert config.sized_for(torch.device("cuda"), window=108).batch_size == GPU_BATCH
    assert quartets.sized_for(cpu, window=64) == quartets  # sized once


def test_the_likelihood_rate_left_to_the_trainer_follows_the_width():
    config = TrainConfig()
    assert config.lr_mle == 0  # left to the trainer
    assert config.sized_for(torch.device("cpu"), width=BASE_WIDTH).lr_mle == LR_MLE
    narrow = config.sized_for(torch.device("cpu"), width=BASE_WIDTH // 2)
    assert narrow.lr_mle == pytest.approx(2 * LR_MLE)
    assert narrow.sized_for(torch.device("cpu"), width=BASE_WIDTH) == narrow  # sized once: kept on resuming
    assert TrainConfig(lr_mle=1e-3).sized_for(torch.device("cpu"), width=64).lr_mle == 1e-3  # a chosen rate is kept


def test_a_cpu_run_on_music_of_many_pieces_takes_twice_the_likelihood_rate():
    config = TrainConfig()
    assert LR_MLE_MANY == 2 * LR_MLE
    cpu = torch.device("cpu")
    assert config.sized_for(cpu, pieces=MANY_PIECES - 1).lr_mle == LR_MLE  # 20 files of someone's music
    assert config.sized_for(cpu, pieces=MANY_PIECES).lr_mle == LR_MLE_MANY
    assert config.sized_for(cpu, width=BASE_WIDTH // 2, pieces=MANY_PIECES).lr_mle == pytest.approx(2 * LR_MLE_MANY)
    # a resumed run keeps the rate it was given, whatever the music it is given now
    assert config.sized_for(cpu, pieces=MANY_PIECES).sized_for(cpu, pieces=1).lr_mle == LR_MLE_MANY
    # not on CUDA, where it was not measured (the batch scaling apart)
    gpu = config.sized_for(torch.device("cuda"), pieces=10 * MANY_PIECES)
    assert gpu.lr_mle == pytest.approx(LR_MLE * math.sqrt(gpu.batch_size / BASE_BATCH))


def test_a_chosen_batch_is_kept_with_its_rates_on_any_device():
    chosen = TrainConfig(batch_size=32, lr_mle=1e-3, dropout=0.1)
    for device in ("cpu", "cuda", "mps"):
        assert chosen.sized_for(torch.device(device)) == chosen


def test_the_trainer_runs_and_saves_the_sized_config(rolls, tmp_path):
    trainer = Trainer(rolls[:3], config=TrainConfig(window_bars=2, warmup=1.0), device="cpu", budget=Budget(steps=1))
    assert trainer.config.batch_size == BASE_BATCH
    # three pieces, fewer than MANY_PIECES: the likelihood rate for the width alone
    assert trainer.config.lr_mle == pytest.approx(LR_MLE * min(2.0, BASE_WIDTH / trainer.model.hidden))
    trainer.run()
    assert trainer._batch().tokens.shape[0] == BASE_BATCH
    from musicgan import checkpoint as ckpt

    trainer.save(tmp_path / "m")
    assert ckpt.load(tmp_path / "m").meta["train"]["batch_size"] == BASE_BATCH


def test_the_cli_says_the_batch_it_chose(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run([sys.executable, "-m", "musicgan", "train", *map(str, EXAMPLES[:2]), "--out",
                             str(tmp_path / "m"), "--steps", "1", "--window-bars", "2", "--device", "cpu", "--quiet"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{BASE_BATCH} a step (chosen for the device)" in result.stderr


def test_on_a_cpu_the_draw_is_the_generators_own(rolls):
    trainer = Trainer(rolls[:3], config=TrainConfig(batch_size=4, window_bars=2), device="cpu",
                      budget=Budget(steps=1))
    real = trainer._batch(untransposed=True)
    z, noise = trainer._noise(*real.tokens.shape[:2])
    z = trainer.G.condition(z, real.keys)
    tokens = trainer.draw(z, noise, real.codes)
    with torch.no_grad():
        eager, _ = trainer.G.sample(z, noise, real.codes)
    assert torch.equal(tokens, eager)
    assert trainer.draw.captures == 0


@cuda
def test_graph_draws_are_the_eager_draws_as_the_weights_move(rolls):
    trainer = Trainer(rolls, config=TrainConfig(batch_size=32, window_bars=2, warmup=1.0), device="cuda",
                      budget=Budget(steps=100))
    G = trainer.G
    G.parallel_bias.fill_(1.5)  # the paths a calibrated model draws through
    G.echo_bias.fill_(0.5)
    G.tonal_bias.normal_(0, 0.3)
    for moves in range(3):
        real = trainer._batch(untransposed=True)
        z, noise = trainer._noise(*real.tokens.shape[:2])
        z = G.condition(z, real.keys)
        graphed = trainer.draw(z, noise, real.codes)
        with torch.no_grad():
            eager, _ = G.sample(z, noise, real.codes)
        assert torch.equal(graphed, eager), moves
        trainer.step()  # the weights move in place; the graph reads them where they live
    assert trainer.draw.captures == 1
    G.parallel_bias.fill_(0.0)  # another path: recorded again
    trainer.draw(z, noise, real.codes)
    assert trainer.draw.captures == 2


def test_draw_can_be_switched_off():
    assert not Draw(torch.nn.Linear(1, 1), enabled=False).on(torch.zeros(1))


def _likelihood_run(rolls, graphs: bool, steps: int = 20, budget: int = 20):
    trainer = Trainer(rolls, config=TrainConfig(batch_size=32, window_bars=2, warmup=1.0, cuda_graphs=graphs),
                      device="cuda", budget=Budget(steps=budget))
    start = {k: v.detach().clone() for k, v in trainer.G.named_parameters()}
    losses = [trainer.step()["mle"] for _ in range(steps)]  # the rate cools down over the last quarter
    return trainer, start, losses


@cuda
def test_the_likelihood_step_replayed_from_a_graph_is_the_step_op_by_op(rolls):
    graphed, start, a = _likelihood_run(rolls, True)
    eager, _, b = _likelihood_run(rolls, False)
    assert graphed.likelihood_step.captures == 1 and eager.likelihood_step is None
    assert a == pytest.approx(b, rel=2e-2) and a[-1] < a[0] - 0.5  # (bf16; a fused Adam against a foreach one)
    gap, moved = _gap(start, graphed.G.state_dict(), eager.G.state_dict())
    assert gap < 0.05 * moved, (gap, moved)


def _skipped_on_the_card_and_recorded_again_when_resumed(trainer, module, opt, step: str, figure: str, rolls, tmp_path):
    """A NaN in ``module``'s LSTM makes the replayed ``step`` skip: its weights and Adam's moments
    stay as they were. Mended, it steps again; saved and resumed (Adam's state loaded anew), the
    step is recorded again and goes on as the run that was not stopped."""
    weight = module.lstm.weight_ih_l0  # read at every step
    kept = weight[3, 0].item()
    with torch.no_grad():
        weight[3, 0] = float("nan")
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    moments = [s["exp_avg"].clone() for s in opt.state.values()]
    event = trainer.step()
    assert event["skipped"] and trainer.skipped == 1
    after = dict(module.named_parameters())
    assert all(torch.equal(v.nan_to_num(), after[k].detach().nan_to_num()) for k, v in before.items())
    assert all(torch.equal(m, s["exp_avg"]) for m, s in zip(moments, opt.state.values()))
    with torch.no_grad():
        weight[3, 0] = kept
    assert not trainer.step()["skipped"]
    trainer.save(tmp_path / "run")
    from musicgan import checkpoint as ckpt

    resumed = Trainer(rolls, model=trainer.model, config=trainer.config, device="cuda", budget=trainer.budget)
    resumed.restore(ckpt.load(tmp_path / "run", with_discriminator=True))
    assert [trainer.step()[figure] for _ in range(3)] == pytest.approx(
        [resumed.step()[figure] for _ in range(3)], rel=1e-3)
    assert getattr(resumed, f"{step}_step").captures == 1 and getattr(trainer, f"{step}_step").captures == 1


def _gap(start: dict, graphed: dict, eager: dict) -> tuple[float, float]:
    """How far the replayed run's weights are from the run op by op, and how far the latter moved from ``start``."""
    moved = sum(float((eager[k] - v).norm() ** 2) for k, v in start.items()) ** 0.5
    return sum(float((graphed[k] - eager[k]).norm() ** 2) for k in start) ** 0.5, moved


@cuda
def test_a_graphed_step_whose_gradients_are_not_finite_is_skipped_on_the_card(rolls, tmp_path):
    trainer, _, _ = _likelihood_run(rolls, True, steps=2, budget=100)
    _skipped_on_the_card_and_recorded_again_when_resumed(trainer, trainer.G, trainer.opt_mle, "likelihood", "mle",
                                                         rolls, tmp_path)


def test_on_a_cpu_the_likelihood_step_is_launched_op_by_op(rolls):
    trainer = Trainer(rolls[:3], config=TrainConfig(batch_size=4, window_bars=2), device="cpu", budget=Budget(steps=1))
    assert trainer.likelihood_step is None and not torch.is_tensor(trainer.opt_mle.param_groups[0]["lr"])


def _critic_run(rolls, graphs: bool, steps: int = 10):
    """A trainer in its critic phase from the start (no calibration), ``steps`` steps of it."""
    trainer = Trainer(rolls, config=TrainConfig(batch_size=32, window_bars=2, cuda_graphs=graphs), device="cuda",
                      budget=Budget(steps=100))
    trainer.adversarial_from = trainer.step_count
    start = {k: v.detach().clone() for k, v in trainer.D.named_parameters()}
    return trainer, start, [trainer.step() for _ in range(steps)]


@cuda
def test_the_critic_step_replayed_from_a_graph_is_the_step_op_by_op(rolls):
    graphed, start, a = _critic_run(rolls, True)
    eager, _, b = _critic_run(rolls, False)
    assert graphed.critic_step.captures == 1 and eager.critic_step is None
    assert all(e["phase"] == "adversarial" and not e["skipped"] for e in a + b)
    # G does not learn here, so the draws are the same; D's steps differ by a fused Adam against a foreach one
    assert [e["diversity"] for e in a] == pytest.approx([e["diversity"] for e in b])
    assert [e["d_loss"] for e in a] == pytest.approx([e["d_loss"] for e in b], rel=1e-2)
    assert [e["d_accuracy"] for e in a] == pytest.approx([e["d_accuracy"] for e in b], abs=0.05)
    assert a[-1]["d_loss"] < a[0]["d_loss"]  # the critic learns
    gap, moved = _gap(start, graphed.D.state_dict(), eager.D.state_dict())
    assert gap < 0.02 * moved, (gap, moved)


@cuda
def test_a_graphed_critic_step_whose_gradients_are_not_finite_is_skipped_and_a_resumed_run_records_again(rolls, tmp_path):
    trainer, _, _ = _critic_run(rolls, True, steps=2)
    _skipped_on_the_card_and_recorded_again_when_resumed(trainer, trainer.D, trainer.opt_d, "critic", "d_loss",
                                                         rolls, tmp_path)


def test_on_a_cpu_the_critic_step_is_launched_op_by_op(rolls):
    trainer = Trainer(rolls[:3], config=TrainConfig(batch_size=4, window_bars=2), device="cpu", budget=Budget(steps=4))
    assert trainer.critic_step is None and not torch.is_tensor(trainer.opt_d.param_groups[0]["lr"])
    assert trainer.opt_d.param_groups[0]["betas"] == (0.5, 0.999)
    trainer.adversarial_from = trainer.step_count
    event = trainer.step()
    assert event["phase"] == "adversarial" and 0 <= event["d_accuracy"] <= 1 and math.isfinite(event["d_loss"])


@cuda
def test_the_likelihood_step_drops_outputs_in_its_graph_too(rolls):
    trainer = Trainer(rolls, config=TrainConfig(batch_size=32, window_bars=2, warmup=1.0, dropout=0.3), device="cuda",
                      budget=Budget(steps=100))
    assert trainer.G.dropout == 0.3
    losses = [trainer.step()["mle"] for _ in range(20)]
    assert trainer.likelihood_step.captures == 1 and trainer.skipped == 0
    assert losses[-1] < losses[0] - 0.5
