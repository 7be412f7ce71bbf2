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

from barkbench.cli import main
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
    assert "| throughput | 0.685 samples/s | 0.644 samples/s | −6.0 % | REGRESSION (> 5 %) |" in out


def test_throughput_up_is_fine(tmp_path: Path, capsys: Capsys) -> None:
    new = make_new(tmp_path, set_extra("throughput_samples_per_s", (1 / 1.46) * 1.5))
    code, out, _ = compare(capsys, new, *GATES)
    assert code == 0
    assert "+50.0 % | improved |" in out


def test_latency_gate_uses_stats_mean(tmp_path: Path, capsys: Capsys) -> None:
    # 1.46 s -> 1.62 s is +10.96 % > 10 %; memory and throughput are untouched, so only latency can fail.
    def slower(bench: dict[str, Any]) -> None:
        bench["stats"]["mean"] = 1.62

    new = make_new(tmp_path, slower)
    code, out, _ = compare(capsys, new, "--fail-on", "latency:10%")
    assert code == 1
    assert "| latency mean | 1.46 s | 1.62 s | +11.0 % | REGRESSION (> 10 %) |" in out
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
