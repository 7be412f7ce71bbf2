"""``barkbench compare``: exit 0 within thresholds, 1 on a regression, 2 on unusable input.

NEW is always BASE (tests/data/run-cpu.json) copied to a temp file with one number changed, so each test
moves exactly one figure. The row changed is ``sdpa-fp32-bs1``: 1.46 s, 760,000,000 bytes peak memory,
throughput 1/1.46 = 0.68493 samples/s, audio rate 5.12/1.46 = 3.5068.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scipy import stats as scipy_stats

from barkbench.cli import main
from barkbench.results import markdown as md
from barkbench.results.compare import METRICS, OptionError, compare_runs, parse_fail_on, parse_threshold
from barkbench.results.load import load_run

Capsys = pytest.CaptureFixture[str]
BASE = Path(__file__).parent / "data" / "run-cpu.json"
SDPA = "bench/test_bark.py::test_generate[sdpa-fp32-bs1]"
GATES = ["--fail-on", "memory:5%", "--fail-on", "throughput:5%"]


def make_new(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """BASE with ``change`` applied to the sdpa-fp32-bs1 benchmark entry."""
    data = json.loads(BASE.read_text())
    bench = next(b for b in data["benchmarks"] if b["fullname"] == SDPA)
    change(bench)
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    return path


def set_extra(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(bench: dict[str, Any]) -> None:
        bench["extra_info"][key] = value

    return change


def compare(capsys: Capsys, new: Path, *options: str) -> tuple[int, str, str]:
    code = main(["compare", str(BASE), str(new), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identical_runs_pass(capsys: Capsys) -> None:
    code, out, _ = compare(capsys, BASE, *GATES)
    assert code == 0
    assert "OK: no regression beyond the thresholds (memory:5 %, throughput:5 %)" in out
    # 6 benchmarks that succeeded x 2 metrics, plus the failed one's 2 rows ("failed in BASE").
    assert out.count("| ok |") == 12
    assert out.count("failed in BASE") == 2


def test_memory_up_6_percent_fails(tmp_path: Path, capsys: Capsys) -> None:
    # 760,000,000 * 1.06 = 805,600,000 bytes: +6.0 % > 5 %.
    code, out, _ = compare(capsys, make_new(tmp_path, set_extra("peak_memory_bytes", 805_600_000)), *GATES)
    assert code == 1
    row = "| `test_generate[sdpa-fp32-bs1]` | peak memory | 760 MB | 806 MB | +6.0 % | REGRESSION (> 5 %) |"
    assert row in out
    assert "FAILED: 1 regression(s)" in out


def test_memory_up_4_percent_passes(tmp_path: Path, capsys: Capsys) -> None:
    # 760,000,000 * 1.04 = 790,400,000: +4.0 % is within 5 %.
    code, out, _ = compare(capsys, make_new(tmp_path, set_extra("peak_memory_bytes", 790_400_000)), *GATES)
    assert code == 0
    assert "| 760 MB | 790 MB | +4.0 % | ok |" in out


def test_exactly_at_threshold_passes(tmp_path: Path, capsys: Capsys) -> None:
    # 760,000,000 * 1.05 = 798,000,000: +5 % is not *beyond* 5 %.
    code, _, _ = compare(capsys, make_new(tmp_path, set_extra("peak_memory_bytes", 798_000_000)), *GATES)
    assert code == 0


def test_memory_down_is_an_improvement(tmp_path: Path, capsys: Capsys) -> None:
    # 760 -> 684 MB is -10 %.
    code, out, _ = compare(capsys, make_new(tmp_path, set_extra("peak_memory_bytes", 684_000_000)), *GATES)
    assert code == 0
    assert "| 760 MB | 684 MB | −10.0 % | improved |" in out


def test_throughput_down_6_percent_fails(tmp_path: Path, capsys: Capsys) -> None:
    # 0.68493 * 0.94 = 0.64384 samples/s: -6.0 %, lower is worse.
    new = make_new(tmp_path, set_extra("throughput_samples_per_s", (1 / 1.46) * 0.94))
    code, out, _ = compare(capsys, new, *GATES)
    assert code == 1
    # The file's 3 rounds per side cannot reach p < 0.05 (2 / C(6, 3) = 0.1): the threshold alone decides.
    assert (
        "| throughput | 0.685 samples/s | 0.644 samples/s | −6.0 % | REGRESSION (> 5 %; too few rounds to test "
        "(3 vs 3; p < 0.05 needs 4+ each)) |" in out
    )


def test_throughput_up_is_fine(tmp_path: Path, capsys: Capsys) -> None:
    new = make_new(tmp_path, set_extra("throughput_samples_per_s", (1 / 1.46) * 1.5))
    code, out, _ = compare(capsys, new, *GATES)
    assert code == 0
    assert "+50.0 % | improved (too few rounds to test (3 vs 3; p < 0.05 needs 4+ each)) |" in out


def test_latency_gate_uses_stats_mean(tmp_path: Path, capsys: Capsys) -> None:
    # 1.46 s -> 1.62 s is +10.96 % > 10 %; memory and throughput are untouched, so only latency can fail.
    def slower(bench: dict[str, Any]) -> None:
        bench["stats"]["mean"] = 1.62

    new = make_new(tmp_path, slower)
    code, out, _ = compare(capsys, new, "--fail-on", "latency:10%")
    assert code == 1
    assert "| latency mean | 1.46 s | 1.62 s | +11.0 % | REGRESSION (> 10 %; too few rounds to test" in out
    assert compare(capsys, new, "--fail-on", "latency:0.15")[0] == 0  # within 15 %


def test_audio_rate_gate(tmp_path: Path, capsys: Capsys) -> None:
    # 3.5068 -> 3.2 audio s per wall s is -8.75 %: lower is worse.
    new = make_new(tmp_path, set_extra("audio_seconds_per_wall_second", 3.2))
    assert compare(capsys, new, "--fail-on", "audio_rate:5%")[0] == 1
    assert compare(capsys, new, "--fail-on", "audio_rate:10%")[0] == 0


def test_variant_failing_in_new_is_a_regression(tmp_path: Path, capsys: Capsys) -> None:
    def fail(bench: dict[str, Any]) -> None:
        bench["extra_info"].update(status="failed", error="CUDA out of memory")

    code, out, _ = compare(capsys, make_new(tmp_path, fail), *GATES)
    assert code == 1
    assert "REGRESSION (failed in NEW)" in out


def test_figure_missing_in_new_is_not_silently_passed(tmp_path: Path, capsys: Capsys) -> None:
    def drop(bench: dict[str, Any]) -> None:
        del bench["extra_info"]["peak_memory_bytes"]

    code, out, _ = compare(capsys, make_new(tmp_path, drop), *GATES)
    assert code == 1
    assert "REGRESSION (not recorded in NEW)" in out


def test_no_gates_shows_everything_and_passes(tmp_path: Path, capsys: Capsys) -> None:
    code, out, _ = compare(capsys, make_new(tmp_path, set_extra("peak_memory_bytes", 2_000_000_000)))
    assert code == 0
    assert "No --fail-on given" in out
    assert all(METRICS[m].label in out for m in METRICS)


def test_benchmark_missing_in_new_is_exit_2(tmp_path: Path, capsys: Capsys) -> None:
    data = json.loads(BASE.read_text())
    data["benchmarks"] = [b for b in data["benchmarks"] if b["fullname"] != SDPA]
    new = tmp_path / "new.json"
    new.write_text(json.dumps(data))
    code, _, err = compare(capsys, new, *GATES)
    assert code == 2
    assert err == (
        f"barkbench: error: 1 benchmark(s) of {BASE} missing in {new}: {SDPA}; pass --allow-missing to skip them\n"
    )
    code, out, _ = compare(capsys, new, *GATES, "--allow-missing")
    assert code == 0
    assert f"Missing in NEW (skipped with --allow-missing): `{SDPA}`" in out


def test_benchmark_only_in_new_is_listed_not_gated(tmp_path: Path, capsys: Capsys) -> None:
    data = json.loads(BASE.read_text())
    extra = copy.deepcopy(data["benchmarks"][0])
    extra["fullname"] = "bench/test_bark.py::test_generate[eager-fp16-bs1]"
    data["benchmarks"].append(extra)
    new = tmp_path / "new.json"
    new.write_text(json.dumps(data))
    code, out, _ = compare(capsys, new, *GATES)
    assert code == 0
    assert "Only in NEW (not gated): `bench/test_bark.py::test_generate[eager-fp16-bs1]`" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{oops", "not valid JSON"),
        ('{"hello": 1}', "not a pytest-benchmark result file"),
    ],
)
def test_unusable_new_file_is_exit_2(tmp_path: Path, capsys: Capsys, content: str | None, expected: str) -> None:
    new = tmp_path / "new.json"
    if content is not None:
        new.write_text(content)
    code, out, err = compare(capsys, new, *GATES)
    assert code == 2
    assert out == ""
    assert err.startswith(f"barkbench: error: {new}: {expected}")
    assert err.count("\n") == 1


def test_missing_base_file_is_exit_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["compare", str(tmp_path / "base.json"), str(BASE)]) == 2
    assert "base.json: no such file" in capsys.readouterr().err


def test_compare_runs_api() -> None:
    base = load_run(BASE)
    comparison = compare_runs(base, base, [parse_fail_on("memory:5%")])
    assert len(comparison.checks) == 7 and not comparison.regressions


# -- option parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("5%", 0.05), ("0.05", 0.05), ("12.5%", 0.125), (" 10 % ", 0.10), ("0", 0.0), ("1", 1.0), ("150%", 1.5)],
)
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "is not a number; write it as 5% or 0.05"),
        ("%", "is not a number"),
        ("5%%", "is not a number"),
        ("-5%", "non-negative"),
        ("nan", "finite"),
        ("5", "write 5% if you mean 5 percent"),
    ],
)
def test_parse_threshold_errors(text: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse_threshold(text)


def test_parse_fail_on() -> None:
    gate = parse_fail_on("memory:5%")
    assert (gate.metric.name, gate.threshold) == ("memory", 0.05)
    assert str(gate) == "memory:5 %"
    assert parse_fail_on("Throughput:0.1").metric.name == "throughput"
    names = ("memory", "throughput", "latency", "audio_rate")
    assert {parse_fail_on(f"{m}:1%").metric.name for m in names} == set(METRICS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("memory", "must be METRIC:THRESHOLD, e.g. memory:5%"),
        ("memory:", "must be METRIC:THRESHOLD"),
        (":5%", "must be METRIC:THRESHOLD"),
        ("vram:5%", "unknown metric 'vram'; choose one of memory, throughput, latency, audio_rate"),
        ("memory:lots", "is not a number"),
    ],
)
def test_parse_fail_on_errors(text: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse_fail_on(text)


def test_bad_fail_on_is_exit_2_one_line(capsys: Capsys) -> None:
    assert main(["compare", str(BASE), str(BASE), "--fail-on", "vram:5%"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("barkbench: error: argument --fail-on: unknown metric 'vram'")
    assert err.count("\n") == 1


# -- significance-gated timing metrics -----------------------------------------------------------------------------

#: Ten rounds of the sdpa row in BASE, then NEW 6 % slower on every round (consistent) or on average only (noisy:
#: rounds spread ±25 %, most of NEW's inside BASE's range). Means: BASE 1.00 s, both NEWs 1.06 s.
BASE_ROUNDS = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01, 0.99, 1.00]
CONSISTENT_ROUNDS = [round(x * 1.06, 6) for x in BASE_ROUNDS]
NOISY_BASE_ROUNDS = [0.80, 1.25, 0.95, 1.10, 0.85, 1.20, 0.90, 1.05, 1.00, 0.90]
NOISY_NEW_ROUNDS = [0.85, 1.30, 0.90, 1.25, 0.95, 1.15, 1.00, 1.10, 0.95, 1.15]


def with_rounds(tmp_path: Path, name: str, rounds: list[float]) -> Path:
    """run-cpu.json with the sdpa row's rounds, mean and derived timing figures set from ``rounds``."""
    data = json.loads(BASE.read_text())
    bench = next(b for b in data["benchmarks"] if b["fullname"] == SDPA)
    mean = sum(rounds) / len(rounds)
    bench["stats"].update(data=rounds, mean=mean, rounds=len(rounds))
    bench["extra_info"].update(throughput_samples_per_s=1 / mean, audio_seconds_per_wall_second=5.12 / mean)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def gate(capsys: Capsys, base: Path, new: Path, *options: str) -> tuple[int, str]:
    code = main(["compare", str(base), str(new), "--fail-on", "latency:5%", "--fail-on", "throughput:5%", *options])
    return code, capsys.readouterr().out


def sdpa_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if "sdpa-fp32-bs1" in line]


def test_consistent_six_percent_slower_fails(tmp_path: Path, capsys: Capsys) -> None:
    base = with_rounds(tmp_path, "base.json", BASE_ROUNDS)
    code, out = gate(capsys, base, with_rounds(tmp_path, "new.json", CONSISTENT_ROUNDS))
    assert code == 1
    latency, throughput = sdpa_rows(out)
    p_value = scipy_stats.mannwhitneyu(CONSISTENT_ROUNDS, BASE_ROUNDS).pvalue
    assert "| +6.0 % | REGRESSION (> 5 %, significant) |" in latency
    assert latency.endswith(f" | {p_value:.2g} |") and p_value < 0.001
    # Throughput 1 / 1.06 - 1 = -5.7 %: the same rounds, the same test, the interval on the reciprocal.
    assert "| −5.7 % | REGRESSION (> 5 %, significant) |" in throughput
    assert "FAILED: 2 regression(s)" in out


def test_noisy_six_percent_slower_that_is_not_significant_passes(tmp_path: Path, capsys: Capsys) -> None:
    base = with_rounds(tmp_path, "base.json", NOISY_BASE_ROUNDS)
    code, out = gate(capsys, base, with_rounds(tmp_path, "new.json", NOISY_NEW_ROUNDS))
    assert code == 0
    latency, _ = sdpa_rows(out)
    p_value = scipy_stats.mannwhitneyu(NOISY_NEW_ROUNDS, NOISY_BASE_ROUNDS).pvalue
    assert p_value > 0.05
    assert "| +6.0 % | ok (> 5 % but not significant at 0.05) |" in latency
    assert latency.endswith(f" | {p_value:.2g} |")
    # Its interval straddles zero: the data cannot tell +6 % from no change.
    interval = latency.split(" | ")[-2]
    low, high = interval.split(" to ")
    assert low.startswith(md.MINUS) and high.startswith("+")
    assert "OK: no regression" in out


def test_too_few_rounds_fail_by_default_and_pass_when_asked(tmp_path: Path, capsys: Capsys) -> None:
    base = with_rounds(tmp_path, "base.json", [1.00, 1.01, 0.99])
    new = with_rounds(tmp_path, "new.json", [1.06, 1.07, 1.05])
    code, out = gate(capsys, base, new)
    assert code == 1
    assert "REGRESSION (> 5 %; too few rounds to test (3 vs 3; p < 0.05 needs 4+ each))" in sdpa_rows(out)[0]
    code, out = gate(capsys, base, new, "--when-undecided", "pass")
    assert code == 0
    assert "undecided (> 5 %; too few rounds to test" in sdpa_rows(out)[0]


def test_alpha_option(tmp_path: Path, capsys: Capsys) -> None:
    base = with_rounds(tmp_path, "base.json", BASE_ROUNDS)
    new = with_rounds(tmp_path, "new.json", CONSISTENT_ROUNDS)
    # At 0.001, p = 0.00016 is significant; at 0.0001 ten rounds a side cannot get there at all (scipy's normal
    # approximation gives fully separated 10 vs 10 p = 0.00018), so the verdict says so.
    assert gate(capsys, base, new, "--alpha", "0.001")[0] == 1
    code, out = gate(capsys, base, new, "--alpha", "0.0001", "--when-undecided", "pass")
    assert code == 0
    assert "undecided (> 5 %; too few rounds to test (10 vs 10; p < 0.0001 needs 11+ each))" in sdpa_rows(out)[0]
    assert main(["compare", str(base), str(new), "--alpha", "5"]) == 2
    assert "--alpha '5' must be between 0 and 1" in capsys.readouterr().err


def test_file_without_rounds_is_judged_on_the_threshold_and_says_so(tmp_path: Path, capsys: Capsys) -> None:
    def no_rounds(bench: dict[str, Any]) -> None:
        bench["stats"].pop("data")
        bench["stats"]["mean"] = 1.62

    code, out, _ = compare(capsys, make_new(tmp_path, no_rounds), "--fail-on", "latency:10%")
    assert code == 1
    assert "REGRESSION (> 10 %) (no per-round data to test)" in out


def test_timing_rows_say_when_a_run_was_flagged_unstable(tmp_path: Path, capsys: Capsys) -> None:
    from barkbench.stats import CpuUsage, check_noise

    base = with_rounds(tmp_path, "base.json", BASE_ROUNDS)
    data = json.loads(with_rounds(tmp_path, "new.json", CONSISTENT_ROUNDS).read_text())
    bench = next(b for b in data["benchmarks"] if b["fullname"] == SDPA)
    bench["extra_info"]["noise"] = check_noise(CONSISTENT_ROUNDS, CpuUsage(10.6, 9.0, 10.6, 2)).as_dict()
    new = tmp_path / "noisy-new.json"
    new.write_text(json.dumps(data))
    code, out = gate(capsys, base, new)
    assert code == 1
    latency, _ = sdpa_rows(out)
    assert "| REGRESSION (> 5 %, significant); NEW unstable |" in latency


# -- one sample rule with report: process means where both rows ran in several processes ----------------------------

#: Four processes of four rounds each: rounds within a process 0.1 % apart, process means far apart. Means: BASE
#: 1.0575 s, NEW 1.115 s (+5.4 %). Pooled, NEW's 16 rounds beat BASE's in 12 of 16 process pairs: p = 0.017,
#: "significant". As 4 process means against 4 (what report's intervals resample), p = 0.34.
BASE_PROCESS_MEANS = [1.00, 1.01, 1.02, 1.20]
NEW_PROCESS_MEANS = [1.10, 1.11, 1.12, 1.13]
WITHIN_PROCESS = (-0.002, -0.001, 0.001, 0.002)


def process_rounds(means: list[float]) -> list[float]:
    return [round(m + d, 6) for m in means for d in WITHIN_PROCESS]


def with_processes(tmp_path: Path, name: str, means: list[float]) -> Path:
    """``with_rounds`` for a row measured in ``len(means)`` processes of 4 rounds, process means recorded."""
    rounds = process_rounds(means)
    data = json.loads(with_rounds(tmp_path, name, rounds).read_text())
    bench = next(b for b in data["benchmarks"] if b["fullname"] == SDPA)
    per_process = [rounds[i : i + 4] for i in range(0, len(rounds), 4)]
    bench["extra_info"].update(
        processes=len(means), process_rounds=[4] * len(means), process_means_s=[sum(p) / 4 for p in per_process]
    )
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_rows_from_several_processes_are_tested_on_their_process_means(tmp_path: Path, capsys: Capsys) -> None:
    from barkbench import stats

    base = with_processes(tmp_path, "base.json", BASE_PROCESS_MEANS)
    new = with_processes(tmp_path, "new.json", NEW_PROCESS_MEANS)
    # What compare did before the one rule (pooled rounds): a significant regression.
    pooled = stats.regression_verdict(process_rounds(BASE_PROCESS_MEANS), process_rounds(NEW_PROCESS_MEANS), 0.05)
    assert pooled.kind == "regression"
    code, out = gate(capsys, base, new)
    assert code == 0
    latency, throughput = sdpa_rows(out)
    p_value = scipy_stats.mannwhitneyu(NEW_PROCESS_MEANS, BASE_PROCESS_MEANS).pvalue
    assert p_value > 0.3
    assert "| +5.4 % | ok (> 5 % but not significant at 0.05) |" in latency
    assert latency.endswith(f" | {p_value:.2g} |")
    assert "| −5.2 % | ok (> 5 % but not significant at 0.05) |" in throughput
    assert "or on the process means where both rows ran in several processes" in out


def test_compare_and_report_use_the_same_values_for_the_same_two_files(tmp_path: Path) -> None:
    base_run = load_run(with_processes(tmp_path, "base.json", BASE_PROCESS_MEANS))
    new_run = load_run(with_processes(tmp_path, "new.json", NEW_PROCESS_MEANS))
    base_row, new_row = base_run.by_fullname()[SDPA], new_run.by_fullname()[SDPA]
    comparison = compare_runs(base_run, new_run, [parse_fail_on("latency:5%")])
    (check,) = [c for c in comparison.checks if c.name == base_row.name]
    assert check.significance is not None and check.interval is not None
    # report's latency intervals of the two rows and compare's test and change interval: 4 process means a side.
    for interval in (base_row.latency_interval, new_row.latency_interval, check.interval):
        assert interval is not None and (interval.over, interval.n) == ("processes", 4)
    assert (check.significance.n_base, check.significance.n_new) == (4, 4)
    base_interval = base_row.latency_interval
    assert base_interval is not None and base_interval.estimate == pytest.approx(sum(BASE_PROCESS_MEANS) / 4)
    # A NEW from one process (16 rounds, no process means): rounds on both sides, as report's speed-up does.
    single = with_rounds(tmp_path, "single.json", process_rounds(NEW_PROCESS_MEANS))
    single_run = load_run(single)
    (mixed,) = [
        c for c in compare_runs(base_run, single_run, [parse_fail_on("latency:5%")]).checks if c.name == check.name
    ]
    assert mixed.significance is not None and (mixed.significance.n_base, mixed.significance.n_new) == (16, 16)
    speedup = single_run.by_fullname()[SDPA].speedup_interval(base_row)
    assert mixed.interval is not None and speedup is not None and mixed.interval.over == speedup.over == "rounds"


def test_too_few_process_means_say_so(tmp_path: Path, capsys: Capsys) -> None:
    base = with_processes(tmp_path, "base.json", [1.00, 1.01, 0.99])
    new = with_processes(tmp_path, "new.json", [1.06, 1.07, 1.05])
    code, out = gate(capsys, base, new)
    assert code == 1
    assert "REGRESSION (> 5 %; too few process means to test (3 vs 3; p < 0.05 needs 4+ each))" in sdpa_rows(out)[0]
