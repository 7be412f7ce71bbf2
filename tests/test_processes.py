"""Several processes per variant, interleaving, adaptive rounds and the progress estimate.

The rules (order, stopping, time left) are checked on crafted figures; one benchmark sub-session on the tiny
model checks what reaches pytest-benchmark's JSON (every round of every process, per-process means, distinct
worker processes, the interleaved order from the rounds' recorded start times) and the progress lines.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from scipy import stats as scipy_stats

from barkbench.measure import schedule
from barkbench.measure.schedule import Eta, PrecisionRule, Slot, estimate, plan, relative_half_width
from barkbench.measure.summary import process_spread
from barkbench.pytest_plugin.progress import Progress
from barkbench.pytest_plugin.recording import _ReplayTimer
from barkbench.results.load import parse_run
from barkbench.results.report import process_notes

# -- order ------------------------------------------------------------------------------------------------------


def test_interleaved_plan_alternates_variants_pass_by_pass() -> None:
    order = [(s.variant, s.process) for s in plan(["A", "B", "C"], 2, interleave=True)]
    assert order == [("A", 0), ("B", 0), ("C", 0), ("A", 1), ("B", 1), ("C", 1)]


def test_plain_plan_runs_each_variants_processes_back_to_back() -> None:
    assert plan(["A", "B"], 3, interleave=False) == [
        Slot("A", 0),
        Slot("A", 1),
        Slot("A", 2),
        Slot("B", 0),
        Slot("B", 1),
        Slot("B", 2),
    ]


def test_plan_refuses_duplicate_ids_and_zero_processes() -> None:
    with pytest.raises(ValueError, match="distinct"):
        plan(["A", "A"], 1, interleave=True)
    with pytest.raises(ValueError, match="processes"):
        plan(["A"], 0, interleave=False)


# -- adaptive rounds ----------------------------------------------------------------------------------------------


def test_relative_half_width_is_scipys_t_interval() -> None:
    values = [10.0, 10.4, 9.8, 10.1, 10.3]
    low, high = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / len(values), scale=scipy_stats.sem(values)
    )
    mean = sum(values) / len(values)
    assert relative_half_width(values) == pytest.approx((high - low) / 2 / mean, rel=1e-12)
    assert relative_half_width([3.0]) is None


def test_rule_stops_when_the_target_holds() -> None:
    rule = PrecisionRule(target=0.02, min_rounds=3, max_rounds=20)
    # Two identical rounds would meet any target, but the run asked for 3 rounds first.
    assert rule.decide([5.0, 5.0]).more
    decision = rule.decide([5.0, 5.0, 5.01])
    assert not decision.more and decision.precision_met is True and decision.reason == "target met"
    assert decision.relative_half_width is not None and decision.relative_half_width <= 0.02


def test_rule_stops_at_the_round_cap_without_the_target() -> None:
    rule = PrecisionRule(target=0.02, min_rounds=2, max_rounds=4)
    noisy = [5.0, 8.0, 4.0]
    assert rule.decide(noisy).more
    decision = rule.decide([*noisy, 9.0])
    assert (decision.more, decision.precision_met, decision.reason) == (False, False, "max rounds reached")


def test_rule_stops_at_the_time_cap_without_the_target() -> None:
    rule = PrecisionRule(target=0.01, min_rounds=2, max_rounds=50, max_seconds=20.0)
    assert rule.decide([5.0, 8.0]).more  # 13 s of rounds: under the cap
    decision = rule.decide([5.0, 8.0, 9.0])  # 22 s
    assert (decision.more, decision.precision_met, decision.reason) == (False, False, "time cap reached")


def test_rule_refuses_a_cap_below_the_rounds_asked_for() -> None:
    with pytest.raises(ValueError, match="below the rounds"):
        PrecisionRule(target=0.02, min_rounds=6, max_rounds=4)
    with pytest.raises(ValueError, match="between 0 and 1"):
        PrecisionRule(target=2.0)


# -- time left ----------------------------------------------------------------------------------------------------


def test_estimate_from_own_calls_and_finished_processes() -> None:
    # The process under way: 2 calls of 3 s and 5 s (mean 4), 3 calls left -> 12 s. Finished processes: 60 s over
    # 4 calls (15 s a call, loading included); this variant has 1 more process of 4 calls, the run 2 more (8 calls).
    eta = estimate(100.0, [3.0, 5.0], 3, [60.0], [4], variant_later_calls=4, run_later_calls=8)
    assert eta == Eta(100.0, 12.0 + 60.0, 12.0 + 60.0 + 120.0)


def test_estimate_before_anything_finished() -> None:
    # Nothing timed at all: no estimate; the first call of a process with finished ones uses their per-call time.
    assert estimate(0.0, [], 3, [], [], 0, 5) == Eta(0.0, None, None)
    assert estimate(1.0, [], 2, [30.0], [3]) == Eta(1.0, 20.0, 20.0)
    # The last process of the last variant, its own calls only: the run ends when the variant does.
    assert estimate(9.0, [2.0], 1, [], []) == Eta(9.0, 2.0, 2.0)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_run_clock_counts_the_processes_not_started() -> None:
    now = _Clock()
    clock = schedule.RunClock(now)
    clock.planned, clock.calls_per_process = 6, 3  # e.g. 3 variants x 2 processes, 1 warm-up + 2 rounds
    clock.start()
    clock.process_finished(30.0, 3)  # 10 s a call
    now.t = 40.0
    # Under way: the second variant's first process, 1 call of 4 s done, 2 left; 1 more process of this variant;
    # 6 planned - 1 finished - this one - 1 of this variant = 3 other processes.
    eta = clock.eta([4.0], 2, 1)
    assert eta == Eta(40.0, 8.0 + 30.0, 8.0 + 30.0 + 90.0)
    clock.drop(2)  # a variant skipped: its 2 processes never run
    assert clock.eta([4.0], 2, 1).run_left_s == pytest.approx(8.0 + 30.0 + 30.0)
    assert schedule.format_eta(eta) == "elapsed 40s, variant ~38s left, run ~2m08s left"
    assert schedule.format_duration(3725) == "1h02m" and schedule.format_duration(None) == "?"


class _Reporter:
    def __init__(self, isatty: bool) -> None:
        self.isatty = isatty
        self.lines: list[str] = []
        self.rewrites: list[str] = []
        self.raw: list[str] = []

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append(line)

    def rewrite(self, line: str, **markup: bool) -> None:
        assert markup.get("erase") and markup.get("flush")  # the whole old line overwritten, shown at once
        self.rewrites.append(line)

    def write(self, text: str, **markup: bool) -> None:
        self.raw.append(text)

    def ensure_newline(self) -> None:
        self.raw.append("<newline>")


def _progress(reporter: _Reporter, clock: schedule.RunClock) -> Progress:
    progress = Progress(None, "v", 1, 2, True, clock, processes=2)
    progress._reporter = reporter
    progress._live = bool(reporter.isatty)
    return progress


@pytest.mark.parametrize("isatty", [False, True])
def test_progress_lines_carry_elapsed_and_time_left(isatty: bool) -> None:
    now = _Clock()
    clock = schedule.RunClock(now)
    clock.planned, clock.calls_per_process = 2, 3
    reporter = _Reporter(isatty)
    progress = _progress(reporter, clock)
    for t in (0.0, 2.0, 4.0):  # warm-up, round 1, round 2 of process 1: 2 s each
        now.t = t
        progress.next_round()
    now.t = 6.0
    progress.process_done()
    progress.close()
    shown = reporter.rewrites if isatty else reporter.lines
    assert len(shown) == 3
    assert shown[0].startswith("[barkbench] v: process 1/2 warm-up 1/1 (elapsed 0s")
    # After two 2 s calls: this call (2 s) + the second process (3 calls x 2 s) left for the variant.
    assert shown[2] == "[barkbench] v: process 1/2 round 2/2 (elapsed 4s, variant ~8s left, run ~8s left)"
    if isatty:
        assert reporter.lines == [] and reporter.raw[-1] == "\n"  # one rewritten line, ended once
    else:
        assert reporter.rewrites == []
    assert clock.finished_seconds == [6.0] and clock.finished_calls == [3]


# -- recording and reporting --------------------------------------------------------------------------------------


def test_replay_timer_gives_each_duration_exactly() -> None:
    durations = [0.1, 5.3, 1e-7, 12.25]
    timer = _ReplayTimer(durations)
    got = []
    for _ in durations:
        start = timer()
        got.append(timer() - start)
    assert got == durations and not timer.pending


def test_process_spread_within_and_between() -> None:
    spread = process_spread([10.0, 12.0], [[9.0, 11.0], [12.0, 12.0]])
    assert spread["between_process_cv"] == pytest.approx(math.sqrt(2) / 11)
    assert spread["within_process_cv"] == pytest.approx(math.sqrt(2) / 2 / 11)
    assert process_spread([10.0], [[10.0]]) == {"within_process_cv": None, "between_process_cv": None}


def _entry(variant: str, extra: dict[str, Any], data: list[float]) -> dict[str, Any]:
    return {
        "group": "tiny bs1",
        "name": f"test_generate[{variant}]",
        "fullname": f"bench/test_bark.py::test_generate[{variant}]",
        "extra_info": {
            "variant": variant,
            "attention": "eager",
            "dtype": "fp32",
            "offload": "none",
            "batch_size": 1,
            "model_source": "tiny",
            "device": "cpu",
            **extra,
        },
        "stats": {"mean": sum(data) / len(data), "rounds": len(data), "data": data},
    }


def test_report_notes_process_spread_and_precision() -> None:
    raw = {
        "machine_info": {"node": "n"},
        "commit_info": {},
        "benchmarks": [
            _entry(
                "eager-fp32-bs1",
                {
                    "process_means_s": [1.0, 1.2],
                    "process_rounds": [2, 3],
                    "interleave": True,
                    "within_process_cv": 0.05,
                    "between_process_cv": 0.12,
                    "process_peak_memory_bytes": [200_000_000, 210_000_000],
                    "target_precision": 0.02,
                    "precision_met": False,
                    "precision_reason": "max rounds reached",
                    "precision_half_width": 0.031,
                },
                [1.0, 1.0, 1.2, 1.2, 1.2],
            )
        ],
    }
    from pathlib import Path

    notes = process_notes(parse_run(raw, Path("x.json")).benchmarks)
    assert notes is not None
    assert "2 processes (interleaved with the other variants; rounds 2/3)" in notes
    assert "within a process 5.0 %, between processes 12.0 %" in notes
    assert "peak memory 200 / 210 MB by process" in notes
    assert "target precision ±2.0 % not met after 5 rounds (max rounds reached; 95 % t-interval ±3.1 %)" in notes


# -- end to end -------------------------------------------------------------------------------------------------


@pytest.mark.one_stack("current")
def test_interleaved_processes_reach_pytest_benchmark(bench_pytester: pytest.Pytester) -> None:
    out = bench_pytester.path / "run.json"
    result = bench_pytester.runpytest_subprocess(
        "bench",
        "-p",
        "no:cacheprovider",
        "--bark-semantic-tokens",
        "8",
        "--bark-warmup-rounds",
        "0",
        "--bark-rounds",
        "2",
        "--bark-processes",
        "2",
        "--bark-interleave",
        "--bark-variants",
        "baseline;sdpa",  # two fp32 variants: the cheapest pair on a CPU
        "--bark-tables",
        "processes",  # the compact summary plus the processes' notes
        f"--benchmark-json={out}",
        timeout=900,
    )
    result.assert_outcomes(passed=2)
    # Plain progress lines (not a terminal), each with the elapsed time and the estimates.
    result.stdout.fnmatch_lines(["*eager-fp32-bs1: process 2/2 round 2/2 (elapsed *, variant ~* left, run ~* left)"])
    result.stdout.fnmatch_lines(
        [
            "*barkbench results*",
            "| Variant *| Flags *|",
            "*Processes and precision*",
            "*eager-fp32-bs1*2 processes (interleaved*",
        ]
    )
    data = json.loads(out.read_text())
    by_variant = {b["extra_info"]["variant"]: b for b in data["benchmarks"]}
    assert set(by_variant) == {"eager-fp32-bs1", "sdpa-fp32-bs1"}
    starts = {}
    pids: list[int] = []
    for variant, bench in by_variant.items():
        info = bench["extra_info"]
        # pytest-benchmark holds every round of every process, under the test id.
        assert len(bench["stats"]["data"]) == 4 and bench["stats"]["rounds"] == 4
        assert bench["name"] == f"test_generate[{variant}]"
        assert info["processes"] == 2 and info["process_rounds"] == [2, 2] and info["interleave"] is True
        assert info["process_means_s"] == pytest.approx(
            [sum(bench["stats"]["data"][:2]) / 2, sum(bench["stats"]["data"][2:]) / 2]
        )
        assert info["peak_memory_bytes"] == max(info["process_peak_memory_bytes"])
        pids += info["process_pids"]
        starts[variant] = info["round_started_unix_s"]
    assert len(set(pids)) == 4  # a fresh worker per process
    a, b = starts["eager-fp32-bs1"], starts["sdpa-fp32-bs1"]
    # A1 B1 A2 B2: each pass's rounds of the first variant, then the second's, then the next pass.
    assert a[0] < a[1] < b[0] < b[1] < a[2] < a[3] < b[2] < b[3]


# -- harness overhead ---------------------------------------------------------------------------------------------


def test_overhead_from_process_means() -> None:
    from barkbench.measure.overhead import overhead_of

    bare = [[10.0, 10.2], [9.8, 10.0], [10.1, 9.9]]
    harness = [[10.1, 10.3], [9.9, 10.1], [10.2, 10.0]]
    result = overhead_of(bare, harness, ["bare", "harness"] * 3)
    assert result.overhead == pytest.approx(0.1 / 10.0)
    assert result.interval is not None and result.interval.over == "processes" and result.interval.n == 3
    assert result.interval.low <= 1.01 <= result.interval.high
    assert result.as_dict()["overhead_interval"]["low"] == pytest.approx(result.interval.low - 1)
    assert "harness overhead +1.00 %, 95 % interval" in result.summary()
    assert "no interval" in overhead_of([[1.0]], [[1.1]], ["bare", "harness"]).summary()


def test_paired_overhead_from_pairs_in_each_process() -> None:
    from barkbench.measure.overhead import pair_order, paired_overhead_of

    order = pair_order(2)
    assert order == ["harness", "bare", "bare", "harness"]  # ABBA
    # Processes 30 % apart; in every pair the harness takes 2 % more.
    bare = [[1.0, 1.1], [1.3, 1.4], [0.9, 1.0]]
    harness = [[b * 1.02 for b in p] for p in bare]
    result = paired_overhead_of(bare, harness, order)
    assert result.paired and result.overhead == pytest.approx(0.02)
    assert result.interval is not None and result.interval.over == "pairs" and result.interval.n == 6
    assert result.interval.low == pytest.approx(1.02) and result.interval.high == pytest.approx(1.02)
    assert result.median_pair_overhead() == pytest.approx(0.02)
    data = result.as_dict()
    assert data["method"] == "paired in each worker process (ABBA)" and data["order"] == order
    assert "over 6 pairs" in result.summary()


@pytest.mark.one_stack("current")
def test_paired_overhead_command_on_the_tiny_model(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = tmp_path / "overhead.json"
    args = ["--model", "tiny", "--paired", "--processes", "1", "--rounds", "2", "--warmup", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "barkbench", "overhead", *args, "--semantic-tokens", "8", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "harness overhead" in done.stdout and "over 2 pairs" in done.stdout
    assert "process 1/1: bare mean" in done.stderr
    data = json.loads(out.read_text())
    assert data["method"] == "paired in each worker process (ABBA)"
    assert data["order"] == ["harness", "bare", "bare", "harness"]
    assert [len(p) for p in data["bare_rounds_s"]] == [2] and [len(p) for p in data["harness_rounds_s"]] == [2]
    assert all(s > 0 for p in data["bare_rounds_s"] + data["harness_rounds_s"] for s in p)
    assert math.isfinite(data["overhead"]) and data["overhead_interval"] is not None


@pytest.mark.one_stack("legacy")
def test_overhead_command_on_the_tiny_model(tmp_path: Any) -> None:
    import subprocess
    import sys

    out = tmp_path / "overhead.json"
    # One process per side keeps it cheap; the interval (from 2+ processes) is checked on crafted figures above.
    args = ["--model", "tiny", "--processes", "1", "--rounds", "2", "--warmup", "0", "--semantic-tokens", "8"]
    done = subprocess.run(
        [sys.executable, "-m", "barkbench", "overhead", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "harness overhead" in done.stdout
    data = json.loads(out.read_text())
    assert data["order"] == ["bare", "harness"]
    assert [len(p) for p in data["bare_rounds_s"]] == [2] and [len(p) for p in data["harness_rounds_s"]] == [2]
    assert math.isfinite(data["overhead"]) and data["overhead_interval"] is None


# -- the measuring loop, with a stand-in worker ------------------------------------------------------------------


class _FakeRunner:
    """A worker stand-in: answers at once; the durations come from the patched clock."""

    started: list[str] = []

    def __init__(self, variant_id: str, pid: int) -> None:
        from barkbench.measure.runner import RunnerInfo

        self.info = RunnerInfo(
            attention_impl="eager",
            attention_modules={},
            device="cpu",
            device_name="cpu",
            baseline_memory_bytes=0,
            model_memory_bytes=1000 + pid,
            sample_rate=24000,
            warnings=(),
            pid=pid,
        )
        self.variant_id = variant_id

    def prepare(self) -> None:
        pass

    def generate(self) -> Any:
        from barkbench.measure.runner import RoundResult

        return RoundResult(1.0, 5000 + self.info.pid, "fake", 0.5, (8,))

    def close(self) -> None:
        pass


class _Durations:
    """``perf_counter`` stand-in: each (start, end) pair reads as the next crafted duration."""

    def __init__(self, durations: list[float]) -> None:
        self.durations = list(durations)
        self.at_start = True

    def __call__(self) -> float:
        self.at_start = not self.at_start
        return 0.0 if not self.at_start else self.durations.pop(0)


def _config(**fields: Any) -> Any:
    from barkbench.measure.sources import parse_model_source
    from barkbench.pytest_plugin.config import BenchConfig
    from barkbench.variants import Variant

    base = dict(
        source=parse_model_source("tiny"),
        variants=(Variant(), Variant(dtype="bf16")),
        rounds=2,
        warmup_rounds=0,
        semantic_max_new_tokens=8,
        isolated=True,
        device_type="cpu",
        bt_via="transform",
        processes=2,
    )
    return BenchConfig(**{**base, **fields})


def _patch(monkeypatch: pytest.MonkeyPatch, durations: list[float], fail: str | None = None) -> list[str]:
    import time as time_mod
    from types import SimpleNamespace

    from barkbench.measure import engine
    from barkbench.measure.worker import VariantFailed

    started: list[str] = []

    def start_runner(spec: Any, **kwargs: Any) -> _FakeRunner:
        started.append(spec.variant.id)
        if fail is not None and spec.variant.id == fail and started.count(fail) == 2:
            raise VariantFailed("worker process died (killed by SIGKILL)", "died")
        return _FakeRunner(spec.variant.id, len(started))

    clock = _Durations(durations)
    monkeypatch.setattr(engine, "start_runner", start_runner)
    monkeypatch.setattr(
        engine, "time", SimpleNamespace(perf_counter=clock, time=time_mod.time, monotonic=time_mod.monotonic)
    )
    return started


def _measure(cfg: Any, variants: Any, interleave: bool = False) -> Any:
    """The engine's measurements of ``variants`` under ``cfg``, each with the glue's progress lines."""
    from barkbench.measure import engine
    from barkbench.pytest_plugin.session import BarkBench

    plan = cfg.plan(tuple(cfg.spec(v) for v in variants), timed=True, interleave=interleave)
    return engine.run(plan, lambda v: BarkBench(cfg).progress(v, True))


def test_adaptive_rounds_go_to_the_last_process_until_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 processes x 2 rounds, then noisy extra rounds: the 6-round cap stops it, target not met.
    _patch(monkeypatch, [1.0, 1.5, 0.5, 1.2, 2.0, 0.4])
    cfg = _config(target_precision=0.02, max_rounds=6)
    (run,) = _measure(cfg, cfg.variants[:1]).values()
    assert [list(p.round_seconds) for p in run.processes] == [[1.0, 1.5], [0.5, 1.2, 2.0, 0.4]]
    assert run.decision is not None and run.decision.reason == "max rounds reached"
    assert run.decision.precision_met is False


def test_adaptive_rounds_stop_when_the_target_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch(monkeypatch, [2.0, 2.01, 2.0, 2.02, 2.01])
    cfg = _config(processes=1, rounds=3, target_precision=0.02, max_rounds=10)
    (run,) = _measure(cfg, cfg.variants[:1]).values()
    assert run.round_seconds == [2.0, 2.01, 2.0]  # met at the 3 rounds asked for: nothing added
    assert run.decision is not None and run.decision.precision_met is True


def test_interleaved_schedule_order_and_a_failing_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    from barkbench.variants import Variant

    variants = (Variant(), Variant(dtype="bf16"), Variant(attention="sdpa"))
    # bf16's second process dies at start: its failure is kept, the other two finish both passes.
    started = _patch(monkeypatch, [1.0] * 10, fail="eager-bf16-bs1")
    runs = _measure(_config(variants=variants, interleave=True), variants, interleave=True)
    ids = [v.id for v in variants]
    assert started == [ids[0], ids[1], ids[2], ids[0], ids[1], ids[2]]
    a, b, c = (runs[i] for i in ids)
    assert a.complete and c.complete and not any(r.interruption for r in runs.values())
    assert b.failure is not None and b.failure.kind == "died" and len(b.processes) == 1
    assert [p.info.pid for p in a.processes] == [1, 4]


def test_an_interrupt_stops_the_schedule_and_keeps_the_finished_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    from barkbench.variants import Variant

    variants = (Variant(), Variant(dtype="bf16"))
    # A1 B1 A2 then Ctrl-C in B2's first round: A finished, B did not.
    _patch(monkeypatch, [1.0] * 6)
    calls = {"n": 0}
    generate = _FakeRunner.generate

    def interrupting(self: _FakeRunner) -> Any:
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return generate(self)

    monkeypatch.setattr(_FakeRunner, "generate", interrupting)
    runs = _measure(_config(variants=variants, interleave=True), variants, interleave=True)
    a, b = (runs[v.id] for v in variants)
    assert a.complete and a.round_seconds == [1.0] * 4 and a.interruption is None
    assert not b.complete and len(b.processes) == 1
    assert b.interruption is not None
    exc, step = b.interruption.exception, b.interruption.during
    assert isinstance(exc, KeyboardInterrupt) and step == "eager-bf16-bs1's process 2/2 round 1/2"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_time_s": 30.0}, "--bark-max-time caps adaptive rounds; add --bark-target-precision"),
        (
            {"target_precision": 0.02, "max_rounds": 3, "processes": 2},
            "--bark-max-rounds 3 is below the 4 rounds asked for",
        ),
    ],
)
def test_adaptive_caps_are_checked_at_start(options: dict[str, Any], message: str) -> None:
    from barkbench.pytest_plugin.config import BenchOptions, _check_adaptive_options

    with pytest.raises(pytest.UsageError, match=message):
        _check_adaptive_options(BenchOptions(**options), rounds=2)
    _check_adaptive_options(BenchOptions(target_precision=0.02, max_rounds=4), rounds=2)


def test_option_parsers_refuse_bad_values() -> None:
    import argparse

    from barkbench.pytest_plugin import options

    assert options.parse_target_precision("2%") == pytest.approx(0.02)
    assert options.parse_target_precision("0.05") == pytest.approx(0.05)
    for bad in ("0", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="--bark-target-precision"):
            options.parse_target_precision(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="--bark-processes must be >= 1"):
        options.parse_processes("0")
    with pytest.raises(argparse.ArgumentTypeError, match="--bark-max-time must be > 0"):
        options.parse_max_time("-1")


class _Benchmark:
    """pytest-benchmark's fixture, as far as the recording uses it: ``pedantic`` times each round with
    ``_timer`` as pytest-benchmark's runner does, and the stats hold the durations."""

    def __init__(self, name: str) -> None:
        from types import SimpleNamespace

        self.enabled = True
        self.extra_info: dict[str, Any] = {}
        self.has_error = False
        self.group = "tiny bs1"
        self.name = self.fullname = self.param = name
        self.params = {"bark_variant": name}
        self.stats: Any = None
        self._timer: Any = None
        self._ns = SimpleNamespace

    def pedantic(self, target: Any, rounds: int, warmup_rounds: int, iterations: int) -> None:
        data = []
        for _ in range(rounds):
            start = self._timer()
            target()
            data.append(self._timer() - start)
        mean = sum(data) / len(data)
        stddev = (sum((d - mean) ** 2 for d in data) / (len(data) - 1)) ** 0.5
        self.stats = self._ns(stats=self._ns(mean=mean, stddev=stddev, data=data))


def test_each_test_records_its_variant_and_the_unfinished_one_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    from barkbench.pytest_plugin.config import BenchOptions
    from barkbench.pytest_plugin.session import BarkSession
    from barkbench.variants import Variant

    variants = (Variant(), Variant(dtype="bf16"))
    _patch(monkeypatch, [1.0, 1.2, 2.0, 2.2, 1.1, 1.3])
    calls = {"n": 0}
    generate = _FakeRunner.generate

    def interrupting(self: _FakeRunner) -> Any:
        calls["n"] += 1
        if calls["n"] == 7:  # B's second process, first round
            raise KeyboardInterrupt
        return generate(self)

    monkeypatch.setattr(_FakeRunner, "generate", interrupting)
    cfg = _config(variants=variants, interleave=True)
    # No pytest config: no terminal, no pytest-benchmark session; the first test runs the whole schedule.
    session = BarkSession(None, BenchOptions())  # type: ignore[arg-type]
    session.collected_variants = [v.id for v in variants]
    bench = session.bench(cfg)
    a_bench = _Benchmark("eager-fp32-bs1")
    bench.run(a_bench, variants[0])
    # A's four rounds (both processes) went to pytest-benchmark as recorded, with its per-process figures.
    assert a_bench.stats.stats.data == [1.0, 1.2, 1.1, 1.3]
    info = a_bench.extra_info
    assert info["process_means_s"] == pytest.approx([1.1, 1.2]) and info["process_pids"] == [1, 3]
    assert info["status"] == "ok" and info["rounds"] == 4 and info["peak_memory_bytes"] == 5003
    assert info["process_peak_memory_bytes"] == [5001, 5003]
    b_bench = _Benchmark("eager-bf16-bs1")
    with pytest.raises(KeyboardInterrupt):
        bench.run(b_bench, variants[1])
    assert b_bench.extra_info["status"] == "interrupted" and b_bench.stats is None
    assert "during eager-bf16-bs1's process 2/2 round 1/2; 2 measured round(s) finished" in b_bench.extra_info["error"]
    assert session.interrupted == ("eager-bf16-bs1", "SIGINT") and len(session.failed) == 1


def test_overhead_rejects_a_bad_count_in_one_line_naming_the_option(capsys: Any) -> None:
    from barkbench.cli import main

    assert main(["overhead", "--processes", "0"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--processes must be >= 1, got 0" in line


def test_intervals_of_rows_measured_in_several_processes_resample_the_process_means(tmp_path: Any) -> None:
    import json
    from pathlib import Path

    from barkbench.results.load import load_run

    data = json.loads((Path(__file__).parent / "data" / "h200-tiny.json").read_text())
    rows = {b["name"]: b for b in data["benchmarks"]}
    eager, sdpa, offload = (
        rows[f"test_generate[{v}]"] for v in ("eager-fp32-bs1", "sdpa-fp32-bs1", "sdpa-fp32-offload-bs1")
    )
    # Three processes each: close rounds, process means far apart (what a single process hides).
    eager["extra_info"]["process_means_s"] = [0.40, 0.50, 0.60]
    sdpa["extra_info"]["process_means_s"] = [0.35, 0.45, 0.55]
    path = tmp_path / "processes.json"
    path.write_text(json.dumps(data))
    results = {r.variant: r for r in load_run(path).benchmarks}
    e, s, o = results["eager-fp32-bs1"], results["sdpa-fp32-bs1"], results["sdpa-fp32-offload-bs1"]

    latency = e.latency_interval
    assert latency is not None and latency.over == "processes" and latency.n == 3
    assert latency.estimate == pytest.approx(0.5) and latency.high - latency.low > 0.1  # the rounds span 0.03 s
    speedup = s.speedup_interval(e)
    assert speedup is not None and speedup.over == "processes" and speedup.n == 3
    assert speedup.estimate == pytest.approx(0.5 / 0.45)
    # A row from one process against one from several: both sides fall back to rounds.
    mixed = o.speedup_interval(e)
    assert mixed is not None and mixed.over == "rounds" and mixed.n == len(o.round_seconds)
    assert o.latency_interval is not None and o.latency_interval.over == "rounds"
