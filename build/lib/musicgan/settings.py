"""Every user-facing setting, once: its default, bounds and help text live on its field of a
config dataclass (:class:`~musicgan.train.TrainConfig`, :class:`~musicgan.models.ModelConfig`).
The command line builds its flags from them (:func:`add_flags`), and the app its widgets
(:func:`describe`), so a default is written in one place only.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass


def setting(default, help: str, *, label: str | None = None, minimum=None, maximum=None, step=None,
            choices: tuple | None = None):
    """A dataclass field that people can set: ``help`` is the CLI's help text and the app's hint,
    ``label`` the app's label (default: ``help``), ``minimum``/``maximum`` its bounds."""
    meta = {"help": help, "label": label or help, "minimum": minimum, "maximum": maximum, "step": step,
            "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    label: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def kind(self) -> type:
        return type(self.default)


def describe(cls, name: str) -> Setting:
    """The setting ``name`` of config class ``cls`` (a field made with :func:`setting`)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if "help" not in field.metadata:
        raise KeyError(f"{cls.__name__}.{name} is not a user-facing setting")
    meta = field.metadata
    return Setting(name, field.default, meta["help"], meta["label"], meta["minimum"], meta["maximum"],
                   meta["step"], meta["choices"])


def public(cls) -> list[str]:
    """The names of the user-facing settings of ``cls``, in field order."""
    return [f.name for f in dataclasses.fields(cls) if "help" in f.metadata]


def _checked(s: Setting):
    convert = float if s.kind is float else int

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if (s.minimum is not None and value < s.minimum) or (s.maximum is not None and value > s.maximum):
            raise argparse.ArgumentTypeError(f"must be {s.minimum} to {s.maximum} (got {text})")
        return value

    return parse


def add_flags(parser, cls, names=None, group_title: str | None = None) -> None:
    """One flag per setting of ``cls`` (all public ones unless ``names``), with its help text and
    default shown. The flags default to None: "not given", so the config's own default applies."""
    target = parser.add_argument_group(group_title) if group_title else parser
    for name in names or public(cls):
        s = describe(cls, name)
        if s.kind is bool:
            target.add_argument(s.flag, dest=name, action="store_true", default=None, help=s.help)
        else:
            target.add_argument(s.flag, dest=name, type=_checked(s), default=None, choices=s.choices,
                                metavar="N" if s.kind is int else "X", help=f"{s.help} (default {s.default})")


def given(args, cls, names=None) -> dict:
    """The settings of ``cls`` that were given on the command line, by name."""
    return {n: getattr(args, n) for n in names or public(cls) if getattr(args, n, None) is not None}
