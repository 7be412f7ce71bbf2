"""barkbench.stats against hand-computed cases, with scipy as the reference where a hand computation is long.

No test here times anything: every figure is crafted, so the verdicts cannot depend on how busy the machine is.
"""

from __future__ import annotations

import inspect
import math
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from barkbench import stats
from barkbench.stats import CpuUsage, NoiseCheck, NoiseLimits, StatsError

# scipy 1.15 renamed bootstrap's random_state to rng; the oldest scipy barkbench supports (1.10) has only random_state.
_SEED_ARGUMENT = "rng" if "rng" in inspect.signature(scipy_stats.bootstrap).parameters else "random_state"

# -- intervals ---------------------------------------------------------------------------------------------------


def test_mean_interval_of_two_values_is_their_range() -> None:
    # Resampling [1, 3] gives means 1, 2, 3 with probabilities 1/4, 1/2, 1/4: the 2.5th and 97.5th percentiles
    # of that distribution are 1 and 3.
    interval = stats.mean_interval([1.0, 3.0])
    assert interval is not None
    assert (interval.estimate, interval.low, interval.high) == (2.0, 1.0, 3.0)
    assert interval.over == "rounds" and interval.n == 2
    assert interval.half_width == 1.0
    assert interval.describe() == "95 % CI, percentile bootstrap over 2 rounds"


def test_mean_interval_of_identical_values_has_no_width() -> None:
    interval = stats.mean_interval([4.0, 4.0, 4.0], over="processes")
    assert interval is not None
    assert (interval.low, interval.estimate, interval.high) == (4.0, 4.0, 4.0)
    assert interval.over == "processes"


def test_mean_interval_needs_two_values() -> None:
    assert stats.mean_interval([1.5]) is None
    assert stats.mean_interval([]) is None


def test_mean_interval_matches_the_normal_approximation_on_many_values() -> None:
    # 200 values: the bootstrap interval of the mean approaches mean ± 1.96 s / sqrt(n).
    values = np.random.default_rng(1).normal(10.0, 1.0, size=200)
    interval = stats.mean_interval(values.tolist())
    assert interval is not None
    expected = 1.96 * statistics.stdev(values.tolist()) / math.sqrt(values.size)
    assert interval.estimate == pytest.approx(float(values.mean()))
    assert interval.high - interval.estimate == pytest.approx(expected, rel=0.15)
    assert interval.estimate - interval.low == pytest.approx(expected, rel=0.15)


def test_mean_interval_is_reproducible() -> None:
    values = [1.0, 1.2, 0.9, 1.4, 1.1]
    assert stats.mean_interval(values) == stats.mean_interval(values)


def test_ratio_interval_hand_cases() -> None:
    # Constant sides: the ratio of means is exact.
    interval = stats.ratio_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert interval is not None and (interval.low, interval.estimate, interval.high) == (2.0, 2.0, 2.0)
    # Only the numerator varies: the interval is the numerator's mean interval, [1, 3] / 1.
    interval = stats.ratio_interval([1.0, 3.0], [1.0, 1.0])
    assert interval is not None and (interval.low, interval.estimate, interval.high) == (1.0, 2.0, 3.0)
    # Speed-up of a variant twice as fast: baseline / variant.
    interval = stats.ratio_interval([4.0, 4.1, 3.9], [2.0, 2.05, 1.95])
    assert interval is not None and interval.estimate == pytest.approx(2.0)
    assert interval.contains(2.0)


def test_ratio_interval_matches_scipy_bootstrap() -> None:
    new, base = [1.10, 1.02, 1.08, 1.15, 1.05], [1.00, 0.98, 1.03, 1.01, 0.99]
    interval = stats.ratio_interval(new, base)
    reference = scipy_stats.bootstrap(
        (np.array(new), np.array(base)),
        lambda a, b, axis: a.mean(axis=axis) / b.mean(axis=axis),
        vectorized=True,
        method="percentile",
        **{_SEED_ARGUMENT: np.random.default_rng(stats.SEED)},
    )
    assert interval is not None
    assert interval.low == pytest.approx(reference.confidence_interval.low)
    assert interval.high == pytest.approx(reference.confidence_interval.high)


def test_ratio_interval_refuses_bad_timings() -> None:
    with pytest.raises(StatsError, match="positive"):
        stats.ratio_interval([1.0, 1.0], [0.0, 1.0])
    with pytest.raises(StatsError, match="non-finite"):
        stats.mean_interval([1.0, float("nan")])


def test_paired_ratio_interval_cancels_what_a_pair_shares() -> None:
    # Each pair shares a drift of ±20 %; the harness side is 1 % slower in every pair.
    drift = [1.0, 1.2, 0.8, 1.1, 0.9, 1.15, 0.85, 1.05]
    bare = [10.0 * d for d in drift]
    harness = [10.1 * d for d in drift]
    paired = stats.paired_ratio_interval(harness, bare)
    assert paired is not None and paired.over == "pairs" and paired.n == 8
    assert paired.estimate == pytest.approx(1.01) and paired.low == pytest.approx(1.01)
    assert paired.high == pytest.approx(1.01)  # every resample of whole pairs gives 1.01
    unpaired = stats.ratio_interval(harness, bare)
    assert unpaired is not None and unpaired.high - unpaired.low > 0.1  # the drift widens an unpaired interval
    assert "over 8 pairs" in paired.describe()


def test_paired_ratio_interval_matches_scipy_paired_bootstrap() -> None:
    harness, bare = [1.10, 1.02, 1.08, 1.15, 1.05], [1.00, 0.98, 1.03, 1.01, 0.99]
    interval = stats.paired_ratio_interval(harness, bare)
    reference = scipy_stats.bootstrap(
        (np.array(harness), np.array(bare)),
        lambda a, b, axis: a.mean(axis=axis) / b.mean(axis=axis),
        vectorized=True,
        paired=True,
        method="percentile",
        **{_SEED_ARGUMENT: np.random.default_rng(stats.SEED)},
    )
    assert interval is not None
    assert interval.low == pytest.approx(reference.confidence_interval.low)
    assert interval.high == pytest.approx(reference.confidence_interval.high)


def test_paired_ratio_interval_refuses_unpaired_or_bad_input() -> None:
    with pytest.raises(StatsError, match="3 numerators for 2 denominators"):
        stats.paired_ratio_interval([1.0, 1.0, 1.0], [1.0, 1.0])
    with pytest.raises(StatsError, match="positive"):
        stats.paired_ratio_interval([1.0, 1.0], [0.0, 1.0])
    assert stats.paired_ratio_interval([1.0], [1.0]) is None


# -- Mann-Whitney U ----------------------------------------------------------------------------------------------


def test_mann_whitney_fully_separated_four_against_four() -> None:
    # Every NEW value above every BASE value: U = 4 x 4 = 16; exactly 1 of the C(8, 4) = 70 orderings is this
    # extreme in each direction, so the two-sided p = 2 / 70.
    sig = stats.mann_whitney([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])
    assert sig is not None
    assert sig.statistic == 16
    assert sig.p_value == pytest.approx(2 / 70)
    assert sig.min_p_value == pytest.approx(2 / 70)
    assert sig.decidable and sig.significant


def test_mann_whitney_three_against_three_cannot_decide() -> None:
    # 2 / C(6, 3) = 0.1: even perfectly separated samples of 3 rounds cannot reach 0.05.
    sig = stats.mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert sig is not None
    assert sig.p_value == pytest.approx(0.1) and sig.min_p_value == pytest.approx(0.1)
    assert not sig.decidable and not sig.significant
    assert stats.rounds_needed(0.05) == 4
    assert stats.rounds_needed(0.002) == 7  # exact: 2 / C(14, 7) = 0.00058; 2 / C(12, 6) = 0.0022


def test_mann_whitney_matches_scipy_on_interleaved_samples() -> None:
    base, new = [2.0, 4.0, 6.0, 8.0], [1.0, 3.0, 5.0, 7.0]
    sig = stats.mann_whitney(base, new)
    assert sig is not None
    # U(new) = 0 + 1 + 2 + 3 = 6.
    assert sig.statistic == 6
    assert sig.p_value == pytest.approx(scipy_stats.mannwhitneyu(new, base).pvalue)
    assert not sig.significant


# -- regression verdicts -----------------------------------------------------------------------------------------

BASE = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01, 0.99, 1.00]
#: +6 % on every round, with the same small jitter: a real regression.
CONSISTENT = [round(x * 1.06, 6) for x in BASE]
#: Rounds of a noisy machine whose mean is also +6 % above BASE: some rounds far slower, most overlapping.
NOISY_BASE = [0.80, 1.25, 0.95, 1.10, 0.85, 1.20, 0.90, 1.05, 1.00, 0.90]
NOISY_NEW = [0.85, 1.30, 0.90, 1.25, 0.95, 1.15, 1.00, 1.10, 0.95, 1.15]


def test_crafted_samples_are_what_they_claim() -> None:
    for base, new in ((BASE, CONSISTENT), (NOISY_BASE, NOISY_NEW)):
        assert statistics.fmean(new) / statistics.fmean(base) == pytest.approx(1.06)


def test_consistent_six_percent_fails() -> None:
    verdict = stats.regression_verdict(BASE, CONSISTENT, threshold=0.05)
    assert verdict.kind == "regression" and verdict.regressed
    assert verdict.change == pytest.approx(0.06)
    assert verdict.significance is not None
    # Fully separated 10 vs 10 with ties inside each side: scipy's normal approximation with tie correction
    # (U = 100 of 100; without the tie correction z = (100 - 50 - 0.5) / sqrt(100 x 21 / 12) = 3.74, p = 1.8e-4).
    assert verdict.significance.statistic == 100
    assert verdict.significance.p_value == pytest.approx(scipy_stats.mannwhitneyu(CONSISTENT, BASE).pvalue)
    assert verdict.significance.p_value == pytest.approx(0.00016, rel=0.01)
    # The interval of the change excludes 0 (it straddles the threshold: [+4.9 %, +7.1 %]).
    assert verdict.change_interval is not None and verdict.change_interval.low > 0
    assert verdict.reason == "worse by more than 5 %, significant (p = 0.00016 < 0.05)"


def test_noisy_six_percent_that_is_not_significant_passes() -> None:
    verdict = stats.regression_verdict(NOISY_BASE, NOISY_NEW, threshold=0.05)
    assert verdict.kind == "not significant" and not verdict.regressed
    assert verdict.change == pytest.approx(0.06)
    assert verdict.significance is not None
    assert verdict.significance.p_value == pytest.approx(scipy_stats.mannwhitneyu(NOISY_NEW, NOISY_BASE).pvalue)
    assert verdict.significance.p_value > 0.05
    assert verdict.change_interval is not None and verdict.change_interval.contains(0.0)


def test_within_threshold_is_ok_even_when_significant() -> None:
    new = [round(x * 1.03, 6) for x in BASE]
    verdict = stats.regression_verdict(BASE, new, threshold=0.05)
    assert verdict.kind == "ok" and not verdict.regressed
    assert verdict.significance is not None and verdict.significance.significant


def test_exactly_the_threshold_is_not_beyond_it() -> None:
    verdict = stats.regression_verdict([1.0, 1.0, 1.0, 1.0], [1.05, 1.05, 1.05, 1.05], threshold=0.05)
    assert verdict.kind == "ok"


def test_too_few_rounds_falls_back_to_the_threshold_and_says_so() -> None:
    verdict = stats.regression_verdict([1.0, 1.01, 0.99], [1.06, 1.07, 1.05], threshold=0.05)
    assert verdict.kind == "undecided" and verdict.regressed
    assert "3 vs 3 rounds cannot reach p < 0.05" in verdict.reason
    assert "needs 4+ rounds each" in verdict.reason
    assert "judged on the threshold alone" in verdict.reason
    lenient = stats.regression_verdict([1.0, 1.01, 0.99], [1.06, 1.07, 1.05], threshold=0.05, undecided_fails=False)
    assert lenient.kind == "undecided" and not lenient.regressed


def test_throughput_direction_and_improvements() -> None:
    # Throughput: higher is better, so +6 % on every round is a significant improvement, -6 % a regression.
    assert stats.regression_verdict(BASE, CONSISTENT, 0.05, higher_is_worse=False).kind == "improved"
    slower = [round(x * 0.94, 6) for x in BASE]
    verdict = stats.regression_verdict(BASE, slower, 0.05, higher_is_worse=False)
    assert verdict.kind == "regression" and verdict.regressed
    assert verdict.change == pytest.approx(-0.06)


def test_no_rounds_is_no_data() -> None:
    verdict = stats.regression_verdict([], [1.0], threshold=0.05)
    assert verdict.kind == "no data" and not verdict.regressed


def test_verdict_serializes_to_plain_values() -> None:
    raw = stats.regression_verdict(BASE, CONSISTENT, 0.05).as_dict()
    assert raw["kind"] == "regression" and raw["significance"]["n_base"] == 10
    assert isinstance(raw["change_interval"]["low"], float)


# -- noise checks ------------------------------------------------------------------------------------------------


def quiet(wall: float = 10.0) -> CpuUsage:
    return CpuUsage(
        wall_seconds=wall,
        other_cpu_seconds=0.1,
        own_cpu_seconds=wall,
        cpu_count=4,
        load_average_start=1.0,
        load_average_end=1.2,
    )


def test_steady_rounds_on_a_quiet_machine_are_stable() -> None:
    check = stats.check_noise([1.00, 1.02, 0.98, 1.01], quiet())
    assert not check.unstable and check.summary == "stable"
    assert check.cv == pytest.approx(statistics.stdev([1.00, 1.02, 0.98, 1.01]) / 1.0025)
    assert check.other_cpu_share == pytest.approx(0.1 / 40)
    assert check.load_average == 1.2


def test_cv_of_ten_percent_is_flagged_as_pyperf_does() -> None:
    # mean 1.0, stdev of [0.9, 1.1] = 0.1414: 14 % of the mean.
    check = stats.check_noise([0.9, 1.1])
    assert check.unstable
    assert check.reasons == ("standard deviation is 14 % of the mean (limit 10 %)",)
    # [0.95, 1.05]: 7 %, below the limit.
    assert not stats.check_noise([0.95, 1.05]).unstable


def test_min_or_max_far_from_the_mean_is_flagged() -> None:
    # mean = 2.0; max 4.0 is 100 % above it, min 1.0 is 50 % below it (pyperf's limit is inclusive).
    check = stats.check_noise([1.0, 1.0, 4.0, 2.0], limits=NoiseLimits(max_cv=10.0))
    assert check.reasons == (
        "minimum is 50 % below the mean (limit 50 %)",
        "maximum is 100 % above the mean (limit 50 %)",
    )
    assert check.min_below_mean == pytest.approx(0.5) and check.max_above_mean == pytest.approx(1.0)


def test_load_above_the_cpus_is_flagged() -> None:
    usage = CpuUsage(
        wall_seconds=10.0,
        other_cpu_seconds=0.0,
        own_cpu_seconds=10.0,
        cpu_count=2,
        load_average_start=1.5,
        load_average_end=3.4,
    )
    check = stats.check_noise([1.0, 1.0], usage)
    assert check.reasons == ("load average 3.4 above the 2 CPUs",)
    # At exactly the number of CPUs the machine is full, not oversubscribed.
    at_capacity = CpuUsage(10.0, 0.0, 10.0, 2, 2.0, 2.0)
    assert not stats.check_noise([1.0, 1.0], at_capacity).unstable


def test_other_processes_cpu_time_is_flagged() -> None:
    # 2 CPUs x 10 s = 20 CPU seconds of capacity; others took 6: 30 %.
    usage = CpuUsage(wall_seconds=10.0, other_cpu_seconds=6.0, own_cpu_seconds=10.0, cpu_count=2)
    check = stats.check_noise([1.0, 1.01], usage)
    assert check.other_cpu_share == pytest.approx(0.3)
    assert check.reasons == ("other processes used 30 % of the machine's CPU time (limit 10 %)",)


def test_single_round_has_no_cv_but_is_still_checked_against_the_machine() -> None:
    check = stats.check_noise([2.0], CpuUsage(5.0, 9.0, 5.0, 2))
    assert check.cv is None and check.n == 1
    assert check.unstable and "90 %" in check.summary


def test_noise_check_round_trips_through_plain_values() -> None:
    check = stats.check_noise([0.9, 1.1], CpuUsage(10.0, 6.0, 10.0, 2, 2.5, 3.0))
    assert NoiseCheck.from_dict(check.as_dict()) == check
    usage = CpuUsage(10.0, 6.0, 10.0, 2, 2.5, 3.0)
    assert CpuUsage.from_dict(usage.as_dict()) == usage


def test_reciprocal_metrics_are_judged_on_one_over_the_mean() -> None:
    # Throughput = 1 / latency: latencies +6 % on every round are throughput 1 / 1.06 - 1 = -5.66 %.
    verdict = stats.regression_verdict(BASE, CONSISTENT, 0.05, higher_is_worse=False, reciprocal=True)
    assert verdict.kind == "regression"
    assert verdict.change == pytest.approx(1 / 1.06 - 1)
    assert verdict.change_interval is not None and verdict.change_interval.contains(1 / 1.06 - 1)
    assert verdict.change_interval.high < 0
    # The rank test is the same on latencies and on their reciprocals.
    assert verdict.significance == stats.regression_verdict(BASE, CONSISTENT, 0.05).significance


# -- import cost ---------------------------------------------------------------------------------------------------


def test_importing_stats_leaves_scipy_for_the_first_interval_or_test() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom barkbench import stats\nloaded = 'scipy' in sys.modules\n"
        "stats.mean_interval([1.0, 2.0, 3.0])\nprint(loaded, 'scipy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr


# -- the sample rule -----------------------------------------------------------------------------------------------

ROUNDS = (1.0, 1.1, 1.2, 1.3)
MEANS = (1.05, 1.25)


def test_one_row_uses_its_process_means_from_two_processes_up() -> None:
    assert stats.samples(stats.Timings(ROUNDS, MEANS)) == (stats.Sample(MEANS, "processes"),)
    assert stats.samples(stats.Timings(ROUNDS, (1.15,))) == (stats.Sample(ROUNDS, "rounds"),)
    assert stats.samples(stats.Timings(ROUNDS)) == (stats.Sample(ROUNDS, "rounds"),)


def test_rows_judged_together_share_one_unit() -> None:
    several, other = stats.Timings(ROUNDS, MEANS), stats.Timings((2.0, 2.1), (2.0, 2.1))
    assert stats.samples(several, other) == (stats.Sample(MEANS, "processes"), stats.Sample((2.0, 2.1), "processes"))
    # One row from a single process: rounds on both sides, in the order given.
    single = stats.Timings((2.0, 2.1, 2.2))
    assert stats.samples(single, several) == (stats.Sample((2.0, 2.1, 2.2), "rounds"), stats.Sample(ROUNDS, "rounds"))
    assert stats.samples() == ()
