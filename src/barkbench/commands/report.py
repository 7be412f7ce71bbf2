"""``barkbench report RUN.json...``: the blog's Markdown tables and PNG plots (``results.report``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write Markdown tables and PNG plots from pytest-benchmark JSON files"
DEFAULT_OUTPUT_DIR = Path("barkbench-report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN.json",
        help="pytest-benchmark JSON files (--benchmark-json or .benchmarks/*/NNNN_*.json); "
        "runs from several machines are grouped per machine",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where report.md and the PNGs go (default: {DEFAULT_OUTPUT_DIR}/)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write only report.md")
    parser.add_argument(
        "--efficiency",
        action="store_true",
        help="print only each group's 'How close to the limit' table (variants ranked by latency, their stage "
        "efficiencies, decode-step levels and what bounds them) as Markdown, and write no files",
    )


def run(args: argparse.Namespace) -> int:
    # results.report draws the plots: importing it loads matplotlib, which --help must not wait for.
    from barkbench.results.load import load_runs
    from barkbench.results.report import efficiency_report, write_report

    if args.efficiency:
        sys.stdout.write(efficiency_report(load_runs(args.runs)))
        return 0
    report = write_report(load_runs(args.runs), args.output_dir, plots_enabled=not args.no_plots)
    sys.stdout.write(report.markdown)
    print(f"barkbench: wrote {', '.join(str(p) for p in report.files)}", file=sys.stderr)
    return 0
