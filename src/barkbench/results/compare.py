"""``barkbench compare BASE NEW --fail-on METRIC:THRESHOLD``: the regression gate on barkbench's own figures.

pytest-benchmark's ``--benchmark-compare-fail`` gates timing stats only; peak memory, throughput and the
audio rate live in ``extra_info``, which it never compares. Benchmarks are matched by ``fullname`` (the test
id is the variant id, so the same variant keeps its name across runs).

Timing metrics (latency, throughput, audio rate) are gated as asv gates: the change of the recorded figure must
exceed the threshold AND be significant — a two-sided Mann-Whitney U test with p < ``--alpha`` on the values
``stats.samples`` picks, the same ones ``report``'s intervals use: the per-process means where both rows ran in
several processes, else the per-round timings both files store (``stats.data``). A run with too few values for the
test to reach ``--alpha`` (3 vs 3 never can) is judged on the threshold alone and the verdict says so
(``--when-undecided pass`` lets it pass); so is a file without per-round data. Each timing row shows the 95 %
interval of the change (percentile bootstrap over the same values) and the p-value. Peak memory, deterministic on
CUDA, keeps the plain threshold.

Exit status: 0 no regression beyond a threshold, 1 at least one, 2 unusable input (missing or malformed file,
or a BASE benchmark absent from NEW without ``--allow-missing``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from barkbench import stats
from barkbench.results import markdown as md
from barkbench.results import schema
from barkbench.results.load import BenchmarkResult, ResultsError, Run

#: Floating-point slack so that a change of exactly the threshold (5.0 % vs 5 %) is never a regression.
_EPSILON = 1e-9


class OptionError(ValueError):
    """A bad option value; the message says what is accepted."""


class MixedRunsError(ResultsError):
    """BASE and NEW measured different workloads, models or devices: their figures are not comparable."""


class MissingBenchmarkError(ResultsError):
    """A BASE benchmark has no counterpart in NEW (the gate would silently stop covering it)."""


@dataclass(frozen=True)
class Metric:
    """A gateable metric: its ``--fail-on`` name and the schema's descriptor (key, unit, direction, rendering)."""

    name: str
    descriptor: schema.Metric

    @property
    def label(self) -> str:
        return self.descriptor.label

    @property
    def higher_is_worse(self) -> bool:
        return self.descriptor.higher_is_worse

    @property
    def timing(self) -> bool:
        """Derived from the per-round timings, so gated on their significance as well as the threshold."""
        return self.descriptor in (schema.LATENCY, schema.THROUGHPUT, schema.AUDIO_RATE)

    @property
    def reciprocal(self) -> bool:
        """Proportional to 1 / mean latency (throughput = batch / latency; audio rate = audio / latency)."""
        return self.descriptor in (schema.THROUGHPUT, schema.AUDIO_RATE)

    def value(self, result: BenchmarkResult) -> float | None:
        return metric_value(result, self.descriptor)

    def render(self, value: float | None) -> str:
        return self.descriptor.render(value)


def metric_value(result: BenchmarkResult, metric: schema.Metric) -> float | None:
    """``metric`` of ``result``: pytest-benchmark's mean for latency, else the recorded figure."""
    if metric is schema.LATENCY:
        return result.latency_mean
    value: float | None = getattr(result.record, metric.key)
    return value


#: ``--fail-on`` names; "memory" is the peak.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("memory", schema.PEAK_MEMORY),
        Metric("throughput", schema.THROUGHPUT),
        Metric("latency", schema.LATENCY),
        Metric("audio_rate", schema.AUDIO_RATE),
    )
}


@dataclass(frozen=True)
class Gate:
    """Fail when ``metric`` gets worse by more than ``threshold`` (a fraction: 0.05 is 5 %)."""

    metric: Metric
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric.name}:{format_threshold(self.threshold)}"


def parse_threshold(text: str) -> float:
    """``5%`` or ``0.05`` -> 0.05. A bare number above 1 is refused: ``5`` is likelier a typo for ``5%``."""
    raw = text.strip()
    percent = raw.endswith("%")
    number_text = raw[:-1].strip() if percent else raw
    try:
        number = float(number_text)
    except ValueError:
        raise OptionError(f"threshold {text!r} is not a number; write it as 5% or 0.05") from None
    if not math.isfinite(number) or number < 0:
        raise OptionError(f"threshold {text!r} must be a finite, non-negative number; e.g. 5% or 0.05")
    if percent:
        return number / 100
    if number > 1:
        raise OptionError(
            f"threshold {text!r} is a fraction above 1 (more than 100 %); write {raw}% if you mean {raw} percent"
        )
    return number


def parse_metric(text: str) -> Metric:
    try:
        return METRICS[text.strip().lower()]
    except KeyError:
        raise OptionError(f"unknown metric {text!r}; choose one of {', '.join(METRICS)}") from None


def parse_fail_on(text: str) -> Gate:
    """``memory:5%`` -> Gate(memory, 0.05)."""
    metric, sep, threshold = text.partition(":")
    if not sep or not metric.strip() or not threshold.strip():
        raise OptionError(
            f"--fail-on {text!r} must be METRIC:THRESHOLD, e.g. memory:5% (metrics: {', '.join(METRICS)})"
        )
    return Gate(parse_metric(metric), parse_threshold(threshold))


def format_threshold(threshold: float) -> str:
    return f"{threshold * 100:g} %"


@dataclass(frozen=True)
class Check:
    """One (benchmark, metric) line of the comparison and its verdict."""

    name: str
    metric: Metric
    base: float | None
    new: float | None
    threshold: float | None
    verdict: str
    #: Timing metrics with stored rounds: the change's 95 % interval and the Mann-Whitney test.
    interval: stats.Interval | None = None
    significance: stats.Significance | None = None

    HEADERS = ("Benchmark", "Metric", "Base", "New", "Change", "Verdict", "Change 95 % CI", "p")

    @property
    def change(self) -> float | None:
        return md.relative_change(self.new, self.base)

    @property
    def regressed(self) -> bool:
        return self.verdict.startswith("REGRESSION")

    def row(self) -> list[str]:
        render = self.metric.render
        return [
            f"`{self.name}`",
            self.metric.label,
            render(self.base),
            render(self.new),
            md.format_percent(self.change, decimals=1),
            self.verdict,
            md.MISSING
            if self.interval is None
            else f"{md.format_percent(self.interval.low, 1)} to {md.format_percent(self.interval.high, 1)}",
            md.MISSING if self.significance is None else f"{self.significance.p_value:.2g}",
        ]


def judge(metric: Metric, base: float | None, new: float | None, threshold: float | None) -> str:
    """ok / improved / REGRESSION for a gated metric; ``—`` if ungated, ``n/a`` if BASE lacks the figure."""
    if base is None:
        return "n/a"  # nothing to hold NEW to
    if threshold is None:
        return md.MISSING
    if new is None:
        # The gate cannot vouch for a figure NEW no longer records; passing silently would hide that.
        return "REGRESSION (not recorded in NEW)"
    if base == 0:
        # No relative change from zero: any move is infinitely large, so only its direction matters.
        worse = new > 0 if metric.higher_is_worse else new < 0
        return "ok" if new == 0 else ("REGRESSION" if worse else "improved")
    change = (new - base) / base
    worse_by = change if metric.higher_is_worse else -change
    if worse_by > threshold + _EPSILON:
        return f"REGRESSION (> {format_threshold(threshold)})"
    if -worse_by > threshold + _EPSILON:
        return "improved"
    return "ok"


def judge_timing(
    metric: Metric,
    base: BenchmarkResult,
    new: BenchmarkResult,
    threshold: float | None,
    alpha: float = stats.ALPHA,
    undecided_fails: bool = True,
) -> tuple[str, stats.Interval | None, stats.Significance | None]:
    """The verdict on a timing metric: beyond the threshold (on the recorded figures) AND significant (on the
    rounds); with the change's interval and the test for the table."""
    base_value, new_value = metric.value(base), metric.value(new)
    plain = judge(metric, base_value, new_value, threshold)
    change = md.relative_change(new_value, base_value)
    # The same values report's intervals and speed-ups use: process means where both rows have them, else rounds.
    base_sample, new_sample = stats.samples(base.timings, new.timings)
    if not base_sample.values or not new_sample.values or change is None:
        beyond = plain.startswith(("REGRESSION (>", "improved"))
        return (f"{plain} (no per-round data to test)" if beyond else plain), None, None
    verdict = stats.regression_verdict(
        base_sample.values,
        new_sample.values,
        threshold if threshold is not None else 0.0,
        higher_is_worse=metric.higher_is_worse,
        alpha=alpha,
        undecided_fails=undecided_fails,
        over=new_sample.over,
        reciprocal=metric.reciprocal,
        change=change,
        epsilon=_EPSILON,
    )
    sig, interval = verdict.significance, verdict.change_interval
    if threshold is None or not plain.startswith(("REGRESSION (>", "improved")):
        return plain, interval, sig
    limit = f"> {format_threshold(threshold)}"
    if verdict.kind == "regression":
        return f"REGRESSION ({limit}, significant)", interval, sig
    if verdict.kind == "improved":
        return "improved (significant)", interval, sig
    if verdict.kind == "not significant":
        return f"ok ({limit} but not significant at {alpha:g})", interval, sig
    assert sig is not None and verdict.kind == "undecided"
    unit = "process means" if new_sample.over == "processes" else "rounds"
    rounds = (
        f"too few {unit} to test ({sig.n_base} vs {sig.n_new}; p < {alpha:g} needs {stats.rounds_needed(alpha)}+ each)"
    )
    if verdict.regressed:
        return f"REGRESSION ({limit}; {rounds})", interval, sig
    return (
        (f"undecided ({limit}; {rounds})" if plain.startswith("REGRESSION") else f"improved ({rounds})"),
        interval,
        sig,
    )


@dataclass(frozen=True)
class Comparison:
    checks: tuple[Check, ...]
    missing: tuple[str, ...]
    added: tuple[str, ...]

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regressed]

    def to_markdown(self) -> str:
        lines = [md.table(Check.HEADERS, [c.row() for c in self.checks], numeric=(2, 3, 4, 6, 7))]
        if self.missing:
            lines += ["", "Missing in NEW (skipped with --allow-missing): " + _names(self.missing)]
        if self.added:
            lines += ["", "Only in NEW (not gated): " + _names(self.added)]
        return "\n".join(lines)


def compare_runs(
    base: Run,
    new: Run,
    gates: Sequence[Gate],
    allow_missing: bool = False,
    alpha: float = stats.ALPHA,
    undecided_fails: bool = True,
    allow_mixed: bool = False,
) -> Comparison:
    """Check every BASE benchmark against NEW on the gated metrics (all metrics, ungated, when none given).

    Refuses (``MixedRunsError``) when a matched pair measured a different workload, model source or device,
    unless ``allow_mixed``."""
    if not base.benchmarks:
        raise ResultsError(
            f"{base.path}: no barkbench benchmarks to compare against; "
            f"pass a run written by `pytest bench/ --benchmark-json=FILE`"
        )
    new_by_name = new.by_fullname()
    missing = tuple(b.fullname for b in base.benchmarks if b.fullname not in new_by_name)
    if missing and not allow_missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise MissingBenchmarkError(
            f"{len(missing)} benchmark(s) of {base.path} missing in {new.path}: "
            f"{shown}; pass --allow-missing to skip them"
        )
    if not allow_mixed:
        for old in base.benchmarks:
            current = new_by_name.get(old.fullname)
            differences = schema.run_differences(old.record, current.record) if current else []
            if differences:
                raise MixedRunsError(
                    f"{base.path} and {new.path} measured different things ({old.name}: {'; '.join(differences)}); "
                    f"rerun one to match, or pass --allow-mixed to compare anyway"
                )
    thresholds: dict[str, float | None] = {g.metric.name: g.threshold for g in gates}
    if not thresholds:
        thresholds = dict.fromkeys(METRICS)
    base_names = {b.fullname for b in base.benchmarks}
    checks: list[Check] = []
    for old in base.benchmarks:
        current = new_by_name.get(old.fullname)
        if current is None:
            continue
        for name, threshold in thresholds.items():
            metric = METRICS[name]
            base_value, new_value = metric.value(old), metric.value(current)
            interval: stats.Interval | None = None
            significance: stats.Significance | None = None
            if old.failed:
                verdict = "failed in BASE"  # nothing to hold NEW to
            elif current.failed:
                # A variant that used to work and now fails is the worst regression there is.
                verdict = "REGRESSION (failed in NEW)" if threshold is not None else "failed in NEW"
            elif metric.timing:
                verdict, interval, significance = judge_timing(metric, old, current, threshold, alpha, undecided_fails)
                flagged = [side for side, r in (("BASE", old), ("NEW", current)) if r.unstable]
                if flagged:
                    # The noise checks failed on that run's rounds: the test holds, but the reader should know.
                    verdict += f"; {' and '.join(flagged)} unstable"
            else:
                verdict = judge(metric, base_value, new_value, threshold)
            checks.append(Check(old.name, metric, base_value, new_value, threshold, verdict, interval, significance))
    added = tuple(b.fullname for b in new.benchmarks if b.fullname not in base_names)
    return Comparison(tuple(checks), missing, added)


def _names(fullnames: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in fullnames)
