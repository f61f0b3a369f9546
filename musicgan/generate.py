"""Noise -> tokens -> Roll -> MIDI: seeds, length, interpolation and variations.

Generation always runs on the CPU in float32: it is fast enough there (a fraction of a second
for 16 bars) and it makes the same checkpoint and seed give byte-identical MIDI on
every machine.

A seed fixes a global latent ``z`` and the per-step noise. The per-step noise is drawn bar by bar
from generators seeded with (seed, bar), so the first 8 bars of a 16-bar piece are the 8-bar
piece of the same seed. Interpolation moves both along great circles (slerp) between two seeds.

The critic. A checkpoint whose adversarial phase trained its discriminator as a critic draws
``candidates`` pieces per seed (the seed's own noise first, then noise from derived seeds) and
keeps one with probability proportional to exp(D's logit), D's estimate of p_real / p_generated
(Grover et al. 2019; Azadi et al. 2019), chosen with a random stream seeded by the seed: still
the same music for the same seed. A piece longer than the windows the critic learned on is
drawn a window at a time (:func:`segments`): the candidates of each window carry on from the
state the one chosen before them ended in (its z too; :class:`~musicgan.models.DrawState`),
each with noise of its own, and the critic judges them on that window (:func:`critic_logits`).
Of the critic's order, the candidates nearest the training music's share of parallel fifths and
octaves between beats go first (:func:`parallels_first`), in every window and in continuations
and harmonisations alike.
Interpolations and variations skip it (a choice would jump between candidates where they should
move smoothly), and the prefix property above then holds only at the ends of those windows.

The copy guard. A checkpoint carries a :mod:`musicgan.copyguard` index of its training music; a
candidate that quotes 2 consecutive bars of it is passed over for the critic's next choice, or
for further draws when every candidate quotes (see :func:`sample_rolls`). Interpolations and
variations do not use it, for the same reason as above.

Forms. A checkpoint carries the forms of its training music (:mod:`musicgan.form`): a seed draws
one, with a stream of its own, and its piece repeats its own bars where that piece of the music
repeated a phrase. The draw is cut where it goes from drawing to repeating or back; a repeated
bar is given to the model (``given``), which reads it as its own and draws on from there.

Endings. The app's pieces and continuations close on their tonic chord (``ending``;
:mod:`musicgan.ending`): the last bar is drawn on its own, its closing steps leaning toward the
tonic chord (:func:`toward_tonic`), and a candidate that closes goes first.

Openings. A new piece opens with a pickup, and its voices come in one by one, as often as its
model's music does (``opening``; :mod:`musicgan.upbeat`): the voices are given rests until they
come in, and a voice coming in is given ``STRIKE``, a note the model chooses.
"""
from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt, copyguard, data, ending as ending_, form, keys, metre, midi, upbeat, voiceleading, voices
from .batches import window_steps
from .given import check_range, whole_bars
from .keys import KEYS
from .midi import Roll
from .models import STRIKE, Discriminator, DrawState, Generator, sounding
from .voices import FIRST_PITCH, HOLD, REST

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "bach-chorales"
MAX_BARS = 256
GUARD_ROUND, GUARD_ROUNDS = 4, 6  # the copy guard's extra rounds: at least 4 candidates each, at most 6
ROUND_SEEDS = 4  # a segment's rounds order their candidates with the seeds seed + 4 * segment + round (see sample_rolls)
CLOSING_BIAS = 2.0  # added to the tonic chord's tonal bias on the steps where a piece may close (see toward_tonic)
GUARD_HEAT = 1.3  # each extra round draws at this factor of the temperature of the round before (see guarded_choice)


def noise_for(seed: int, n_steps: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (latent_dim,), step noise (n_steps, voices, vocab)), both standard normal, for a seed.
    The step noise comes in chunks of the model's longest bar, each from a stream of its own, so a
    longer piece of a seed begins with the shorter one."""
    z = torch.randn(cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
    chunk = cfg.longest_bar
    chunks = []
    for bar in range(math.ceil(n_steps / chunk)):
        g = torch.Generator().manual_seed((seed * 1_000_003 + bar + 1) % (2 ** 63))
        chunks.append(torch.randn(chunk, cfg.voices, cfg.vocab, generator=g))
    return z, torch.cat(chunks)[:n_steps]


def key_for(seed: int, generator: Generator) -> int | None:
    """The key of a seed's piece (:mod:`musicgan.keys`), drawn from the keys of the model's
    training music with a stream of its own; None for a model that does not take a key."""
    if not generator.cfg.key_input:
        return None
    rng = torch.Generator().manual_seed((seed * 998_244_353 + 4_242) % (2 ** 63))
    return int(torch.multinomial(generator.key_weights.double().cpu(), 1, generator=rng))


def piece_key(seed: int, generator: Generator, key: int | None = None) -> int | None:
    """The key a seed's piece is in: ``key`` when the caller chose one, else the seed's own
    (:func:`key_for`)."""
    return key_for(seed, generator) if key is None else key


def metre_for(seed: int, generator: Generator) -> tuple:
    """The metre of a seed's piece, drawn from the metres of the model's training music (as many
    bars of each as there were), with a stream of its own; a model of one metre always has it."""
    metres = generator.cfg.metres
    if len(metres) == 1:
        return metres[0]
    rng = torch.Generator().manual_seed((seed * 1_000_000_007 + 7_331) % (2 ** 63))
    return metres[int(torch.multinomial(generator.metre_weights.double().cpu(), 1, generator=rng))]


def piece_metre(seed: int, generator: Generator, chosen: tuple | None = None) -> tuple:
    """The metre a seed's piece is in: ``chosen`` when the caller chose one (a metre the model
    knows, else ValueError), else the seed's own (:func:`metre_for`)."""
    if chosen is None:
        return metre_for(seed, generator)
    chosen = tuple(chosen)
    if chosen not in generator.cfg.metres:
        known = ", ".join(metre.name(m) for m in generator.cfg.metres)
        raise ValueError(f"this model knows the metres {known}, not {metre.name(chosen)}")
    return chosen


def piece_pickup(seed: int, generator: Generator, piece_metre_: tuple, bars: int) -> int:
    """The steps of the pickup a new piece of ``seed`` in ``piece_metre_`` opens with (0: none;
    :func:`musicgan.upbeat.pickup_for`); a piece of one bar has none."""
    cfg = generator.cfg
    return upbeat.pickup_for(seed, generator.opens, cfg.metres, piece_metre_, cfg.steps_per_beat) if bars > 1 else 0


def piece_opening(seed: int, generator: Generator, piece_metre_: tuple, bars: int) -> tuple[int, np.ndarray]:
    """How a new piece of ``seed`` opens: (the steps of its pickup (:func:`piece_pickup`), (V,) the
    steps each voice rests from the piece's start): up to its pickup, and a voice past that until
    its entry where its voices come in one by one (:func:`musicgan.upbeat.entries_for`)."""
    cfg = generator.cfg
    pickup = piece_pickup(seed, generator, piece_metre_, bars)
    rests = np.full(cfg.voices, cfg.bar_steps(piece_metre_) - pickup if pickup else 0, np.int64)
    entry = upbeat.entries_for(seed, generator.entering, cfg.steps_per_beat)
    return pickup, rests if entry is None else rests + entry


def opening_bars(rests: np.ndarray, bar: int) -> int:
    """The bars of ``bar`` steps a piece's opening lies in (``rests``, :func:`piece_opening`): up to
    the one its last voice comes in (a pickup's: 1; 0 for a piece that opens on its first step)."""
    last = int(np.max(rests))
    return last // bar + 1 if last else 0


def piece_form(seed: int, forms: np.ndarray, bars: int, ending: bool, opened: int = 0) -> np.ndarray:
    """The sources of a seed's piece (:func:`musicgan.form.for_seed`), its first ``opened`` bars
    (:func:`opening_bars`) neither repeating a bar nor repeated: a pickup's bar, mostly rest, is no
    bar to play again, a repeat there would silence a voice's entry, and a repeat of it would bring
    the thin opening back."""
    sources = form.for_seed(seed, forms, bars, ending)
    sources[:opened] = -1
    sources[sources < opened] = -1
    return sources


def _conditioned(generator: Generator, z: torch.Tensor, key) -> torch.Tensor:
    """z (B, latent) with the key appended where the model takes one (:meth:`Generator.condition`):
    key is one int for all rows, a list of ints, or (B, 24) weights; None for a model without keys."""
    if not generator.cfg.key_input:
        return z
    if not isinstance(key, torch.Tensor):
        key = torch.tensor(key if isinstance(key, list) else [key] * len(z), dtype=torch.long)
    return generator.condition(z, key)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: keeps the noise's norm, so midpoints look like noise too."""
    a_flat, b_flat = a.flatten(), b.flatten()
    cos = torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm() + 1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.no_grad()
def sample_tokens(generator: Generator, z: torch.Tensor, step_noise: torch.Tensor, piece_metre: tuple,
                  temperature: float = 1.0, closing_keys: list | None = None, seed: int = 0) -> np.ndarray:
    """Tokens (B, T, V) of pieces all in ``piece_metre``. ``closing_keys``: each piece's key (None
    for a model without keys), and the pieces close (:mod:`musicgan.ending`) with no candidates
    to choose among (short pieces: interpolations, variations): the closing steps of their last
    bar lean toward the tonic chord (:func:`toward_tonic`); a piece whose voices do not sound it
    there draws its last bar again from where it stands, with fresh noise (of ``seed``'s
    candidates), up to GUARD_ROUNDS times, and one that does holds it to the end."""
    cfg = generator.cfg
    B, T = step_noise.shape[:2]
    codes = torch.from_numpy(cfg.metre_codes(piece_metre, T)).expand(B, -1)
    if closing_keys is None:
        return generator.sample(z, step_noise, codes, temperature=temperature)[0].numpy()
    last = T - cfg.bar_steps(piece_metre)
    lean = set(ending_.places(piece_metre, cfg.steps_per_beat))  # (counted from the last bar)
    body, state = generator.draw_on(generator.begin(z), step_noise[:, :last], codes[:, :last], temperature)
    ends = _draw_on(generator, state, step_noise[:, last:], codes[:, last:], temperature, None, lean)[0]
    tokens = torch.cat([body, ends], 1).numpy()
    closing = [_closing(piece, key, piece_metre, generator) for piece, key in zip(tokens, closing_keys)]
    for round_ in range(1, GUARD_ROUNDS + 1):
        open_ = [i for i, at in enumerate(closing) if at is None]
        if not open_:
            break
        noise = torch.stack([noise_for(candidate_seed(seed, round_ * B + i), T, cfg)[1][last:] for i in open_])
        again = _draw_on(generator, state.rows(open_), noise, codes[open_, last:], temperature, None, lean)[0].numpy()
        for i, bar in zip(open_, again):
            piece = np.concatenate([tokens[i, :last], bar])
            at = _closing(piece, closing_keys[i], piece_metre, generator)
            if at is not None:
                tokens[i], closing[i] = piece, at
    for i, at in enumerate(closing):
        if at is not None:
            tokens[i] = _closed(tokens[i], at, piece_metre, generator)
    return tokens


def _roll_meta(cfg, tempo_bpm, program, name, piece_metre, key=None):
    return {"steps_per_beat": cfg.steps_per_beat, "tempos": ((0, float(tempo_bpm)),),
            "time_signatures": ((0, *piece_metre),), "program": int(program), "name": name, "key": key}


def _check(bars: int, temperature: float):
    if not 1 <= bars <= MAX_BARS:
        raise ValueError(f"length must be 1 to {MAX_BARS} bars (got {bars})")
    if not 0.05 <= temperature <= 5:
        raise ValueError(f"temperature must be between 0.05 and 5 (got {temperature})")


def candidate_seed(seed: int, j: int) -> int:
    """The seed of a seed's j-th candidate (j = 0: the seed itself)."""
    return seed if j == 0 else (seed * 2_654_435_761 + j * 40_503 + 12_345) % (2 ** 62)


def critic_windows(cfg, n_steps: int, piece_metre: tuple, window_bars: int = 0) -> tuple[list[int], int]:
    """(starts, length) of the windows in which the critic judges a piece of ``n_steps`` steps in
    ``piece_metre``: whole bars of it, each window about as long as those it learned on
    (:func:`~musicgan.batches.window_steps` of ``window_bars``), the first at the start and the
    last at the end, the rest spread evenly between them on bar lines. A piece no longer than one
    window is one."""
    bar = cfg.bar_steps(piece_metre)
    window = max(1, round(window_steps(cfg, window_bars) / bar)) * bar
    if n_steps <= window:
        return [0], n_steps
    n = -(-n_steps // window)
    return [round(i * (n_steps - window) / (n - 1) / bar) * bar for i in range(n)], window


@torch.no_grad()
def critic_logits(critic: Discriminator, tokens: np.ndarray, piece_metre: tuple) -> torch.Tensor:
    """The critic's logit for each candidate (tokens: (k, T, V), in ``piece_metre``): the mean of
    its logits over the windows of :func:`critic_windows`. It learned to judge windows of one
    length; over a whole piece its pooled features (the pitch classes used, the mean and the
    extreme of its states) are not what it learned, and on 16-bar chorales judged whole its
    choices were busier than Bach's (docs/quality.md)."""
    k = len(tokens)
    starts, W = critic_windows(critic.cfg, tokens.shape[1], piece_metre, critic.window_bars)
    windows = np.concatenate([tokens[:, s:s + W] for s in starts])  # window-major: (len(starts) * k, W, V)
    one_hot = F.one_hot(torch.from_numpy(windows).long(), critic.cfg.vocab).float()
    codes = torch.from_numpy(critic.cfg.metre_codes(piece_metre, W)).expand(len(windows), -1)
    logits, _ = critic(one_hot, codes)
    return logits.reshape(len(starts), k).mean(0)


@torch.no_grad()
def choose(critic: Discriminator, tokens: np.ndarray, seed: int, piece_metre: tuple) -> list[int]:
    """The candidates (tokens: (k, T, V), in ``piece_metre``) in the order they are offered, drawn
    without replacement with probabilities softmax(D's logits, :func:`critic_logits`): the first
    is the critic's choice, and each next one is its choice among those left (when the copy guard
    passes over the ones before)."""
    weights = torch.softmax(critic_logits(critic, tokens, piece_metre).double(), 0)
    rng = torch.Generator().manual_seed(seed % 2 ** 63)
    return torch.multinomial(weights, len(weights), replacement=False, generator=rng).tolist()


def offered(critic: Discriminator | None, tokens: np.ndarray, seed: int, piece_metre: tuple,
            copies, roll_of, parallels: float | None, piece_seed: int, closes=None) -> tuple[int, int | None]:
    """(the first candidate offered, the first offered that is not passed over, or None when all
    are) among one round's candidates (tokens (k, T, V) as the critic judges them, by index): in
    the critic's order (:func:`choose`, seeded by ``seed``), or as drawn without a critic, those
    whose music (``roll_of(j)``) comes nearest the music's ``parallels`` first
    (:func:`parallels_first`, dithered by the piece's seed ``piece_seed``). ``copies(j)``: whether
    candidate j quotes the training music (the copy guard): it is passed over. ``closes`` (a
    piece's last bar, :mod:`musicgan.ending`): whether candidate j closes; those that do go
    first, and one that does not is passed over as one that copies is."""
    first = None
    order = choose(critic, tokens, seed, piece_metre) if critic is not None and len(tokens) > 1 else range(len(tokens))
    order = parallels_first(list(order), roll_of, parallels, piece_seed)
    if closes is not None:
        order = sorted(order, key=lambda j: not closes(j))
    for j in order:
        first = j if first is None else first
        if not copies(j) and (closes is None or closes(j)):
            return first, j
    return first, None


def parallels_first(order: list[int], roll_of, rate: float | None, seed: int) -> list[int]:
    """Candidates in ``order`` (the critic's), those whose music (``roll_of(j)``) comes nearest
    the parallel fifths and octaves between beats that the music the model learnt has in as many
    beats first, each distance's in the critic's order. ``rate``: the music's parallels per 100
    beats (:func:`musicgan.voiceleading.parallels`, as a teacher marks them and the benches count
    them); a piece's share of them is a whole number, rounded up or down at random (dithered, by
    the piece's ``seed``), so that pieces of any length have the music's share on average. None
    (a model that does not say its music's rate): ``order`` as it is. A rate of 0: the fewest
    first.

    The model's own penalty (:func:`musicgan.models.parallel_penalty`) sees two steps at a time:
    under a line that moves between the beats (a reel's sixteenths) it misses voices moving in
    parallels from beat to beat, and pieces of a model trained for 3 minutes on 20 chorales had
    three times the chorales' parallels. The fewest for every style took trecento music, which has
    3 or 4 per 100 beats, to 0.45, and string quartets, whose instruments double one another in
    octaves (14 per 100 beats), to 0.33; no more than the music's share took them to 1.8 and 2.7,
    and the nearest it to 3.0 and 6.5 (their 20 training pieces: 3.3 and 8.4; docs/quality.md)."""
    if rate is None or len(order) < 2:
        return list(order)
    counts = {j: voiceleading.parallel_count(roll_of(j)) for j in order}

    def off(j: int) -> int:  # how far from the music's share
        n, beats = counts[j]
        return abs(n - parallels_share(rate, beats, seed))
    return sorted(order, key=off)


def parallels_share(rate: float, beats: int, seed: int) -> int:
    """A piece's share of parallels (:func:`parallels_first`): ``rate`` per 100 beats in ``beats``
    beats, rounded up or down at random, with a stream of the seed's own (the same for every
    window of a piece), so that on average it is the rate."""
    dither = torch.rand((), generator=torch.Generator().manual_seed((seed * 1_000_000_021 + 5_557) % (2 ** 63)))
    return math.floor(rate * beats / 100 + float(dither))


def guarded_choice(first_round, more, offer, k: int):
    """What the copy guard leaves a seed: ``offer(candidates, round_)`` -> (the first offered,
    the first that does not copy or None), for the first round (``first_round``) and then, while
    every candidate copies, for up to GUARD_ROUNDS more (``more(done, size, heat)``: candidates
    ``done`` .. ``done + size - 1``, at least GUARD_ROUND of them, drawn at ``heat`` times the
    temperature); if every one copies, the first round's first offered all the same.

    Each extra round draws hotter than the one before (GUARD_HEAT): a model that has learnt a few
    pieces by heart draws the same quotes round after round at one temperature. Trained for 3 CPU
    minutes on 20 fiddle tunes, its pieces quoted 2 bars of them in 31% of their 4-bar clips with
    the rounds at one temperature, and in 3% with each round 1.3 times hotter, the clips as hard
    to tell from other tunes (two-sample 0.741 against 0.758; docs/quality.md). Up to 3 rounds
    left 20 tunes of O'Neill's collection, which nothing here was tuned on, quoted in 8% of the
    clips (31 of 330 windows gave up); up to 6 (at most 4.8 times the temperature, in 21 of the
    330) in none. A model that seldom quotes draws as before: rounds past the first are drawn
    only when a whole round copies."""
    first, kept = offer(first_round, 0)
    size, done = max(k, GUARD_ROUND), k
    for round_ in range(1, GUARD_ROUNDS + 1):
        if kept is not None:
            break
        kept = offer(more(done, size, GUARD_HEAT ** round_), round_)[1]
        done += size
    return first if kept is None else kept


def _draw(generator: Generator, seeds: list[int], first: int, k: int, end: int, temperature: float,
          seed_keys: list, piece_metre: tuple, state: DrawState | None = None, sources: np.ndarray | None = None,
          before: np.ndarray | None = None, lean: frozenset = frozenset(),
          rests: list | None = None) -> tuple[np.ndarray, DrawState]:
    """Candidates first .. first+k-1 of every seed, in one batch, all in ``piece_metre``: (their
    tokens (seeds, k, steps, V) from where ``state`` stands (the start when None) to step
    ``end``, the state each ends in (seed-major rows)). Each candidate draws with its own noise;
    from the start, from its own z in its seed's key, else on from its seed's row of ``state``.

    ``sources`` (seeds, bars): each seed's form (:mod:`musicgan.form`); a bar with a source is
    not drawn but repeats that bar of the candidate's piece: of ``before`` (seeds, steps so far,
    V), the seed's piece up to ``state``, or of what the candidate drew since. The model reads a
    repeated bar as its own, and draws on from there. ``lean``: the steps (counted in the piece)
    drawn :func:`toward_tonic`. ``rests``: each seed's steps from the piece's start that every
    voice is given a rest in (a pickup's bar, :mod:`musicgan.upbeat`; None: none)."""
    cfg = generator.cfg
    start = 0 if state is None else state.steps
    given = _resting(rests, k, start, end, cfg.voices)
    noise = [noise_for(candidate_seed(s, j), end, cfg) for s in seeds for j in range(first, first + k)]
    if state is None:
        state = generator.begin(_conditioned(generator, torch.stack([n[0] for n in noise]),
                                             [key for key in seed_keys for _ in range(k)]))
    else:
        state = state.rows(np.repeat(np.arange(len(seeds)), k))
    step_noise = torch.stack([n[1][start:] for n in noise])
    codes = torch.from_numpy(cfg.metre_codes(piece_metre, end)[start:]).expand(len(noise), -1)
    if sources is None:
        tokens, state = _draw_on(generator, state, step_noise, codes, temperature,
                                 None if given is None else torch.from_numpy(given), {t - start for t in lean})
        return tokens.numpy().reshape(len(seeds), k, end - start, cfg.voices), state
    before = np.zeros((len(seeds), start, cfg.voices), np.int64) if before is None else before
    tokens, state = _draw_in_form(generator, state, step_noise, codes, temperature, np.repeat(sources, k, 0),
                                  np.repeat(before, k, 0), cfg.bar_steps(piece_metre), lean, given)
    return tokens.reshape(len(seeds), k, end - start, cfg.voices), state


def _resting(rests: list | None, k: int, start: int, end: int, voices_: int) -> np.ndarray | None:
    """The given tokens (seeds * k, end - start, V) of a draw from step ``start`` to ``end`` where
    each seed's ``rests`` first steps of the piece are a rest in every voice (-1 elsewhere: drawn),
    for each of its k candidates; None where none is given. A seed's rests may be one count for
    every voice or a count for each (its voices' entries, :func:`musicgan.upbeat.entries`): where
    they differ, each voice strikes a note as its rest ends (``STRIKE``: the model draws its pitch),
    so that it does come in there. (A pickup's rest is the same for every voice: the model draws on
    from it as it will.)"""
    if not rests or max(np.max(r) for r in rests) < start:
        return None
    given = np.full((len(rests) * k, end - start, voices_), -1, np.int64)
    for i, rest in enumerate(np.repeat(np.stack([np.broadcast_to(r, (voices_,)) for r in rests]), k, 0)):
        for v in range(voices_):
            given[i, :max(0, rest[v] - start), v] = REST
            if rest.max() > rest.min() and start <= rest[v] < end:
                given[i, rest[v] - start, v] = STRIKE
    return None if (given == -1).all() else given


def _draw_on(generator: Generator, state: DrawState, step_noise: torch.Tensor, codes: torch.Tensor,
             temperature: float, given: torch.Tensor | None = None, lean=frozenset(),
             **line) -> tuple[torch.Tensor, DrawState]:
    """:meth:`Generator.draw_on`, with the steps ``lean`` (counted from this draw's first) drawn
    :func:`toward_tonic`: in parts, cut around them (a draw in parts is the draw in one).
    ``line``: a given line's arguments of ``draw_on`` (``extra`` for these steps, ``bass`` from
    the piece's first step, the sampling settings)."""
    T = step_noise.shape[1]
    lean = {t for t in lean if 0 <= t < T}
    if not lean:
        return generator.draw_on(state, step_noise, codes, temperature, given, **line)
    cuts = sorted({0, T} | lean | {t + 1 for t in lean})
    leaning, s = toward_tonic(generator), state.steps
    parts = []
    for a, b in zip(cuts, cuts[1:]):
        part = dict(line)
        if line.get("extra") is not None:
            part["extra"] = line["extra"][:, a:b]
        if line.get("bass") is not None:
            part["bass"] = line["bass"][:, :s + b]
        tokens, state = generator.draw_on(state, step_noise[:, a:b], codes[:, a:b], temperature,
                                          None if given is None else given[:, a:b], leaning if a in lean else None,
                                          **part)
        parts.append(tokens)
    return torch.cat(parts, 1), state


def _draw_in_form(generator: Generator, state: DrawState, step_noise: torch.Tensor, codes: torch.Tensor,
                  temperature: float, sources: np.ndarray, piece: np.ndarray, bar: int,
                  lean=frozenset(), rests: np.ndarray | None = None) -> tuple[np.ndarray, DrawState]:
    """The draw of :meth:`Generator.draw_on` from ``state`` (a row per piece; ``piece`` (rows,
    steps so far, V): their tokens up to it, whole bars of ``bar`` steps), with each piece's bars
    that have a source in ``sources`` (rows, bars; :mod:`musicgan.form`) not drawn but repeated
    (:func:`repeated`): (the tokens (rows, T, V), the state after them). ``lean``: as :func:`_draw_on`,
    the steps counted in the piece. ``rests``: tokens given besides (rows, T, V; -1: not given), a
    pickup's rest (:func:`_resting`)."""
    start = piece.shape[1]
    for b0, b1 in form.parts(sources, start // bar, start // bar + step_noise.shape[1] // bar):
        s0, s1 = b0 * bar - start, b1 * bar - start
        given = np.full((len(sources), (b1 - b0) * bar, piece.shape[2]), -1, np.int64) if rests is None \
            else rests[:, s0:s1].copy()
        for r in np.nonzero(sources[:, b0] >= 0)[0]:
            given[r] = repeated(piece[r], sources[r, b0:b1], bar)
        tokens, state = _draw_on(generator, state, step_noise[:, s0:s1], codes[:, s0:s1], temperature,
                                 torch.from_numpy(given) if (given != -1).any() else None,
                                 {t - b0 * bar for t in lean})
        piece = np.concatenate([piece, tokens.numpy()], 1)
    return piece[:, start:], state


def _sounding_before(tokens: np.ndarray, t: int) -> np.ndarray:
    """(V,) the token each voice sounds just before step t of ``tokens`` (T, V) (:func:`sounding`)."""
    return np.full(tokens.shape[1], REST, np.int64) if t == 0 else sounding(torch.from_numpy(tokens[:t]))[-1].numpy()


def repeated(piece: np.ndarray, sources, bar: int) -> np.ndarray:
    """The tokens that follow ``piece`` (steps, V) with its bars ``sources`` (of ``bar`` steps)
    again, one after another, note for note as they sounded there: a voice that holds a note (or
    a rest) into the bar there strikes that note (or rests) here, unless it sounds here already."""
    out = piece
    for a in sources:
        tokens = piece[a * bar:(a + 1) * bar].copy()
        there, here = _sounding_before(piece, a * bar), _sounding_before(out, len(out))
        lead = (tokens[0] == HOLD) & (there != here)
        tokens[0, lead] = there[lead]
        out = np.concatenate([out, tokens])
    return out[len(piece):]


def by_metre(seeds: list[int], metres: list) -> dict:
    """The positions of ``seeds`` grouped by their metre (pieces of one metre are drawn together)."""
    groups: dict = {}
    for i, m in enumerate(metres):
        groups.setdefault(m, []).append(i)
    return groups


def draw_windows(generator: Generator, seeds: list[int], n_steps: int, temperature: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw of ``n_steps`` per seed, each in its own key and metre, no critic: tokens
    (n, T, V), each step's code (n, T) and each piece's key (n,; -1 for a model without keys),
    in the order of ``seeds`` (for calibration)."""
    cfg = generator.cfg
    metres = [metre_for(s, generator) for s in seeds]
    piece_keys = [key_for(s, generator) for s in seeds]
    tokens = np.zeros((len(seeds), n_steps, cfg.voices), dtype=np.int64)
    codes = np.zeros((len(seeds), n_steps), dtype=np.int64)
    for m, where in by_metre(seeds, metres).items():
        group = [seeds[i] for i in where]
        tokens[where] = _draw(generator, group, 0, 1, n_steps, temperature, [piece_keys[i] for i in where], m)[0][:, 0]
        codes[where] = cfg.metre_codes(m, n_steps)
    return tokens, codes, np.array([-1 if k is None else k for k in piece_keys], dtype=np.int64)


def sample_rolls(generator: Generator, seeds, bars: int = 16, temperature: float = 1.0,
                 tempo_bpm: float = 100.0, program: int = 0, critic: Discriminator | None = None,
                 candidates: int = 1, avoid: np.ndarray | None = None, key: int | list | None = None,
                 metre: tuple | list | None = None, forms: np.ndarray | None = None,
                 parallels: float | None = None, ending: bool = False, opening: bool = False) -> list[Roll]:
    """One piece per seed; with a ``critic``, each the critic's choice among ``candidates`` draws,
    made a window at a time for a piece longer than its window (:func:`segments`): each window's
    candidates carry on from the state the one chosen before them ended in, and the critic judges
    them on that window (so the piece costs about what one draw of it costs).

    ``key`` (:mod:`musicgan.keys`, for a model that takes one): the key of every piece; None
    draws each seed's key from the keys of the training music (:func:`key_for`). ``metre``: the
    metre of every piece, one the model knows; None draws each seed's from the metres of the
    training music (:func:`metre_for`). A piece is ``bars`` bars of its metre, and its MIDI says so.
    Either may also be a list with one entry (a key, a metre or None) per seed; a seed's piece is
    the same whichever way its key and metre are given.

    ``avoid``: a :mod:`musicgan.copyguard` index of the training music. A candidate that copies
    2 bars of it is passed over for the critic's next choice (or the next draw); when a whole
    round copies, up to GUARD_ROUNDS more rounds of candidates are drawn for that seed, and if
    every one of them copies too, the first round's choice is kept all the same. With segments,
    the guard reads each one's candidates from 7 beats before it (every 2 bars of 4 beats that
    reach into it).

    ``forms``: the forms of the training music (:mod:`musicgan.form`): each seed's piece takes one
    of them, drawn with a stream of its own, and repeats its own bars where that piece did (a
    repeated bar is the one it repeats in every candidate). None: every bar is drawn.

    ``parallels``: the parallel fifths and octaves per 100 beats of the training music
    (``Checkpoint.sampling``): of the critic's candidates, those that keep the piece so far nearest
    the music's share of them go first (:func:`parallels_first`). None: the critic's order alone.

    ``ending``: each piece closes on its tonic chord (:mod:`musicgan.ending`): its last bar is
    drawn as a segment of its own (and is its own in its form), its closing steps leaning toward
    the tonic chord (:func:`toward_tonic`), and of its candidates one that closes goes first; when none of a round does, further rounds are drawn as the copy guard's
    are (a candidate that does not close is passed over as one that copies is). The piece closes
    where that candidate can; if no candidate of any round can, it ends as drawn. Off for clips
    cut from the middle of a piece (the benches' 4-bar clips).

    ``opening``: a piece opens with a pickup as often as the model's music does, of its music's
    length (:func:`musicgan.upbeat.pickup_for`): every voice is given a rest up to it (its first
    bar is a pickup's, held as the music's are: a whole bar whose music comes at its end), a bar
    its form does not repeat, and the piece ends as much before the end of its last bar (the
    last bar and the first make one whole bar); it closes on a place of its last bar before that.
    A candidate that rests through its pickup too, opening on a bar of silence, is passed over as
    one that copies is.
    Off for clips, as ``ending``. With ``opening`` too, a piece's voices come in one by one as often
    as its model's music's do (``Generator.entering``; :func:`musicgan.upbeat.entries_for`): a
    voice is given rests from the piece's first note until its entry, where it strikes a note (a
    madrigal's top voice alone for a bar, then two ...)."""
    _check(bars, temperature)
    cfg = generator.cfg
    seeds = [int(s) for s in seeds]
    k = candidates if critic is not None else 1
    keys_ = key if isinstance(key, list) else [key] * len(seeds)
    metres_ = metre if isinstance(metre, list) else [metre] * len(seeds)
    if len(keys_) != len(seeds) or len(metres_) != len(seeds):
        raise ValueError("give one key and one metre per seed, or one for all")
    seed_keys = [piece_key(s, generator, k_) for s, k_ in zip(seeds, keys_)]
    seed_metres = [piece_metre(s, generator, m_) for s, m_ in zip(seeds, metres_)]

    pieces: list = [None] * len(seeds)
    for piece_metre_, where in by_metre(seeds, seed_metres).items():
        n_steps = bars * cfg.bar_steps(piece_metre_)
        group, group_keys = [seeds[i] for i in where], [seed_keys[i] for i in where]
        bar = cfg.bar_steps(piece_metre_)
        opened = [piece_opening(s, generator, piece_metre_, bars) if opening else (0, np.zeros(cfg.voices, np.int64))
                  for s in group]
        pickups, rests = [p for p, _ in opened], [r for _, r in opened]
        sources = None if forms is None else \
            np.stack([piece_form(s, forms, bars, ending, opening_bars(r, bar)) for s, r in zip(group, rests)])
        ends, window = segments(critic, k, n_steps, piece_metre_)
        last_bar = n_steps - bar
        if ending and last_bar > 0 and last_bar not in ends:  # (the last bar drawn on its own)
            ends = sorted(ends + [last_bar])
        chosen, state = np.zeros((len(group), 0, cfg.voices), dtype=np.int64), None
        for segment, end in enumerate(ends):
            start = chosen.shape[1]
            # the guard reads from 7 beats before the segment: every 2 bars of 4 beats that reach into it
            judged, guarded = max(0, end - window), max(0, start - 7 * cfg.steps_per_beat)
            base = segment * ROUND_SEEDS  # (a round past the 3rd orders other candidates with a seed of the next segment's)
            closes_here = ending and end == n_steps
            lean = frozenset(n_steps - bar + p for p in ending_.places(piece_metre_, cfg.steps_per_beat)) \
                if closes_here else frozenset()
            drawn, drawn_state = _draw(generator, group, 0, k, end, temperature, group_keys, piece_metre_, state,
                                       sources, chosen, lean, rests)
            kept_tokens, kept_states = [], []
            for g, (seed, seed_key) in enumerate(zip(group, group_keys)):
                def more(done: int, size: int, heat: float) -> tuple:
                    tokens, rows = _draw(generator, [seed], done, size, end, temperature * heat, [seed_key], piece_metre_,
                                         None if state is None else state.rows([g]),
                                         None if sources is None else sources[g:g + 1], chosen[g:g + 1], lean,
                                         rests[g:g + 1])
                    return tokens[0], rows

                def offer(candidates: tuple, round_: int) -> tuple:
                    """(first, kept) as (tokens, state row) of candidates (their tokens, their states)"""
                    tokens, rows = candidates
                    whole = np.concatenate([np.repeat(chosen[g:g + 1], len(tokens), 0), tokens], 1)  # after the piece so far

                    @functools.cache
                    def roll_of(j: int) -> Roll:  # the piece so far, with candidate j (read once for both)
                        return voices.decode(whole[j], cfg.pitch_low, steps_per_beat=cfg.steps_per_beat,
                                             time_signatures=((0, *piece_metre_),))

                    def copies(j: int) -> bool:
                        return avoid is not None and copyguard.copies(data.cut(roll_of(j), guarded, end - guarded), avoid)

                    def passed_over(j: int) -> bool:  # it copies, or it would open on a bar of silence
                        return (start == 0 and pickups[g] > 0 and not (whole[j, :bar] >= FIRST_PITCH).any()) or copies(j)

                    @functools.cache
                    def closes(j: int) -> bool:
                        return _closing(whole[j], seed_key, piece_metre_, generator, pickups[g]) is not None

                    found = offered(critic, whole[:, judged:], seed + base + round_, piece_metre_, passed_over, roll_of,
                                    parallels, seed, closes if closes_here else None)
                    return tuple(None if j is None else (tokens[j], rows.rows([j])) for j in found)

                tokens, row = guarded_choice((drawn[g], drawn_state.rows(range(g * k, (g + 1) * k))), more, offer, k)
                kept_tokens.append(tokens)
                kept_states.append(row)
            chosen, state = np.concatenate([chosen, np.stack(kept_tokens)], 1), DrawState.cat(kept_states)
        if ending:
            for g, seed_key in enumerate(group_keys):
                at = _closing(chosen[g], seed_key, piece_metre_, generator, pickups[g])
                if at is not None:
                    chosen[g] = _closed(chosen[g], at, piece_metre_, generator, pickups[g])
        for i, seed, seed_key, tokens, short in zip(where, group, group_keys, chosen, pickups):
            pieces[i] = voices.decode(tokens[:n_steps - short], cfg.pitch_low,
                                      **_roll_meta(cfg, tempo_bpm, program, f"seed {seed}", piece_metre_, seed_key))
    return pieces


def toward_tonic(generator: Generator) -> torch.Tensor | None:
    """The tonal bias (2, 12) of draws that lean toward the tonic chord of their key: the model's
    own (``Generator.tonal_bias``) with CLOSING_BIAS added to the key's tonic, third and fifth,
    handed to the draw (:meth:`Generator.draw_on`); the model is not changed. None for a model
    that takes no key."""
    if not generator.cfg.key_input:
        return None
    bias = generator.tonal_bias.clone()
    bias[0, [0, 4, 7]] += CLOSING_BIAS
    bias[1, [0, 3, 7]] += CLOSING_BIAS
    return bias


def _closing(tokens: np.ndarray, key: int | None, piece_metre: tuple, generator: Generator,
             short: int = 0) -> int | None:
    """Where a piece of ``tokens`` can close (:func:`musicgan.ending.closing`) in ``key`` (see
    :func:`musicgan.ending.key_of`), on the places its model's music closes on first, before
    the last ``short`` steps (a piece that opened with a pickup of that length ends early by it)."""
    cfg = generator.cfg
    return ending_.closing(tokens, ending_.key_of(tokens, key, cfg.pitch_low), piece_metre, cfg.steps_per_beat,
                           cfg.pitch_low, generator.ends, short)


def _closed(tokens: np.ndarray, at: int, piece_metre: tuple, generator: Generator, short: int = 0) -> np.ndarray:
    """A piece of ``tokens`` closing at step ``at`` (:func:`musicgan.ending.closed`), its last
    chord sounding as long as its model's music holds one in ``piece_metre``, at most until the
    last ``short`` steps."""
    cfg = generator.cfg
    beats = float(generator.ends[1 + cfg.metres.index(piece_metre)]) if piece_metre in cfg.metres else 0.0
    end = len(tokens) - short
    return ending_.closed(tokens, at, ending_.held_to(at, end, cfg.steps_per_beat, beats) or (end if short else None))


def segments(critic: Discriminator | None, k: int, n_steps: int, piece_metre: tuple) -> tuple[list[int], int]:
    """(the step each segment of a piece ends on, the critic's window): with a critic choosing
    among k > 1 candidates, a piece longer than its window is drawn a window at a time, each
    segment carrying on from the candidate chosen before it (:func:`sample_rolls`); else in one."""
    if critic is None or k < 2:
        return [n_steps], n_steps
    window = critic_windows(critic.cfg, n_steps, piece_metre, critic.window_bars)[1]
    return list(range(window, n_steps, window)) + [n_steps], window


def interpolate_rolls(generator: Generator, seed_a: int, seed_b: int, n: int = 5, bars: int = 4,
                      temperature: float = 1.0, tempo_bpm: float = 100.0, program: int = 0,
                      key: int | None = None, metre: tuple | None = None, ending: bool = False) -> list[Roll]:
    """n pieces walking from seed_a to seed_b (both ends included). The key walks with them (the
    model is given a blend of the two seeds' keys) unless ``key`` fixes it; all are in seed_a's
    metre, or ``metre``. ``ending``: each closes where it can (:func:`sample_tokens`), in seed_a's
    key for the first half of the walk and seed_b's for the rest."""
    _check(bars, temperature)
    if not 2 <= n <= 32:
        raise ValueError("interpolation needs 2 to 32 steps")
    cfg = generator.cfg
    piece_metre_ = piece_metre(seed_a, generator, metre)
    n_steps = bars * cfg.bar_steps(piece_metre_)
    (za, na), (zb, nb) = noise_for(seed_a, n_steps, cfg), noise_for(seed_b, n_steps, cfg)
    ts = [i / (n - 1) for i in range(n)]
    z = torch.stack([slerp(za, zb, t) for t in ts])
    ka = kb = None
    if cfg.key_input:
        ka, kb = piece_key(seed_a, generator, key), piece_key(seed_b, generator, key)
        one_hot = F.one_hot(torch.tensor([ka, kb]), KEYS).float()
        z = _conditioned(generator, z, torch.stack([(1 - t) * one_hot[0] + t * one_hot[1] for t in ts]))
    step_noise = torch.stack([slerp(na, nb, t) for t in ts])
    tokens = sample_tokens(generator, z, step_noise, piece_metre_, temperature,
                           [ka if t < 0.5 else kb for t in ts] if ending else None, seed_a)
    return [voices.decode(tok, cfg.pitch_low, **_roll_meta(cfg, tempo_bpm, program, f"{seed_a}->{seed_b} {t:.2f}",
                                                           piece_metre_, ka if t < 0.5 else kb))
            for tok, t in zip(tokens, ts)]


def variation_rolls(generator: Generator, seed: int, n: int = 4, amount: float = 0.3, bars: int = 8,
                    temperature: float = 1.0, tempo_bpm: float = 100.0, program: int = 0,
                    key: int | None = None, metre: tuple | None = None, ending: bool = False) -> list[Roll]:
    """n pieces near a seed: its noise turned by ``amount`` (0..1) towards fresh noise; all in
    the seed's key and metre (or ``key``, ``metre``). ``ending``: each closes where it can
    (:func:`sample_tokens`)."""
    _check(bars, temperature)
    cfg = generator.cfg
    piece_metre_ = piece_metre(seed, generator, metre)
    n_steps = bars * cfg.bar_steps(piece_metre_)
    z0, n0 = noise_for(seed, n_steps, cfg)
    angle = amount * math.pi / 2
    zs, ns = [], []
    for i in range(1, n + 1):
        zi, ni = noise_for(seed * 7919 + 104729 * i, n_steps, cfg)
        zs.append(math.cos(angle) * z0 + math.sin(angle) * zi)
        ns.append(math.cos(angle) * n0 + math.sin(angle) * ni)
    in_key = piece_key(seed, generator, key)
    z = _conditioned(generator, torch.stack(zs), in_key)
    tokens = sample_tokens(generator, z, torch.stack(ns), piece_metre_, temperature, [in_key] * n if ending else None,
                           seed)
    return [voices.decode(tok, cfg.pitch_low, **_roll_meta(cfg, tempo_bpm, program, f"seed {seed} variation {i}",
                                                           piece_metre_, in_key))
            for i, tok in enumerate(tokens, 1)]


def opening(generator: Generator, roll: Roll, bars: int) -> tuple[Roll, np.ndarray, tuple]:
    """The first ``bars`` bars of ``roll`` as an opening for the model to continue: (the opening
    on the model's grid, its tokens (T, V), the metre at its end). ValueError, in words, for an
    opening the model cannot read: in a metre it does not know, or outside its pitch range."""
    cfg = generator.cfg
    opened = whole_bars(cfg, roll, bars, "the opening")
    check_range(cfg, opened.notes, "the opening")
    onset, sustain = opened.pianoroll(cfg.pitch_low, cfg.pitch_high, opened.n_steps)
    tokens = voices.encode(onset, sustain, cfg.voices)  # pitch tokens count from pitch_low here
    return opened, tokens, metre.metre_at(roll.time_signatures, opened.n_steps - 1)


def continue_rolls(generator: Generator, primer: Roll, seeds, bars: int = 8, primer_bars: int = 4,
                   temperature: float = 1.0, critic: Discriminator | None = None, candidates: int = 1,
                   avoid: np.ndarray | None = None, whole: bool = True, forms: np.ndarray | None = None,
                   parallels: float | None = None, ending: bool = False) -> list[Roll]:
    """Carry on from the first ``primer_bars`` bars of ``primer``: one piece per seed, ``bars``
    more bars in the opening's metre (at its end), key (estimated from it), tempo and instrument.

    The model reads the opening step by step as if it had drawn it (its state after the opening
    is the one teacher forcing gives), then draws on. With a ``critic`` it chooses among
    ``candidates`` continuations, and the copy guard (``avoid``) passes over continuations that
    quote 2 bars of the training music, as :func:`sample_rolls` does. ``whole``: the opening's own
    notes (on the model's grid) followed by the continuation; else the continuation alone.
    ``forms`` (:func:`sample_rolls`): a seed's continuation of an opening in one metre repeats
    its bars, the opening's among them, where its form says (:func:`continuation_form`).
    ``parallels``: as :func:`sample_rolls` (counted in the continuation). ``ending``: as
    :func:`sample_rolls`, the continuation closes on the opening's tonic chord: its last bar is
    drawn on its own, from where the continuation chosen before it stands, its closing steps
    leaning toward the tonic chord, a candidate that closes first."""
    _check(bars, temperature)
    cfg = generator.cfg
    opened, given_tokens, last_metre = opening(generator, primer, primer_bars)
    P = len(given_tokens)
    bar = cfg.bar_steps(last_metre)
    n_steps = P + bars * bar
    ts = opened.time_signatures  # the continuation stays in the metre the opening ends in
    codes = torch.from_numpy(cfg.step_codes(ts, n_steps)).clamp(min=0)
    key = keys.estimate(opened.notes) if cfg.key_input else None
    given = torch.full((n_steps, cfg.voices), -1, dtype=torch.long)
    given[:P] = torch.from_numpy(given_tokens)
    meta = dict(steps_per_beat=cfg.steps_per_beat, tempos=opened.tempos, program=opened.program)
    k = candidates if critic is not None else 1
    pieces = []
    closes_at = frozenset(n_steps - bar + p for p in ending_.places(last_metre, cfg.steps_per_beat))
    ends = [n_steps - bar, n_steps] if ending and bars > 1 else [n_steps]  # (the last bar drawn on its own)
    for seed in (int(s) for s in seeds):
        sources = None if forms is None else continuation_form(cfg, opened, P, last_metre, bars, seed, forms, ending)
        chosen, state = given_tokens.astype(np.int64), None  # (the piece so far, and where it stands)

        def as_roll(tokens: np.ndarray) -> Roll:
            decoded = voices.decode(tokens, cfg.pitch_low, name=f"{opened.name} continued, seed {seed}",
                                    time_signatures=ts, key=key, **meta)
            return _joined(opened, decoded, P)

        for segment, end in enumerate(ends):
            closes_here = ending and end == n_steps
            lean = closes_at if closes_here else frozenset()

            def draw(first: int, count: int, heat: float = 1.0) -> tuple[np.ndarray, DrawState]:
                """Candidates first .. first+count-1 on from the piece so far to step ``end``: (the
                piece with each (count, end, V), the state each ends in)."""
                noise = [noise_for(candidate_seed(seed, j), n_steps, cfg) for j in range(first, first + count)]
                step_noise, step_codes = torch.stack([n[1] for n in noise]), codes.expand(count, -1)
                if state is None:  # the opening read as given (a draw in parts is the draw in one)
                    z = _conditioned(generator, torch.stack([n[0] for n in noise]), key)
                    _, start = generator.draw_on(generator.begin(z), step_noise[:, :P], step_codes[:, :P],
                                                 temperature * heat, given[:P].expand(count, -1, -1))
                else:
                    start = state.rows([0] * count)
                s, so_far = len(chosen), np.repeat(chosen[None], count, 0)
                if sources is None:
                    after, start = _draw_on(generator, start, step_noise[:, s:end], step_codes[:, s:end],
                                            temperature * heat, None, {t - s for t in lean})
                    after = after.numpy()
                else:  # the bars after it drawn in the seed's form
                    after, start = _draw_in_form(generator, start, step_noise[:, s:end], step_codes[:, s:end],
                                                 temperature * heat, np.repeat(sources[None], count, 0), so_far, bar, lean)
                return np.concatenate([so_far, after], 1), start

            def offer(candidates: tuple, round_: int) -> tuple:
                """(first, kept) as (tokens, state row) of candidates (their tokens, their states)"""
                tokens, rows = candidates

                @functools.cache
                def after(j: int) -> Roll:  # candidate j's continuation (read once for both)
                    return _after(as_roll(tokens[j]), P)

                def copies(j: int) -> bool:
                    return avoid is not None and copyguard.copies(after(j), avoid)

                @functools.cache
                def closes(j: int) -> bool:
                    return _closing(tokens[j], key, last_metre, generator) is not None

                found = offered(critic, tokens[:, P:], seed + segment * ROUND_SEEDS + round_, last_metre, copies, after,
                                parallels, seed, closes if closes_here else None)
                return tuple(None if j is None else (tokens[j], rows.rows([j])) for j in found)

            chosen, state = guarded_choice(draw(0, k), draw, offer, k)
        at = _closing(chosen, key, last_metre, generator) if ending else None
        piece = as_roll(chosen if at is None else _closed(chosen, at, last_metre, generator))
        pieces.append(piece if whole else _after(piece, P))
    return pieces


def continuation_form(cfg, opened: Roll, P: int, last_metre: tuple, bars: int, seed: int,
                      forms: np.ndarray, ending: bool = False) -> np.ndarray | None:
    """The sources (:mod:`musicgan.form`) of the bars of a seed's continuation of an opening
    (``opened``, P steps, ending in ``last_metre``) by ``bars`` bars, counted from the opening's
    first bar: the seed's form, where the opening is whole bars of one metre and the form
    repeats a bar after it; else None (every bar after the opening drawn). A continuation begins
    with bars of its own: a phrase that the form would bring back at once, right after the
    opening (the chorales' first lines, played again as bars 5-8), is drawn."""
    bar = cfg.bar_steps(last_metre)
    if P % bar or any(tuple(ts[1:]) != tuple(last_metre) for ts in opened.time_signatures):
        return None
    first = P // bar
    sources = form.for_seed(seed, forms, first + bars, ending)
    for b, e in form.phrases(sources):
        if b <= first < e:
            sources[first:e] = -1
    return sources if (sources[first:] >= 0).any() else None


def _joined(opened: Roll, decoded: Roll, P: int) -> Roll:
    """The opening's own notes, then the notes drawn after step P (a note of the opening that the
    model holds on goes on sounding)."""
    notes = opened.notes.copy()
    drawn = decoded.notes
    for pitch, start, end, _ in drawn[(drawn[:, 1] < P) & (drawn[:, 2] > P)]:  # held across the join
        notes[(notes[:, 0] == pitch) & (notes[:, 2] == P), 2] = end
    later = drawn[drawn[:, 1] >= P]
    return replace(decoded, notes=midi._sorted_notes(np.concatenate([notes, later])))


def _after(roll: Roll, P: int) -> Roll:
    """The part of a roll from step P on (notes sounding into it start there), from its bar line."""
    notes = roll.notes[roll.notes[:, 2] > P].copy()
    notes[:, 1:3] = np.maximum(notes[:, 1:3] - P, 0)
    return replace(roll, notes=midi._sorted_notes(notes), length=max(roll.length - P, 0),
                   time_signatures=data.moved_time_signatures(roll.time_signatures, P, roll.n_steps - P))


def concatenate(rolls: list[Roll], gap_steps: int = 0) -> Roll:
    """Pieces one after another (each starting on a bar line, in its own metre) as one roll."""
    parts, offset, signatures = [], 0, []
    for roll in rolls:
        notes = roll.notes.copy()
        notes[:, 1:3] += offset
        parts.append(notes)
        signatures += [(offset + s, n, d) for s, n, d in roll.time_signatures]
        length = max(roll.n_steps, 1)
        bar = roll.steps_per_bar
        offset += -(-length // bar) * bar + gap_steps
    first = rolls[0]
    kept = [row for i, row in enumerate(signatures) if i == 0 or row[1:] != signatures[i - 1][1:]]
    same_key = len({roll.key for roll in rolls}) == 1  # (an interpolation may walk between two)
    return Roll(notes=midi._sorted_notes(np.concatenate(parts)), steps_per_beat=first.steps_per_beat,
                tempos=first.tempos, time_signatures=tuple(kept), program=first.program, name=first.name,
                key=first.key if same_key else None, length=offset - gap_steps)


def load_model(path=None) -> ckpt.Checkpoint:
    """A checkpoint for generation; ``None`` is the pretrained default."""
    return ckpt.load(DEFAULT_CHECKPOINT if path is None else path)


def defaults(checkpoint: ckpt.Checkpoint) -> tuple[float, int]:
    """(tempo in bpm, General MIDI program) of the checkpoint's training data."""
    data = checkpoint.meta.get("data", {})
    return float(data.get("tempo_bpm", 100.0)), int(data.get("program", 0))
