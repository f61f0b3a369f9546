"""musicgan.shards: a corpus prepared in parallel into memory-mapped shards."""
import numpy as np

from musicgan import data, midi, pickup, shards

from conftest import EXAMPLES


def test_prepared_corpus_matches_a_plain_load(tmp_path):
    (tmp_path / "in").mkdir()
    bad = [tmp_path / "in" / f"bad{i}.mid" for i in range(3)]
    for f in bad:
        f.write_bytes(b"not midi")
    unmarked = []  # two chorales as files that do not mark their pickups: both find them
    for path in EXAMPLES[1:3]:
        unmarked.append(tmp_path / "in" / f"unmarked-{path.name}")
        midi.write(pickup.as_written(midi.read(path))[0], unmarked[-1])
    files = EXAMPLES + unmarked
    # batches of 3 files: several shards from the small examples, and one batch of bad files only
    report = shards.prepare(files[:3] + bad + files[3:], tmp_path / "cache", workers=2, batch_files=3)
    assert len(report.read) == len(files) and [s[0] for s in report.skipped] == [f.name for f in bad]
    n_shards = len(list((tmp_path / "cache").glob("shard-*.npy")))
    assert n_shards == -(-len(files) // 3) and not list((tmp_path / "cache").glob("*.tmp.npy"))
    prepared = shards.load(tmp_path / "cache")
    plain = data.load(files, cache_dir=False)
    assert [r.name for r in prepared.rolls] == [r.name for r in plain.rolls]
    for a, b in zip(prepared.rolls, plain.rolls):
        assert np.array_equal(a.notes, b.notes) and a.tempos == b.tempos and a.time_signatures == b.time_signatures
        assert isinstance(a.notes.base, np.memmap) or isinstance(a.notes, np.memmap)
    assert prepared.report.notes == plain.report.notes and prepared.report.skipped == report.skipped
    assert prepared.report.pickups == plain.report.pickups == [(f.name, 1.0) for f in unmarked]


def test_the_index_does_not_depend_on_the_number_of_workers(tmp_path):
    import json
    import zipfile

    archive = tmp_path / "some.zip"  # zip members (read by the main process) among plain files
    with zipfile.ZipFile(archive, "w") as z:
        for f in EXAMPLES[:2]:
            z.writestr(f"inner/{f.name}", f.read_bytes())
        z.writestr("inner/broken.mid", b"MThd" + bytes(3))
    indexes = []
    for workers in (1, 2):
        report = shards.prepare([archive] + EXAMPLES, tmp_path / f"w{workers}", workers=workers, batch_files=4)
        assert len(report.read) == len(EXAMPLES) + 2 and report.skipped[0][0] == "some.zip/inner/broken.mid"
        indexes.append(json.loads((tmp_path / f"w{workers}" / "index.json").read_text()))
    assert indexes[0] == indexes[1]
    for i in range(indexes[0]["shards"]):
        assert (tmp_path / "w1" / f"shard-{i:05d}.npy").read_bytes() == (tmp_path / "w2" / f"shard-{i:05d}.npy").read_bytes()


def test_a_broken_cache_is_a_clear_error(tmp_path):
    import pytest
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(ValueError, match="prepare"):
        shards.load(tmp_path)


def test_training_streams_windows_from_a_prepared_corpus(tmp_path):
    import torch
    from musicgan.train import Budget, TrainConfig, Trainer, model_config_for

    shards.prepare(EXAMPLES, tmp_path / "cache", workers=1)
    corpus = shards.open_corpus(tmp_path / "cache")
    config = TrainConfig(batch_size=8, window_bars=2, transpose=1, d_warmup_steps=1, warmup=0.5)
    model = model_config_for(corpus, transpose=1, latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)
    in_memory = Trainer(data.load(EXAMPLES, cache_dir=False).rolls, model, config, device="cpu")
    trainer = Trainer(corpus, model, config, device="cpu", budget=Budget(steps=6))
    assert type(trainer.data).__name__ == "Streamed" and len(trainer.data) == len(in_memory.data)
    assert trainer.run() == "done" and trainer.adversarial_from == 3
    batch = trainer._batch(untransposed=True)
    T = in_memory.windows.config.window_steps
    assert batch.tokens.shape == (8, T, model.voices) and batch.tokens.max() < model.vocab
    # untransposed windows carry their piece's key, as the in-memory windows do
    assert set(batch.keys.tolist()) <= {k for k, n in enumerate(in_memory.data_meta["keys"]) if n}
    # ... and each step's metre and position: every window starts on a bar line
    bar_starts = {int(model.metre_codes(m, 1)[0]) for m in model.metres}
    assert set(batch.codes[:, 0].tolist()) <= bar_starts and batch.codes.min() >= 0
    assert trainer.data_meta["metres"] == in_memory.data_meta["metres"]
    assert trainer.data_meta["files"] == len(EXAMPLES)
    assert trainer.data_meta["keys"] == in_memory.data_meta["keys"]  # pieces in each key
    assert trainer.data_meta["ends"] == in_memory.data_meta["ends"]  # and how they end
    assert trainer.data_meta["opens"] == in_memory.data_meta["opens"]  # ... and begin
    assert trainer.data_meta.get("entries") == in_memory.data_meta.get("entries")  # ... and their voices come in
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())
