"""The command line's value types: each parses a flag's text or raises
``argparse.ArgumentTypeError``, which argparse reports as a usage error (exit 2). Shared by
:mod:`gist_onnx.cli` and the options objects its flags are generated from
(:class:`gist_onnx.serve.config.ServeConfig`, :class:`gist_onnx.wire.Limits`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def within(
    convert: Callable[[str], Any], least: float, most: float, *, above: bool = False
) -> Callable[[str], Any]:
    """``convert(text)`` if it is finite and from ``least`` (excluded with ``above``) to
    ``most``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_ok = value > least if above else value >= least
        if not (math.isfinite(value) and low_ok and value <= most):
            side = "above" if above else "from"
            upper = "" if math.isinf(most) else f" to {most:g}"
            raise argparse.ArgumentTypeError(f"must be {side} {least:g}{upper}, got {text}")
        return value

    return parse


count = within(int, 1, math.inf)
port = within(int, 1, 65535)
seconds = within(float, 0, math.inf, above=True)
milliseconds = within(float, 0, math.inf)
non_negative = within(int, 0, math.inf)


def lengths(text: str) -> tuple[int, ...]:
    """Comma-separated token lengths, each from 1 to 8192."""
    one = within(int, 1, 8192)
    return tuple(one(part) for part in text.split(",") if part.strip())


def flag(*names: str, help: str, **argparse_kwargs: Any) -> dict[str, Any]:
    """A dataclass field's ``metadata``: the command-line flag(s) it is set by, their help, and
    any other ``add_argument`` keyword (``type``, ``action``, ``metavar``, ``required``).
    ``invert=True``: a ``store_true`` flag that sets the field to False (``--quiet``)."""
    return {"flags": names, "help": help, **argparse_kwargs}
