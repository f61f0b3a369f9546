"""Checkpoints: a folder with ``model.safetensors`` (weights) and ``config.json`` (everything else).

Loading never unpickles: safetensors holds only raw tensors, the JSON only plain values, and the
config is validated before any module is built. A folder that is not ours (a pickle renamed
model.safetensors, a config from elsewhere, wrong shapes) raises :class:`CheckpointError`.
A ``.zip`` of such a folder (what the app offers for download) loads the same way.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors, save as save_safetensors

from . import __version__, copyguard, ending, form, metre, upbeat
from .keys import KEYS
from .models import Discriminator, Generator, LineReader, ModelConfig

FORMAT = "musicgan-checkpoint"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"
MAX_WEIGHTS_BYTES = 512 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CANDIDATES = 64
COPY_INDEX = "copyguard.pairs"
FORMS = "form.sources"  # the forms of the training music (musicgan.form)
# the harmonisers' readers (musicgan.harmonise), when it has them: for each given line, the setting
# in the config that describes it and the prefix of its weights
READERS = {"top": ("harmoniser", "harmoniser."), "bottom": ("bass_harmoniser", "bass_harmoniser.")}
# the generator's sampling biases (Generator.onset_bias, .rest_bias): not weights, saved beside them
SAMPLING_BIASES = {"onset_bias": "sampling.onset_bias", "rest_bias": "sampling.rest_bias",
                   "tonal_bias": "sampling.tonal_bias", "parallel_bias": "sampling.parallel_bias",
                   "interval_bias": "sampling.interval_bias", "pitch_temperature": "sampling.pitch_temperature",
                   "echo_bias": "sampling.echo_bias"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason in plain words."""


@dataclass
class Checkpoint:
    model: ModelConfig
    generator: Generator
    discriminator: Discriminator | None = None
    meta: dict = field(default_factory=dict)  # data stats, training settings, steps, metrics ...
    train_state: dict = field(default_factory=dict)  # optimiser and RNG tensors, for --resume
    path: str = ""
    copy_index: np.ndarray | None = None  # the copy guard's hashes of the training music (musicgan.copyguard)
    harmonisers: dict = field(default_factory=dict)  # voice -> LineReader: reads a given line (musicgan.harmonise)
    forms: np.ndarray | None = None  # which bars of its pieces the training music repeats (musicgan.form)

    @property
    def steps(self) -> int:
        return int(self.meta.get("steps", 0))

    @property
    def candidates(self) -> int:
        """How many candidates generation lets the critic choose from (1: no critic)."""
        return _candidates(self.meta)

    @property
    def clamped(self) -> dict:
        """How the model harmonises a line it has no harmoniser for, by line ("top", "bottom"):
        (parallels penalty, pitch temperature, swap bias of a bass), as its trainer fitted them
        (``sampling.clamped`` in the config; see ``Trainer.calibrate``; a swap bias it does not
        say: 0). A line it does not say: drawn as free pieces are."""
        return _clamped(self.meta, Path(self.path).name)

    @property
    def parallels(self) -> float | None:
        """The parallel fifths and octaves per 100 beats of the training music
        (``sampling.parallels``; :func:`musicgan.voiceleading.parallels`), or None where a
        checkpoint does not say."""
        return _parallels(self.meta, Path(self.path).name)

    @property
    def choice(self) -> dict:
        """The keyword arguments of :attr:`sampling` that choose among candidates (the critic,
        their number and the music's parallels): all that :func:`musicgan.harmonise.harmonise_rolls`
        takes of them."""
        return {k: v for k, v in self.sampling.items() if k in ("critic", "candidates", "parallels")}

    @property
    def sampling(self) -> dict:
        """Keyword arguments for :func:`musicgan.generate.sample_rolls`: the critic and its
        candidates, the copy guard's index, and the forms and parallels of the training music."""
        kwargs = {} if self.copy_index is None else {"avoid": self.copy_index}
        if self.forms is not None:
            kwargs["forms"] = self.forms
        if self.parallels is not None:
            kwargs["parallels"] = self.parallels
        if self.discriminator is not None and self.candidates > 1:
            kwargs.update(critic=self.discriminator, candidates=self.candidates)
        return kwargs


def _clamped(config: dict, name: str) -> dict:
    """``sampling.clamped`` of a config (see :attr:`Checkpoint.clamped`), checked."""
    sampling = config.get("sampling")
    fitted = sampling.get("clamped", {}) if isinstance(sampling, dict) else {}
    out = {}
    for voice, v in (fitted.items() if isinstance(fitted, dict) else [(None, None)]):
        numbers = [v.get(k, d) for k, d in (("parallel_bias", None), ("pitch_temperature", None), ("swap_bias", 0.0))] \
            if isinstance(v, dict) else [None] * 3
        if voice not in READERS or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers) \
                or not 0 <= numbers[0] <= 10 or not 0.05 <= numbers[1] <= 5 or not abs(numbers[2]) <= 10:
            raise CheckpointError(f"{name}: sampling.clamped is not a parallels penalty, pitch temperature "
                                  "and swap bias by line")
        out[voice] = tuple(float(x) for x in numbers)
    return out


def _parallels(config: dict, name: str) -> float | None:
    """``sampling.parallels`` of a config (see :attr:`Checkpoint.parallels`), checked."""
    sampling = config.get("sampling")
    rate = sampling.get("parallels") if isinstance(sampling, dict) else None
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 100:
        raise CheckpointError(f"{name}: sampling.parallels is not a count of parallels per 100 beats")
    return float(rate)


def _count(config: dict, section: str, name: str, low: int, high: int) -> int:
    """The whole number ``config[section][name]``, or ``low`` when it is missing, not a whole
    number or outside low..high."""
    part = config.get(section)
    n = part.get(name, low) if isinstance(part, dict) else low
    return n if isinstance(n, int) and not isinstance(n, bool) and low <= n <= high else low


def _window_bars(config: dict) -> int:
    """The ``train.window_bars`` the model learned on, or 0 (the default length)."""
    return _count(config, "train", "window_bars", 0, 16)


def _candidates(config: dict) -> int:
    """The ``sampling.candidates`` a config asks for, or 1 (no critic)."""
    return _count(config, "sampling", "candidates", 1, MAX_CANDIDATES)


def save(directory, generator: Generator, discriminator: Discriminator | None = None,
         meta: dict | None = None, train_state: dict | None = None, copy_index: np.ndarray | None = None,
         forms: np.ndarray | None = None) -> Path:
    """Write a checkpoint folder; refuses weights that are not finite (a NaN model is no model)."""
    directory = Path(directory)
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    if discriminator is not None:
        tensors.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
    if copy_index is not None:
        tensors[COPY_INDEX] = torch.from_numpy(np.ascontiguousarray(copy_index, dtype=np.int64))
    if forms is not None:
        tensors[FORMS] = torch.from_numpy(form.check(forms).copy())
    tensors.update(_sampling_tensors(generator))
    for name, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"refusing to save: {name} holds NaN or infinite values")
    tensors.update({f"train.{k}": v for k, v in (train_state or {}).items()})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
              "model": asdict(generator.cfg), **(meta or {})}
    return _write(directory, save_safetensors(tensors, metadata={"format": FORMAT}),
                  json.dumps(config, indent=2, sort_keys=True).encode())


def _sampling_tensors(generator: Generator) -> dict:
    """The generator's sampling biases by their key in the file (those all zero are left out)."""
    return {key: getattr(generator, name) for name, key in SAMPLING_BIASES.items() if getattr(generator, name).any()}


def _write(directory: Path, weights: bytes, config: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    # write both files beside their final names, then swap them in: a crash leaves the old pair
    tmp_w, tmp_c = directory / f".{WEIGHTS}.tmp", directory / f".{CONFIG}.tmp"
    tmp_w.write_bytes(weights)
    tmp_c.write_bytes(config)
    os.replace(tmp_w, directory / WEIGHTS)
    os.replace(tmp_c, directory / CONFIG)
    return directory


def with_sampling(directory, generator: Generator, clamped: dict) -> Path:
    """Write ``generator``'s sampling biases and how it clamps a given line (``clamped``, see
    ``Trainer.calibrate``) into the checkpoint folder ``directory``, in place of its own; its
    weights, critic, harmonisers and the rest of its config stay as they are."""
    directory = Path(directory)
    weights, config = _read_pair(directory)
    tensors = {k: v for k, v in load_safetensors(weights).items() if k not in SAMPLING_BIASES.values()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in _sampling_tensors(generator).items()})
    meta = json.loads(config)
    meta.setdefault("sampling", {}).pop("clamped", None)
    if clamped:
        meta["sampling"]["clamped"] = clamped
    return _write(directory, save_safetensors(tensors, metadata={"format": FORMAT}),
                  json.dumps(meta, indent=2, sort_keys=True).encode())


def with_music(directory, forms: np.ndarray | None, parallels: float | None, habits: dict | None = None) -> Path:
    """Write what generation reads of a model's music into the checkpoint folder ``directory``,
    in place of its own: its forms (:mod:`musicgan.form`; None: none), its parallels per 100
    beats (:attr:`Checkpoint.parallels`; None: not said) and ``habits``, how its pieces end and
    begin (``data.ends``, :func:`musicgan.ending.habit`, ``data.opens``, :func:`musicgan.upbeat.habit`,
    and ``data.entries``, :func:`musicgan.upbeat.entering`, as a trainer reads them; None: as they
    were); all else stays as it is."""
    directory = Path(directory)
    weights, config = _read_pair(directory)
    tensors = {k: v for k, v in load_safetensors(weights).items() if k != FORMS}
    if forms is not None:
        tensors[FORMS] = torch.from_numpy(form.check(forms).copy())
    meta = json.loads(config)
    meta.setdefault("sampling", {}).pop("parallels", None)
    if parallels is not None:
        meta["sampling"]["parallels"] = parallels
    if habits is not None:
        said = meta.setdefault("data", {})
        for name in ("ends", "opens", "entries"):
            said.pop(name, None)
            if habits.get(name) is not None:
                said[name] = habits[name]
    return _write(directory, save_safetensors(tensors, metadata={"format": FORMAT}),
                  json.dumps(meta, indent=2, sort_keys=True).encode())


def _read_pair(path: Path) -> tuple[bytes, bytes]:
    if path.is_dir():
        weights, config = path / WEIGHTS, path / CONFIG
        if not config.is_file():
            raise CheckpointError(f"{path.name}: no {CONFIG} (not a musicgan checkpoint)")
        if not weights.is_file():
            raise CheckpointError(f"{path.name}: no {WEIGHTS} (musicgan never reads pickled .pt/.pth files)")
        if weights.stat().st_size > MAX_WEIGHTS_BYTES or config.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path.name}: too large to be a musicgan checkpoint")
        return weights.read_bytes(), config.read_bytes()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            found = {}
            for info in z.infolist():
                base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
                if base in (WEIGHTS, CONFIG) and base not in found:
                    limit = MAX_WEIGHTS_BYTES if base == WEIGHTS else MAX_CONFIG_BYTES
                    if info.file_size > limit:
                        raise CheckpointError(f"{path.name}: {base} is too large")
                    with z.open(info) as fh:
                        found[base] = fh.read(limit + 1)
            if set(found) != {WEIGHTS, CONFIG}:
                raise CheckpointError(f"{path.name}: the archive needs {WEIGHTS} and {CONFIG}")
            return found[WEIGHTS], found[CONFIG]
    if path.is_file():
        raise CheckpointError(f"{path.name}: a checkpoint is a folder (or .zip) holding {WEIGHTS} and {CONFIG}")
    raise CheckpointError(f"{path}: no such checkpoint")


def load(path, with_discriminator: bool | None = None) -> Checkpoint:
    """Load and validate a checkpoint folder or .zip. Raises CheckpointError; never runs code.
    ``with_discriminator``: None loads it when generation uses it as a critic."""
    path = Path(path)
    try:
        weights_blob, config_blob = _read_pair(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path.name}: cannot be read ({e})") from None
    try:
        config = json.loads(config_blob)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path.name}: {CONFIG} is not valid JSON") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: {CONFIG} is not a musicgan checkpoint config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path.name}: made by a newer musicgan ({config.get('library_version')}); please upgrade")
    try:
        cfg = ModelConfig.from_dict(config.get("model") or {})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path.name}: bad model settings ({e})") from None
    try:
        tensors = load_safetensors(weights_blob)
    except (SafetensorError, ValueError, RuntimeError):
        raise CheckpointError(f"{path.name}: {WEIGHTS} is not a valid safetensors file") from None

    def part(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    _clamped(config, path.name)
    _parallels(config, path.name)
    generator = Generator(cfg)
    _load_into(generator, part("generator."), path.name, "generator")
    if cfg.key_input:
        generator.key_weights.copy_(_key_weights(config, path.name))
    generator.metre_weights.copy_(_metre_weights(config, cfg, path.name))
    data = config.get("data")
    try:
        generator.ends.copy_(ending.ends_of(data.get("ends") if isinstance(data, dict) else None, cfg.metres))
        generator.opens.copy_(upbeat.opens_of(data.get("opens") if isinstance(data, dict) else None, cfg.metres))
        generator.entering = upbeat.entering_of(data.get("entries") if isinstance(data, dict) else None, cfg.voices)
    except ValueError as e:
        raise CheckpointError(f"{path.name}: {e}") from None
    for name, key in SAMPLING_BIASES.items():
        bias = tensors.get(key)
        if bias is None:
            continue
        mine = getattr(generator, name)
        if bias.shape != mine.shape or bias.dtype != torch.float32 or \
                not torch.isfinite(bias).all() or bias.abs().max() > 10 or \
                (name == "pitch_temperature" and not 0.25 <= float(bias) <= 4):
            raise CheckpointError(f"{path.name}: {key} is not a sampling bias for this model")
        mine.copy_(bias)
    discriminator = None
    d_state = part("discriminator.")
    if with_discriminator is None:
        with_discriminator = _candidates(config) > 1
    if with_discriminator and d_state:
        discriminator = Discriminator(cfg, _window_bars(config))
        _load_into(discriminator, d_state, path.name, "discriminator")
    generator.eval()
    if discriminator is not None:
        discriminator.eval()
    meta = {k: v for k, v in config.items() if k not in ("format", "format_version", "model")}
    return Checkpoint(cfg, generator, discriminator, meta, part("train."), str(path),
                      _copy_index(tensors.get(COPY_INDEX), path.name),
                      {voice: reader for voice, (setting, prefix) in READERS.items()
                       if (reader := _harmoniser(cfg, meta.get(setting), part(prefix), path.name, setting)) is not None},
                      _forms(tensors.get(FORMS), path.name))


def _harmoniser(cfg: ModelConfig, settings, state: dict, name: str, setting: str) -> LineReader | None:
    """A harmoniser's reader when the checkpoint has it (``setting`` in its config)."""
    if settings is None and not state:
        return None
    hidden = settings.get("hidden") if isinstance(settings, dict) else None
    if not isinstance(hidden, int) or isinstance(hidden, bool) or not 1 <= hidden <= 1024:
        raise CheckpointError(f"{name}: {setting}.hidden is not a width for a harmoniser")
    reader = LineReader(cfg, hidden)
    _load_into(reader, state, name, setting)
    beta = settings.get("parallel_bias")  # (absent: one fitted before harmonisers fitted their own)
    if beta is not None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 10:
            raise CheckpointError(f"{name}: {setting}.parallel_bias is not a sampling penalty")
        reader.parallel_bias = float(beta)
    temperature = settings.get("pitch_temperature", 1.0)  # (absent: one fitted before harmonisers fitted theirs)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.05 <= temperature <= 5:
        raise CheckpointError(f"{name}: {setting}.pitch_temperature is not a temperature")
    reader.pitch_temperature = float(temperature)
    swap = settings.get("swap_bias", 0.0)  # (absent: one fitted before a bass's swap bias was)
    if isinstance(swap, bool) or not isinstance(swap, (int, float)) or not abs(swap) <= 10:
        raise CheckpointError(f"{name}: {setting}.swap_bias is not a swap bias")
    reader.swap_bias = float(swap)
    return reader.eval()


def _key_weights(config: dict, name: str) -> torch.Tensor:
    """How often each of the 24 keys occurs in the training music (``data.keys``); all alike
    when the config does not say."""
    data = config.get("data")
    counts = data.get("keys") if isinstance(data, dict) else None
    if counts is None:
        return torch.ones(KEYS)
    ok = isinstance(counts, list) and len(counts) == KEYS and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c < 1e12 for c in counts)
    if not ok or sum(counts) <= 0:
        raise CheckpointError(f"{name}: data.keys is not a count for each of the {KEYS} keys")
    return torch.tensor(counts, dtype=torch.float32)


def _metre_weights(config: dict, cfg: ModelConfig, name: str) -> torch.Tensor:
    """How many bars of each of the model's metres its training music has (``data.metres``, by
    name: "3/4"); all alike when the config does not say."""
    data = config.get("data")
    bars = data.get("metres") if isinstance(data, dict) else None
    if bars is None:
        return torch.ones(len(cfg.metres))
    ok = isinstance(bars, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e12
                                        for v in bars.values())
    weights = [bars.get(metre.name(m), 0) for m in cfg.metres] if ok else []
    if not ok or sum(weights) <= 0:
        raise CheckpointError(f"{name}: data.metres is not a count of bars for the model's metres")
    return torch.tensor([max(w, 1e-3) for w in weights], dtype=torch.float32)


def _copy_index(tensor: torch.Tensor | None, name: str) -> np.ndarray | None:
    if tensor is None:
        return None
    if tensor.dtype != torch.int64 or tensor.dim() != 1 or len(tensor) > copyguard.MAX_INDEX:
        raise CheckpointError(f"{name}: {COPY_INDEX} is not a copy-guard index")
    return np.sort(tensor.numpy())


def _forms(tensor: torch.Tensor | None, name: str) -> np.ndarray | None:
    if tensor is None:
        return None
    try:
        return form.check(tensor.numpy())
    except ValueError as e:
        raise CheckpointError(f"{name}: {FORMS} is not a set of forms ({e})") from None


def _load_into(module: torch.nn.Module, state: dict, name: str, what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{name}: the {what} weights are missing {missing[0]}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise CheckpointError(f"{name}: {what} weight {key} has shape {tuple(state[key].shape)}, "
                                  f"the config needs {tuple(value.shape)}")
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise CheckpointError(f"{name}: {what} weight {key} holds NaN or infinite values")
    module.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected})


def zip_bytes(directory) -> bytes:
    """The checkpoint folder as a .zip (for downloads)."""
    directory = Path(directory)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in (WEIGHTS, CONFIG, "README.md"):
            if (directory / name).exists():
                z.write(directory / name, f"{directory.name}/{name}")
    return buf.getvalue()
