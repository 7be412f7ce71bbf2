"""``barkbench merge RUN.json... -o OUT.json``: one file from a sharded sweep's files (``results.merge``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from barkbench.results.merge import check_output, merge, write

HELP = "merge the JSON files of a sharded sweep into one pytest-benchmark JSON file; lists what is missing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN.json", help="the shards' --benchmark-json files")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.json", help="the merged file")
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="merge files with different workloads or library versions anyway",
    )
    parser.add_argument(
        "--require-complete",
        action="store_true",
        help="exit with status 1 when shards or variants are missing (the file is written anyway)",
    )


def run(args: argparse.Namespace) -> int:
    check_output(args.output)  # before reading the inputs: nothing is done for an output that cannot be written
    merged = merge(args.runs, allow_mixed=args.allow_mixed)
    write(merged, args.output)
    count = len(merged.data["benchmarks"])
    print(f"barkbench: merged {len(args.runs)} file(s), {count} benchmark(s) into {args.output}", file=sys.stderr)
    for line in merged.summary():
        print(f"barkbench: {line}", file=sys.stderr)
    return 1 if args.require_complete and not merged.complete else 0
