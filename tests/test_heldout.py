"""Pieces held out of training: the split, the weights kept, the warm-up ended early, the resume."""
from dataclasses import asdict

import pytest
import torch

from musicgan import checkpoint as ckpt, data, heldout
from musicgan.train import Budget, TrainConfig, Trainer, model_config_for

from conftest import EXAMPLES

TINY = dict(latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)


@pytest.fixture(scope="module")
def pieces():
    rolls = data.load(EXAMPLES, cache_dir=False).rolls
    return rolls + rolls  # 20 pieces: enough to hold some out


def test_whole_pieces_are_held_out_by_seed_from_twenty_pieces_up(pieces):
    train, held = heldout.split(pieces, 0.1, seed=0)
    assert len(held) == 2 and len(train) == 18
    assert sorted(map(id, train + held)) == sorted(map(id, pieces))
    assert [id(r) for r in heldout.split(pieces, 0.1, seed=0)[1]] == [id(r) for r in held]
    assert [id(r) for r in heldout.split(pieces, 0.1, seed=1)[1]] != [id(r) for r in held]
    assert heldout.split(pieces[:19], 0.1, seed=0) == (pieces[:19], [])  # too few to spare one
    assert heldout.split(pieces, 0.0, seed=0) == (pieces, [])
    assert TrainConfig().holdout == 0.0  # asked for (see musicgan.heldout: what it costs)
    assert TrainConfig.from_dict(asdict(TrainConfig(holdout=0.1))).holdout == 0.1


def trainer(pieces, steps=40, **config):
    cfg = TrainConfig(**{"batch_size": 8, "window_bars": 2, "transpose": 1, "d_warmup_steps": 1, "warmup": 0.75,
                         "eval_every": 2, "patience": 2, "holdout": 0.1, **config})
    return Trainer(pieces, model_config_for(pieces, transpose=1, **TINY), cfg, device="cpu",
                   budget=Budget(steps=steps))


def scripted(monkeypatch, losses: dict):
    """The held-out loss as a function of the step (the lowest at step 6, then no lower)."""
    now = {}
    monkeypatch.setattr(heldout.HeldOut, "loss", lambda self, G, autocast: losses.get(now["t"].step_count, 9.0))
    return now


def test_the_lowest_loss_keeps_its_weights_and_ends_the_warm_up_early(pieces, monkeypatch):
    now = scripted(monkeypatch, {2: 5.0, 4: 4.0, 6: 3.0, 8: 3.5, 10: 3.6})
    t = now["t"] = trainer(pieces)
    assert t.held_out.pieces == 2 and t.meta()["data"]["files"] == 18
    at = {}
    events = []
    t.callback = events.append
    while t.adversarial_from is None:
        t.step()
        if t.step_count == 6:
            at[6] = {k: v.clone() for k, v in t.G.named_parameters()}
    # no new lowest loss at steps 8 and 10 (patience 2): the warm-up ends at 10, about 3/4 of a 13-step run
    assert t.adversarial_from == 10 and t.budget.steps == 13
    assert any(e.get("event") == "ended_early" and e["best_step"] == 6 for e in events)
    assert any(e.get("event") == "best" and e["best_step"] == 6 for e in events)
    for k, v in t.G.named_parameters():
        assert torch.equal(v, at[6][k]), k
    assert t.run() == "done" and t.step_count == 13
    held = t.meta()["held_out"]
    assert held["best"] == {"loss": 3.0, "step": 6} and held["ended_early"]["step"] == 10


def test_a_falling_loss_runs_the_whole_budget_and_keeps_the_last_weights(pieces, monkeypatch):
    now = scripted(monkeypatch, {s: 10.0 - s / 10 for s in range(0, 60)})
    t = now["t"] = trainer(pieces, steps=20, warmup=1.0)
    assert t.run() == "done" and t.step_count == 20 and t.ended_early is None
    assert t.best == {"loss": 8.0, "step": 20}


def test_a_resumed_run_is_the_run_that_did_not_stop(pieces, monkeypatch, tmp_path):
    losses = {2: 5.0, 4: 4.0, 6: 3.0, 8: 3.5, 10: 3.6}
    now = scripted(monkeypatch, losses)
    whole = now["t"] = trainer(pieces, seed=3)
    whole.run()
    part = now["t"] = trainer(pieces, seed=3)
    assert part.run(should_stop=lambda: part.step_count >= 7) == "stopped"  # between the best and the end
    part.save(tmp_path / "m")
    again = now["t"] = trainer(pieces, seed=3)
    again.restore(ckpt.load(tmp_path / "m", with_discriminator=True))
    assert again.best == {"loss": 3.0, "step": 6}
    assert again.run() == "done" and again.step_count == whole.step_count == 13
    for (k, v), (_, w) in zip(whole.G.named_parameters(), again.G.named_parameters()):
        assert torch.equal(v, w), k


def test_a_run_that_ended_early_and_is_resumed_with_more_steps_adds_them(pieces, monkeypatch, tmp_path):
    now = scripted(monkeypatch, {2: 5.0, 4: 4.0, 6: 3.0, 8: 3.5, 10: 3.6})
    first = now["t"] = trainer(pieces, seed=3)
    assert first.run() == "done" and first.step_count == 13  # 40 steps asked, cut to 13
    first.save(tmp_path / "m")
    again = now["t"] = trainer(pieces, seed=3)
    again.restore(ckpt.load(tmp_path / "m", with_discriminator=True))
    assert again.run(Budget(steps=40)) == "done" and again.step_count == 13  # the same asked: nothing more
    assert again.run(Budget(steps=60)) == "done" and again.step_count == 33  # 20 more asked: 20 more


def test_the_real_held_out_loss_is_the_same_each_time_and_falls_with_training(pieces):
    t = trainer(pieces, steps=30, warmup=1.0, eval_every=10, patience=100)
    first = t.held_out.loss(t.G, t._autocast())
    assert first == t.held_out.loss(t.G, t._autocast())
    history = []
    t.callback = lambda e: history.append(e["held_out"]) if "held_out" in e else None
    t.run()
    assert len(history) == 3 and history[-1] < first


def test_a_training_job_records_the_held_out_loss_and_says_the_warm_up_ended_early(pieces, monkeypatch, tmp_path):
    from musicgan import api

    calls = []

    def loss(self, G, autocast):  # lowest at the third measure, then no lower
        calls.append(1)
        return {1: 5.0, 2: 4.0, 3: 3.0}.get(len(calls), 3.5)

    monkeypatch.setattr(heldout.HeldOut, "loss", loss)
    config = TrainConfig(batch_size=8, window_bars=2, eval_every=2, patience=2, d_warmup_steps=1, holdout=0.1)
    job = api.TrainingJob(pieces, tmp_path / "run", config, Budget(steps=60), device="cpu")
    assert job.start()
    job.wait(120)
    assert job.state.status == "done", job.state.message
    assert [h["held_out"] for h in job.state.history if "held_out" in h][:3] == [5.0, 4.0, 3.0]
    assert "stopped falling at step 6" in job.state.message
    assert ckpt.load(tmp_path / "run").meta["held_out"]["best"]["step"] == 6


def test_dropout_drops_outputs_only_while_the_generator_learns_and_not_when_it_is_measured(pieces):
    t = trainer(pieces, dropout=0.5)
    G = t.G
    assert G.dropout == 0.5 and G.training and TrainConfig().dropout == 0.0
    b = t._batch()
    z = G.condition(t._latent(len(b.tokens)), b.keys)
    with torch.no_grad():
        learning = [G(b.tokens, z, b.codes) for _ in range(2)]
        assert not torch.equal(*learning)  # a new share dropped at each step
        G.eval()
        measured = G(b.tokens, z, b.codes)
        G.dropout = 0.0
        assert torch.equal(measured, G(b.tokens, z, b.codes))  # measured (and drawn) as if none were dropped
        G.dropout = 0.5
        G.train()
    # the held-out loss is measured with nothing dropped, and the generator goes on learning after
    assert t.held_out.loss(G, torch.autocast("cpu", enabled=False)) == t.held_out.loss(G, torch.autocast("cpu", enabled=False))
    assert G.training
    assert t.run() == "done" and t.skipped == 0 and t.best is not None
