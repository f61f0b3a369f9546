"""The GAN trainer: one :meth:`Trainer.step` that the CLI, the app and torchrun all drive.

Two phases (C-RNN-GAN and SeqGAN both pretrain):

1. Maximum-likelihood warm-up: teacher forcing, cross-entropy on the next step's voice tokens.
2. Adversarial: a bidirectional LSTM discriminator D learns to tell the generator's free-running
   draws from real music. By default G is then frozen and D becomes a *critic*: generation draws
   several candidates and keeps one with probability proportional to D's odds that it is real,
   exp(logit), which corrects G's distribution towards the data's (discriminator rejection
   sampling, Azadi et al. 2019; likelihood-free importance weighting, Grover et al. 2019; see
   :mod:`musicgan.generate`). With ``g_adversarial`` G also learns from D through
   straight-through Gumbel-softmax (so D sees hard one-hot tokens exactly like real data), the
   classic recurrent-GAN update; on held-out chorales it made the music worse in every setting
   we measured (README, "What the adversarial phase adds"), so it is off by default.

Every stabiliser of the G-updating mode is one named, switchable setting of :class:`TrainConfig`:

* ``fm_weight``         feature matching on D's pooled features (Salimans et al. 2016)
* ``mle_weight``        the likelihood loss kept as a regulariser in phase 2 (keeps G musical)
* ``label_smoothing``   one-sided: real targets 0.9 (Salimans et al. 2016)
* ``lr_g`` < ``lr_d``   two time-scale learning rates (Heusel et al. 2017)
* ``d_accuracy_cap``    skip D's update while it already tells real from fake this well, so D
                        cannot overpower G (DESIGN.md measured D loss -> 0.003 without it)
* ``d_warmup_steps``    D trains alone for a while when the adversarial phase starts

Events (losses, samples, progress) leave through ``callback(dict)``; nothing is printed.
Non-finite losses or gradients are skipped, never applied, and never reach a checkpoint.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt, copyguard, keys
from .settings import setting
from .data import WindowConfig, Windows
from .shards import ShardedCorpus, StreamingWindows
from .models import Discriminator, Generator, ModelConfig
from .voices import FIRST_PITCH, voices_needed, window_tokens


MIN_CRITIC_STEPS = 50  # a critic trained for fewer steps than this is not asked to choose samples


class TrainingError(RuntimeError):
    """Training cannot go on (no data, a diverged model ...), in plain words."""


class DeviceError(ValueError):
    pass


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; 'cuda', 'mps', 'cpu' force one."""
    name = (name or "auto").lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for, but no CUDA GPU is available here (use --device cpu or auto)")
    if name == "mps" and not has_mps:
        raise DeviceError("Apple MPS was asked for, but it is not available here (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r} (use auto, cuda, mps or cpu)") from None


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return "Apple GPU (MPS)" if device.type == "mps" else "CPU"


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. The fields made with :func:`~musicgan.settings.setting` are the
    ones people set (CLI flags and app widgets are built from them); the rest are for research."""

    batch_size: int = setting(64, "training windows per step", label="Batch size", minimum=1, maximum=65536)
    window_bars: int = setting(4, "length of a training window, in bars", label="Window (bars)",
                               minimum=1, maximum=16, step=1)
    hop_bars: int = 1
    transpose: int = setting(3, "augment the likelihood loss with shifts of up to N semitones (the "
                                "discriminator sees the music as it is)", label="Transpositions (semitones)",
                             minimum=0, maximum=12, step=1)
    warmup: float = setting(0.75, "share of the budget for the likelihood warm-up (1 = no adversarial phase)",
                            label="Share of time for the likelihood warm-up (1 = no GAN phase)",
                            minimum=0.0, maximum=1.0, step=0.05)
    g_adversarial: bool = setting(False, "the generator learns from the discriminator (straight-through "
                                         "Gumbel); by default the discriminator is trained as a critic that "
                                         "chooses among generated candidates",
                                  label="Generator learns from the discriminator")
    candidates: int = setting(4, "candidates per piece that the critic chooses from when generating (1: none)",
                              label="Candidates the critic chooses from", minimum=1, maximum=64, step=1)
    lr_mle: float = setting(2e-3, "learning rate of the likelihood warm-up", label="Likelihood learning rate",
                            minimum=1e-6, maximum=1.0)
    lr_g: float = setting(1e-4, "generator learning rate when it learns from the discriminator",
                          label="Generator learning rate (when it learns from D)", minimum=1e-7, maximum=1.0)
    lr_d: float = setting(1e-3, "discriminator learning rate", label="Discriminator learning rate",
                          minimum=1e-7, maximum=1.0)
    d_warmup_steps: int = 100  # adversarial phase: steps that train D alone first
    fm_weight: float = 1.0
    mle_weight: float = 1.0
    adv_weight: float = 0.5
    label_smoothing: float = 0.9
    d_accuracy_cap: float = 0.8
    gumbel_tau: float = 1.0
    grad_clip: float = 1.0
    max_bad_steps: int = 20  # non-finite steps in a row before training stops
    seed: int = setting(0, "random seed of the weights, batches and noise", label="Training seed", minimum=0)
    amp: bool = True  # bfloat16 autocast on CUDA, likelihood phase only

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Budget:
    """Stop after ``steps`` steps in all or ``minutes`` of training in all, whichever comes first."""

    steps: int | None = None
    minutes: float | None = None

    def progress(self, step: int, elapsed_s: float) -> float:
        parts = [0.0]
        if self.steps:
            parts.append(step / self.steps)
        if self.minutes:
            parts.append(elapsed_s / (60 * self.minutes))
        return min(1.0, max(parts))


def model_config_for(rolls, voices: int | None = None, transpose: int = 0, **overrides) -> ModelConfig:
    """A model config whose pitch range covers the data (plus the transposition margin) and whose
    voices hold all the notes of nearly every step (:func:`~musicgan.voices.voices_needed`).
    ``rolls``: a list of rolls or a prepared :class:`~musicgan.shards.ShardedCorpus`."""
    if isinstance(rolls, ShardedCorpus):
        low, high, spb = int(rolls.table[:, 4].min()), int(rolls.table[:, 5].max()), rolls.steps_per_beat
        # counted on at most 1,000 pieces spread over the corpus, not all of them
        pieces = (rolls.notes(int(i)) for i in np.unique(np.linspace(0, len(rolls) - 1, 1000).astype(int)))
    else:
        low = min(int(r.notes[:, 0].min()) for r in rolls)
        high, spb = max(int(r.notes[:, 0].max()) for r in rolls), rolls[0].steps_per_beat
        pieces = (r.notes for r in rolls)
    voices = voices or voices_needed(pieces)
    low, high = low - transpose, high + transpose
    return ModelConfig(voices=voices, pitch_low=max(0, low), pitch_high=min(127, max(high, low + 12)),
                       steps_per_beat=spb, **overrides).validate()


def _onset_rates(tokens: np.ndarray, steps_per_bar: int) -> np.ndarray:
    """tokens (N, T, V) -> (steps_per_bar, V): the share of steps that strike a new note."""
    onsets = np.asarray(tokens) >= FIRST_PITCH
    return np.stack([onsets[:, s::steps_per_bar].mean((0, 1)) for s in range(steps_per_bar)])


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


class Trainer:
    def __init__(self, rolls: list, model: ModelConfig | None = None, config: TrainConfig = TrainConfig(),
                 device: str | torch.device = "auto", callback: Callable[[dict], None] | None = None,
                 budget: Budget | None = None):
        if not len(rolls):
            raise TrainingError("no usable music to train on")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if distributed else 0
        self.world_size = torch.distributed.get_world_size() if distributed else 1
        if config.batch_size % self.world_size:
            raise TrainingError(f"the batch size {config.batch_size} does not split over {self.world_size} processes")
        self.config, self.callback = config, callback or (lambda event: None)
        self.budget = budget or Budget(steps=1000)
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.model = model or model_config_for(rolls, transpose=config.transpose)
        self.rolls = None if isinstance(rolls, ShardedCorpus) else rolls  # for the copy guard's index
        self._copy_index = None
        self._inherited_index = None  # the index of the model this run started from or resumes
        m = self.model
        self._setup_data(rolls)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.G, self.D = Generator(m).to(self.device), Discriminator(m).to(self.device)
        if m.key_input:
            self.G.key_weights.copy_(torch.tensor(self.data_meta["keys"], dtype=torch.float32))
        self.g_train, self.d_train = self.G, self.D
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train, self.d_train = DDP(self.G, device_ids=ids), DDP(self.D, device_ids=ids)
        self.opt_mle = torch.optim.Adam(self.G.parameters(), lr=config.lr_mle)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=(0.5, 0.999))
        self.batch_rng = torch.Generator().manual_seed(config.seed + 7919 * self.rank)
        self.noise_rng = torch.Generator(self.device).manual_seed(config.seed + 1 + 7919 * self.rank)
        self.step_count, self.elapsed_s, self.bad_in_a_row, self.skipped = 0, 0.0, 0, 0
        self.adversarial_from: int | None = None
        self.started_from: dict | None = None  # the model this run fine-tunes (see start_from)
        self._calibrated_for: int | None = None  # the step of the last calibration

    def _setup_data(self, rolls) -> None:
        """Windows to train on: all encoded up front (rolls in memory) or drawn from disk as
        batches need them (a prepared corpus, whose size then does not matter)."""
        c, m = self.config, self.model
        window_config = WindowConfig(
            window_bars=c.window_bars, hop_bars=c.hop_bars, beats_per_bar=m.beats_per_bar,
            steps_per_beat=m.steps_per_beat, transpose=(-c.transpose, c.transpose),
            pitch_range=(m.pitch_low, m.pitch_high))
        if isinstance(rolls, ShardedCorpus):
            # under torchrun each rank draws from its own pieces, as DistributedSampler would deal them
            mine = np.arange(self.rank, len(rolls), self.world_size)
            self.windows = StreamingWindows(rolls, window_config, m.voices, mine if len(mine) else None)
            self.tokens = None
            table = rolls.table
            if m.key_input:  # counted on at most 1,000 pieces spread over the corpus
                spread = np.unique(np.linspace(0, len(rolls) - 1, min(len(rolls), 1000)).astype(int))
                key_counts = np.bincount([keys.estimate(rolls.notes(int(i))) for i in spread], minlength=keys.KEYS)
            self.data_meta = {"files": len(rolls), "windows": len(self.windows), "bars": round(rolls.report.bars, 1),
                              "tempo_bpm": float(np.median(rolls.tempo_bpm)),
                              "program": int(np.bincount(table[:, 6], minlength=128).argmax())}
        else:
            self.windows = Windows(rolls, window_config)
            self.tokens = torch.from_numpy(window_tokens(self.windows, m.pitch_low, m.voices)).to(self.device)
            # D only ever sees the music as it is: transposed copies regularise the likelihood loss
            # (against memorising) but would teach D a flat key distribution that the real music lacks
            untransposed = torch.from_numpy(np.nonzero(self.windows.index[:, 2] == 0)[0])
            # under torchrun each rank draws from its own share, as DistributedSampler would deal them
            shard = torch.arange(self.rank, len(self.tokens), self.world_size)
            self.shard = shard if len(shard) else torch.arange(len(self.tokens))
            mine = untransposed[untransposed % self.world_size == self.rank]
            self.untransposed = mine if len(mine) else untransposed
            # the key of each window: its piece's, moved with the window's transposition
            piece_keys = np.array([keys.estimate(r.notes) for r in rolls], dtype=np.int64)
            index = self.windows.index
            window_keys = keys.transpose(piece_keys[index[:, 0]], index[:, 2]) if len(index) else np.zeros(0, np.int64)
            self.window_keys = torch.from_numpy(window_keys).to(self.device)
            key_counts = np.bincount(piece_keys, minlength=keys.KEYS)  # pieces in each key
            tempos = sorted(r.tempo_bpm for r in rolls)
            self.data_meta = {"files": len(rolls), "windows": len(self.windows),
                              "bars": round(sum(r.n_bars for r in rolls), 1), "tempo_bpm": tempos[len(tempos) // 2],
                              "program": int(np.bincount([r.program for r in rolls], minlength=128).argmax())}
        if m.key_input:
            self.data_meta["keys"] = [int(k) for k in key_counts]
        if len(self.windows) == 0:
            raise TrainingError(f"no {c.window_bars}-bar window of the music fits: it is shorter than that, or it "
                                f"leaves the model's pitch range ({m.pitch_low}-{m.pitch_high})")

    # ---------------------------------------------------------------- one step

    @property
    def phase(self) -> str:
        if self.adversarial_from is not None:
            return "adversarial"
        if self.config.warmup >= 1 or self.budget.progress(self.step_count, self.elapsed_s) < self.config.warmup:
            return "mle"
        self.adversarial_from = self.step_count
        self.calibrate(share=True)  # the critic then learns from the draws that generation makes
        return "adversarial"

    def _autocast(self):
        # bfloat16 speeds up the likelihood phase on CUDA. The adversarial phase stays in float32:
        # bf16 gradients through 64 steps of the straight-through sampler turned non-finite within
        # a few hundred steps on an H100, where float32 ran clean (measured).
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.config.amp and self.device.type == "cuda")

    def _batch(self, untransposed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of windows (this rank's share of the global batch), drawn with replacement:
        tokens (n, T, V) and the key of each window (n,)."""
        n = self.config.batch_size // self.world_size
        if self.tokens is None:
            tokens, window_keys = self.windows.sample(n, self.batch_rng, untransposed)
            return torch.from_numpy(tokens).to(self.device), torch.from_numpy(window_keys).to(self.device)
        pool = self.untransposed if untransposed else self.shard
        index = pool[torch.randint(len(pool), (n,), generator=self.batch_rng)].to(self.device)
        return self.tokens[index].long(), self.window_keys[index]

    def _noise(self, B: int, T: int):
        m = self.model
        z = torch.randn(B, m.latent_dim, generator=self.noise_rng, device=self.device)
        step_noise = torch.randn(B, T, m.voices, m.vocab, generator=self.noise_rng, device=self.device)
        return z, step_noise

    def _mle_loss(self, real: torch.Tensor, z: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.g_train(real, z) if logits is None else logits
        return F.cross_entropy(logits.float().reshape(-1, self.model.vocab), real.reshape(-1))

    def _apply(self, loss: torch.Tensor, opt, module) -> bool:
        """Backward and step, unless the loss or the gradients are not finite (then skip).
        Under torchrun every rank decides alike (a rank that skipped a backward would hang the rest)."""
        opt.zero_grad(set_to_none=True)
        if self._mean_over_ranks(torch.isfinite(loss).float()) == 1.0:
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
            if torch.isfinite(norm):
                opt.step()
                return True
            opt.zero_grad(set_to_none=True)
        return False

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.world_size > 1:
            value = value.detach().float().reshape(1).to(self.device)
            torch.distributed.all_reduce(value)
            value = value / self.world_size
        return float(value.item())

    def step(self) -> dict:
        """One training step; returns its metrics (also sent to the callback as a 'step' event)."""
        if self.world_size > 1:  # rank 0's clock rules: every rank switches phase and stops together
            clock = torch.tensor([self.elapsed_s], device=self.device)
            torch.distributed.broadcast(clock, 0)
            self.elapsed_s = float(clock.item())
        t0 = time.perf_counter()
        real, real_keys = self._batch()
        B, T, _ = real.shape
        z, step_noise = self._noise(B, T)
        phase = self.phase
        if phase == "mle":
            with self._autocast():
                loss = self._mle_loss(real, self.G.condition(z, real_keys))
            ok = self._apply(loss, self.opt_mle, self.G)
            metrics = {"mle": loss.item()}
        else:
            real_d, d_keys = self._batch(untransposed=True)
            # the fakes get the keys of D's real batch, so the two differ in nothing but the music
            metrics, ok = self._adversarial_step(real, real_d, self.G.condition(z, real_keys),
                                                 self.G.condition(z, d_keys), step_noise)
        if ok:
            self.bad_in_a_row = 0
        else:
            self.bad_in_a_row += 1
            self.skipped += 1
            if self.bad_in_a_row >= self.config.max_bad_steps:
                raise TrainingError(f"the losses were not finite for {self.bad_in_a_row} steps in a row; "
                                    "training stopped (the last good model is kept). Try lower learning rates.")
        self.step_count += 1
        self.elapsed_s += time.perf_counter() - t0
        event = {"event": "step", "step": self.step_count, "phase": phase, "skipped": not ok,
                 "elapsed_s": self.elapsed_s, "progress": self.budget.progress(self.step_count, self.elapsed_s),
                 **metrics}
        self.callback(event)
        return event

    def _adversarial_step(self, real, real_d, z, z_fake, step_noise):
        """real: a batch for the likelihood term (augmented), z: its conditioning; real_d:
        untransposed, for D; z_fake: the conditioning of the fakes D sees."""
        c, K = self.config, self.model.vocab
        B = real.shape[0]
        # D starts from scratch: let it learn alone first, so G's first adversarial gradients mean something.
        # As a critic it always learns alone, with hard labels and no cap: its odds weigh samples later.
        d_only = not c.g_adversarial or self.step_count - self.adversarial_from < c.d_warmup_steps
        real_label = c.label_smoothing if c.g_adversarial else 1.0
        if d_only:
            with torch.no_grad():
                _, fake = self.G.sample(z_fake, step_noise)
            logits = None
        else:  # one forward: the free-running draw (for D) and teacher forcing (for the likelihood term)
            logits, (_, fake) = self.g_train(real if c.mle_weight else None, z, step_noise, tau=c.gumbel_tau,
                                            z_sample=z_fake)

        # -- D: real -> label_smoothing, fake -> 0 (fake detached: this step trains D only)
        d_out, features = self.d_train(torch.cat([F.one_hot(real_d, K).float(), fake.detach()]))
        d_real, d_fake = d_out.float()[:B], d_out.float()[B:]
        f_real = features[:B].detach()
        loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, real_label))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        accuracy = self._mean_over_ranks(0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean()))
        capped = c.g_adversarial and accuracy >= c.d_accuracy_cap
        ok = True if capped else self._apply(loss_d, self.opt_d, self.D)
        metrics = {"d_loss": loss_d.item(), "d_accuracy": accuracy,
                   "diversity": diversity(fake.detach().argmax(-1)), "diversity_real": diversity(real_d)}
        if d_only:
            return metrics, ok

        # -- G: fool D (non-saturating), match D's features, stay likely under the data
        self.D.requires_grad_(False)  # D's plain module: its weights are not trained in this step
        d_fake_g, f_fake = self.D(fake)
        loss_adv = F.binary_cross_entropy_with_logits(d_fake_g.float(), torch.ones_like(d_fake_g.float()))
        loss_fm = (f_real.float().mean(0) - f_fake.float().mean(0)).pow(2).sum()
        loss_mle = self._mle_loss(real, z, logits) if c.mle_weight else torch.zeros((), device=self.device)
        loss_g = c.adv_weight * loss_adv + c.fm_weight * loss_fm + c.mle_weight * loss_mle
        ok = self._apply(loss_g, self.opt_g, self.G) and ok
        self.D.requires_grad_(True)
        metrics.update(g_loss=loss_adv.item(), fm=loss_fm.item(), mle=loss_mle.item())
        return metrics, ok

    # ---------------------------------------------------------------- whole runs

    def run(self, budget: Budget | None = None, should_stop: Callable[[], bool] = lambda: False,
            sample_every_s: float | None = None, sample_bars: int = 4) -> str:
        """Train until the budget is spent or ``should_stop()``; returns 'done' or 'stopped'.
        Ctrl-C (KeyboardInterrupt) counts as a stop. Sends 'sample' events every
        ``sample_every_s`` seconds when asked."""
        self.budget = budget or self.budget
        last_sample = self.elapsed_s
        try:
            while self.budget.progress(self.step_count, self.elapsed_s) < 1.0:
                if should_stop():
                    return "stopped"
                self.step()
                if sample_every_s is not None and self.elapsed_s - last_sample >= sample_every_s:
                    last_sample = self.elapsed_s
                    self.callback({"event": "sample", "step": self.step_count, "roll": self.sample(bars=sample_bars)})
        except KeyboardInterrupt:
            return "stopped"
        return "done"

    def _cpu_generator(self) -> Generator:
        """A float32 CPU copy of the generator, with its key weights and onset bias, for drawing
        (on the CPU, like :mod:`musicgan.generate`)."""
        G = Generator(self.model)
        G.load_state_dict({k: v.detach().float().cpu() for k, v in self.G.state_dict().items()})
        G.key_weights.copy_(self.G.key_weights.cpu())
        G.onset_bias.copy_(self.G.onset_bias.cpu())
        return G.eval()

    @torch.no_grad()
    def calibrate(self, rounds: int = 4, clips: int = 256, share: bool = False) -> float:
        """Fit the generator's onset bias (see :class:`~musicgan.models.Generator`): how often
        free-running draws strike a new note, at each position in the bar and in each voice, is
        brought to how often the training music does. Under teacher forcing the model predicts
        the music's rate, but drawing from its own output it struck fewer notes off the beat
        (0.117 against 0.171 a voice on the half beats, measured on 50 chorales): exposure bias.
        Starting from no bias, each round draws ``clips`` windows and moves the bias by the gap in
        log-odds (damped). Returns the mean absolute gap in rate before the last move. The same
        weights always give the same bias. Runs at the switch to the adversarial phase (so the
        critic learns from the draws generation makes), and on saving before it. ``share``: every
        rank calls this together and takes rank 0's bias (under torchrun)."""
        from .generate import _draw, key_for

        S = self.model.steps_per_bar
        T = self.config.window_bars * S
        if self.tokens is not None:
            real = self.tokens.cpu().numpy()
        else:
            real = self.windows.sample(512, torch.Generator().manual_seed(self.config.seed + 31))[0]
        target = _onset_rates(real, S)
        G = self._cpu_generator()
        G.onset_bias.zero_()
        gap = 0.0
        for r in range(rounds):
            seeds = [10 ** 9 + r * clips + i for i in range(clips)]
            drawn = _draw(G, seeds, 0, 1, T, 1.0, [key_for(s, G) for s in seeds])[:, 0]
            rates = _onset_rates(drawn, S)
            gap = float(np.abs(rates - target).mean())
            move = 0.7 * (_log_odds(target) - _log_odds(rates))
            G.onset_bias.add_(torch.from_numpy(move).float().clamp(-1, 1)).clamp_(-4, 4)
        if share and self.world_size > 1:  # every rank generates with rank 0's bias
            bias = G.onset_bias.to(self.device)
            torch.distributed.broadcast(bias, 0)
            G.onset_bias.copy_(bias.cpu())
        self.G.onset_bias.copy_(G.onset_bias)
        self._calibrated_for = self.step_count
        self.callback({"event": "calibrated", "step": self.step_count, "gap": gap})
        return gap

    @torch.no_grad()
    def sample(self, seed: int = 0, bars: int = 4):
        """A piece from the current generator (on the CPU, like :mod:`musicgan.generate`)."""
        from .generate import sample_rolls

        return sample_rolls(self._cpu_generator(), [seed], bars, tempo_bpm=self.data_meta["tempo_bpm"],
                            program=self.data_meta["program"])[0]

    # ---------------------------------------------------------------- checkpoints

    def meta(self) -> dict:
        c = self.config
        critic = self.adversarial_from is not None and not c.g_adversarial and c.candidates > 1 \
            and self.step_count - self.adversarial_from >= MIN_CRITIC_STEPS
        return {"steps": self.step_count, "elapsed_s": round(self.elapsed_s, 2), "world_size": self.world_size,
                "adversarial_from": self.adversarial_from, "skipped_steps": self.skipped,
                "sampling": {"candidates": c.candidates if critic else 1},
                "budget": {"steps": self.budget.steps, "minutes": self.budget.minutes},
                "train": asdict(self.config), "data": self.data_meta, "device": str(self.device),
                "started_from": self.started_from}

    def train_state(self) -> dict:
        state = {"batch_rng": self.batch_rng.get_state(), "noise_rng": self.noise_rng.get_state()}
        for name, opt in (("opt_mle", self.opt_mle), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            for pid, values in opt.state_dict()["state"].items():
                for key, value in values.items():
                    state[f"{name}.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        return state

    def copy_index(self):
        """The copy guard's index of the training music (built once; a prepared corpus, streamed
        from disk and maybe too large to index, has none), joined with the index of the model this
        run started from: a fine-tuned model must not quote the music its base learned either."""
        if self._copy_index is None and self.rolls is not None:
            self._copy_index = copyguard.build(self.rolls)
            self.rolls = None  # built (or too large): never again
        parts = [i for i in (self._copy_index, self._inherited_index) if i is not None]
        return np.union1d(*parts) if len(parts) == 2 else parts[0] if parts else None

    def save(self, directory, with_train_state: bool = True):
        # after the switch G's bias stays the one the critic learned from (for an exact resume)
        if self.adversarial_from is None and self._calibrated_for != self.step_count:
            self.calibrate()
        return ckpt.save(directory, self.G, self.D, self.meta(), self.train_state() if with_train_state else None,
                         self.copy_index())

    def start_from(self, checkpoint: "ckpt.Checkpoint") -> None:
        """Begin with a trained model's weights (fine-tuning): its generator, and its
        discriminator when it has one. Steps, optimisers and the budget start afresh. Build the
        trainer with ``model=checkpoint.model``: the music is then read in that model's pitch
        range, and windows that do not fit it are left out."""
        if checkpoint.model != self.model:
            raise TrainingError("the model to start from has other settings than this run's")
        self.G.load_state_dict(checkpoint.generator.state_dict())
        if checkpoint.discriminator is not None:
            self.D.load_state_dict(checkpoint.discriminator.state_dict())
        self.G.train()
        self.started_from = {"checkpoint": Path(checkpoint.path).name, "steps": checkpoint.steps}
        self._inherited_index = checkpoint.copy_index

    def restore(self, checkpoint: "ckpt.Checkpoint") -> None:
        """Continue from a checkpoint saved by :meth:`save`: weights, optimisers, RNGs, counters."""
        if checkpoint.model != self.model:
            raise TrainingError("the checkpoint's model settings differ from this run's; "
                                "resume with the same data and settings")
        if checkpoint.discriminator is None:
            raise TrainingError("the checkpoint has no discriminator; it cannot be resumed")
        self.G.load_state_dict(checkpoint.generator.state_dict())
        self.D.load_state_dict(checkpoint.discriminator.state_dict())
        self.G.onset_bias.copy_(checkpoint.generator.onset_bias)
        self.G.train()
        state = checkpoint.train_state
        try:
            self.batch_rng.set_state(state["batch_rng"])
            self.noise_rng.set_state(state["noise_rng"].to(self.noise_rng.get_state().dtype))
            for name, opt in (("opt_mle", self.opt_mle), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                sd = opt.state_dict()
                per_param: dict = {}
                for key, value in state.items():
                    if key.startswith(name + "."):
                        _, pid, field_name = key.split(".", 2)
                        per_param.setdefault(int(pid), {})[field_name] = value.to(self.device) \
                            if field_name != "step" else value
                sd["state"] = per_param
                opt.load_state_dict(sd)
        except (KeyError, ValueError, RuntimeError) as e:
            raise TrainingError(f"the checkpoint's training state is incomplete ({e}); it cannot be resumed") from None
        meta = checkpoint.meta
        self.step_count, self.elapsed_s = int(meta.get("steps", 0)), float(meta.get("elapsed_s", 0))
        if self.rank > 0:  # the checkpoint holds rank 0's random streams; the others start fresh ones
            self.batch_rng.manual_seed(self.config.seed + 7919 * self.rank + self.step_count)
            self.noise_rng.manual_seed(self.config.seed + 1 + 7919 * self.rank + self.step_count)
        self.adversarial_from = meta.get("adversarial_from")
        self.started_from = meta.get("started_from") if isinstance(meta.get("started_from"), dict) else None
        self._inherited_index = checkpoint.copy_index
        self.skipped = int(meta.get("skipped_steps", 0))


def diversity(tokens: torch.Tensor) -> float:
    """Mean pairwise Hamming distance of a batch of token sequences (0: all identical).
    A collapsing generator shows it here long before anyone listens."""
    flat = tokens.reshape(tokens.shape[0], -1)
    if flat.shape[0] < 2:
        return 0.0
    different = (flat[:, None, :] != flat[None, :, :]).float().mean(-1)
    n = flat.shape[0]
    return (different.sum() / (n * (n - 1))).item()
