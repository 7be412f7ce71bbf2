"""``barkbench sweep [pytest args...] --shards N``: one pytest process per shard through submitit, then one merged
file (``sweep.launch``). Unknown arguments are pytest's and pass through in their order."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from barkbench.commands import UsageError
from barkbench.sweep import launch

HELP = (
    "run [pytest args...] as N shards through submitit (--executor local: one per visible GPU, or one at a time "
    "on CPU; slurm: a job array), wait, and merge the shards' JSON files"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", type=int, required=True, metavar="N", help="number of shards (jobs)")
    parser.add_argument("--executor", choices=launch.EXECUTORS, default="local", help="local (default) or slurm")
    parser.add_argument(
        "--out-dir", type=Path, default=Path("barkbench-sweep"), help="shard JSON files and job logs go here"
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="merged file (default: OUT_DIR/merged.json)")
    parser.add_argument("--slurm-partition", default=None, help="Slurm partition of the job array")
    parser.add_argument("--gpus-per-task", type=int, default=1, help="GPUs per Slurm job (default 1)")
    parser.add_argument("--timeout-min", type=int, default=120, help="minutes before a shard's job is killed")
    parser.add_argument("--poll-s", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.set_defaults(pytest_args=[])


def run(args: argparse.Namespace) -> int:
    if args.shards < 1:
        raise UsageError(f"--shards must be >= 1, got {args.shards}")
    if not args.pytest_args:
        raise UsageError("give the pytest arguments to run, e.g. `barkbench sweep bench/ --shards 2`")
    result = launch.sweep(
        args.pytest_args,
        args.shards,
        args.out_dir,
        executor=args.executor,
        output=args.output,
        slurm_partition=args.slurm_partition,
        gpus_per_task=args.gpus_per_task,
        timeout_min=args.timeout_min,
        poll_s=args.poll_s,
    )
    for outcome in result.outcomes:
        print(f"barkbench: {outcome.line()}", file=sys.stderr)
    if result.merged is None:
        print("barkbench: no shard wrote a result file; nothing merged", file=sys.stderr)
        return 1
    print(f"barkbench: merged into {result.output}", file=sys.stderr)
    for line in result.merged.summary():
        print(f"barkbench: {line}; run the same command again to retry those shards", file=sys.stderr)
    return 0 if result.ok else 1
