"""Values the command line reads, from options or environment variables: bounded integers
and finite bounded numbers, each refused in argparse's words, naming what it expected."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable


def integer(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: the text of an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low:,} to {high:,}; got {text!r}"
            )
        return value

    return parse


def number(low: float, high: float, *, low_included: bool = True) -> Callable[[str], float]:
    """An argparse ``type``: the text of a finite number in [low, high] (or (low, high])."""
    interval = f"{'[' if low_included else '('}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above_low = value >= low if low_included else value > low
        if not (math.isfinite(value) and above_low and value <= high):
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {interval}; got {text!r}"
            )
        return value

    return parse


class EnvironmentValueError(ValueError):
    """An environment variable holds a value its reader refuses."""


def from_environment(variable: str, parse: Callable[[str], float], default: float) -> float:
    """``parse`` of the environment variable ``variable``, or ``default`` where it is unset
    or empty; a value ``parse`` refuses raises EnvironmentValueError naming the variable."""
    text = os.environ.get(variable, "")
    if not text:
        return default
    try:
        return parse(text)
    except argparse.ArgumentTypeError as refusal:
        raise EnvironmentValueError(f"environment variable {variable}: {refusal}") from None
