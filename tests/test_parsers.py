"""The numeric option parsers: a bad value fails at parse time with one line naming the option."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from barkbench.parsers import MAX_SECONDS, positive_int, positive_seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "must be at most 604800 seconds"),
        ("1e12", "must be at most 604800 seconds"),
        (str(MAX_SECONDS * 2), "must be at most 604800 seconds"),
        ("-inf", "must be > 0 seconds"),
        ("nan", "must be > 0 seconds"),
    ],
)
def test_seconds_beyond_a_week_or_not_finite_are_refused(value: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"--bark-round-timeout {message}"):
        positive_seconds("--bark-round-timeout")(value)


@pytest.mark.parametrize(("value", "expected"), [("20", 20.0), ("0.5", 0.5), (str(MAX_SECONDS), MAX_SECONDS)])
def test_seconds_in_range_are_kept(value: str, expected: float) -> None:
    assert positive_seconds("--bark-max-time")(value) == expected


@pytest.mark.parametrize(("value", "message"), [("0", "must be > 0"), ("x", "must be a number of seconds")])
def test_seconds_errors_name_the_option(value: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"--bark-max-time {message}"):
        positive_seconds("--bark-max-time")(value)


def test_integers_below_the_minimum_are_refused() -> None:
    assert positive_int("--bark-rounds")("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="--bark-rounds must be >= 1, got 0"):
        positive_int("--bark-rounds")("0")


def test_an_infinite_round_timeout_is_one_line_at_start(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "--bark-round-timeout", "inf"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--bark-round-timeout must be at most 604800 seconds" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
