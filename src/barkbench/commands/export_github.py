"""``barkbench export-github RUN.json``: github-action-benchmark custom JSON files (``results.export``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from barkbench.results.export import SERIES, export_github
from barkbench.results.load import load_run

HELP = "write github-action-benchmark custom JSON (peak memory, throughput) from a run"
DEFAULT_PREFIX = "github-benchmark"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_file", type=Path, metavar="RUN.json", help="a pytest-benchmark JSON file")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_PREFIX),
        metavar="PREFIX",
        help=f"writes PREFIX-memory.json (tool: customSmallerIsBetter) and "
        f"PREFIX-throughput.json (tool: customBiggerIsBetter); default: {DEFAULT_PREFIX}",
    )


def run(args: argparse.Namespace) -> int:
    data = load_run(args.run_file)
    for note in data.notes():
        print(f"barkbench: note: {note}", file=sys.stderr)
    failed = [r.variant for r in data.benchmarks if r.failed]
    if failed:
        print(f"barkbench: note: left out failed variant(s): {', '.join(failed)}", file=sys.stderr)
    paths = export_github(data, args.output)
    for series in SERIES:
        print(f"{paths[series.suffix]}  (tool: {series.tool}, unit: {series.unit})")
    return 0
