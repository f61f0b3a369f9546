"""The recurrent generator and discriminator, built from one :class:`ModelConfig`.

Generator (an LSTM that walks time step by step, as in C-RNN-GAN):

    input at step t   = the voices chosen at t-1 (embedded) + global latent z + the key of the
                        piece (one-hot, :mod:`musicgan.keys`) + the step's metre and position in
                        its bar (one-hots, :mod:`musicgan.metre`: a waltz model knows where its
                        bars begin);
                        each voice's embedding is that of its token plus that of the pitch it
                        sounds (a held note's pitch, which the token HOLD alone does not say)
    LSTM state at t=0 = a linear map of z and the key (so z colours the whole piece)
    output at step t  = one categorical choice per voice, highest voice first; each voice's head
                        sees the LSTM state and the choices already made for the voices above it
                        (again token + sounding pitch)
                        (the notes of one step are drawn jointly, not independently)

Per-step noise is the Gumbel noise that makes each draw; it is derived from standard normal
noise so that two seeds can be interpolated smoothly (see :mod:`musicgan.generate`).

Discriminator: a bidirectional LSTM (the C-RNN-GAN choice) over the one-hot voice tokens and each
step's metre and position in the bar; its mean-pooled features serve feature matching (Salimans
et al. 2016).
It sees exactly what the generator emits: hard one-hot tokens (straight-through Gumbel-softmax,
Jang et al. 2017), so it cannot win by telling probabilities from zeros and ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

import torch
from torch import nn
import torch.nn.functional as F

from .keys import KEYS
from .metre import bar_steps as metre_bar_steps, positions as metre_positions
from .settings import setting
from .voices import FIRST_PITCH, HOLD, REST, vocab_size

# in a draw's given tokens: the model draws, among pitches only (a voice that must strike a note
# here: a voice coming in, musicgan.upbeat.entries); -1 (any other negative): the model draws freely
STRIKE = -2


@dataclass(frozen=True)
class ModelConfig:
    voices: int = 4
    pitch_low: int = 36
    pitch_high: int = 84
    steps_per_beat: int = 4
    beats_per_bar: int = 4
    latent_dim: int = 32
    embed_dim: int = 32
    hidden: int = setting(256, "LSTM units in each layer of the generator", label="Generator width (LSTM units)",
                          minimum=1, maximum=4096)
    layers: int = setting(2, "LSTM layers of the generator", label="Generator layers", minimum=1, maximum=8)
    d_hidden: int = 128
    d_embed: int = 64
    # each voice's input also carries the pitch it sounds. With only the token, a held note's pitch
    # must be remembered by the LSTM; models without it re-struck the pitch they held about twice
    # as often as the music does (checkpoints from before this setting load with it off)
    sounding_input: bool = True
    # the generator is told the key of the music (musicgan.keys): without it, models trained on a
    # few files drifted from key to key within 4 bars (checkpoints from before load with it off)
    key_input: bool = True
    # the metres (time signatures) the model knows, most used first, and whether each step's metre
    # is an input. Checkpoints from before knew none: they saw every piece as 4/4 bars counted from
    # its first step (they load with metre_input off and metres ((beats_per_bar, 4),))
    metres: tuple = ((4, 4),)
    metre_input: bool = True
    # each step also reads which pitch classes sounded over the last beats, in any voice (a memory
    # that fades over MEMORY_BEATS beats; see Generator.memory). Without it the voices of a drawn
    # piece did not share one collection of pitch classes as the music's do: more pitch classes in
    # 4 bars, more of them heard in one voice alone (checkpoints from before load with it off)
    pitch_memory: bool = True

    @property
    def vocab(self) -> int:
        return vocab_size(self.pitch_low, self.pitch_high)

    @property
    def steps_per_bar(self) -> int:
        """Steps in a bar of the model's first (commonest) metre."""
        return self.bar_steps(self.metres[0])

    def bar_steps(self, metre) -> int:
        return metre_bar_steps(metre, self.steps_per_beat)

    @property
    def longest_bar(self) -> int:
        return max(self.bar_steps(m) for m in self.metres)

    @property
    def codes(self) -> int:
        """How many (metre, position in the bar) codes a step can have (see :func:`musicgan.metre.codes`)."""
        return len(self.metres) * self.longest_bar

    @property
    def frame_dim(self) -> int:
        """Each step's metrical input: its position in the bar (one-hot), then (with metre_input) its metre."""
        return self.longest_bar + (len(self.metres) if self.metre_input else 0)

    def step_codes(self, time_signatures, n_steps: int) -> np.ndarray:
        """Each step's code for a piece with these time signatures (``Roll.time_signatures``): its
        metre's index in ``metres`` times the longest bar, plus its position in its bar; -1 where
        the piece is in a metre the model does not know. A model without metre input counts bars
        of its one metre from step 0, whatever the piece says (as models did before metres)."""
        if not self.metre_input:
            return np.arange(n_steps, dtype=np.int64) % self.steps_per_bar
        position, which, metres = metre_positions(time_signatures, n_steps, self.steps_per_beat)
        index = np.array([self.metres.index(m) if m in self.metres else -1 for m in metres] or [0])
        known = index[which]
        return np.where(known >= 0, known * self.longest_bar + position, -1)

    def metre_codes(self, metre, n_steps: int) -> np.ndarray:
        """The codes of a piece of ``n_steps`` steps all in ``metre`` (one the model knows)."""
        return self.step_codes(((0, *metre),), n_steps)

    @property
    def memory_dim(self) -> int:
        """The pitch-class memory's width in the generator's input (12, or 0 without pitch_memory)."""
        return 12 if self.pitch_memory else 0

    @property
    def memory_decay(self) -> float:
        """How much of the pitch-class memory is left after a step: a time constant of MEMORY_BEATS beats."""
        return 1 - 1 / (MEMORY_BEATS * self.steps_per_beat)

    @property
    def cond_dim(self) -> int:
        """The generator's conditioning vector: the latent z, then (with key_input) the key one-hot."""
        return self.latent_dim + (KEYS if self.key_input else 0)

    def validate(self) -> "ModelConfig":
        """Raise ValueError for values no sane model has (a checkpoint's config is untrusted)."""
        bounds = {"voices": (1, 16), "pitch_low": (0, 127), "pitch_high": (0, 127),
                  "steps_per_beat": (1, 48), "beats_per_bar": (1, 16), "latent_dim": (1, 1024),
                  "embed_dim": (1, 1024), "hidden": (1, 4096), "layers": (1, 8),
                  "d_hidden": (1, 4096), "d_embed": (1, 4096)}
        for flag in FLAGS:
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"model setting {flag}={getattr(self, flag)!r} is not true or false")
        if not (isinstance(self.metres, tuple) and 1 <= len(self.metres) <= MAX_METRES and all(
                isinstance(m, tuple) and len(m) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in m)
                and 1 <= m[0] <= 32 and m[1] in (1, 2, 4, 8, 16, 32) for m in self.metres)
                and len(set(self.metres)) == len(self.metres)):
            raise ValueError(f"model setting metres={self.metres!r} is not a list of up to {MAX_METRES} time signatures")
        for f in fields(self):
            if f.name in FLAGS or f.name == "metres":
                continue
            value = getattr(self, f.name)
            low, high = bounds[f.name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"model setting {f.name}={value!r} is outside {low}..{high}")
        if self.pitch_low >= self.pitch_high:
            raise ValueError("pitch_low must be below pitch_high")
        if self.longest_bar > 128 or (not self.metre_input and len(self.metres) > 1):
            raise ValueError("the model's metres have bars longer than 128 steps, or several without metre input")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "metres" in d:
            if not isinstance(d["metres"], (list, tuple)):
                raise ValueError("model setting metres is not a list of time signatures")
            d["metres"] = tuple(tuple(m) if isinstance(m, (list, tuple)) else m for m in d["metres"])
        else:  # older checkpoints: every piece as bars of beats_per_bar quarters from its first step
            beats = d.get("beats_per_bar", 4)
            d["metres"] = ((beats, 4),) if isinstance(beats, int) and not isinstance(beats, bool) else beats
        return cls(**{"sounding_input": False, "key_input": False, "metre_input": False, "pitch_memory": False,
                      **d}).validate()


FLAGS = ("sounding_input", "key_input", "metre_input", "pitch_memory")
MEMORY_BEATS = 2  # the pitch-class memory's time constant, in beats
MAX_METRES = 16


def frame_table(cfg: ModelConfig) -> torch.Tensor:
    """(codes, frame_dim): each code's metrical input, the one-hot of its position in the bar
    followed (with metre_input) by the one-hot of its metre. Code = metre index * longest bar +
    position (see :func:`musicgan.metre.codes`)."""
    P, M = cfg.longest_bar, len(cfg.metres)
    code = torch.arange(cfg.codes)
    table = F.one_hot(code % P, P).float()
    if cfg.metre_input:
        table = torch.cat([table, F.one_hot(code // P, M).float()], 1)
    return table


def pitch_class_table(cfg: ModelConfig) -> torch.Tensor:
    """(K, 12): each token's pitch class as a one-hot; rows of zeros for the rest and the hold."""
    table = torch.zeros(cfg.vocab, 12)
    table[FIRST_PITCH:] = F.one_hot((torch.arange(cfg.vocab - FIRST_PITCH) + cfg.pitch_low) % 12, 12).float()
    return table


def sounding(tokens: torch.Tensor) -> torch.Tensor:
    """The token of the pitch each voice sounds: a new note's own token, carried through the
    holds after it; REST where the voice is silent (a hold after a rest is a rest, as in
    :func:`musicgan.voices.decode`). tokens (..., T, V) -> the same shape."""
    steps = torch.arange(tokens.shape[-2], device=tokens.device)[:, None]
    last = torch.where(tokens != HOLD, steps, -1).cummax(-2).values  # the latest step that is not a hold
    return torch.where(last < 0, REST, tokens.gather(-2, last.clamp(min=0)))


def _perfect(d: torch.Tensor) -> torch.Tensor:
    """Where an interval of ``d`` semitones (upwards) is a perfect fifth or octave, compound ones too."""
    return (d > 0) & ((d % 12 == 0) | (d % 12 == 7))


def perfect_intervals(before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`parallel_targets` needs of the step before, for every pair of voices at once
    (a sampler works it out once a step, not once a voice): ``d`` (B, V, V), voice u's sounding
    token minus voice v's, and where u sounds a perfect fifth or octave (compound ones too) above
    v, both sounding."""
    d = before[:, :, None] - before[:, None, :]
    sounds = before >= FIRST_PITCH
    perfect = _perfect(d) & sounds[:, :, None] & sounds[:, None, :]
    return d, perfect


def _parallels(before, now, struck, v: int, intervals=None) -> tuple[torch.Tensor, torch.Tensor]:
    d, perfect = perfect_intervals(before) if intervals is None else intervals
    b = now[:, :v]
    target = b - d[:, :v, v]
    return target, perfect[:, :v, v] & struck[:, :v] & (b != before[:, :v]) & (target >= FIRST_PITCH)


def parallel_targets(before: torch.Tensor, now: torch.Tensor, struck: torch.Tensor, v: int,
                     intervals: tuple | None = None) -> torch.Tensor:
    """For voice ``v`` about to choose at a step: (B, v) the token that would take it in parallel
    fifths or octaves (compound ones too) with each voice above it, or -1 where there is none.
    ``before``/``now``: each voice's sounding token (B, V) at the step before and at this one
    (voices above ``v`` have chosen); ``struck``: (B, V) which struck a new note now. A voice u above
    moving from a to b while v sounds c, a - c a perfect fifth or octave: v to b - (a - c) is a
    parallel. (Tokens of pitches differ as the pitches do.) ``intervals``: the step's
    :func:`perfect_intervals`, when already worked out."""
    target, ok = _parallels(before, now, struck, v, intervals)
    return torch.where(ok, target, -1)


def parallel_penalty(before, now, struck, v: int, beta: float, K: int, intervals: tuple | None = None) -> torch.Tensor:
    """(B, K): -beta on each token of :func:`parallel_targets` (once for each voice above it makes a
    parallel with)."""
    target, ok = _parallels(before, now, struck, v, intervals)
    return torch.zeros(len(target), K, device=target.device).scatter_add_(
        1, torch.where(ok, target, 0), ok.float() * -beta)


def bass_parallel_penalty(before: torch.Tensor, bass_before: torch.Tensor, bass_now: torch.Tensor,
                          bass_struck: torch.Tensor, beta: float, K: int) -> torch.Tensor:
    """(B, K): with a given bass, -beta on the token that would take a voice in parallel fifths or
    octaves with it. The bass is drawn last at each step (it is the lowest voice), so the penalty
    of :func:`parallel_penalty` never sees it; but it is given, so each voice knows where it goes.
    ``before``: the voice's sounding token at the step before; the bass's sounding token then and
    now, and whether it strikes now. The bass moving from a to b while the voice sounds c, c - a a
    perfect fifth or octave: the voice to b + (c - a) is a parallel."""
    d = before - bass_before
    target = bass_now + d
    ok = bass_struck & (bass_now != bass_before) & (bass_before >= FIRST_PITCH) & (before >= FIRST_PITCH) & \
        _perfect(d) & (target < K)
    return torch.zeros(len(target), K, device=target.device).scatter_add_(
        1, torch.where(ok, target, 0)[:, None], ok.float()[:, None] * -beta)


def parallel_rate(tokens) -> tuple[int, int]:
    """(parallels, steps) in tokens (N, T, V): steps where two voices that both strike new notes
    move in parallel fifths or octaves (as :func:`parallel_targets` defines them), and the steps."""
    tokens = torch.as_tensor(np.asarray(tokens)).long()
    s = sounding(tokens)  # (N, T, V)
    struck = tokens >= FIRST_PITCH
    count = 0
    for v in range(1, tokens.shape[-1]):
        target = parallel_targets(s[:, :-1].reshape(-1, s.shape[-1]), s[:, 1:].reshape(-1, s.shape[-1]),
                                  struck[:, 1:].reshape(-1, s.shape[-1]), v)
        mine = s[:, 1:, v].reshape(-1, 1)
        count += int(((target == mine) & (target >= 0) & struck[:, 1:, v].reshape(-1, 1)).sum())
    return count, tokens.shape[0] * max(tokens.shape[1] - 1, 0)


def interval_counts(tokens) -> np.ndarray:
    """(12,) how often each interval class (semitones apart, octaves folded) sounds between two
    voices in tokens (N, T, V), counted at the steps where some voice strikes a note: the vertical
    intervals a listener hears (what ``Generator.interval_bias`` is fitted to)."""
    tokens = torch.as_tensor(np.asarray(tokens)).long()
    s = sounding(tokens)
    onset = (tokens >= FIRST_PITCH).any(-1)
    counts = torch.zeros(12, dtype=torch.float64)
    for v in range(1, tokens.shape[-1]):
        for u in range(v):
            both = onset & (s[..., u] >= FIRST_PITCH) & (s[..., v] >= FIRST_PITCH)
            counts += torch.bincount(((s[..., u] - s[..., v]).abs() % 12)[both], minlength=12).double()
    return counts.numpy()


def sharpen_pitches(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, K) logits with the choice *among pitches* made at ``temperature`` (below 1: the likelier
    pitches likelier still), while the chance of striking a note at all, against holding or
    resting, stays as it was: the rhythm is the model's, the notes more decided. A harmoniser
    fits its own (see :func:`musicgan.harmonise.fit_sampling`)."""
    pitches = logits[:, FIRST_PITCH:]
    return torch.cat([logits[:, :FIRST_PITCH],
                      torch.logsumexp(pitches, -1, keepdim=True) + torch.log_softmax(pitches / temperature, -1)], -1)


def strike(logits: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """(B, K) ``logits`` of one voice at one step, with its rest and hold ruled out where ``where``
    (B,): there the voice strikes a note (a given STRIKE)."""
    if not where.any():
        return logits
    silent = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    silent[[REST, HOLD]] = True
    return logits.masked_fill(where[:, None] & silent, float("-inf"))


def bass_logits(logits: torch.Tensor, bass: torch.Tensor, bass_struck: torch.Tensor, sound: torch.Tensor,
                placed: torch.Tensor, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A given bass line, for one voice about to choose at a step: (its logits (B, K) with the bass
    in force, the token that plays the bass in it (B,)). ``bass``: the token of the pitch the bass
    sounds now (REST: silent, and the voices are free); ``bass_struck``: whether it strikes it now;
    ``sound``: the pitch this voice sounds so far; ``placed``: whether a voice above has taken the
    bass. Voices split a step highest first, so the bass is the lowest voice that sounds: until a
    voice takes it, each one plays a note above it (or holds one) or takes it; the last one must;
    after it, every voice rests. What the voice would have done that the bass forbids (rest, end
    the chord above the bass; go to the bass's note or under it), it does by taking the bass: their
    probabilities go to the bass's token. And where a voice would have rested while none has taken
    the bass, the one above it takes the bass in place of what it drew (:func:`bass_swap`): the
    model's lowest voice is its bass, so the voices are as many as the model would have written."""
    K = logits.shape[-1]
    token = torch.arange(K, device=bass.device)[None]
    holds = (sound == bass) & ~bass_struck  # the voice already sounds the bass's note, not struck again
    bass_token = torch.where(holds, HOLD, bass)
    allowed = (token > bass[:, None]) & ~torch.full((1, K), last, device=bass.device)  # notes above it
    allowed[:, HOLD] = (sound > bass) & (not last)
    taken = allowed.scatter(1, bass_token[:, None], False)  # (the bass's own token is merged below)
    merged = torch.logsumexp(logits.masked_fill(taken, float("-inf")), -1, keepdim=True)
    out = logits.masked_fill(~taken, float("-inf")).scatter(1, bass_token[:, None], merged)
    out = torch.where(placed[:, None], logits.masked_fill(token != REST, float("-inf")), out)
    return torch.where((bass == REST)[:, None], logits, out), bass_token


def bass_swap(logits: torch.Tensor, noise: torch.Tensor, sound: torch.Tensor, placed: torch.Tensor,
              bass: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
    """Whether the voice above this one takes the given bass in place of what it drew (B,): where
    no voice has taken the bass yet and this voice, drawn freely (``logits`` + ``noise``, the
    Gumbel noise it draws with), would fall silent. The voice above was then the lowest the model
    wrote, so it is the bass: taking the bass in the voice below would make one voice too many (a
    model that puts its bass an octave above the given one, or a step off it, would otherwise add
    a voice under its own chord). But a voice above may also be an upper voice of a thin texture
    (one voice of two, while the other rests), which the bass should join, not replace: ``bias``,
    added to the odds of falling silent in this draw, sets how often the voice above is taken for
    the bass (fitted to the music's number of voices, see :func:`musicgan.harmonise.fit_sampling`;
    0: as the model draws; below: less often)."""
    if bias:
        silent_tokens = torch.zeros_like(logits)
        silent_tokens[:, REST] = bias
        silent_tokens[:, HOLD] = torch.where(sound == REST, bias, 0.0)
        logits = logits + silent_tokens
    free = torch.argmax(logits + noise, -1)
    silent = (free == REST) | ((free == HOLD) & (sound == REST))
    return silent & ~placed & (bass != REST)


def gumbel_from_normal(noise: torch.Tensor) -> torch.Tensor:
    """Standard normal noise -> Gumbel(0, 1) noise, through the normal CDF."""
    u = 0.5 * (1 + torch.erf(noise / math.sqrt(2)))
    u = u.clamp(1e-7, 1 - 1e-7)
    return -torch.log(-torch.log(u))


@dataclass
class DrawState:
    """Where a free-running draw stands after its last step (:meth:`Generator.draw_on`), a row
    per piece: its conditioning vector ``z`` (:meth:`Generator.condition`), each LSTM layer's
    ``h`` and ``c``, each voice's ``codes`` (what it feeds the next step: its token, or for a
    hold, the token count + the pitch it holds), the token each voice sounds and whether it struck
    a note at the last step, the pitch-class memory (B, memory_dim; see :meth:`Generator.memory`),
    what each voice did the last time the piece stood at each code (B, codes, V; see
    ``Generator.echo_bias``) and how many steps were drawn."""
    z: torch.Tensor
    h: list
    c: list
    codes: list
    sound: torch.Tensor
    struck: torch.Tensor
    memory: torch.Tensor
    echo: torch.Tensor
    steps: int = 0

    def rows(self, index) -> "DrawState":
        """The state of the pieces ``index`` (a row may be taken more than once: candidates that
        all carry on from one piece)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.z.device)
        pick = lambda x: x.index_select(0, index)  # noqa: E731
        return DrawState(pick(self.z), [pick(x) for x in self.h], [pick(x) for x in self.c],
                         [pick(x) for x in self.codes], pick(self.sound), pick(self.struck), pick(self.memory),
                         pick(self.echo), self.steps)

    @staticmethod
    def cat(states: list) -> "DrawState":
        """The rows of several states (each as many steps in) as one."""
        if len({s.steps for s in states}) != 1:
            raise ValueError("states of pieces drawn to different steps cannot be joined")
        joined = lambda parts: [torch.cat(p) for p in zip(*parts)]  # noqa: E731
        return DrawState(torch.cat([s.z for s in states]), joined([s.h for s in states]), joined([s.c for s in states]),
                         joined([s.codes for s in states]), torch.cat([s.sound for s in states]),
                         torch.cat([s.struck for s in states]), torch.cat([s.memory for s in states]),
                         torch.cat([s.echo for s in states]), states[0].steps)


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # while training, the share of the LSTM's outputs that teacher forcing drops before the heads
        # (set by the trainer; the draws never drop any)
        self.dropout = 0.0
        V, K, E, H = cfg.voices, cfg.vocab, cfg.embed_dim, cfg.hidden
        self.embed = nn.Parameter(torch.randn(K, E) * 0.1)  # used as one_hot @ embed (straight-through)
        # the sounding pitch's embedding (indexed like tokens; HOLD's row is never used)
        self.pitch_embed = nn.Parameter(torch.randn(K, E) * 0.1) if cfg.sounding_input else None
        self.init_state = nn.Linear(cfg.cond_dim, 2 * cfg.layers * H)
        # how often each key occurs in the training music: generation draws a seed's key from it
        # (set from the checkpoint or the trainer's data; not a weight, so not saved with them)
        self.register_buffer("key_weights", torch.ones(KEYS), persistent=False)
        # ... and how many bars of each of its metres there are (a seed draws its metre from it)
        self.register_buffer("metre_weights", torch.ones(len(cfg.metres)), persistent=False)
        # ... and how its pieces end (musicgan.ending.habit): the share whose last chord is struck in
        # the first half of its bar, then the beats it sounds in each of its metres (zeros: as a
        # piece's end was made before the music was read for it, on the latest place, to the bar's end)
        self.register_buffer("ends", torch.zeros(1 + len(cfg.metres)), persistent=False)
        # ... and how they begin (musicgan.upbeat.habit): the share opening with a pickup, then its
        # beats in each of its metres (zeros: every piece begins on its first downbeat, as before)
        self.register_buffer("opens", torch.zeros(1 + len(cfg.metres)), persistent=False)
        # ... and how their voices come in (musicgan.upbeat.entering: the share of pieces whose voices
        # come in one by one, and some of their entries; None: together, as before)
        self.entering: dict | None = None
        # each step's metrical input, by its code (metre and position in the bar)
        self.register_buffer("frame", frame_table(cfg), persistent=False)
        # sampling only: added to the logits of every new note (onset_bias) and of the rest
        # (rest_bias), by code and voice. Fitted after training (Trainer.calibrate) so that
        # free-running draws strike new notes and rest as often as the training music does;
        # teacher forcing does not use them
        self.register_buffer("onset_bias", torch.zeros(cfg.codes, V), persistent=False)
        self.register_buffer("rest_bias", torch.zeros(cfg.codes, V), persistent=False)
        # ... and to the logits of each pitch by its pitch class counted from the piece's tonic,
        # in major (row 0) and minor (row 1): fitted so that draws use the pitch classes of a key
        # as often as the music does (models that take a key only)
        self.register_buffer("tonal_bias", torch.zeros(2, 12), persistent=False)
        # ... and taken (as a penalty) from the logits of a note that would move a voice in parallel
        # fifths or octaves with a voice above it that has just moved (see parallel_targets):
        # fitted so that draws move in parallels as often as the music does (0: never penalised)
        self.register_buffer("parallel_bias", torch.zeros(1), persistent=False)
        # ... and added to the logits of a voice's note by the interval class (0-11 semitones, the
        # octaves folded) it makes with each voice above it that sounds, for a new note and for a
        # held one alike (a hold by the pitch it keeps): fitted so that draws sound the vertical
        # intervals of the music as often as it does (see interval_counts). Harmonisations draw with
        # it too (on the chorales it took a harmonised melody from 0.589 to 0.551, a bass from 0.726 to 0.688)
        self.register_buffer("interval_bias", torch.zeros(12), persistent=False)
        # ... and the temperature of every free draw's choice among pitches (sharpen_pitches; 1: the
        # model's own odds, as a checkpoint from before draws): given by calibration, after the
        # biases (musicgan.train.PITCH_TEMPERATURE). Drawn at 1, the pieces of every polyphonic style
        # wandered through more pitch classes than their music (a madrigal model's 4-bar clips 8.5
        # against 7.6; docs/quality.md, "A sharper choice among pitches")
        self.register_buffer("pitch_temperature", torch.ones(1), persistent=False)
        # ... and added to the logits of every new note of a voice at a step, times +1 where the voice
        # struck a note the last time the piece stood at this place of the bar (a bar before, in
        # its metre), -1 where it did not (0 in the first bar): fitted so that draws keep the rhythm
        # of a bar in the next as often as the music does (musicgan.echo; 0: as before). Drawn
        # freely, a model of 20 string-quartet movements kept it far less than they do (odds
        # ratios 1.10 against 11.5; docs/quality.md, "The rhythm of a bar kept in the next")
        self.register_buffer("echo_bias", torch.zeros(1), persistent=False)
        # each token's pitch class (rest and hold: none), for the pitch-class memory
        self.register_buffer("pitch_classes", pitch_class_table(cfg), persistent=False)
        self.lstm = nn.LSTM(V * E + cfg.cond_dim + cfg.frame_dim + cfg.memory_dim, H, cfg.layers, batch_first=True)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(H + V * E, H), nn.ReLU(), nn.Linear(H, K)) for _ in range(V))

    def condition(self, z: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor:
        """The vector every method here takes as ``z``: the latent z (B, latent_dim), followed
        (with key_input) by the key: (B,) key indices, or (B, 24) weights (a one-hot; a blend
        when interpolating between keys). Without key_input the key is ignored."""
        if not self.cfg.key_input:
            return z
        if key is None:
            raise ValueError("this model needs the key of the music")
        if key.dim() == 1:
            key = F.one_hot(key.long(), KEYS)
        return torch.cat([z, key.to(z.dtype)], -1)

    def _sampling_bias(self) -> torch.Tensor:
        """(codes, V, K): the onset and rest biases as terms of each voice's logits at each code,
        on the tokens that strike a note and on the rest."""
        bias = self.onset_bias.new_zeros(self.cfg.codes, self.cfg.voices, self.cfg.vocab)
        bias[..., FIRST_PITCH:] = self.onset_bias[..., None]
        bias[..., REST] = self.rest_bias
        return bias

    def _tonal_rows(self, z: torch.Tensor, tonal: bool | None = None,
                    tonal_bias: torch.Tensor | None = None) -> torch.Tensor | None:
        """(B, K): each piece's tonal bias on every token (see ``tonal_bias``), from the key in
        its conditioning vector (a blend of keys gets the blend of their biases); None when the
        model takes no key or the bias is all zero. ``tonal``: whether the bias is not all zero,
        when the caller knows (a CUDA graph's capture may not read the GPU's values).
        ``tonal_bias``: (2, 12), drawn with in place of the model's own (the model is not changed)."""
        bias = self.tonal_bias if tonal_bias is None else tonal_bias
        if not self.cfg.key_input or not (bias.any() if tonal is None else tonal):
            return None
        K, low = self.cfg.vocab, self.cfg.pitch_low
        tonic = torch.arange(KEYS, device=z.device) % 12
        mode = torch.arange(KEYS, device=z.device) // 12
        pitch_class = (torch.arange(K - FIRST_PITCH, device=z.device) + low) % 12
        table = z.new_zeros(KEYS, K)  # key -> its bias on every token (rest and hold: none)
        table[:, FIRST_PITCH:] = bias[mode[:, None], (pitch_class[None] - tonic[:, None]) % 12]
        return z[:, self.cfg.latent_dim:self.cfg.latent_dim + KEYS] @ table

    def _interval_table(self, harmony: bool | None = None) -> torch.Tensor | None:
        """(K, K): row a, the interval bias on every token of a voice below one that sounds
        token a (zero where either is not a pitch); None when it is all zero (``harmony``: whether
        it is not, when the caller knows, as for ``tonal`` in :meth:`_tonal_rows`)."""
        if self.cfg.voices < 2 or not (self.interval_bias.any() if harmony is None else harmony):
            return None
        K = self.cfg.vocab
        token = torch.arange(K, device=self.interval_bias.device)
        table = self.interval_bias[(token[:, None] - token[None]).abs() % 12]
        pitch = token >= FIRST_PITCH
        return table * (pitch[:, None] & pitch[None]).to(table.dtype)

    @staticmethod
    def _interval_term(acc: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """(B, K): one voice's interval bias from ``acc``, the sum of the table rows of the voices
        above it, with the hold's entry that of the pitch the voice holds (``own``, (B,))."""
        return acc.scatter(1, torch.full_like(own[:, None], HOLD), acc.gather(1, own[:, None]))

    def _embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (..., T, V) -> each voice's input embedding (..., T, V, E). (F.embedding, not
        indexing: the same rows, but on CUDA indexing's backward took 18 of a 32 ms likelihood step
        at batch 256 on an H100, with every token a duplicate of thousands; bench/gpu.py --parts profile.)"""
        emb = F.embedding(tokens, self.embed)
        return emb if self.pitch_embed is None else emb + F.embedding(sounding(tokens), self.pitch_embed)

    def _state(self, z):
        B, L, H = z.shape[0], self.cfg.layers, self.cfg.hidden
        h, c = torch.tanh(self.init_state(z)).view(B, 2, L, H).permute(1, 2, 0, 3).contiguous()
        return h, c

    def _inputs(self, prev_embedded, z, codes, memory):
        """The LSTM's input at each step: what the voices fed it (B, T, V * E), the conditioning
        vector, the step's metrical input and the pitch-class memory (B, T, memory_dim)."""
        B, T, _ = prev_embedded.shape
        return torch.cat([prev_embedded, z[:, None].expand(B, T, -1), self.frame[codes].to(z.dtype),
                          memory.to(z.dtype)], -1)

    def heard(self, sound: torch.Tensor) -> torch.Tensor:
        """(..., V) the token each voice sounds -> (..., 12): 1 for each pitch class some voice
        sounds, else 0."""
        return self.pitch_classes[sound].sum(-2).clamp(max=1)

    def memory(self, tokens: torch.Tensor) -> torch.Tensor:
        """The pitch-class memory each step of teacher forcing on ``tokens`` (B, T, V) reads:
        (B, T, memory_dim). After each step the memory m becomes d m + (1 - d) x, x being the
        :meth:`heard` pitch classes of that step and d ``memory_decay`` (a time constant of
        MEMORY_BEATS beats), from m = 0 before the first step; step t reads m after step t - 1.
        So each entry says how much of the last beats its pitch class sounded, in any voice. Here
        all steps at once, as sums d^(t-1-s) (1 - d) x_s over s < t; the samplers run the recurrence."""
        B, T, _ = tokens.shape
        if not self.cfg.pitch_memory:
            return self.pitch_classes.new_zeros(B, T, 0)
        d = self.cfg.memory_decay
        lag = torch.arange(T, device=tokens.device)[:, None] - torch.arange(T, device=tokens.device)[None]
        weights = torch.where(lag > 0, (1 - d) * d ** (lag - 1).clamp(min=0).double(), 0.0)
        return weights.to(self.pitch_classes.dtype) @ self.heard(sounding(tokens))

    def _remember(self, memory: torch.Tensor, sound: torch.Tensor) -> torch.Tensor:
        """The memory after a step whose voices sound ``sound`` (B, V)."""
        if not self.cfg.pitch_memory:
            return memory
        d = self.cfg.memory_decay
        return memory * d + self.heard(sound) * (1 - d)

    def forward(self, tokens: torch.Tensor | None, z: torch.Tensor, codes: torch.Tensor,
                noise: torch.Tensor | None = None, tau: float | None = None, z_sample: torch.Tensor | None = None,
                codes_sample: torch.Tensor | None = None):
        """Teacher forcing on ``tokens`` and/or a free-running draw from ``noise``, in one call
        (DistributedDataParallel wants one forward per backward); the draw takes ``z_sample`` and
        ``codes_sample`` when given.

        Returns the logits (B, T, V, K) of :meth:`teacher_forced` when only ``tokens`` is given,
        else (those logits or None, :meth:`sample`'s (tokens, one_hot)).
        """
        logits = self.teacher_forced(tokens, z, codes) if tokens is not None else None
        if noise is None:
            return logits
        return logits, self.sample(z if z_sample is None else z_sample, noise,
                                   codes if codes_sample is None else codes_sample, tau=tau)

    def teacher_forced(self, tokens: torch.Tensor, z: torch.Tensor, codes: torch.Tensor,
                       extra: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: tokens (B, T, V) and each step's code (B, T) -> logits (B, T, V, K)
        for those same tokens. ``extra``: see :meth:`head_logits`."""
        emb = self._embed_tokens(tokens)  # (the LSTM and the heads read the same embeddings)
        h = self.hidden_states(tokens, z, codes, emb)
        if self.training and self.dropout:
            h = F.dropout(h, self.dropout)
        return self.head_logits(h, tokens, extra, emb)

    def hidden_states(self, tokens: torch.Tensor, z: torch.Tensor, codes: torch.Tensor,
                      emb: torch.Tensor | None = None) -> torch.Tensor:
        """The LSTM's output (B, T, H) at each step of teacher forcing on ``tokens`` (``emb``:
        their :meth:`_embed_tokens`, when already at hand)."""
        B, T, V = tokens.shape
        E = self.cfg.embed_dim
        emb = self._embed_tokens(tokens) if emb is None else emb  # (B, T, V, E)
        prev = torch.cat([emb.new_zeros(B, 1, V, E), emb[:, :-1]], 1).reshape(B, T, V * E)
        return self.lstm(self._inputs(prev, z, codes, self.memory(tokens)), self._state(z))[0]

    def head_logits(self, h: torch.Tensor, tokens: torch.Tensor, extra: torch.Tensor | None = None,
                    emb: torch.Tensor | None = None) -> torch.Tensor:
        """Each voice's logits (B, T, V, K) from the LSTM's output ``h`` and the tokens of the
        voices above it. ``extra`` (B, T, V * H): a term added to each head's hidden layer (a
        given line read by :class:`musicgan.harmonise.LineReader`).

        Each head's first layer reads [h, the embeddings of the voices above, zeros for the rest];
        here it is computed in parts, as the fast sampler does: h's part for every head in one
        product, then each head's product with the voices above it only. The same sums as the
        layer on the zero-padded input, without its multiplications by zero (a third of the
        heads' work for 5 voices) or the padded copies."""
        B, T, V = tokens.shape
        E, H = self.cfg.embed_dim, self.cfg.hidden
        emb = self._embed_tokens(tokens) if emb is None else emb
        first = [head[0] for head in self.heads]
        hidden = F.linear(h, torch.cat([f.weight[:, :H] for f in first]), torch.cat([f.bias for f in first]))
        if extra is not None:
            hidden = hidden + extra
        # (split, not slices: a slice's backward fills a zero tensor the size of the whole)
        above = emb.reshape(B, T, V * E)
        logits = []
        for v, (head, x) in enumerate(zip(self.heads, hidden.split(H, -1))):
            if v:
                x = x + F.linear(above[..., :v * E], first[v].weight[:, H:H + v * E])
            logits.append(head[2](head[1](x)))
        return torch.stack(logits, 2)

    @staticmethod
    def _head(head: nn.Sequential, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        if extra is None:
            return head(x)
        return head[2](head[1](head[0](x) + extra))

    def sample(self, z: torch.Tensor, noise: torch.Tensor, codes: torch.Tensor, temperature: float = 1.0,
               tau: float | None = None, given: torch.Tensor | None = None, extra: torch.Tensor | None = None,
               bass: torch.Tensor | None = None, parallel_bias: float | None = None, pitch_temperature: float | None = None,
               swap_bias: float = 0.0):
        """Free-running generation.

        z: (B, cond_dim), see :meth:`condition`; noise: standard normal (B, T, V, K), the per-step
        noise; codes: (B, T), each step's metre and position in the bar (:func:`musicgan.metre.codes`).
        Returns (tokens (B, T, V) long, one_hot (B, T, V, K) float). With ``tau`` set the one-hot
        is straight-through Gumbel-softmax (hard forward, soft gradient) for adversarial training;
        without it nothing is differentiable and sampling is a plain Gumbel-max draw.
        ``given``: (B, T, V) tokens that are not drawn but given (-1 where the model draws; STRIKE
        where it draws a pitch, not a rest or a hold): the model reads them as its own, so given
        opening steps set its state as teacher forcing does.
        ``extra``: (B, T, V * H), added to each head's hidden layer (see :meth:`head_logits`).
        ``bass``: (B, T) tokens of a given bottom line: where it sounds, it is the lowest note, and
        the voices draw above it (see :func:`bass_logits`). ``parallel_bias``: the parallels penalty
        to draw with, in place of the model's own (a harmoniser fits its own). ``pitch_temperature``:
        the temperature of the choice among pitches alone (see :func:`sharpen_pitches`), in place of
        the model's own (``Generator.pitch_temperature``; None: its own).
        ``swap_bias``: with a bass, how readily the voice above one that would fall silent takes it
        (see :func:`bass_swap`).
        """
        B, T, V, K = noise.shape
        E = self.cfg.embed_dim
        gumbel = gumbel_from_normal(noise)
        if pitch_temperature is None:
            pitch_temperature = float(self.pitch_temperature)
        if tau is None and not torch.is_grad_enabled():
            return self._sample_fast(z, gumbel, codes, temperature, given, extra, bass, parallel_bias, pitch_temperature,
                                     swap_bias)
        if bass is not None:
            bass_sound, bass_struck = sounding(bass[..., None])[..., 0], bass >= FIRST_PITCH
        state = self._state(z)
        prev = z.new_zeros(B, 1, V * E)
        tokens, one_hots = [], []
        # each voice's sounding pitch as a one-hot over tokens (REST: silent); a hold keeps it
        sounds = [F.one_hot(torch.full((B,), REST, device=z.device), K).to(z.dtype)] * V
        not_hold = torch.ones(K, device=z.device)
        not_hold[HOLD] = 0
        bias = self._sampling_bias()
        tonal = self._tonal_rows(z)
        table = self._interval_table()
        beta = float(self.parallel_bias if parallel_bias is None else parallel_bias)
        sound = torch.full((B, V), REST, dtype=torch.long, device=z.device)  # each voice's sounding token
        memory = z.new_zeros(B, self.cfg.memory_dim)
        echo, echo_term, every = self._echo(z, z.new_zeros(B, self.cfg.codes, V))
        for t in range(T):
            h, state = self.lstm(self._inputs(prev, z, codes[:, t:t + 1], memory[:, None]), state)
            h = h[:, 0]
            heard = None if echo is None else echo[every, codes[:, t]]  # (B, V): each voice a bar before
            chosen = []
            before, struck = sound.clone(), torch.zeros(B, V, dtype=torch.bool, device=z.device)
            placed = torch.zeros(B, dtype=torch.bool, device=z.device)  # (a given bass: a voice has taken it)
            acc = None if table is None else z.new_zeros(B, K)  # the interval rows of the voices above
            above_token = above_sounds = None  # (a given bass: the token that plays it in the voice above)
            for v, head in enumerate(self.heads):
                above = torch.cat(chosen + [h.new_zeros(B, (V - v) * E)], -1)
                step_bias = bias[codes[:, t], v] if tonal is None else bias[codes[:, t], v] + tonal
                if acc is not None and v:
                    step_bias = step_bias + self._interval_term(acc, sound[:, v])
                if heard is not None:
                    step_bias = step_bias + echo_term * heard[:, v, None]
                if beta and t and v:
                    step_bias = step_bias + parallel_penalty(before, sound, struck, v, beta, K)
                if beta and t and bass is not None:
                    step_bias = step_bias + bass_parallel_penalty(before[:, v], bass_sound[:, t - 1], bass_sound[:, t],
                                                                  bass_struck[:, t], beta, K)
                extra_v = None if extra is None else extra[:, t, v * self.cfg.hidden:(v + 1) * self.cfg.hidden]
                logits = (self._head(head, torch.cat([h, above], -1), extra_v) + step_bias) / temperature
                if pitch_temperature != 1:
                    logits = sharpen_pitches(logits, pitch_temperature)
                if bass is not None:
                    if v:  # would this voice fall silent? then the one above was the lowest: it takes the bass
                        swap = bass_swap(logits, gumbel[:, t, v], sound[:, v], placed, bass_sound[:, t], swap_bias)
                        tokens[-1] = torch.where(swap, above_token, tokens[-1])
                        sound[:, v - 1] = torch.where(swap, bass_sound[:, t], sound[:, v - 1])
                        struck[:, v - 1] = tokens[-1] >= FIRST_PITCH
                        one_hots[-1] = torch.where(swap[:, None], F.one_hot(above_token, K).to(logits.dtype), one_hots[-1])
                        chosen[-1] = self._embedded(one_hots[-1], above_sounds, v - 1, sounds, not_hold)
                        placed = placed | swap
                    logits, bass_token = bass_logits(logits, bass_sound[:, t], bass_struck[:, t], sound[:, v], placed,
                                                     v == V - 1)
                    above_token, above_sounds = bass_token, sounds[v]
                if given is not None:
                    logits = strike(logits, given[:, t, v] == STRIKE)
                y = logits + gumbel[:, t, v]
                index = y.argmax(-1)
                if given is not None:
                    index = torch.where(given[:, t, v] >= 0, given[:, t, v], index)
                if bass is not None:
                    placed = placed | ((index == bass_token) & (bass_sound[:, t] != REST))
                struck[:, v] = index >= FIRST_PITCH
                sound[:, v] = torch.where(index == HOLD, sound[:, v], index)
                if acc is not None:
                    acc = acc + table.index_select(0, sound[:, v])
                hard = F.one_hot(index, K).to(logits.dtype)
                if tau is not None:
                    soft = F.softmax(y / tau, -1)
                    hard = hard - soft.detach() + soft
                chosen.append(self._embedded(hard, sounds[v], v, sounds, not_hold))
                tokens.append(index)
                one_hots.append(hard)
            prev = torch.cat(chosen, -1)[:, None]
            memory = self._remember(memory, sound)
            if echo is not None:
                echo[every, codes[:, t]] = self._struck_sign(tokens[-V:])
        tokens = torch.stack(tokens, 1).view(B, T, V)
        return tokens, torch.stack(one_hots, 1).view(B, T, V, K)

    def _echo(self, z: torch.Tensor, echo: torch.Tensor, echo_bias: float | None = None):
        """For a draw with the echo bias (see ``echo_bias``): (what each voice did the last time
        each piece stood at each code, (B, codes, V), a copy of ``echo``; the bias as a term of
        the new notes' logits, (K,); each piece's row number). All None without the bias."""
        g = float(self.echo_bias) if echo_bias is None else echo_bias
        if not g:
            return None, None, None
        term = torch.zeros(self.cfg.vocab, dtype=z.dtype, device=z.device)
        term[FIRST_PITCH:] = g
        return echo.clone(), term, torch.arange(z.shape[0], device=z.device)

    @staticmethod
    def _struck_sign(tokens: list) -> torch.Tensor:
        """One step's tokens (a (B,) tensor per voice) -> (B, V): 1 where a voice strikes a note, -1
        where it does not."""
        return torch.stack(tokens, 1).ge(FIRST_PITCH).float() * 2 - 1

    def _embedded(self, hard: torch.Tensor, sounded: torch.Tensor, v: int, sounds: list, not_hold: torch.Tensor):
        """Voice ``v``'s embedding as the next voices and the next step read it, from its (one-hot)
        token ``hard`` and the pitch it sounded before (one-hot, ``sounded``); with a pitch
        embedding, ``sounds[v]`` becomes the pitch it sounds now."""
        embedded = hard @ self.embed.to(hard.dtype)
        if self.pitch_embed is not None:
            sounds[v] = hard * not_hold + hard[:, HOLD:HOLD + 1] * sounded
            embedded = embedded + sounds[v] @ self.pitch_embed.to(hard.dtype)
        return embedded

    def begin(self, z: torch.Tensor) -> DrawState:
        """The state of pieces before their first step (z: (B, cond_dim), see :meth:`condition`)."""
        B, V = z.shape[0], self.cfg.voices
        h, c = self._state(z)
        rest = torch.full((B,), REST, dtype=torch.long, device=z.device)  # a hold at the first step holds a rest
        return DrawState(z, list(h), list(c), [rest] * V, rest[:, None].repeat(1, V),
                         torch.zeros(B, V, dtype=torch.bool, device=z.device), z.new_zeros(B, self.cfg.memory_dim),
                         z.new_zeros(B, self.cfg.codes, V))

    @torch.no_grad()
    def draw_on(self, state: DrawState, noise: torch.Tensor, codes: torch.Tensor, temperature: float = 1.0,
                given: torch.Tensor | None = None, tonal_bias: torch.Tensor | None = None,
                extra: torch.Tensor | None = None, bass: torch.Tensor | None = None,
                parallel_bias: float | None = None, pitch_temperature: float | None = None,
                swap_bias: float = 0.0) -> tuple[torch.Tensor, DrawState]:
        """Free-running generation in parts: the Gumbel-max draw of :meth:`sample` (no autograd)
        of the steps of ``noise`` (B, T, V, K; standard normal) and ``codes`` (B, T), from
        ``state`` (:meth:`begin`, or the state a draw before ended in). Returns the tokens (B, T, V)
        and the state after them: a piece drawn in two parts, the second from the state the first
        ends in, is the piece drawn in one (tested), and a part's candidates can each carry on
        from the one chosen (:func:`musicgan.generate.sample_rolls`). ``given``: (B, T, V) tokens
        not drawn but given, as in :meth:`sample`. ``tonal_bias``: (2, 12), the tonal bias to draw
        these steps with in place of the model's own (see :meth:`_tonal_rows`). ``extra``,
        ``parallel_bias``, ``pitch_temperature`` and ``swap_bias``: as in :meth:`sample`, for
        these steps; ``bass``: as there, but from the piece's first step to the last of these
        (B, state.steps + T): where a bass holds a note into these steps, the voices hear it."""
        state = replace(state, h=list(state.h), c=list(state.c), codes=list(state.codes))
        with torch.inference_mode():
            tokens = self._draw_fast(state.z, gumbel_from_normal(noise), codes, temperature, given, extra, bass,
                                     parallel_bias, pitch_temperature=pitch_temperature, state=state,
                                     swap_bias=swap_bias, tonal_bias=tonal_bias)
        return tokens.clone(), state

    def _sample_fast(self, z: torch.Tensor, gumbel: torch.Tensor, codes: torch.Tensor, temperature: float,
                     given: torch.Tensor | None = None, extra: torch.Tensor | None = None,
                     bass: torch.Tensor | None = None, parallel_bias: float | None = None,
                     pitch_temperature: float | None = None, swap_bias: float = 0.0):
        # inference mode makes each of the loop's many small calls cheaper (no version counters);
        # the tokens leave it as an ordinary tensor, which a discriminator may then learn from
        with torch.inference_mode():
            out = self._draw_fast(z, gumbel, codes, temperature, given, extra, bass, parallel_bias,
                                  pitch_temperature=pitch_temperature, swap_bias=swap_bias)
        out = out.clone()
        return out, F.one_hot(out, self.cfg.vocab).float()

    def _draw_fast(self, z: torch.Tensor, gumbel: torch.Tensor, codes: torch.Tensor, temperature: float,
                   given: torch.Tensor | None = None, extra: torch.Tensor | None = None,
                   bass: torch.Tensor | None = None, parallel_bias: float | None = None,
                   tonal: bool | None = None, pitch_temperature: float | None = None,
                   harmony: bool | None = None, state: DrawState | None = None, swap_bias: float = 0.0,
                   tonal_bias: torch.Tensor | None = None, echo_bias: float | None = None) -> torch.Tensor:
        """Gumbel-max sampling without autograd: the draw of :meth:`sample`, computed step by step
        with plain matrix products instead of one LSTM call per step. On the CPU each small torch
        call costs more than its arithmetic, so the loop is written to make few calls:

        * whatever is fixed per token is a precomputed table: the first LSTM layer's input weights
          times each voice's embedding (all voices in one table), and each head's first layer times
          the embedding of the voices above it (all lower heads at once);
        * a voice's embedding is that of its token plus (with ``sounding_input``) that of the pitch
          it sounds, which is the token itself unless the token is HOLD. So one *code* names both:
          the token, or K + the held pitch for a hold, and every table has a row per code;
        * the heads' first layers write into one buffer whose per-voice views are made once;
          biases ride in ``addmm``; the tokens are stacked once at the end.

        With ``parallel_bias``, ``tonal``, ``harmony``, ``pitch_temperature`` and ``echo_bias`` given (see
        :meth:`_tonal_rows` and :meth:`_interval_table`) it reads no value back
        from the device, so it can be captured as a CUDA graph (:mod:`musicgan.cudagraph`).

        ``state``: where the pieces stand (:meth:`draw_on`; ``z`` is its own), moved on in place
        to where this draw ends; None: they start here. ``tonal_bias``: see :meth:`_tonal_rows`."""
        B, T, V, K = gumbel.shape
        E, H = self.cfg.embed_dim, self.cfg.hidden
        if pitch_temperature is None:
            pitch_temperature = float(self.pitch_temperature)
        lstm = self.lstm
        if self.pitch_embed is None:
            coded = self.embed  # (K, E): the code is the token
        else:  # (2K, E): token k (its own pitch), then HOLD with each sounding pitch
            coded = torch.cat([self.embed + self.pitch_embed, self.embed[HOLD] + self.pitch_embed])
            # the code after code j when the next token is k: k itself, or for a hold, j's pitch held
            held = torch.arange(2 * K, device=z.device).remainder(K) + K
            next_code = torch.arange(K, device=z.device).repeat(2 * K, 1)
            next_code[:, HOLD] = held
        w_ih0 = lstm.weight_ih_l0  # (4H, V*E + latent + frame)
        prev_table = torch.cat([coded @ w_ih0[:, v * E:(v + 1) * E].T for v in range(V)])  # (V * codes, 4H)
        offsets = torch.arange(V, device=z.device) * len(coded)
        z_part = z @ w_ih0[:, V * E:V * E + self.cfg.cond_dim].T + lstm.bias_ih_l0 + lstm.bias_hh_l0
        # each step's metrical input is one-hot: its term is a sum of columns of the weights (picked, not multiplied)
        frame_end = V * E + self.cfg.cond_dim + self.cfg.frame_dim
        w_frame = w_ih0[:, V * E + self.cfg.cond_dim:frame_end].T  # (frame_dim, 4H)
        w_memory = w_ih0[:, frame_end:].T.contiguous()  # (memory_dim, 4H)
        P = self.cfg.longest_bar
        step = torch.arange(self.cfg.codes, device=z.device)
        frame_part = w_frame[step % P]  # (codes, 4H)
        if self.cfg.metre_input:
            frame_part = frame_part + w_frame[P + step // P]
        step_codes = codes.t().contiguous()  # (T, B): row t, the code of every piece at step t
        # weights transposed once into contiguous (in, out) matrices: a third faster per product
        layers = [(getattr(lstm, f"weight_ih_l{k}").T.contiguous(), getattr(lstm, f"weight_hh_l{k}").T.contiguous(),
                   getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")) for k in range(lstm.num_layers)]
        first = [head[0] for head in self.heads]
        w_state = torch.cat([f.weight[:, :H] for f in first]).T.contiguous()  # (H, V*H)
        b_state = torch.cat([f.bias for f in first])
        # voice u's code -> its term in the first layer of every head below it: (codes, (V-u-1)*H)
        below = [torch.cat([coded @ first[v].weight[:, H + u * E:H + (u + 1) * E].T for v in range(u + 1, V)], -1)
                 for u in range(V - 1)]
        # each head's output bias at each code (with the sampling biases in it)
        bias = self._sampling_bias()
        heads_out = [(head[2].weight.T.contiguous(), head[2].bias + bias[:, v]) for v, head in enumerate(self.heads)]
        tonal = self._tonal_rows(z, tonal, tonal_bias)  # (B, K) or None
        table = self._interval_table(harmony)  # (K, K) or None
        noise = [step.unbind(0) for step in gumbel.permute(1, 2, 0, 3).unbind(0)]  # [t][v]: (B, K)
        # [t][v]: (given tokens (B,), where they are given (B,)) on the steps that have any, else None
        fixed = [None] * T if given is None else \
            [[(g, g >= 0, g == STRIKE) for g in step.unbind(1)] if (step >= 0).any() or (step == STRIKE).any()
             else None for step in given.unbind(1)]
        hidden = torch.empty(B, V * H, device=z.device)  # every head's first layer, refilled each step
        head_in = hidden.split(H, 1)
        lower = [hidden[:, (v + 1) * H:] for v in range(V - 1)]
        start = self.begin(z) if state is None else state
        s0 = start.steps  # (a given bass is given from the piece's first step: see draw_on)
        if bass is not None and bass.shape[1] != s0 + T:
            raise ValueError("a given bass is given from the piece's first step")
        h, c, codes = list(start.h), list(start.c), list(start.codes)
        # (sound and struck kept up with a penalty, a bass or the pitch-class memory only)
        sound, struck, memory = start.sound.clone(), start.struck.clone(), start.memory.clone()
        echo, echo_term, every = self._echo(z, start.echo, echo_bias)
        tokens = []
        beta = float(self.parallel_bias if parallel_bias is None else parallel_bias)
        track = bool(beta) or bass is not None or table is not None or self.cfg.pitch_memory
        if bass is not None:
            bass_sound, bass_struck = sounding(bass[..., None])[..., 0].t(), (bass >= FIRST_PITCH).t()
        for t in range(T):
            after = bool(t or start.steps)  # a step after another: what it drew feeds this one
            before = sound.clone() if beta else None
            intervals = perfect_intervals(before) if beta and after else None
            placed = None if bass is None else torch.zeros(B, dtype=torch.bool, device=z.device)
            acc = None if table is None else z.new_zeros(B, K)  # the interval rows of the voices above
            above_token = above_code = None  # (a given bass: the token that plays it in the voice above)
            code = step_codes[t]
            heard = None if echo is None else echo[every, code]  # (B, V): each voice a bar before
            gates = z_part + frame_part.index_select(0, code)
            if after:
                # (index_select takes half the time of advanced indexing on these small lookups)
                rows = prev_table.index_select(0, (torch.stack(codes, 1) + offsets).view(-1))
                gates = gates + rows.view(B, V, -1).sum(1)
                if self.cfg.pitch_memory:
                    gates = torch.addmm(gates, memory, w_memory)
            x = None
            for k, (w_ih, w_hh, bias) in enumerate(layers):
                gates = torch.addmm(gates if k == 0 else torch.addmm(bias, x, w_ih), h[k], w_hh)
                i, f, _, o = torch.sigmoid(gates).chunk(4, -1)  # (the cell gate's sigmoid goes unused)
                c[k] = torch.addcmul(f * c[k], i, torch.tanh(gates[:, 2 * H:3 * H]))
                h[k] = x = o * torch.tanh(c[k])
            torch.addmm(b_state, x, w_state, out=hidden)
            if extra is not None:
                hidden += extra[:, t]
            for v, (w_out, b_out) in enumerate(heads_out):
                step_bias = b_out.index_select(0, code)
                if tonal is not None:
                    step_bias = step_bias + tonal
                if acc is not None and v:
                    step_bias = step_bias + self._interval_term(acc, sound[:, v])
                if heard is not None:
                    step_bias = step_bias + echo_term * heard[:, v, None]
                logits = torch.addmm(step_bias, torch.relu(head_in[v]), w_out)
                if beta and after and v:
                    logits = logits + parallel_penalty(before, sound, struck, v, beta, K, intervals)
                if beta and after and bass is not None:
                    logits = logits + bass_parallel_penalty(before[:, v], bass_sound[s0 + t - 1], bass_sound[s0 + t],
                                                            bass_struck[s0 + t], beta, K)
                if temperature != 1:
                    logits = logits / temperature
                if pitch_temperature != 1:
                    logits = sharpen_pitches(logits, pitch_temperature)
                if bass is not None:
                    if v:  # would this voice fall silent? then the one above was the lowest: it takes the bass
                        swap = bass_swap(logits, noise[t][v], sound[:, v], placed, bass_sound[s0 + t], swap_bias)
                        tokens[-1] = torch.where(swap, above_token, tokens[-1])
                        sound[:, v - 1] = torch.where(swap, bass_sound[s0 + t], sound[:, v - 1])
                        struck[:, v - 1] = tokens[-1] >= FIRST_PITCH
                        codes[v - 1] = torch.where(swap, above_token if self.pitch_embed is None else
                                                   next_code[above_code, above_token], codes[v - 1])
                        placed = placed | swap
                    logits, bass_token = bass_logits(logits, bass_sound[s0 + t], bass_struck[s0 + t], sound[:, v], placed,
                                                     v == V - 1)
                    above_token, above_code = bass_token, codes[v]
                if fixed[t] is not None:
                    logits = strike(logits, fixed[t][v][2])
                index = torch.argmax(logits + noise[t][v], -1)
                if fixed[t] is not None:
                    index = torch.where(fixed[t][v][1], fixed[t][v][0], index)
                if bass is not None:
                    placed = placed | ((index == bass_token) & (bass_sound[s0 + t] != REST))
                tokens.append(index)
                if track:
                    struck[:, v] = index >= FIRST_PITCH
                    sound[:, v] = torch.where(index == HOLD, sound[:, v], index)
                if acc is not None and v < V - 1:
                    acc = acc + table.index_select(0, sound[:, v])
                codes[v] = index if self.pitch_embed is None else next_code[codes[v], index]
                if v < V - 1:
                    lower[v] += below[v].index_select(0, codes[v])
            memory = self._remember(memory, sound)
            if echo is not None:
                echo[every, code] = self._struck_sign(tokens[-V:])
        if state is not None:
            state.h, state.c, state.codes, state.sound, state.struck, state.memory = h, c, codes, sound, struck, memory
            if echo is not None:
                state.echo = echo
            state.steps += T
        return torch.stack(tokens, 1).view(B, T, V)


class LineReader(nn.Module):
    """The harmoniser's reader (see :mod:`musicgan.harmonise`). A given line (B, T) of one voice's tokens and each step's code (B, T) -> a term (B, T, V * H)
    for every head of the generator, from what the line does from each step on."""

    def __init__(self, cfg: ModelConfig, hidden: int = 128):
        super().__init__()
        self.cfg, self.hidden = cfg, hidden
        E = cfg.embed_dim
        self.embed = nn.Embedding(cfg.vocab, E)
        self.pitch_embed = nn.Embedding(cfg.vocab, E)  # the pitch the line sounds (a held note's too)
        self.lstm = nn.LSTM(E + cfg.frame_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, cfg.voices * cfg.hidden)
        # the parallels penalty to draw with (see Generator.parallel_bias), fitted on the harmoniser's
        # own draws (musicgan.harmonise.fit_sampling); None: the model's own
        self.parallel_bias: float | None = None
        self.pitch_temperature: float | None = None  # the same: the temperature of its choice among pitches (sharpen_pitches)
        self.swap_bias = 0.0  # the same: how readily a bass takes the voice above one that falls silent (bass_swap)
        nn.init.zeros_(self.out.weight)  # untrained, it adds nothing: the model draws as it did
        nn.init.zeros_(self.out.bias)
        self.register_buffer("frame", frame_table(cfg), persistent=False)

    def forward(self, line: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        x = self.embed(line) + self.pitch_embed(sounding(line[..., None])[..., 0])
        x = torch.cat([x, self.frame[codes].to(x.dtype)], -1)
        h, _ = self.lstm(x.flip(1))  # read from the end: at step t, the line from t on
        return self.out(h.flip(1))


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, window_bars: int = 0):
        super().__init__()
        self.cfg = cfg
        # the length of the windows it learns on, in bars of the model's commonest metre (the
        # trainer's window_bars; 0: musicgan.batches.window_steps's default). As a critic it
        # judges a longer piece in windows of about that length (musicgan.generate.critic_windows)
        self.window_bars = window_bars
        self.inp = nn.Linear(cfg.voices * cfg.vocab, cfg.d_embed)
        self.lstm = nn.LSTM(cfg.d_embed + cfg.frame_dim, cfg.d_hidden, batch_first=True, bidirectional=True)
        self.register_buffer("frame", frame_table(cfg), persistent=False)
        # token -> pitch class (rest and hold map to nothing): lets D see which pitch classes a clip
        # uses, the statistic an LSTM finds hardest to count and listeners notice first (wrong notes)
        to_pc = torch.zeros(cfg.vocab, 12)
        for k in range(FIRST_PITCH, cfg.vocab):
            to_pc[k, (cfg.pitch_low + k - FIRST_PITCH) % 12] = 1
        self.register_buffer("to_pc", to_pc, persistent=False)
        self.out = nn.Linear(4 * cfg.d_hidden + 24, 1)

    def forward(self, one_hot: torch.Tensor, codes: torch.Tensor):
        """one_hot (B, T, V, K) and each step's code (B, T) -> (logit that the clip is real (B,),
        features (B, 4 * d_hidden + 24))."""
        B, T = one_hot.shape[:2]
        x = self.inp(one_hot.reshape(B, T, -1))
        h, _ = self.lstm(torch.cat([x, self.frame[codes].to(x.dtype)], -1))
        pcs = one_hot @ self.to_pc.to(one_hot.dtype)  # (B, T, V, 12): pitch classes struck
        pc_share = pcs.sum((1, 2)) / pcs.sum((1, 2, 3)).clamp(min=1)[:, None]  # pitch-class histogram
        pc_used = pcs.amax((1, 2))  # which pitch classes occur at all
        # what happens on average, at its extreme, and which notes are used
        features = torch.cat([h.mean(1), h.amax(1), pc_share, pc_used], -1)
        return self.out(features).squeeze(-1), features
