"""Run by tests/test_distributed.py under torchrun: tiny training in both phases with DDP."""
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicgan import data  # noqa: E402
from musicgan.train import Budget, TrainConfig, Trainer, model_config_for  # noqa: E402

dist.init_process_group("gloo")
rank = dist.get_rank()
rolls = data.load(sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.mid")), cache_dir=False).rolls
config = TrainConfig(batch_size=8, window_bars=2, transpose=1, d_warmup_steps=1, warmup=0.5, g_adversarial=True)
model = model_config_for(rolls, transpose=1, latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16, d_embed=16)
trainer = Trainer(rolls, model, config, device="cpu", budget=Budget(steps=8))
assert trainer.world_size == 2 and len(trainer.data.shard) < len(trainer.data)
trainer.run()
# DDP keeps the replicas identical: compare a checksum of every weight across ranks
checksum = torch.stack([p.detach().double().sum() for p in list(trainer.G.parameters()) + list(trainer.D.parameters())])
gathered = [torch.zeros_like(checksum) for _ in range(2)]
dist.all_gather(gathered, checksum)
assert torch.allclose(gathered[0], gathered[1]), "replicas diverged"
if rank == 0:
    trainer.save(sys.argv[1])
dist.barrier()
dist.destroy_process_group()
