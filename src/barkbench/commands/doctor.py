"""``barkbench doctor``: what this machine can measure, before a long run (``barkbench.doctor``).

Always exits 0 unless the ``--limits`` arguments are wrong (2): it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import json

from barkbench import doctor
from barkbench.commands import UsageError

HELP = "show what this machine can measure: torch build, devices, optional packages, and each preset's skip reason"

#: The architecture ``--limits`` measures by default: the model docs/measurement.md's efficiency table uses.
DEFAULT_LIMITS_MODEL = "random:bark-small"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "xpu", "mps"),
        default="auto",
        help="judge the presets for this device (default: the one `pytest bench/` would pick)",
    )
    parser.add_argument(
        "--limits",
        nargs="?",
        const="baseline",
        default=None,
        metavar="VARIANTS",
        help="measure the machine's limits now (copy bandwidth, decode GEMV, fine GEMM; seconds per variant) for "
        "the dtypes and int8/fp16 weights of VARIANTS (a --bark-variants value; default: baseline) on --device, "
        "and store them in the cache the benchmarks read (replacing the cached figures); without it, doctor "
        "only shows what is cached",
    )
    parser.add_argument(
        "--limits-model",
        default=DEFAULT_LIMITS_MODEL,
        metavar="ARCH",
        help=f"architecture whose shapes --limits measures: tiny, random:bark-small or random:bark (a checkpoint "
        f"has its architecture's shapes; default: {DEFAULT_LIMITS_MODEL})",
    )


def run(args: argparse.Namespace) -> int:
    measured = None
    if args.limits is not None:
        # measure.device reads the machine (and may import torch): only when limits are to be measured.
        from barkbench.measure import device

        chosen = device.device_type() if args.device == "auto" else args.device
        try:
            measured = doctor.measure_limits(args.limits, args.limits_model, chosen)
        except doctor.LimitsArgumentError as exc:
            raise UsageError(str(exc)) from None
    report = doctor.facts(args.device)
    if measured is not None:
        report["limits_measured"] = measured
    print(json.dumps(report, indent=2, default=str) if args.json else doctor.facts_text(report))
    return 0
