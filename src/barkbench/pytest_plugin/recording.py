"""A variant's measurement into pytest-benchmark: its rounds replayed through ``pedantic``, its record written once.

Rules kept here:

- One path for the rounds, whatever the process count: the engine timed every round; ``record_rounds`` replays
  the durations through the fixture's timer, so pytest-benchmark computes the stats, stores every round (all
  processes × rounds) and compares by the test id as for any benchmark. pytest-benchmark has no public way to add
  externally timed rounds; the timer is the one private attribute this touches (``BenchmarkFixture._timer``, read
  by ``_make_runner`` on every round in pytest-benchmark 4.x and 5.x). Under ``--benchmark-disable`` the fixture
  runs nothing (its ``pedantic`` calls the target once, which does nothing).
- One writer for ``extra_info``: ``write_record`` assembles the whole record from the measurement
  (``record_fields``), builds a ``barkbench.record.Record`` of it (every key typed and checked there, written in
  the order results files have always had them, with the format version) and writes ``to_extra_info()`` once. A
  variant that did not finish gets its identity, what its worker reported at load, and why it stopped (``status``
  failed or interrupted) — never timings.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from barkbench import stats as bstats
from barkbench.measure import schedule
from barkbench.measure.engine import VariantMeasurement
from barkbench.measure.runner import RunnerInfo
from barkbench.measure.summary import GPU_MEMORY_FIELDS, RoundSummary, process_spread, summarize
from barkbench.measure.workload import Workload
from barkbench.pytest_plugin.config import BenchConfig
from barkbench.pytest_plugin.signals import signal_name
from barkbench.record import Record
from barkbench.results import efficiency

#: The name pytest-benchmark stores as the timer of recorded rounds (``options.timer`` in its JSON).
RECORDED_TIMER_NAME = "perf_counter_recorded_by_barkbench"


# -- the rounds -------------------------------------------------------------------------------------------------


class _ReplayTimer:
    """A timer whose every (start, end) pair is (0, the next recorded duration): ``end - start`` is the duration
    exactly (no float drift from a running total)."""

    def __init__(self, durations: Sequence[float]) -> None:
        self.pending = deque(float(d) for d in durations)
        self._at_start = True
        self.__name__ = RECORDED_TIMER_NAME

    def __call__(self) -> float:
        if self._at_start:
            self._at_start = False
            return 0.0
        self._at_start = True
        return self.pending.popleft()


def _nothing() -> None:
    """The replayed round's target: the work happened in the worker, timed there by the engine."""


def record_rounds(benchmark: Any, durations: Sequence[float]) -> None:
    """Give pytest-benchmark ``durations`` as the benchmark's rounds, through ``pedantic`` (so its stats, JSON
    and compare see an ordinary benchmark); 0 warm-up rounds: the warm-ups ran in the workers."""
    if not durations:
        raise ValueError("record_rounds: no durations to record")
    timer = _ReplayTimer(durations)
    benchmark._timer = timer  # the only private attribute: see the module's docstring
    benchmark.pedantic(_nothing, rounds=len(durations), warmup_rounds=0, iterations=1)
    if benchmark.enabled and timer.pending:
        raise RuntimeError(f"pytest-benchmark took fewer rounds than recorded ({len(timer.pending)} left over)")


# -- the record -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordContext:
    """What a record says besides the measurement: the session's settings and the workload it ran."""

    config: BenchConfig
    workload: Workload
    #: pytest-benchmark timed (recorded) the rounds: False under --benchmark-disable.
    timed: bool

    @property
    def per_process(self) -> bool:
        """The per-process figures are recorded (several processes, interleaving or adaptive rounds, timed)."""
        return self.timed and self.config.several_processes


@dataclass(frozen=True)
class RoundStats:
    """pytest-benchmark's statistics of the recorded rounds (what its table and a re-check read)."""

    mean: float
    stddev: float | None
    data: tuple[float, ...]


def write_record(
    benchmark: Any, measurement: VariantMeasurement, context: RecordContext, warn: Callable[[str], None]
) -> None:
    """Replay a finished variant's rounds, then write its whole record (a ``Record``) into ``extra_info``, once.
    ``warn`` gets the lines about the figures (the precision reached, an unstable row)."""
    if measurement.complete:
        record_rounds(benchmark, measurement.round_seconds)
    stats = _round_stats(benchmark) if measurement.complete and context.timed else None
    for line in _figure_warnings(measurement, context, stats):
        warn(line)
    record = Record(**record_fields(measurement, context, stats))
    benchmark.extra_info.update(record.to_extra_info())


def _round_stats(benchmark: Any) -> RoundStats | None:
    stats: Any = getattr(benchmark, "stats", None)
    if stats is None:
        return None
    data = tuple(stats.stats.data)
    return RoundStats(stats.stats.mean, stats.stats.stddev if len(data) > 1 else None, data)


def record_fields(measurement: VariantMeasurement, context: RecordContext, stats: RoundStats | None) -> dict[str, Any]:
    """The record's fields (named as its ``extra_info`` keys) from the measurement: what was asked for, what the
    worker reported at load, the per-process figures, then the round figures or why it stopped."""
    out = _asked_for(measurement, context)
    if measurement.loaded:
        out.update(_loaded(measurement.loaded))
    if measurement.complete:
        if context.per_process:
            out.update(_per_process(measurement, context))
        out.update(_compiled(measurement.loaded[0]))
        if context.per_process and measurement.decision is not None:
            out.update(_precision(measurement.decision, context))
        out.update(_after_rounds(measurement))
        out.update(_figures(measurement, stats))
    else:
        out.update(_compiled(measurement.loaded[0]) if measurement.loaded else {})
        out.update(_stopped(measurement))
    return out


def _asked_for(measurement: VariantMeasurement, context: RecordContext) -> dict[str, Any]:
    cfg = context.config
    return {
        **measurement.variant.as_dict(),
        "model_source": cfg.model,
        "device": cfg.device_type,
        "semantic_max_new_tokens": context.workload.semantic_max_new_tokens,
        "rounds": cfg.rounds,
        "warmup_rounds": cfg.warmup_rounds,
        "isolation": "process" if cfg.isolated else "off",
        "fixed_length": cfg.fixed_length,
        **context.workload.as_extra_info(),
    }


def _loaded(infos: Sequence[RunnerInfo]) -> dict[str, Any]:
    """What the first worker reported at load. Memory: every process's own load gives its figure; the variant's
    is their maximum, the one a memory budget must hold in whichever process runs it."""
    first = infos[0]
    return {
        "attention_impl": first.attention_impl,
        "device": first.device,
        "device_index": first.device_index,
        "device_name": first.device_name,
        "model_memory_bytes": max(info.model_memory_bytes for info in infos),
        "weights_bytes": first.weights_bytes,
        "warnings": list(first.warnings),
        "worker_pid": first.pid,
        # Offload variants: the worker checked at load that each sub-model runs wholly on the execution device.
        "offload_placement": "checked" if first.offload_placement_checked else None,
    }


def _per_process(measurement: VariantMeasurement, context: RecordContext) -> dict[str, Any]:
    """Each process's pid, rounds, mean and peak (the memory call makes every fresh process's peak read the same;
    the per-process figures show how far they agree), and the spread within and between them."""
    processes = measurement.processes
    means = [statistics.fmean(p.round_seconds) for p in processes]
    return {
        "rounds": len(measurement.round_seconds),
        "processes": len(processes),
        "interleave": context.config.interleave,
        "process_pids": [p.info.pid for p in processes],
        "process_rounds": [len(p.round_seconds) for p in processes],
        "process_means_s": means,
        "process_peak_memory_bytes": [max(r.peak_memory_bytes for r in p.results) for p in processes],
        "round_started_unix_s": [t for p in processes for t in p.round_started_unix_s],
        **process_spread(means, [p.round_seconds for p in processes]),
    }


def _compiled(info: RunnerInfo) -> dict[str, Any]:
    if not (info.compiled or info.quantized_linear):
        return {}
    return {"compiled": list(info.compiled), "quantized_linear": info.quantized_linear}


def _precision(decision: schedule.Decision, context: RecordContext) -> dict[str, Any]:
    return {
        "target_precision": context.config.target_precision,
        "precision_met": decision.precision_met,
        "precision_reason": decision.reason,
        "precision_half_width": decision.relative_half_width,
    }


def _after_rounds(measurement: VariantMeasurement) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if measurement.wav_path is not None:
        out["wav_path"] = measurement.wav_path
    if measurement.quality is not None:
        out["quality"] = measurement.quality
    return out


def _figures(measurement: VariantMeasurement, stats: RoundStats | None) -> dict[str, Any]:
    """The figures of the measured rounds, against pytest-benchmark's mean when it recorded them (so a report
    re-checking them reads the same numbers), then the machine's limits and the long-form and compile figures."""
    first = measurement.processes[0].info
    results = measurement.results
    summary = summarize(
        results, measurement.variant.batch_size, stats.mean if stats else None, stats.stddev if stats else None
    )
    out = _summary_fields(summary)
    if first.torch_threads is not None:
        out["torch_threads"] = first.torch_threads
    check = _noise_check(measurement, stats)
    if check is not None:
        out["noise"] = check.as_dict()
        usage = measurement.cpu_usage
        if usage is not None:
            out["cpu_usage"] = usage.as_dict()
    out["status"] = "ok"
    out.update(_limits(first, summary, measurement.variant.batch_size))
    if summary.segment_seconds is not None:
        out["segment_seconds"] = list(summary.segment_seconds)
    if first.first_call_seconds is not None:
        # The compiling first call, and its excess over the steady state: the cost of compilation.
        out["first_call_seconds"] = first.first_call_seconds
        out["compile_seconds"] = max(0.0, first.first_call_seconds - summary.worker_latency_mean_s)
    return out


def _summary_fields(summary: RoundSummary) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if summary.stages is not None:
        out.update(
            stages={name: dict(figures) for name, figures in summary.stages.items()},
            semantic_tokens_per_s=summary.semantic_tokens_per_s,
            coarse_tokens_per_s=summary.coarse_tokens_per_s,
            unattributed_seconds=summary.unattributed_seconds,
        )
    out.update(
        real_time_factor=summary.real_time_factor,
        latency_cv=summary.latency_cv,
        peak_memory_bytes=summary.peak_memory_bytes,
        peak_memory_bytes_mean=summary.peak_memory_bytes_mean,
        memory_method=summary.memory_method,
        throughput_samples_per_s=summary.throughput_samples_per_s,
        audio_seconds=summary.audio_seconds,
        audio_seconds_per_wall_second=summary.audio_seconds_per_wall_second,
        worker_latency_mean_s=summary.worker_latency_mean_s,
        output_lengths=list(summary.output_lengths),
    )
    # GPU rows' other kinds of memory; a CPU row has none (None), so its record has none of these keys.
    out.update({key: value for key in GPU_MEMORY_FIELDS if (value := getattr(summary, key)) is not None})
    return out


def _limits(info: RunnerInfo, summary: RoundSummary, batch: int) -> dict[str, Any]:
    """Each stage against the machine's measured limits ("% of limit"); stage times are the worker's."""
    machine = info.limits
    if machine.get("error"):
        return {"limits_error": machine["error"]}
    if not machine:
        return {}
    return efficiency.extra_info(
        summary.stages, summary.worker_latency_mean_s, machine["limits"], machine["efficiency_inputs"], batch
    )


def _stopped(measurement: VariantMeasurement) -> dict[str, Any]:
    """Why a variant has no figures: failed (with the failure's kind) or interrupted (by which signal, where)."""
    interruption = measurement.interruption
    if interruption is not None:
        error = (
            f"interrupted by {signal_name(interruption.exception)} during {interruption.during}; "
            f"{interruption.finished_rounds} measured round(s) finished, none kept"
        )
        return {"status": "interrupted", "error": error, "failure_kind": "interrupted"}
    assert measurement.failure is not None, "a variant with no figures failed or was interrupted"
    return {"status": "failed", "error": measurement.failure.message, "failure_kind": measurement.failure.kind}


def _noise_check(measurement: VariantMeasurement, stats: RoundStats | None) -> bstats.NoiseCheck | None:
    """The stability checks on the timings pytest-benchmark stores and the machine's load over the rounds."""
    return None if stats is None else bstats.check_noise(list(stats.data), measurement.cpu_usage)


def _figure_warnings(measurement: VariantMeasurement, context: RecordContext, stats: RoundStats | None) -> list[str]:
    """The precision reached (adaptive rounds), then an unstable row's reasons."""
    lines = []
    decision = measurement.decision
    if measurement.complete and context.per_process and decision is not None:
        lines.append(_precision_line(decision, context.config.target_precision, len(measurement.round_seconds)))
    check = _noise_check(measurement, stats) if measurement.complete else None
    if check is not None and check.unstable:
        lines.append(f"unstable: {check.summary}")
    return lines


def _precision_line(decision: schedule.Decision, target: float | None, rounds: int) -> str:
    width = "?" if decision.relative_half_width is None else f"{decision.relative_half_width * 100:.1f} %"
    goal = "?" if target is None else f"{target * 100:.1f} %"
    verdict = "met" if decision.precision_met else "NOT met"
    interval = f"95 % CI ±{width} of the mean, target ±{goal}"
    return f"precision {verdict} after {rounds} rounds ({decision.reason}): {interval}"
