"""``barkbench acceptance RUN.json...``: what must hold in any GPU run, and its summary (``results.acceptance``)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "check what must hold in any GPU run (CUDA allocator, offload below no-offload, fp16 half of fp32) and summarize"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="RUN.json", help="--benchmark-json files of a GPU run")
    parser.add_argument("--summary", metavar="FILE.md", help="also write the Markdown summary to FILE.md")


def run(args: argparse.Namespace) -> int:
    # results.acceptance groups rows through results.report, which loads matplotlib: not for --help.
    from barkbench.results.acceptance import check_run, summary
    from barkbench.results.load import load_run

    runs = [load_run(path) for path in args.files]
    checks = [c for r in runs for c in check_run(r)]
    text = summary(runs, checks)
    print(text, end="")
    if args.summary:
        Path(args.summary).write_text(text)
    return 0 if all(c.ok for c in checks) else 1
