"""The measuring engine and the one record writer, with a stand-in worker: no model, no process, no timing asserts.

What the engine keeps (``measure/engine.py``'s rules): a failure ends the variant and the planned processes it
will not run are dropped from the estimate; an unexpected error fails one variant of several but propagates when the
variant is alone; an untimed plan makes one call and samples nothing. What the writer keeps
(``pytest_plugin/recording.py``): a variant that loaded and then failed records what its worker reported, never
timings; a run under --benchmark-disable replays nothing. What the worker receives: the parsed model source, as a
value that survives the spawn pipe.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from barkbench.measure import engine
from barkbench.measure.runner import RoundResult, RunnerInfo
from barkbench.measure.sources import parse_model_source
from barkbench.measure.worker import VariantFailed
from barkbench.variants import Variant


class _Runner:
    """Answers at once; ``fail_on`` makes its n-th generate raise."""

    def __init__(self, pid: int, fail_on: int | None = None, error: Exception | None = None) -> None:
        self.info = RunnerInfo("eager", {}, "cpu", "cpu", 0, 1000, 24000, (), pid)
        self.calls = 0
        self.fail_on = fail_on
        self.error = error or VariantFailed("out of memory: injected", "oom")

    def prepare(self) -> None:
        pass

    def generate(self) -> RoundResult:
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error
        return RoundResult(1.0, 5000, "fake", 0.5, (8,))

    def close(self) -> None:
        pass


class _Progress(engine.SilentProgress):
    def __init__(self) -> None:
        self.dropped_processes = 0
        self.rounds = 0

    def next_round(self) -> None:
        self.rounds += 1

    def dropped(self, processes: int) -> None:
        self.dropped_processes += processes


def _config(**fields: Any) -> Any:
    from barkbench.pytest_plugin.config import BenchConfig

    base: dict[str, Any] = dict(
        source=parse_model_source("tiny"),
        variants=(Variant(), Variant(dtype="bf16")),
        rounds=2,
        warmup_rounds=1,
        semantic_max_new_tokens=8,
        isolated=True,
        device_type="cpu",
        bt_via="transform",
    )
    return BenchConfig(**{**base, **fields})


def _start(monkeypatch: pytest.MonkeyPatch, runners: dict[str, list[_Runner]]) -> None:
    def start_runner(spec: Any, **kwargs: Any) -> _Runner:
        return runners[spec.variant.id].pop(0)

    monkeypatch.setattr(engine, "start_runner", start_runner)


def test_a_failure_ends_the_variant_and_drops_its_unrun_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(processes=3)
    variant = cfg.variants[0]
    # The first process finishes; the second fails in its first round (after its warm-up); the third never starts.
    _start(monkeypatch, {variant.id: [_Runner(1), _Runner(2, fail_on=2)]})
    progress = _Progress()
    (measured,) = engine.run(cfg.plan((cfg.spec(variant),), timed=True), lambda _v: progress).values()
    assert not measured.complete and measured.failure == engine.Failure("out of memory: injected", "oom")
    assert len(measured.processes) == 1 and [i.pid for i in measured.loaded] == [1, 2]
    assert progress.dropped_processes == 2


def test_an_unexpected_error_fails_one_variant_of_several_and_propagates_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config()
    a, b = cfg.variants
    _start(monkeypatch, {a.id: [_Runner(1, fail_on=1, error=ZeroDivisionError("bug"))], b.id: [_Runner(2)]})
    both = engine.run(cfg.plan((cfg.spec(a), cfg.spec(b)), timed=True))
    assert both[a.id].failure == engine.Failure("ZeroDivisionError: bug", "error") and both[b.id].complete
    _start(monkeypatch, {a.id: [_Runner(3, fail_on=1, error=ZeroDivisionError("bug"))]})
    with pytest.raises(ZeroDivisionError):
        engine.run(cfg.plan((cfg.spec(a),), timed=True))


def test_an_untimed_plan_makes_one_call_and_samples_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(processes=2, rounds=5, warmup_rounds=2)
    variant = cfg.variants[0]
    runner = _Runner(1)
    _start(monkeypatch, {variant.id: [runner]})
    (measured,) = engine.run(cfg.plan((cfg.spec(variant),), timed=False)).values()
    assert measured.complete and runner.calls == 1 and measured.processes[0].cpu_usage is None


def test_a_failed_variant_records_its_worker_and_no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    from barkbench.pytest_plugin.recording import RecordContext, record_fields
    from barkbench.record import Record

    cfg = _config()
    variant = cfg.variants[0]
    _start(monkeypatch, {variant.id: [_Runner(7, fail_on=1)]})
    (measured,) = engine.run(cfg.plan((cfg.spec(variant),), timed=True)).values()
    fields = record_fields(measured, RecordContext(cfg, cfg.workload(variant), timed=True), None)
    written = Record(**fields).to_extra_info()
    assert written["status"] == "failed" and written["failure_kind"] == "oom" and written["worker_pid"] == 7
    assert "peak_memory_bytes" not in written and "latency_cv" not in written


def test_replaying_under_benchmark_disable_runs_nothing() -> None:
    from barkbench.pytest_plugin.recording import record_rounds

    class Disabled:
        enabled = False
        _timer: Any = None

        def pedantic(self, target: Any, rounds: int, warmup_rounds: int, iterations: int) -> None:
            target()  # what pytest-benchmark's disabled pedantic does: one call, no timer

    record_rounds(Disabled(), [1.5])


def test_the_worker_spec_carries_the_parsed_source_over_the_spawn_pipe() -> None:
    cfg = _config(remeasure_limits=True)
    spec = cfg.spec(Variant())
    assert pickle.loads(pickle.dumps(spec)) == spec and spec.source.kind == "random" and spec.source.arch == "tiny"
