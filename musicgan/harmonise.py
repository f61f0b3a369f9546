"""Harmonise a melody: the melody stays as it is, as the top voice; the model writes the voices below.

Clamping the top voice to the melody while the model draws the rest (what :meth:`Generator.sample`
does with ``given``) lets the lower voices hear the melody's notes up to now, but never the next
ones, and harmony has to anticipate them: a cadence is prepared before the melody arrives there.
So the melody is also read *backwards* by a small LSTM, the :class:`LineReader`. At each step its
output says what the melody does from that step to its end, and it enters every voice's head
(a term added to the head's hidden layer; see :meth:`Generator.head_logits`).

The reader is trained on its own, with the generator frozen (:func:`train_reader`): on windows
of the training music, the top voice of each is the melody, and the loss is the likelihood of
the voices below it. Its output layer starts at zero, so a reader that has not learnt anything
yet draws exactly as clamping alone does, and the generator's own pieces never change: a
checkpoint with a reader makes the same music from the same seed as without it.

With a critic, each harmonisation is the critic's choice among candidates, as for new pieces.
The copy guard is not used here: the melody may well be one of the training pieces' own.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors, save as save_safetensors

from . import checkpoint as ckpt, keys, metre, midi, voices
from .midi import Roll
from .models import Discriminator, Generator, LineReader

PREFIX = ckpt.HARMONISER
MAX_BARS = 128


@dataclass
class Harmoniser:
    reader: LineReader
    meta: dict  # steps, minutes, loss, what it was trained on (kept in the config as "harmoniser")


# ---------------------------------------------------------------------------------- training

def train_reader(generator: Generator, batches, steps: int | None = None, minutes: float | None = None,
                 seed: int = 0, batch_size: int = 64, lr: float = 2e-3, hidden: int = 128,
                 callback: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> Harmoniser:
    """Train a :class:`LineReader` for ``generator`` (kept frozen) on ``batches`` (a
    :class:`musicgan.batches.Batches` of its training music) for ``steps`` steps or ``minutes``.
    The loss: the likelihood of every voice below the top one, with the top voice's whole line
    read backwards. Only the reader learns, so only the heads are run with gradients."""
    if steps is None and minutes is None:
        raise ValueError("give steps or minutes")
    torch.manual_seed(seed)
    cfg = generator.cfg
    reader = LineReader(cfg, hidden).train()
    generator.eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(reader.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed)
    start, step, loss_avg = time.monotonic(), 0, None
    try:
        while True:
            elapsed = time.monotonic() - start
            if (steps is not None and step >= steps) or (minutes is not None and elapsed >= minutes * 60) or should_stop():
                break
            batch = batches.draw(batch_size, rng)
            codes = batch.codes.clamp(min=0)
            z = generator.condition(torch.randn(len(batch.tokens), cfg.latent_dim, generator=rng), batch.keys)
            with torch.no_grad():
                h = generator.hidden_states(batch.tokens, z, codes)
            logits = generator.head_logits(h, batch.tokens, reader(batch.tokens[..., 0], codes))
            loss = F.cross_entropy(logits[:, :, 1:].reshape(-1, cfg.vocab), batch.tokens[:, :, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reader.parameters(), 1.0)
            opt.step()
            step += 1
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            if callback is not None and step % 50 == 0:
                callback({"step": step, "loss": loss_avg, "elapsed_s": time.monotonic() - start})
    finally:
        for p in generator.parameters():
            p.requires_grad_(True)
    reader.eval()
    return Harmoniser(reader, {"steps": step, "minutes": round((time.monotonic() - start) / 60, 2),
                               "loss": None if loss_avg is None else round(loss_avg, 4), "hidden": hidden,
                               "voice": "top", "seed": seed, "lr": lr, "batch_size": batch_size})


def save(directory, harmoniser: Harmoniser) -> Path:
    """Add the harmoniser to the checkpoint folder ``directory`` (its weights beside the model's,
    its settings under ``harmoniser`` in the config); the model's own weights stay as they are."""
    directory = Path(directory)
    weights, config = ckpt._read_pair(directory)
    tensors = {k: v for k, v in load_safetensors(weights).items() if not k.startswith(PREFIX)}
    tensors.update({PREFIX + k: v.detach().cpu().contiguous() for k, v in harmoniser.reader.state_dict().items()})
    meta = json.loads(config)
    meta["harmoniser"] = harmoniser.meta
    return ckpt._write(directory, save_safetensors(tensors, metadata={"format": ckpt.FORMAT}),
                       json.dumps(meta, indent=2, sort_keys=True).encode())


# ---------------------------------------------------------------------------------- harmonising

def melody_of(generator: Generator, roll: Roll, max_bars: int = MAX_BARS) -> tuple[Roll, np.ndarray]:
    """The melody to harmonise: the top line of ``roll`` (all of it, for a monophonic file), on
    the model's grid, as (a roll of its notes, its tokens (T,) as the model's top voice), at most
    ``max_bars`` bars. ValueError, in words, for a melody the model cannot take."""
    cfg = generator.cfg
    roll = roll.on_grid(cfg.steps_per_beat)
    if not len(roll.notes):
        raise ValueError(f"{roll.name or 'the melody'} has no notes")
    lines = metre.bar_lines(roll.time_signatures, roll.n_steps, cfg.steps_per_beat)
    if len(lines) > max_bars:
        T = int(lines[max_bars])
        lines = lines[:max_bars]
    else:  # to the end of the last bar
        T = int(lines[-1]) + cfg.bar_steps(metre.metre_at(roll.time_signatures, int(lines[-1])))
    unknown = sorted(set(metre.metre_at(roll.time_signatures, int(b)) for b in lines) - set(cfg.metres))
    if unknown and cfg.metre_input:
        known = ", ".join(metre.name(m) for m in cfg.metres)
        raise ValueError(f"the melody is in {metre.name(unknown[0])}; this model knows {known}")
    onset, sustain = roll.pianoroll(0, 127, T)
    top = voices.encode(onset, sustain, 2)[:, 0]  # at each step the highest note (tokens of MIDI pitches)
    notes = voices.decode(top[:, None], 0).notes.copy()
    notes[:, 3] = int(np.median(roll.notes[:, 3]))
    low, high = int(notes[:, 0].min()), int(notes[:, 0].max())
    if low < cfg.pitch_low or high > cfg.pitch_high:
        raise ValueError(f"the melody's notes go from MIDI {low} to {high}; this model plays {cfg.pitch_low} "
                         f"to {cfg.pitch_high} (transpose it by octaves into that range)")
    melody = Roll(notes=notes, steps_per_beat=cfg.steps_per_beat, tempos=roll.tempos[:1],
                  time_signatures=tuple(ts for ts in roll.time_signatures if ts[0] < T),
                  program=roll.program, name=roll.name)
    return melody, np.where(top >= voices.FIRST_PITCH, top - cfg.pitch_low, top).astype(np.int64)


def harmonise_rolls(generator: Generator, melody: Roll, seeds, reader: LineReader | None = None,
                    temperature: float = 1.0, critic: Discriminator | None = None,
                    candidates: int = 1) -> list[Roll]:
    """One harmonisation of ``melody``'s top line per seed: the line stays exactly as it is, as the
    top voice, and the model writes the voices below, in the melody's key (estimated from it),
    metre, tempo and instrument. With a ``reader`` (a checkpoint's ``harmoniser``) the voices
    below hear the whole line; without one they hear it only up to each step (plain clamping). With
    a ``critic``, each piece is its choice among ``candidates`` harmonisations."""
    if not 0.05 <= temperature <= 5:
        raise ValueError(f"temperature must be between 0.05 and 5 (got {temperature})")
    from .generate import _conditioned, candidate_seed, choose, noise_for  # (generate imports this module)

    cfg = generator.cfg
    if cfg.voices < 2:
        raise ValueError("this model writes one voice: there are no voices below a melody to write")
    line_roll, line = melody_of(generator, melody)
    T = len(line)
    codes = torch.from_numpy(cfg.step_codes(line_roll.time_signatures, T)).clamp(min=0)
    key = keys.estimate(line_roll.notes) if cfg.key_input else None
    given = torch.full((T, cfg.voices), -1, dtype=torch.long)
    given[:, 0] = torch.from_numpy(line)
    with torch.no_grad():
        extra = None if reader is None else reader(given[None, :, 0], codes[None])
    k = candidates if critic is not None else 1
    first_metre = metre.metre_at(line_roll.time_signatures, 0)
    pieces = []
    for seed in (int(s) for s in seeds):
        noise = [noise_for(candidate_seed(seed, j), T, cfg) for j in range(k)]
        z = _conditioned(generator, torch.stack([n[0] for n in noise]), key)
        with torch.no_grad():
            tokens, _ = generator.sample(z, torch.stack([n[1] for n in noise]), codes.expand(k, -1), temperature,
                                         given=given.expand(k, -1, -1),
                                         extra=None if extra is None else extra.expand(k, -1, -1))
        tokens = tokens.numpy()
        j = choose(critic, tokens, seed, first_metre)[0] if k > 1 else 0
        decoded = voices.decode(tokens[j], cfg.pitch_low, name=f"{line_roll.name or 'melody'} harmonised, seed {seed}",
                                steps_per_beat=cfg.steps_per_beat, tempos=line_roll.tempos,
                                time_signatures=line_roll.time_signatures, program=line_roll.program)
        pieces.append(_with_melody(decoded, line_roll))
    return pieces


def _with_melody(decoded: Roll, melody: Roll) -> Roll:
    """The melody's own notes (its velocities), and the model's notes that are not the melody's."""
    mine = {(p, s) for p, s, _, _ in melody.notes.tolist()}
    drawn = np.array([n for n in decoded.notes.tolist() if (n[0], n[1]) not in mine], dtype=np.int32).reshape(-1, 4)
    return replace(decoded, notes=midi._sorted_notes(np.concatenate([melody.notes.astype(np.int32), drawn])))


def melody_mask(roll: Roll, melody: Roll) -> np.ndarray:
    """Which notes of ``roll`` are the melody's (pitch and start), as a boolean per note."""
    mine = {(p, s) for p, s, _, _ in melody.notes.tolist()}
    return np.array([(p, s) in mine for p, s, _, _ in roll.notes.tolist()], dtype=bool)
