"""The schema a knob is declared with: once, for its validation, its CLI flag and its widget.

A leaf module (it imports nothing of kd but the errors): RunConfig's fields (kd/config.py) and
each method's own knobs (kd/methods/*.py) are declared with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kd.errors import ConfigError


@dataclass(frozen=True)
class Knob:
    """One RunConfig field, declared once: its validation, its CLI flag (--name-with-dashes) and
    its widget on the Train page are all made from this."""

    label: str  # the Train page's label
    help: str  # what it does: the CLI's help, the page's tooltip
    lo: float | None = None  # allowed range (numbers)
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed
    choices: Any = None  # the allowed values: a tuple, or a function returning them (registries)
    check: Callable[[Any], str | None] | None = None  # a further check: what is wrong, or None
    options: tuple | None = None  # the page offers these values to pick from
    share: bool = False  # the page shows the value as a percentage
    section: str = "training"  # where the Train page draws it: data | models | method | training | teacher


def knob(default: Any, label: str, help: str, **kw: Any) -> Any:
    return dataclasses.field(default=default, metadata={"knob": Knob(label, help, **kw)})


@dataclass(frozen=True)
class Option:
    """A method's own knob, declared in the method's file: its default and its Knob. Its value
    lives in RunConfig.options; its CLI flag is --name-with-dashes; the page shows it when the
    method is chosen."""

    default: Any
    knob: Knob
    tap_of: str | None = None  # "student" | "teacher": its values are that model's taps (kd/features.py)

    @property
    def kind(self) -> type:
        return type(self.default)


def option(default: Any, label: str, help: str, tap_of: str | None = None, **kw: Any) -> Option:
    return Option(default, Knob(label, help, section="method", **kw), tap_of)


def option_error(name: Any, message: str) -> ConfigError:
    """A ConfigError of the field options that names the knob (the CLI names its flag)."""
    e = ConfigError("options", f"{name!r}: {message}")
    e.knob, e.knob_message = name, message  # type: ignore[attr-defined]
    return e
