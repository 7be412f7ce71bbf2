"""``barkbench overhead``: what the harness costs over a bare ``model.generate`` loop, with its interval
(``measure.overhead``)."""

from __future__ import annotations

import argparse
import json
import sys

from barkbench.commands import UsageError
from barkbench.parsers import positive_int

HELP = (
    "measure the harness's overhead over a bare generate loop (interleaved fresh processes, or pairs in each "
    "process with --paired; 95 % interval)"
)
DEVICES = ("cpu", "cuda")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny", help="model source, as --bark-model (default: tiny)")
    parser.add_argument(
        "--processes",
        type=positive_int("--processes"),
        default=6,
        help="fresh processes per side (default: 6); with --paired, worker processes in all",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int("--rounds"),
        default=5,
        help="timed calls per process (default: 5); with --paired, pairs per process",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="time both sides in the same worker processes, a harness round and a bare call one right after the "
        "other (ABBA), so process-to-process differences cancel; the interval resamples pairs",
    )
    parser.add_argument(
        "--warmup", type=positive_int("--warmup", 0), default=1, help="untimed calls per process first (default: 1)"
    )
    parser.add_argument(
        "--semantic-tokens",
        type=positive_int("--semantic-tokens"),
        default=64,
        help="pinned semantic length (default: 64)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=None,
        help="torch intra-op threads in both (default: torch's)",
    )
    parser.add_argument(
        "--no-fixed-length", action="store_true", help="let calls stop at EOS (default: every call forced to length)"
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where both sides run (default: cpu); cuda: the bare loop synchronizes once per call",
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the timings and result as JSON")


def run(args: argparse.Namespace) -> int:
    # measure.overhead plans its processes with measure.schedule, which imports scipy: not for --help.
    from barkbench.measure.overhead import measure, measure_paired

    if args.device == "cuda":
        _require_cuda()
    result = (measure_paired if args.paired else measure)(
        args.model,
        args.processes,
        args.rounds,
        args.warmup,
        args.semantic_tokens,
        args.threads,
        fixed_length=not args.no_fixed_length,
        log=lambda line: print(f"barkbench: {line}", file=sys.stderr, flush=True),
        device=args.device,
    )
    print(result.summary())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "model": args.model,
                    "device": args.device,
                    "semantic_tokens": args.semantic_tokens,
                    "threads": args.threads,
                    **result.as_dict(),
                },
                handle,
                indent=2,
            )
    return 0


def _require_cuda() -> None:
    """Refuse ``--device cuda`` in one line before any process starts, where no CUDA GPU is usable (asked of a child
    process by ``device.probe``: this one never starts CUDA)."""
    from barkbench.measure import device

    reason = device.cuda_unavailable_reason("--device")
    if reason is not None:
        raise UsageError(reason)
