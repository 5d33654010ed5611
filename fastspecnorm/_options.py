"""Options declared once: a dataclass field that is also a command-line option (`option`), and the
parsers of their text. The command line builds its parser from such fields and `compare()` takes the
same names as keywords, so a new option is one field. Imports nothing heavy (read before torch).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import MISSING, Field, field
from typing import Any

__all__ = ["option"]  # and the parsers of option text below


def option(
    default: Any = MISSING,
    *,
    help: str,
    parse: Callable[[str], Any] | None = None,
    nargs: str | None = None,
    metavar: str | None = None,
    choices: Callable[[], list[str]] | None = None,
    default_factory: Callable[[], Any] | None = None,
    flag: bool = True,
) -> Field:
    """A dataclass field that the command line offers as `--name-with-dashes`.

    Args:
        default: the field's default (none: a required option).
        help: the option's help, shown by `--help` and in the dataclass's docs.
        parse: turns the option's text into the value (None: kept as text; a bool field is a switch).
        nargs: argparse's `nargs` ("+": one or more values).
        metavar: the value's name in `--help`.
        choices: returns the allowed values, when the parser is built (a registry may grow).
        default_factory: the default, made anew for each instance (lists).
        flag: False for a field the command line sets another way (not an option of its own).

    Returns:
        The `dataclasses.Field`, its command-line description in `metadata`.
    """
    metadata = {"help": help, "parse": parse, "nargs": nargs, "metavar": metavar, "choices": choices, "flag": flag}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _parser(convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    "A parser: `convert(text)` for which `ok` holds, else one message saying what was `expected` (argparse names the option)."

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _parser(int, lambda v: v >= 1, "a positive integer")
count = _parser(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _parser(float, lambda v: math.isfinite(v) and v > 0, "a finite positive number")
fraction = _parser(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
points = _parser(float, lambda v: 0 <= v < 100, "accuracy points in [0, 100), such as 1.0")
shard_index = _parser(
    lambda text: tuple(map(int, text.split("/"))),
    lambda v: len(v) == 2 and 1 <= v[0] <= v[1],
    "I/N with 1 <= I <= N, such as 2/4",
)


def fold_value(text: str) -> int | str:
    "A parser: a fold number (int), or a fold's name (a speaker)."
    return int(text) if text.lstrip("-").isdigit() else text
