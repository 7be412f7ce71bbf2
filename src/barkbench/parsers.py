"""Parsers of numeric option values, one per kind, shared by the pytest options (``--bark-*``) and the
``barkbench`` subcommands: a bad value fails at parse time with one line naming the option. Values-level (argparse
only), so both the pytest glue and the measurement commands can import it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: The longest time a seconds option takes: a week. Waits are handed to ``selectors``/``poll`` in milliseconds as a
#: C int (about 24.8 days at most); a larger value, or ``inf``, would pass parsing and then raise OverflowError
#: deep inside a worker's round, after every model had loaded.
MAX_SECONDS = 7 * 24 * 3600.0


def positive_int(name: str, minimum: int = 1) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {number}")
        return number

    parse.__name__ = name.lstrip("-").replace("-", "_")
    return parse


def positive_seconds(name: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number of seconds, got {value!r}") from None
        if not seconds > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0 seconds, got {value}")
        if not math.isfinite(seconds) or seconds > MAX_SECONDS:
            raise argparse.ArgumentTypeError(
                f"{name} must be at most {MAX_SECONDS:.0f} seconds (a week), got {value}; give a finite number"
            )
        return seconds

    parse.__name__ = name.lstrip("-").replace("-", "_")
    return parse
