"""``barkbench budgets RUN.json [--budgets FILE]``: hold a saved run to memory budgets (``results.budgets``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from barkbench.results.budgets import DEFAULT_NAME, check_extra_infos, failures, load_budgets, nothing_matched
from barkbench.results.load import ResultsError, load_run

HELP = (
    "hold the variants of a saved run to memory budgets (exit 1 when one is exceeded or none matches; 2 when the "
    "file holds no barkbench benchmarks)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_file", type=Path, metavar="RUN.json", help="a pytest-benchmark JSON file")
    parser.add_argument(
        "--budgets",
        default=DEFAULT_NAME,
        metavar="FILE|default",
        help="the budgets TOML file (default: barkbench's packaged budgets.toml)",
    )


def run(args: argparse.Namespace) -> int:
    budgets = load_budgets(args.budgets)
    data = load_run(args.run_file)
    if not data.benchmarks:
        # Nothing to hold to a budget is a wrong input (exit 2, as report, compare and export say), not a failed
        # budget (exit 1): a CI gate must not read a plain pytest-benchmark file as an excess.
        raise ResultsError(
            f"{data.path}: no barkbench benchmarks to check; pass a run written by "
            "`pytest bench/ --benchmark-json=FILE`"
        )
    for note in data.notes():
        print(f"barkbench: note: {note}", file=sys.stderr)
    extra_infos = [r.extra_info for r in data.benchmarks]
    verdicts = check_extra_infos(extra_infos, budgets)
    if not verdicts:
        print(f"FAILED: {nothing_matched(extra_infos, budgets)}")
        return 1
    for verdict in verdicts:
        print(verdict.message)
    failed = failures(verdicts)
    if failed:
        print(f"FAILED: {len(failed)} of {len(verdicts)} budget check(s) failed.")
        return 1
    print(f"OK: {len(verdicts)} budget check(s) passed.")
    return 0
