"""Statistics on timings: confidence intervals, significance, regression verdicts and noise checks.

Pure functions on plain numbers (no torch, no I/O), so ``report``, ``compare`` and the pytest plugin all judge a
run the same way and the rules can be tested on crafted figures.

- Which values a statistic uses is decided in one place, ``samples``: per-process means for rows measured in
  several processes, else per-round timings, one unit for every row of a comparison. Report's intervals and
  speed-ups and compare's test and change interval all take their values from it, so they judge alike.
- Intervals are percentile bootstraps (``scipy.stats.bootstrap``) over the values given; ``Interval.over`` says
  which unit they are. The resampling generator is seeded, so a report built twice from the same file prints the
  same interval.
- Significance is a two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``), as asv's ``is_different``
  uses. Like asv it first asks whether the test *can* reach the level with so few values: two runs of 3 rounds
  each can never give p below 0.1 (2 / C(6, 3)), and a gate must say so rather than pass silently.
- A regression needs both: the change exceeds the threshold, and it is significant — or there are too few values
  to test (then the threshold alone decides, and the verdict says so; ``undecided_fails=False`` lets it pass).
- Noise checks follow pyperf's ``check`` (standard deviation >= 10 % of the mean, minimum or maximum >= 50 %
  from the mean) and add two about the machine: load average above the number of CPUs, and the share of the
  machine's CPU time other processes took while the rounds ran.
"""

from __future__ import annotations

import inspect
import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

#: Confidence level of every interval barkbench prints.
CONFIDENCE = 0.95
#: Significance level of the regression gate. asv uses 0.002 over many cheap samples; a Bark round costs
#: seconds, so runs have tens of rounds at most and 0.05 is the level such runs can reach (4 vs 4 rounds).
ALPHA = 0.05
#: Bootstrap resamples: scipy's default; the percentile interval moves by well under 1 % of its width beyond it.
N_RESAMPLES = 9999
#: Fixed seed of the resampling generator, so intervals are reproducible from the stored data.
SEED = 0

Over = Literal["rounds", "processes", "pairs"]
#: Timings: a list of floats, or a float array (the functions convert and check either).
Samples = Sequence[float] | npt.NDArray[np.floating[Any]]
VerdictKind = Literal["ok", "improved", "regression", "not significant", "undecided", "no data"]


class StatsError(ValueError):
    """Unusable input (a non-finite value, a non-positive mean in a ratio); the message says which and why."""


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    #: What one bootstrapped value is: a round's timing, one worker process's mean, or a pair of calls measured one
    #: after the other in the same process (``paired_ratio_interval``).
    over: Over
    #: Values behind the estimate (for a ratio: the smaller of the two samples).
    n: int
    method: str = "percentile bootstrap"

    @property
    def half_width(self) -> float:
        """The larger distance from the estimate to an end: a symmetric "±" that never understates."""
        return max(self.estimate - self.low, self.high - self.estimate)

    @property
    def relative_half_width(self) -> float | None:
        return self.half_width / abs(self.estimate) if self.estimate else None

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{_percent(self.confidence)} CI, {self.method} over {self.n} {_singular(self.over, self.n)}"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (stored in pytest-benchmark's ``extra_info``)."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "over": self.over,
            "n": self.n,
            "method": self.method,
        }


def _singular(over: str, n: int) -> str:
    return over if n != 1 else {"rounds": "round", "processes": "process", "pairs": "pair"}.get(over, over)


def _percent(fraction: float) -> str:
    """0.1 -> ``10 %`` (whole percent, the project's spacing)."""
    return f"{fraction * 100:.0f} %"


def _finite(values: Samples, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise StatsError(f"{what}: expected a flat list of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise StatsError(f"{what}: contains a non-finite value ({list(values)}); drop failed rounds first")
    return array


def _scipy_stats() -> Any:
    """``scipy.stats``, imported on first use: it takes longer to import than the rest of barkbench's reading side
    together, and most commands (``--help``, ``budgets``, ``merge``) never compute an interval or a test."""
    from scipy import stats as scipy_stats

    return scipy_stats


def _bootstrap_kwargs(seed: int) -> dict[str, Any]:
    # scipy 1.15 renamed random_state to rng; the oldest supported scipy (1.10) only has random_state.
    name = "rng" if "rng" in inspect.signature(_scipy_stats().bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def _percentile_bootstrap(
    samples: tuple[np.ndarray, ...],
    statistic: Any,
    confidence: float,
    n_resamples: int,
    seed: int,
    paired: bool = False,
) -> tuple[float, float]:
    if all(np.all(s == s[0]) for s in samples):
        # Every resample is the sample itself; scipy would warn about degenerate data for the same answer.
        value = float(statistic(*samples, axis=-1))
        return value, value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = _scipy_stats().bootstrap(
            samples,
            statistic,
            vectorized=True,
            paired=paired,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            **_bootstrap_kwargs(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis)


def _ratio_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def mean_interval(
    values: Samples,
    over: Over = "rounds",
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """The mean of ``values`` with its bootstrap interval; None from fewer than 2 values (no spread to see)."""
    data = _finite(values, "mean_interval")
    if data.size < 2:
        return None
    low, high = _percentile_bootstrap((data,), _mean, confidence, n_resamples, seed)
    return Interval(float(np.mean(data)), low, high, confidence, over, int(data.size))


def ratio_interval(
    numerator: Samples,
    denominator: Samples,
    over: Over = "rounds",
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """mean(numerator) / mean(denominator) with an interval from resampling each side independently.

    Speed-up = ``ratio_interval(baseline_latencies, variant_latencies)``; a relative change is the ratio minus 1.
    None when either side has fewer than 2 values.
    """
    top, bottom = _finite(numerator, "ratio numerator"), _finite(denominator, "ratio denominator")
    if top.size < 2 or bottom.size < 2:
        return None
    _check_timings(top, bottom, "ratio_interval")
    low, high = _percentile_bootstrap((top, bottom), _ratio_of_means, confidence, n_resamples, seed)
    estimate = float(np.mean(top) / np.mean(bottom))
    return Interval(estimate, low, high, confidence, over, int(min(top.size, bottom.size)))


def _check_timings(top: np.ndarray, bottom: np.ndarray, who: str) -> None:
    if np.any(bottom <= 0) or np.any(top < 0):
        raise StatsError(f"{who}: timings must be positive (a zero or negative round time means a broken timer)")


def paired_ratio_interval(
    numerator: Samples,
    denominator: Samples,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """mean(numerator) / mean(denominator) over pairs: the i-th value of each side measured one right after the
    other in the same process. The interval resamples whole pairs (scipy's ``paired=True``), so what a pair shares
    — the process, the machine's state at that moment — cancels instead of widening it. None below 2 pairs."""
    top, bottom = _finite(numerator, "paired ratio numerator"), _finite(denominator, "paired ratio denominator")
    if top.size != bottom.size:
        raise StatsError(f"paired_ratio_interval: {top.size} numerators for {bottom.size} denominators; pair them")
    if top.size < 2:
        return None
    _check_timings(top, bottom, "paired_ratio_interval")
    low, high = _percentile_bootstrap((top, bottom), _ratio_of_means, confidence, n_resamples, seed, paired=True)
    estimate = float(np.mean(top) / np.mean(bottom))
    return Interval(estimate, low, high, confidence, "pairs", int(top.size))


# -- the sample rule ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timings:
    """What one benchmark row stored about its timing: each measured round's seconds (pytest-benchmark's
    ``stats.data``) and, for a row measured in several worker processes, each process's mean."""

    rounds: tuple[float, ...] = ()
    process_means: tuple[float, ...] = ()

    @property
    def several_processes(self) -> bool:
        return len(self.process_means) >= 2


@dataclass(frozen=True)
class Sample:
    """The values a statistic on one row uses, and what one value is (``Interval.over``)."""

    values: tuple[float, ...]
    over: Over


def samples(*rows: Timings) -> tuple[Sample, ...]:
    """The one rule for which values barkbench's statistics use, for one row or for rows judged together.

    - Every row measured in several worker processes (2+ process means): each row's **process means**. Rounds of
      one process share its start, memory layout and machine state, so they vary less than fresh processes do:
      an interval or a test over them would promise more than a rerun keeps (pyperf and asv compare process
      means for this reason).
    - Otherwise: each row's **rounds** — a row from one process, and every row of a comparison in which any row
      ran in one process. One unit on every side: a ratio or a rank test of process means against rounds would
      compare two different spreads.

    Used for a row's latency interval (one row), a speed-up's interval (baseline and variant) and ``compare``'s
    Mann-Whitney test and change interval (BASE and NEW), so ``report`` and ``compare`` judge the same two files
    on the same values. The samples come back in the order of ``rows``.
    """
    if rows and all(row.several_processes for row in rows):
        return tuple(Sample(row.process_means, "processes") for row in rows)
    return tuple(Sample(row.rounds, "rounds") for row in rows)


# -- significance ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Significance:
    """A two-sided Mann-Whitney U test of NEW against BASE."""

    p_value: float
    #: The smallest p-value the test can return with these sample sizes (fully separated samples).
    min_p_value: float
    alpha: float
    n_base: int
    n_new: int
    statistic: float
    test: str = "Mann-Whitney U, two-sided"

    @property
    def decidable(self) -> bool:
        """Whether the sizes allow p < alpha at all (asv's rule); if not, "not significant" means nothing."""
        return self.min_p_value < self.alpha

    @property
    def significant(self) -> bool:
        return self.decidable and self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {
            "p_value": self.p_value,
            "min_p_value": self.min_p_value,
            "alpha": self.alpha,
            "n_base": self.n_base,
            "n_new": self.n_new,
            "statistic": self.statistic,
            "test": self.test,
        }


def mann_whitney(base: Samples, new: Samples, alpha: float = ALPHA) -> Significance | None:
    """Test whether NEW's values come from a different distribution than BASE's; None if a side is empty."""
    a, b = _finite(base, "base"), _finite(new, "new")
    if a.size == 0 or b.size == 0:
        return None
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    scipy_stats = _scipy_stats()
    result = scipy_stats.mannwhitneyu(b, a, alternative="two-sided")
    # The same test on fully separated samples of these sizes: the floor of what it can report.
    floor = scipy_stats.mannwhitneyu(np.arange(b.size) + a.size, np.arange(a.size), alternative="two-sided")
    p_value = float(result.pvalue)
    return Significance(
        p_value=p_value if math.isfinite(p_value) else 1.0,
        min_p_value=float(floor.pvalue),
        alpha=alpha,
        n_base=int(a.size),
        n_new=int(b.size),
        statistic=float(result.statistic),
    )


def rounds_needed(alpha: float = ALPHA) -> int:
    """The fewest values per side (equal sizes) with which the two-sided test can reach ``alpha``: scipy's own
    p-value for fully separated samples, so it agrees with ``Significance.min_p_value`` (exact up to 8 values a
    side, the normal approximation above)."""
    mannwhitneyu = _scipy_stats().mannwhitneyu
    n = 1
    while mannwhitneyu(np.arange(n) + n, np.arange(n), alternative="two-sided").pvalue >= alpha:
        n += 1
    return n


# -- regression verdict --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The gate's judgement of one metric of one benchmark, with the figures behind it."""

    kind: VerdictKind
    #: True when the gate fails on this metric.
    regressed: bool
    #: (mean NEW - mean BASE) / mean BASE.
    change: float | None
    #: Interval of mean NEW / mean BASE - 1, when both sides have 2+ values.
    change_interval: Interval | None
    significance: Significance | None
    threshold: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "regressed": self.regressed,
            "change": self.change,
            "change_interval": self.change_interval.as_dict() if self.change_interval else None,
            "significance": self.significance.as_dict() if self.significance else None,
            "threshold": self.threshold,
            "reason": self.reason,
        }


def _pct(fraction: float) -> str:
    """A threshold as given: 0.05 -> ``5 %``, 0.025 -> ``2.5 %``."""
    return f"{fraction * 100:g} %"


def regression_verdict(
    base: Samples,
    new: Samples,
    threshold: float,
    higher_is_worse: bool = True,
    alpha: float = ALPHA,
    undecided_fails: bool = True,
    over: Over = "rounds",
    reciprocal: bool = False,
    change: float | None = None,
    epsilon: float = 1e-9,
) -> Verdict:
    """Judge NEW against BASE: a regression is worse by more than ``threshold`` AND significant.

    ``base``/``new`` are the per-round timings (or per-process means). The metric judged is their mean, or with
    ``reciprocal`` a figure proportional to 1 / mean (throughput = batch / mean latency, audio rate): the same
    rounds then give the change and its interval of that figure, and the same rank test (the order of the rounds
    does not change under 1 / x). When the sample sizes cannot reach ``alpha`` the verdict is "undecided": the
    threshold alone decides (``undecided_fails``), and the reason says how many rounds would be needed.
    ``change`` is the figure's change when it is recorded apart from the rounds (``barkbench compare`` holds the
    stored figures to the threshold, as asv holds its stored results to its factor); by default it is computed
    from the rounds. ``epsilon`` keeps a change of exactly the threshold from counting as beyond.
    """
    a, b = _finite(base, "base"), _finite(new, "new")
    if a.size == 0 or b.size == 0:
        return Verdict("no data", False, change, None, None, threshold, "no per-round timings to compare")
    base_mean, new_mean = float(np.mean(a)), float(np.mean(b))
    if base_mean <= 0:
        raise StatsError(f"base mean is {base_mean}; timings must be positive")
    if new_mean <= 0:
        raise StatsError(f"new mean is {new_mean}; timings must be positive")
    if change is None:
        change = (base_mean / new_mean - 1) if reciprocal else (new_mean - base_mean) / base_mean
    ratio = ratio_interval(a, b, over=over) if reciprocal else ratio_interval(b, a, over=over)
    interval = (
        None
        if ratio is None
        else Interval(
            ratio.estimate - 1, ratio.low - 1, ratio.high - 1, ratio.confidence, ratio.over, ratio.n, ratio.method
        )
    )
    sig = mann_whitney(a, b, alpha)
    worse_by = change if higher_is_worse else -change
    beyond = abs(worse_by) > threshold + epsilon
    p_text = "" if sig is None else f"p = {sig.p_value:.2g}"
    if not beyond:
        return Verdict(
            "ok",
            False,
            change,
            interval,
            sig,
            threshold,
            f"within {_pct(threshold)}" + (f" ({p_text})" if p_text else ""),
        )
    worse = worse_by > 0
    assert sig is not None  # both sides are non-empty here
    if not sig.decidable:
        need = rounds_needed(alpha)
        reason = (
            f"{'worse' if worse else 'better'} by more than {_pct(threshold)}, but {sig.n_base} vs "
            f"{sig.n_new} {over} cannot reach p < {alpha:g} (best possible p = {sig.min_p_value:.2g}; "
            f"needs {need}+ {over} each)"
        )
        if worse:
            reason += "; judged on the threshold alone" if undecided_fails else "; not gated"
        return Verdict("undecided", worse and undecided_fails, change, interval, sig, threshold, reason)
    if not sig.significant:
        return Verdict(
            "not significant",
            False,
            change,
            interval,
            sig,
            threshold,
            f"{'worse' if worse else 'better'} by more than {_pct(threshold)} but not significant "
            f"({p_text} >= {alpha:g})",
        )
    if worse:
        return Verdict(
            "regression",
            True,
            change,
            interval,
            sig,
            threshold,
            f"worse by more than {_pct(threshold)}, significant ({p_text} < {alpha:g})",
        )
    return Verdict(
        "improved",
        False,
        change,
        interval,
        sig,
        threshold,
        f"better by more than {_pct(threshold)}, significant ({p_text} < {alpha:g})",
    )


# -- noise checks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseLimits:
    """When a variant's figures count as unstable. The first two are pyperf's ``check`` thresholds."""

    max_cv: float = 0.10
    max_extreme_from_mean: float = 0.50
    #: Share of the machine's CPU time (all CPUs x the block's wall time) other processes may take.
    max_other_cpu_share: float = 0.10


@dataclass(frozen=True)
class CpuUsage:
    """What the machine did while a block of rounds ran (``barkbench.measure.noise`` samples it)."""

    wall_seconds: float
    #: CPU seconds of every process on the machine but ours (system busy time minus our processes' time).
    other_cpu_seconds: float
    own_cpu_seconds: float
    cpu_count: int
    load_average_start: float | None = None
    load_average_end: float | None = None

    @property
    def other_cpu_share(self) -> float | None:
        capacity = self.wall_seconds * self.cpu_count
        return self.other_cpu_seconds / capacity if capacity > 0 else None

    @property
    def max_load_average(self) -> float | None:
        loads = [x for x in (self.load_average_start, self.load_average_end) if x is not None]
        return max(loads) if loads else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_seconds": self.wall_seconds,
            "other_cpu_seconds": self.other_cpu_seconds,
            "own_cpu_seconds": self.own_cpu_seconds,
            "cpu_count": self.cpu_count,
            "load_average_start": self.load_average_start,
            "load_average_end": self.load_average_end,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CpuUsage:
        def opt(key: str) -> float | None:
            value = raw.get(key)
            return None if value is None else float(value)

        return cls(
            wall_seconds=float(raw["wall_seconds"]),
            other_cpu_seconds=float(raw["other_cpu_seconds"]),
            own_cpu_seconds=float(raw["own_cpu_seconds"]),
            cpu_count=int(raw["cpu_count"]),
            load_average_start=opt("load_average_start"),
            load_average_end=opt("load_average_end"),
        )


@dataclass(frozen=True)
class NoiseCheck:
    """The checks' figures and, when any failed, why the variant's figures are unstable."""

    n: int
    mean: float | None
    cv: float | None
    #: (mean - min) / mean and (max - mean) / mean.
    min_below_mean: float | None
    max_above_mean: float | None
    load_average: float | None
    cpu_count: int | None
    other_cpu_share: float | None
    reasons: tuple[str, ...]

    @property
    def unstable(self) -> bool:
        return bool(self.reasons)

    @property
    def summary(self) -> str:
        """One line for a table cell or a warning: the reasons, or "stable"."""
        return "; ".join(self.reasons) if self.reasons else "stable"

    def as_dict(self) -> dict[str, Any]:
        return {
            "unstable": self.unstable,
            "reasons": list(self.reasons),
            "n": self.n,
            "mean": self.mean,
            "cv": self.cv,
            "min_below_mean": self.min_below_mean,
            "max_above_mean": self.max_above_mean,
            "load_average": self.load_average,
            "cpu_count": self.cpu_count,
            "other_cpu_share": self.other_cpu_share,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NoiseCheck:
        def opt(key: str) -> float | None:
            value = raw.get(key)
            return None if value is None else float(value)

        cpus = raw.get("cpu_count")
        return cls(
            n=int(raw.get("n") or 0),
            mean=opt("mean"),
            cv=opt("cv"),
            min_below_mean=opt("min_below_mean"),
            max_above_mean=opt("max_above_mean"),
            load_average=opt("load_average"),
            cpu_count=None if cpus is None else int(cpus),
            other_cpu_share=opt("other_cpu_share"),
            reasons=tuple(str(r) for r in raw.get("reasons") or ()),
        )


def check_noise(values: Samples, usage: CpuUsage | None = None, limits: NoiseLimits = NoiseLimits()) -> NoiseCheck:
    """pyperf-style stability checks on a variant's round timings, plus the machine's load while they ran."""
    data = _finite(values, "check_noise")
    reasons: list[str] = []
    mean = cv = below = above = None
    if data.size:
        mean = float(statistics.fmean(data))
    if mean is not None and mean > 0:
        below = (mean - float(data.min())) / mean
        above = (float(data.max()) - mean) / mean
        if data.size >= 2:
            cv = statistics.stdev(data.tolist()) / mean
            if cv >= limits.max_cv:
                reasons.append(f"standard deviation is {_percent(cv)} of the mean (limit {_percent(limits.max_cv)})")
        for word, distance in (("minimum", -below), ("maximum", above)):
            if abs(distance) >= limits.max_extreme_from_mean:
                side = "below" if distance < 0 else "above"
                reasons.append(
                    f"{word} is {_percent(abs(distance))} {side} the mean (limit "
                    f"{_percent(limits.max_extreme_from_mean)})"
                )
    load = share = None
    cpus = None
    if usage is not None:
        cpus = usage.cpu_count
        load = usage.max_load_average
        share = usage.other_cpu_share
        if load is not None and load > cpus:
            reasons.append(f"load average {load:.1f} above the {cpus} CPUs")
        if share is not None and share > limits.max_other_cpu_share:
            reasons.append(
                f"other processes used {_percent(share)} of the machine's CPU time (limit "
                f"{_percent(limits.max_other_cpu_share)})"
            )
    return NoiseCheck(
        n=int(data.size),
        mean=mean,
        cv=cv,
        min_below_mean=below,
        max_above_mean=above,
        load_average=load,
        cpu_count=cpus,
        other_cpu_share=share,
        reasons=tuple(reasons),
    )
