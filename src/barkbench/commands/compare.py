"""``barkbench compare BASE NEW --fail-on METRIC:THRESHOLD``: the regression gate (``results.compare``).

Exit status: 0 no regression beyond a threshold, 1 at least one (or a quality gate exceeded), 2 unusable input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from barkbench import stats
from barkbench.results import quality as quality_gates
from barkbench.results.compare import METRICS, Comparison, Gate, OptionError, compare_runs, parse_fail_on
from barkbench.results.load import Run, load_run

HELP = "gate NEW against BASE on peak memory, throughput, latency or audio rate (exit 1 on a regression)"


def _option(parse: Callable[[str], Gate]) -> Callable[[str], Gate]:
    """Let argparse show the parser's own message instead of its generic 'invalid value'."""

    def wrapped(text: str) -> Gate:
        try:
            return parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", type=Path, metavar="BASE.json", help="the reference run")
    parser.add_argument("new", type=Path, metavar="NEW.json", help="the run to check")
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        type=_option(parse_fail_on),
        metavar="METRIC:THRESHOLD",
        help=f"fail when METRIC gets worse by more than THRESHOLD (5%% or 0.05); "
        f"repeatable. Metrics: {', '.join(METRICS)}. Without it every metric is shown and "
        f"nothing is gated",
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=stats.ALPHA,
        metavar="P",
        help=f"significance level of the Mann-Whitney U test that timing regressions must also pass "
        f"(default: {stats.ALPHA:g})",
    )
    parser.add_argument(
        "--when-undecided",
        choices=("fail", "pass"),
        default="fail",
        help="a timing change beyond its threshold in runs with too few rounds to test (or without per-round "
        "data): fail (default, the threshold alone decides) or pass",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="compare runs whose workload (semantic tokens, fixed length, prompts, voice), model source or device "
        "differ instead of refusing with exit status 2",
    )
    parser.add_argument(
        "--quality-gates",
        type=_quality_gates,
        default=None,
        metavar="FILE",
        help="also hold NEW's recorded quality (run with --bark-quality) to FILE's drift limits (TOML [[gate]] "
        "tables, see docs/quality.md); a gate exceeded fails",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip BASE benchmarks absent from NEW instead of failing with exit status 2",
    )


def _quality_gates(text: str) -> tuple[quality_gates.Gate, ...]:
    try:
        return quality_gates.load_gates(text)
    except quality_gates.QualityGateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha {text!r} is not a number; e.g. 0.05") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"--alpha {text!r} must be between 0 and 1 (exclusive); e.g. 0.05")
    return value


def run(args: argparse.Namespace) -> int:
    base, new = load_run(args.base), load_run(args.new)
    for note in base.notes() + new.notes():
        print(f"barkbench: note: {note}", file=sys.stderr)
    alpha = getattr(args, "alpha", stats.ALPHA)
    comparison = compare_runs(
        base,
        new,
        args.fail_on,
        allow_missing=args.allow_missing,
        alpha=alpha,
        undecided_fails=getattr(args, "when_undecided", "fail") == "fail",
        allow_mixed=getattr(args, "allow_mixed", False),
    )
    print(comparison.to_markdown())
    print()
    print(
        f"Timing metrics fail only beyond the threshold AND significant (two-sided Mann-Whitney U on the per-round "
        f"timings, or on the process means where both rows ran in several processes, p < {alpha:g}); their 95 % "
        f"intervals are percentile bootstraps over the same values. Memory: threshold alone."
    )
    print()
    quality_failed = _check_quality(new, getattr(args, "quality_gates", None))
    return _gate_verdict(comparison, args.fail_on, quality_failed)


def _check_quality(new: Run, gates: tuple[quality_gates.Gate, ...] | None) -> bool:
    """Print NEW's quality verdicts against ``gates``; True when one was exceeded."""
    if gates is None:
        return False
    verdicts = quality_gates.check([b.extra_info for b in new.benchmarks], gates)
    for verdict in verdicts:
        print(f"quality: {verdict.message}")
    if not verdicts:
        print("quality: no benchmark of NEW matched a quality gate; nothing was checked")
    failed = any(not v.ok for v in verdicts)
    if failed:
        print("FAILED: a quality gate was exceeded.")
    print()
    return failed


def _gate_verdict(comparison: Comparison, fail_on: list[Gate], quality_failed: bool) -> int:
    """The closing line and the exit status: 1 on a regression beyond a threshold or a quality gate exceeded."""
    if not fail_on:
        print(f"No --fail-on given: {len(comparison.checks)} figure(s) shown, nothing gated.")
        return 1 if quality_failed else 0
    gates = ", ".join(str(g) for g in fail_on)
    regressions = comparison.regressions
    if regressions:
        print(f"FAILED: {len(regressions)} regression(s) beyond the thresholds ({gates}).")
        return 1
    print(f"OK: no regression beyond the thresholds ({gates}) in {len(comparison.checks)} check(s).")
    return 1 if quality_failed else 0
