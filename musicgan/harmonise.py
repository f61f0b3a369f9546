"""Harmonise a melody, or a bass: the given line stays as it is, as the top voice (a melody) or
the lowest (a bass); the model writes the other voices.

Clamping the top voice to the melody while the model draws the rest (what :meth:`Generator.sample`
does with ``given``) lets the lower voices hear the melody's notes up to now, but never the next
ones, and harmony has to anticipate them: a cadence is prepared before the melody arrives there.
So the line is also read *backwards* by a small LSTM, the :class:`LineReader`. At each step its
output says what the line does from that step to its end, and it enters every voice's head
(a term added to the head's hidden layer; see :meth:`Generator.head_logits`).

A bass cannot be clamped to one voice: the voices split each step highest first, so the bass is
whichever voice sounds lowest, and the voices above it are drawn before it. So at each step the
voices draw *above* the given bass until one takes it, and the rest fall silent
(:func:`musicgan.models.bass_logits`); a voice that would have rested hands the bass to the one
above it, the lowest the model wrote, so the bass adds no voice to the chord
(:func:`musicgan.models.bass_swap`), as readily as the music's number of voices says (an upper
voice of a thin texture keeps its note, and the bass joins it). With the bass reader, the voices
also hear where it goes.

A reader is trained on its own, with the generator frozen (:func:`train_reader`): on windows
of the training music, the top line (or the bottom line) of each is the given line, and the loss
is the likelihood of the other voices. Its output layer starts at zero, so a reader that has not
learnt anything yet draws exactly as clamping alone does, and the generator's own pieces never
change: a checkpoint with readers makes the same music from the same seed as without them.
After training, each reader fits how it draws (:func:`fit_sampling`): its own parallels penalty,
a temperature of the choice among pitches and, for a bass, its swap bias. Voices written around a
line they did not choose clash with it more often than the music's voices do; a lower pitch temperature makes each voice
more decided about its note without touching the rhythm (see :func:`musicgan.models.sharpen_pitches`).

With a critic, each harmonisation is the critic's choice among candidates, as for new pieces.
The copy guard is not used here: the line may well be one of the training pieces' own.
"""
from __future__ import annotations

import functools
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
from .ending import closed, key_of, sounds_tonic
from .generate import _conditioned, _draw_on, candidate_seed, choose, noise_for, parallels_first
from .given import check_range, whole_bars
from .models import Discriminator, Generator, LineReader, parallel_rate, sounding
from .train import parallel_move
from .voices import HOLD, REST

VOICES = ("top", "bottom")  # the given line: a melody (the top voice), or a bass (the lowest)
MAX_BARS = 128
ENDING_BARS = 2  # the bars an ending is drawn again in, when the critic's first choice does not close (see harmonise_rolls)
ENDING_ROUNDS = 2  # rounds of those bars drawn again while none closes on the tonic chord (see harmonise_rolls)
NAMES = {"top": "melody", "bottom": "bass"}  # each line's name, and in a sentence:
WHAT = {"top": "the melody", "bottom": "the bass line"}


@dataclass
class Harmoniser:
    reader: LineReader
    meta: dict  # voice, steps, minutes, loss, ... (kept in the config, see checkpoint.READERS)


@dataclass
class Line:
    """A given line on the model's grid: its notes (a roll), and its tokens (T,) as one voice."""
    voice: str
    roll: Roll
    tokens: np.ndarray

    def mask(self, roll: Roll) -> np.ndarray:
        """Which notes of ``roll`` (a harmonisation of this line) are the line's, as a bool per note."""
        mine = _starts(self.roll)
        return np.array([(p, s) in mine for p, s, _, _ in roll.notes.tolist()], dtype=bool)


def _starts(roll: Roll) -> set:
    return {(p, s) for p, s, _, _ in roll.notes.tolist()}


# ---------------------------------------------------------------------------------- training

def bottom_line(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest sounding line of voice tokens (B, T, V) as one voice's tokens (B, T), as
    :func:`line_of` reads a bass from a file, and the voice that plays it at each step (B, T; -1
    where nothing sounds). Voices fill from the top, so it is the last one that is not resting. A
    note the bass holds on while another voice takes it over is held, not struck again."""
    low = (tokens != REST).sum(-1) - 1
    at = low.clamp(min=0)[..., None]
    pitch = torch.where(low >= 0, sounding(tokens).gather(-1, at)[..., 0], REST)
    token = tokens.gather(-1, at)[..., 0]
    before = torch.cat([torch.full_like(pitch[:, :1], REST), pitch[:, :-1]], 1)
    low_before = torch.cat([torch.full_like(low[:, :1], -1), low[:, :-1]], 1)
    held = (pitch == before) & ((token == HOLD) | (low != low_before))
    return torch.where(low < 0, REST, torch.where(held, HOLD, pitch)), low


def _line_and_targets(tokens: torch.Tensor, voice: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the given line (B, T), which voices' tokens (B, T, V) the reader is trained to predict):
    every voice but the top one, for a melody; for a bass, where it sounds, the voices above it and
    the one that plays it (below it they must rest). The bass is given, but which voice takes it is
    the model's choice (see :func:`musicgan.models.bass_logits`): a voice above that plays a note
    near it where the music would have the bass makes one voice too many."""
    V = tokens.shape[-1]
    index = torch.arange(V, device=tokens.device)
    if voice == "top":
        return tokens[..., 0], (index > 0).expand(tokens.shape).clone()
    line, low = bottom_line(tokens)
    return line, (index <= low[..., None]) | (low[..., None] < 0)


def train_reader(generator: Generator, batches, steps: int | None = None, minutes: float | None = None,
                 seed: int = 0, batch_size: int = 64, lr: float = 2e-3, hidden: int = 128, voice: str = "top",
                 callback: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False, device=None) -> Harmoniser:
    """Train a :class:`LineReader` of ``voice``'s line ("top": a melody; "bottom": a bass) for
    ``generator`` (kept frozen) on ``batches`` (a :class:`musicgan.batches.Batches` of its training
    music) for ``steps`` steps or ``minutes``. The loss: the likelihood of the other voices (see
    :func:`_line_and_targets`), with the given line read backwards. Only the reader learns, so
    only the heads are run with gradients. ``device``: where to train (``batches`` must be there
    too); the generator goes back where it was, and the reader comes back on the CPU. The reader's
    first weights and the windows drawn are the same on any device."""
    if steps is None and minutes is None:
        raise ValueError("give steps or minutes")
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {', '.join(VOICES)} (got {voice!r})")
    torch.manual_seed(seed)
    cfg = generator.cfg
    device = torch.device(device or "cpu")
    home = next(generator.parameters()).device
    reader = LineReader(cfg, hidden).to(device).train()
    generator.to(device).eval()
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
            z = generator.condition(torch.randn(len(batch.tokens), cfg.latent_dim, generator=rng).to(device),
                                    batch.keys)
            with torch.no_grad():
                h = generator.hidden_states(batch.tokens, z, codes)
            line, targets = _line_and_targets(batch.tokens, voice)
            logits = generator.head_logits(h, batch.tokens, reader(line, codes))
            each = F.cross_entropy(logits.reshape(-1, cfg.vocab), batch.tokens.reshape(-1), reduction="none")
            weight = targets.reshape(-1).float()
            loss = (each * weight).sum() / weight.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reader.parameters(), 1.0)
            opt.step()
            step += 1
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            if callback is not None and step % 50 == 0:
                callback({"step": step, "loss": loss_avg, "elapsed_s": time.monotonic() - start})
        reader.cpu().eval()
        minutes_taken = round((time.monotonic() - start) / 60, 2)
        reader.parallel_bias, reader.pitch_temperature, reader.swap_bias = fit_sampling(
            generator.cpu(), reader, voice, batches, seed=seed)  # on the CPU
    finally:
        for p in generator.parameters():
            p.requires_grad_(True)
        generator.to(home)
    return Harmoniser(reader, {"steps": step, "minutes": minutes_taken,
                               "loss": None if loss_avg is None else round(loss_avg, 4), "hidden": hidden,
                               "voice": voice, "seed": seed, "lr": lr, "batch_size": batch_size,
                               "parallel_bias": round(reader.parallel_bias, 4),
                               "pitch_temperature": round(reader.pitch_temperature, 4),
                               "swap_bias": round(reader.swap_bias, 4)})


def _fixed(line: torch.Tensor, voice: str, V: int) -> dict:
    """The sampler's arguments that hold a given line (B, T): the top voice given, or a bass."""
    if voice == "bottom":
        return {"bass": line}
    given = torch.full((*line.shape, V), -1, dtype=torch.long)
    given[..., 0] = line
    return {"given": given}


def _within(fixed: dict, line: torch.Tensor, V: int) -> dict:
    """``fixed`` (see :func:`_fixed`) for one line (T,), with every voice resting before the line's
    first note and after its last: the piece begins and ends with the line (a melody that opens
    with a pickup written as a rest, a bass that comes in late). Within the line the model is free."""
    span = _span(np.asarray(line))
    if span is None:
        return fixed
    given = fixed["given"].clone() if "given" in fixed else torch.full((*line.shape, V), -1, dtype=torch.long)
    outside = torch.ones(line.shape, dtype=torch.bool)
    outside[span[0]:span[1]] = False
    given[outside] = REST
    return {**fixed, "given": given}


def _span(line: np.ndarray) -> tuple[int, int] | None:
    """The steps of a line (T,) from its first note's start to its last note's end (a hold
    sounds on: the last note ends after its holds); None for a line without notes."""
    struck, sounds = np.nonzero(line >= voices.FIRST_PITCH)[0], np.nonzero(line != REST)[0]
    return (int(struck[0]), int(sounds[-1]) + 1) if len(struck) else None


DISSONANT = (1, 2, 6, 10, 11)  # interval classes: seconds, the tritone, sevenths (compound ones too)


def dissonance_rate(tokens) -> tuple[int, int]:
    """(dissonant pairs, pairs) in tokens (N, T, V): at each step where some voice strikes a note,
    the pairs of voices sounding together, and those a second, a tritone or a seventh apart
    (compound ones too): the harmony a listener hears as each chord arrives."""
    tokens = torch.as_tensor(np.asarray(tokens)).long()
    s = sounding(tokens)
    V = tokens.shape[-1]
    upper = torch.ones(V, V, dtype=torch.bool).triu(1)
    heard = (s >= voices.FIRST_PITCH) & (tokens >= voices.FIRST_PITCH).any(-1, keepdim=True)
    pairs = heard[..., :, None] & heard[..., None, :] & upper
    apart = (s[..., :, None] - s[..., None, :]).abs() % 12
    dissonant = pairs & torch.isin(apart, torch.tensor(DISSONANT))
    return int(dissonant.sum()), int(pairs.sum())


def temperature_move(temperature: float, real: tuple[int, int], drawn: tuple[int, int]) -> float:
    """One round of fitting the pitch temperature (see :func:`musicgan.models.sharpen_pitches`):
    lowered while the draws are more dissonant than the music (:func:`dissonance_rate`), raised
    while less. The rate moves about a third as fast as the temperature's log (measured on the
    chorales' harmoniser: 0.8 in place of 1 took 7.5% off it), so the step is three times the log
    ratio, at most 0.3 a round. Fewer than 200 pairs (a line with at most one voice beside it): left alone."""
    if min(real[1], drawn[1]) < 200:
        return temperature
    want, got = (real[0] + 0.5) / (real[1] + 1), (drawn[0] + 0.5) / (drawn[1] + 1)
    return float(np.clip(temperature * np.exp(np.clip(-3 * np.log(got / want), -0.3, 0.3)), 0.5, 1.5))


def voices_heard(tokens, line) -> tuple[float, int]:
    """(voices sounding, steps) summed over the steps of tokens (N, T, V) where the given ``line``
    (N, T; one voice's tokens) sounds: how many voices a harmonisation of it has, on average."""
    heard = sounding(torch.as_tensor(line)[..., None])[..., 0] != REST
    count = (sounding(torch.as_tensor(tokens)) != REST).sum(-1)
    return float(count[heard].sum()), int(heard.sum())


SWAP_LIMIT = 6.0  # the swap bias stays within +-6 (a voice's odds of falling silent times e^6 at most)


def swap_move(bias: float, real: tuple[float, int], drawn: tuple[float, int]) -> float:
    """One round of fitting the swap bias of a given bass (see :func:`musicgan.models.bass_swap`):
    raised while its harmonisations sound more voices than the music (the bass taken as a voice of
    its own where the model had placed its bass already), lowered while fewer (the bass taking an
    upper voice's place in a thin texture). The move is twice the gap in voices, at most 1.5 a round."""
    if min(real[1], drawn[1]) < 200:
        return bias
    gap = drawn[0] / drawn[1] - real[0] / real[1]
    return float(np.clip(bias + np.clip(2 * gap, -1.5, 1.5), -SWAP_LIMIT, SWAP_LIMIT))


@torch.no_grad()
def fit_sampling(generator: Generator, reader: LineReader | None, voice: str, batches, rounds: int = 4,
                 clips: int = 128, seed: int = 0) -> tuple[float, float, float]:
    """How to draw harmonisations with ``reader`` (None: clamping the line, as a model without a
    harmoniser does; see ``Trainer.calibrate``): (the parallels penalty, the pitch temperature,
    the swap bias; the last for a bass only, else 0).
    The lines of ``clips`` windows of the training music are harmonised, and the first two are
    moved, from the model's own penalty and a temperature of 1, until the voices move in parallel
    fifths and octaves as often as the music's own do, and sound seconds, tritones and sevenths as
    often (:func:`dissonance_rate`), as the model's own penalty is fitted on its free pieces (see
    ``Trainer.calibrate``). With a line given and read ahead, the voices draw differently from free
    pieces: on the chorales they move in parallels more often, and they clash more with a melody
    they did not choose. And for a bass, the swap bias is moved until the harmonisations sound as
    many voices as the music where the bass sounds (:func:`swap_move`): the voice above one that
    falls silent is the model's bass in a full texture, an upper voice in a thin one."""
    cfg = generator.cfg
    batch = batches.draw(clips, torch.Generator().manual_seed(seed + 17))
    tokens, codes = batch.tokens.cpu(), batch.codes.clamp(min=0).cpu()
    line, _ = _line_and_targets(tokens, voice)
    noise = [noise_for(10 ** 9 + i, tokens.shape[1], cfg) for i in range(clips)]
    z = generator.condition(torch.stack([n[0] for n in noise]), batch.keys.cpu())
    step_noise, fixed = torch.stack([n[1] for n in noise]), _fixed(line, voice, cfg.voices)
    extra = None if reader is None else reader(line, codes)
    real_parallels, real_dissonance = parallel_rate(tokens), dissonance_rate(tokens)
    real_voices = voices_heard(tokens, line)
    beta, temperature, swap = float(generator.parallel_bias), 1.0, 0.0
    for _ in range(rounds):
        drawn, _ = generator.sample(z, step_noise, codes, extra=extra, parallel_bias=beta,
                                    pitch_temperature=temperature, swap_bias=swap, **fixed)
        beta = parallel_move(beta, real_parallels, parallel_rate(drawn))
        temperature = temperature_move(temperature, real_dissonance, dissonance_rate(drawn))
        if voice == "bottom":
            swap = swap_move(swap, real_voices, voices_heard(drawn, line))
    return beta, temperature, swap


def save(directory, harmoniser: Harmoniser) -> Path:
    """Add the harmoniser to the checkpoint folder ``directory`` (its weights beside the model's,
    its settings in the config; see ``checkpoint.READERS``), in place of one for the same voice;
    the model's own weights stay as they are."""
    directory = Path(directory)
    setting, prefix = ckpt.READERS[harmoniser.meta["voice"]]
    weights, config = ckpt._read_pair(directory)
    tensors = {k: v for k, v in load_safetensors(weights).items() if not k.startswith(prefix)}
    tensors.update({prefix + k: v.detach().cpu().contiguous() for k, v in harmoniser.reader.state_dict().items()})
    meta = json.loads(config)
    meta[setting] = harmoniser.meta
    return ckpt._write(directory, save_safetensors(tensors, metadata={"format": ckpt.FORMAT}),
                       json.dumps(meta, indent=2, sort_keys=True).encode())


# ---------------------------------------------------------------------------------- harmonising

def line_of(generator: Generator, roll: Roll, voice: str = "top", max_bars: int = MAX_BARS) -> Line:
    """The line to harmonise: the top line of ``roll`` (``voice`` "top": a melody) or its lowest
    ("bottom": a bass; all of it, for a one-line file), on the model's grid, at most ``max_bars``
    bars. ValueError, in words, for a line the model cannot take."""
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {', '.join(VOICES)} (got {voice!r})")
    cfg = generator.cfg
    what = WHAT[voice]
    if cfg.voices < 2:
        raise ValueError(f"this model writes one voice: there are no other voices to write with {what}")
    cut = whole_bars(cfg, roll, max_bars, what)
    tokens = _line_tokens(cut, voice)
    notes = line_notes(cut, voice, tokens)
    check_range(cfg, notes, what)
    line = replace(cut, notes=notes)
    return Line(voice, line, np.where(tokens >= voices.FIRST_PITCH, tokens - cfg.pitch_low, tokens).astype(np.int64))


def _line_tokens(roll: Roll, voice: str) -> np.ndarray:
    """The top (``voice`` "top") or lowest line of ``roll`` as one voice's tokens (T,), pitch
    tokens counting from MIDI 0."""
    onset, sustain = roll.pianoroll(0, 127, roll.n_steps)
    # voices.encode keeps the highest note in the first voice, and the lowest in the last
    return voices.encode(onset, sustain, 2)[:, 0] if voice == "top" else voices.encode(onset, sustain, 1)[:, 0]


def line_notes(roll: Roll, voice: str, tokens: np.ndarray | None = None) -> np.ndarray:
    """The notes of the top (``voice`` "top") or lowest line of ``roll``, at its notes' median
    loudness: the line :func:`line_of` takes (``tokens``: those of :func:`_line_tokens`, when
    already at hand)."""
    tokens = _line_tokens(roll, voice) if tokens is None else tokens
    notes = voices.decode(tokens[:, None], 0).notes.copy()
    notes[:, 3] = int(np.median(roll.notes[:, 3]))
    return notes


def harmonise_rolls(generator: Generator, line: Line, seeds, reader: LineReader | None = None,
                    temperature: float = 1.0, critic: Discriminator | None = None,
                    candidates: int = 1, clamped: tuple[float, float, float] | None = None,
                    parallels: float | None = None, ending: bool = False) -> list[Roll]:
    """One harmonisation of ``line`` (see :func:`line_of`) per seed: the line stays exactly as it
    is, as the top voice or the bass, and the model writes the other voices, in the line's key
    (estimated from it), metre, tempo and instrument. With a ``reader`` (a checkpoint's harmoniser
    for that voice) the voices hear the whole line, drawn as the reader fitted; without one they
    hear it only up to each step (clamping), drawn as ``clamped`` says (the parallels penalty and
    pitch temperature a trainer fitted for clamping: ``Checkpoint.clamped``), or else as free pieces
    are (plain clamping); ``clamped`` also holds the swap bias of a bass (see
    :func:`musicgan.models.bass_swap`). With a ``critic``, each piece is its choice among
    ``candidates`` harmonisations, those nearest the training music's ``parallels`` per 100 beats
    first (:func:`musicgan.generate.parallels_first`).

    ``ending``: the harmonisation closes on the tonic chord (:mod:`musicgan.ending`) where the line
    lets it (its last note in that chord). When the voices of the critic's choice do not sound the
    key's tonic chord, the tonic lowest, as the line's last note is struck, its last ENDING_BARS
    bars are drawn again from where it stands there (a harmonisation drawn in parts is the one
    drawn in one), that step leaning toward the tonic chord (:func:`musicgan.generate.toward_tonic`):
    up to ENDING_ROUNDS rounds of candidates, the critic's choice among those that close taken.
    The voices hold that chord as long as the line's last note sounds. So all before the cadence
    is the critic's first choice, as without an ending. On the 43 held-out chorales' melodies, the pretrained model's
    harmonisations ended on the tonic chord in 40% without it (Bach's own: 72%)."""
    if not 0.05 <= temperature <= 5:
        raise ValueError(f"temperature must be between 0.05 and 5 (got {temperature})")
    cfg = generator.cfg
    line_roll, T = line.roll, len(line.tokens)
    codes = torch.from_numpy(cfg.step_codes(line_roll.time_signatures, T)).clamp(min=0)
    key = keys.of_piece(line_roll.notes) if cfg.key_input else None
    tokens = torch.from_numpy(line.tokens)
    fixed = _within(_fixed(tokens, line.voice, cfg.voices), tokens, cfg.voices)
    with torch.no_grad():
        extra = None if reader is None else reader(tokens[None], codes[None])
    beta, pitch_temperature, swap_bias = (reader.parallel_bias, reader.pitch_temperature, reader.swap_bias) \
        if reader is not None else clamped if clamped is not None else (None, None, 0.0)
    k = candidates if critic is not None else 1
    first_metre = metre.metre_at(line_roll.time_signatures, 0)
    last = int(line_roll.notes[:, 1].max())  # (the line's last note is struck here)
    bars = metre.bar_lines(line_roll.time_signatures, T, cfg.steps_per_beat)
    cadence = int(bars[bars <= last][-ENDING_BARS:][0])  # (an ending is drawn again from here)
    pieces = []
    for seed in (int(s) for s in seeds):
        def draw(first: int, count: int, end: int = T, state=None, lean=frozenset()) -> tuple[np.ndarray, object]:
            """Candidates first .. first+count-1, from the start, or on from ``state`` (one row: each
            candidate carries on from it with its own noise), to step ``end``, the steps ``lean``
            drawn toward the tonic chord: (tokens from where they start, the state they end in)."""
            noise = [noise_for(candidate_seed(seed, j), T, cfg) for j in range(first, first + count)]
            if state is None:
                state = generator.begin(_conditioned(generator, torch.stack([n[0] for n in noise]), key))
            else:
                state = state.rows([0] * count)
            s = state.steps
            rows = lambda v: v[None].expand(count, *v.shape)  # noqa: E731
            given, bass = fixed.get("given"), fixed.get("bass")
            drawn, state = _draw_on(generator, state, torch.stack([n[1][s:end] for n in noise]),
                                    rows(codes[s:end]), temperature, None if given is None else rows(given[s:end]),
                                    {t - s for t in lean}, extra=None if extra is None else rows(extra[0, s:end]),
                                    bass=None if bass is None else rows(bass[:end]), parallel_bias=beta,
                                    pitch_temperature=pitch_temperature, swap_bias=swap_bias)
            return drawn.numpy(), state

        def as_roll(tokens: np.ndarray) -> Roll:
            return voices.decode(tokens, cfg.pitch_low, name=f"{line_roll.name or WHAT[line.voice]} harmonised, seed {seed}",
                                 steps_per_beat=cfg.steps_per_beat, tempos=line_roll.tempos,
                                 time_signatures=line_roll.time_signatures, program=line_roll.program, key=key)

        def ordered(candidates: np.ndarray, round_: int) -> list[int]:
            if k == 1:
                return [0]
            decoded = functools.cache(lambda j: as_roll(candidates[j]))  # (each candidate read once)
            return parallels_first(choose(critic, candidates, seed + round_, first_metre), decoded, parallels, seed)

        def closes(tokens: np.ndarray) -> bool:
            return sounds_tonic(tokens, last, key_of(tokens, key, cfg.pitch_low), cfg.pitch_low)

        candidates, _ = draw(0, k)
        first = ordered(candidates, 0)[0]
        chosen = candidates[first]
        if ending and not closes(chosen):  # its last bars again, from where the chosen one stands there
            state = draw(first, 1, cadence)[1] if cadence else None
            for round_ in range(1, ENDING_ROUNDS + 1):
                endings, _ = draw(round_ * k, k, state=state, lean={last})
                candidates = np.concatenate([np.repeat(chosen[None, :cadence], k, 0), endings], 1)
                closing = [j for j in ordered(candidates, round_) if closes(candidates[j])]
                if closing:
                    chosen = candidates[closing[0]]
                    break
        if ending and closes(chosen):  # (held to the line's end: the harmonisation ends with the line)
            chosen = closed(chosen, last, _span(line.tokens)[1])
        pieces.append(_with_line(as_roll(chosen), line_roll))
    return pieces


def _with_line(decoded: Roll, line: Roll) -> Roll:
    """The line's own notes (its velocities), and the model's notes that are not the line's: a drawn
    note is the line's when it starts where the line sounds its pitch (a bass may pass from voice
    to voice, and be drawn as two notes where it is one)."""
    sounds = np.full(max(decoded.n_steps, line.n_steps) + 1, -1)
    for p, s, e, _ in line.notes.tolist():
        sounds[s:e] = p
    drawn = decoded.notes[sounds[decoded.notes[:, 1]] != decoded.notes[:, 0]].astype(np.int32)
    return replace(decoded, notes=midi._sorted_notes(np.concatenate([line.notes.astype(np.int32), drawn])))
