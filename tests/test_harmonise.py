"""Harmonising a melody: it stays note for note as the top voice; the voices below hear all of it."""
import io
import shutil
import subprocess
import sys

import mido
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musicgan import api, checkpoint as ckpt, harmonise, midi
from musicgan.batches import batches_for
from musicgan.models import LineReader
from musicgan.train import TrainConfig

from conftest import EXAMPLES, ROOT, make_midi, meta, off, on


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "musicgan", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)

MELODY = ROOT / "examples" / "melodies" / "old-hundredth.mid"


@pytest.fixture(scope="module")
def model():
    return api.load_model()


@pytest.fixture(scope="module")
def with_reader(model, tmp_path_factory):
    """The pretrained model with a harmoniser trained for a few steps on the example chorales."""
    folder = tmp_path_factory.mktemp("harmoniser") / "model"
    shutil.copytree(model.path, folder)
    rolls = [midi.read(p, model.model.steps_per_beat) for p in EXAMPLES[:8]]
    batches = batches_for(rolls, model.model, TrainConfig(), torch.device("cpu"))
    torch.set_num_threads(2)
    trained = harmonise.train_reader(model.generator, batches, steps=40, batch_size=16, seed=0)
    harmonise.save(folder, trained)
    return ckpt.load(folder)


def melody_notes(notes):
    """(pitch, start, end) of each note."""
    return notes[:, :3]


@pytest.mark.parametrize("source", [MELODY, EXAMPLES[9]], ids=["a melody", "the top line of a chorale"])
@pytest.mark.parametrize("reader", [False, True], ids=["clamped", "conditioned"])
def test_the_melody_comes_out_note_for_note_as_the_top_voice(model, with_reader, source, reader):
    checkpoint = with_reader if reader else model
    piece = api.compose_harmonisation(checkpoint, source, seed=4, audio=False)
    line, _ = harmonise.melody_of(checkpoint.generator, midi.read(source, checkpoint.model.steps_per_beat))
    roll = midi.read(piece.midi, checkpoint.model.steps_per_beat)
    tracks = mido.MidiFile(file=io.BytesIO(piece.midi)).tracks
    names = [next((m.name for m in t if m.type == "track_name"), None) for t in tracks[1:]]
    assert names == ["given", "musicgan"]  # the melody keeps a track of its own
    assert np.array_equal(melody_notes(piece.roll.notes[piece.given]), melody_notes(line.notes))  # note for note
    if source == MELODY:  # a file that is all melody: every note of it
        assert np.array_equal(melody_notes(line.notes), melody_notes(midi.read(MELODY).notes))
    assert len(line.notes) > 20 and (~piece.given).sum() > 2 * len(line.notes)  # voices below it, written
    drawn = piece.roll.notes[~piece.given]
    assert (drawn[:, 0] <= line.notes[:, 0].max()).mean() > 0.95  # ... below it
    source_roll = midi.read(source)
    assert roll.time_signatures == source_roll.time_signatures and roll.n_steps >= line.n_steps
    assert roll.tempo_bpm == pytest.approx(source_roll.tempo_bpm, rel=0.01)


def test_the_same_melody_model_and_seed_give_the_same_bytes(with_reader):
    first = api.compose_harmonisation(with_reader, MELODY, seed=2, audio=False)
    again = api.compose_harmonisation(with_reader, MELODY.read_bytes(), seed=2, audio=False)
    other = api.compose_harmonisation(with_reader, MELODY, seed=3, audio=False)
    assert first.midi == again.midi and first.midi != other.midi


def test_a_harmoniser_leaves_the_models_own_pieces_as_they_were(model, with_reader):
    """The reader is an add-on: the same seed writes the same piece with and without it, and a reader
    that has learnt nothing (its output layer is zero) harmonises exactly as clamping does."""
    assert api.compose(model, seed=3, bars=4, audio=False).midi == api.compose(with_reader, seed=3, bars=4, audio=False).midi
    melody = midi.read(MELODY, model.model.steps_per_beat)
    untrained = LineReader(model.model, 16).eval()
    clamped = harmonise.harmonise_rolls(model.generator, melody, [1])[0]
    read = harmonise.harmonise_rolls(model.generator, melody, [1], untrained)[0]
    assert np.array_equal(clamped.notes, read.notes)
    trained = harmonise.harmonise_rolls(model.generator, melody, [1], with_reader.harmoniser)[0]
    assert not np.array_equal(clamped.notes, trained.notes)


def anticipating(n: int, seed: int) -> list:
    """Two-voice pieces where the lower voice, on each beat, already plays the melody's next note
    an octave down: a voice that hears the melody only up to now can but guess."""
    rng = np.random.default_rng(seed)
    rolls = []
    for _ in range(n):
        tune = rng.integers(60, 72, 17)
        notes = [(p, 4 * k, 4 * k + 4, 80) for k in range(16) for p in (tune[k], tune[k + 1] - 12)]
        rolls.append(midi.Roll(notes=np.array(notes, dtype=np.int32), steps_per_beat=4))
    return rolls


def test_the_reader_hears_the_melody_still_to_come():
    """The reader's whole point: with the melody read backwards, a voice can anticipate it. A small
    model of the pieces above, trained by likelihood (clamping alone: no reader), then given a
    reader trained with the model frozen: on new pieces the lower voice's loss falls by half."""
    from musicgan.models import ModelConfig
    from musicgan.train import Budget, Trainer

    cfg = ModelConfig(voices=2, pitch_low=44, pitch_high=75, latent_dim=8, embed_dim=8, hidden=32, layers=1,
                      d_hidden=16, d_embed=16)
    trainer = Trainer(anticipating(40, 0), cfg, TrainConfig(warmup=1.0, batch_size=16, transpose=0, window_bars=2),
                      device="cpu", budget=Budget(steps=150))
    trainer.run()
    G = trainer.G.eval()
    config = TrainConfig(transpose=0, window_bars=2)
    reader = harmonise.train_reader(G, batches_for(anticipating(40, 0), cfg, config, torch.device("cpu")),
                                    steps=600, batch_size=16, hidden=32).reader
    batch = batches_for(anticipating(20, 1), cfg, config, torch.device("cpu")).draw(64, torch.Generator().manual_seed(0))
    z = G.condition(torch.randn(64, cfg.latent_dim), batch.keys)
    codes = batch.codes.clamp(min=0)
    with torch.no_grad():
        h = G.hidden_states(batch.tokens, z, codes)

        def loss(extra):
            logits = G.head_logits(h, batch.tokens, extra)[:, :, 1:]
            return F.cross_entropy(logits.reshape(-1, cfg.vocab), batch.tokens[:, :, 1:].reshape(-1)).item()

        plain, read = loss(None), loss(reader(batch.tokens[..., 0], codes))
    assert read < 0.5 * plain, (read, plain)


def test_the_fast_and_the_step_by_step_sampler_agree_with_a_reader(with_reader):
    G = with_reader.generator
    melody = midi.read(MELODY, G.cfg.steps_per_beat)
    line_roll, line = harmonise.melody_of(G, melody)
    T = len(line)
    codes = torch.from_numpy(G.cfg.step_codes(line_roll.time_signatures, T))[None]
    given = torch.full((1, T, G.cfg.voices), -1)
    given[0, :, 0] = torch.from_numpy(line)
    from musicgan.generate import noise_for
    z, noise = noise_for(5, T, G.cfg)
    z = G.condition(z[None], torch.tensor([7]))
    with torch.no_grad():
        extra = with_reader.harmoniser(given[..., 0], codes)
        fast, _ = G.sample(z, noise[None], codes, given=given, extra=extra)
    with torch.enable_grad():
        slow, _ = G.sample(z, noise[None], codes, given=given, extra=extra)
    assert torch.equal(fast[..., 0], given[..., 0]) and torch.equal(slow[..., 0], given[..., 0])
    assert (fast == slow).float().mean() > 0.9


def test_a_melody_the_model_cannot_take_gets_a_message(model, tmp_path):
    high = make_midi([[(0, on(100)), (480, off(100)), (0, on(102)), (480, off(102))]])
    with pytest.raises(ValueError, match="this model plays 33 to 93 .transpose it by octaves"):
        api.compose_harmonisation(model, high, audio=False)
    with pytest.raises(midi.MidiError):
        api.compose_harmonisation(model, b"MThd not really", audio=False)
    five = make_midi([[(0, meta("time_signature", numerator=5, denominator=4)), (0, on(60)), (480, off(60))]])
    with pytest.raises(ValueError, match="the melody is in 5/4; this model knows 4/4"):
        api.compose_harmonisation(model, five, audio=False)


def test_a_checkpoint_with_a_broken_harmoniser_is_refused(with_reader, tmp_path):
    import json

    folder = tmp_path / "broken"
    shutil.copytree(with_reader.path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["harmoniser"]["hidden"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="harmoniser"):
        ckpt.load(folder)


def test_cli_adds_a_harmoniser_and_harmonises(model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    result = run_cli("add-harmoniser", folder, *EXAMPLES[:3], "--minutes", "0.05", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "harmoniser added" in result.stdout and ckpt.load(folder).harmoniser is not None
    out = tmp_path / "harmonised.mid"
    result = run_cli("harmonise", MELODY, folder, "--out", out, "--seed", "3", "--program", "19")
    assert result.returncode == 0, result.stderr
    assert "harmonised" in result.stdout and "clamped" not in result.stdout
    roll = midi.read(out)
    assert roll.program == 19 and len(roll.notes) > 2 * len(midi.read(MELODY).notes)
    result = run_cli("harmonise", tmp_path / "missing.mid", "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
