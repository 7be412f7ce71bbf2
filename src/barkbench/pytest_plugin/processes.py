"""Several worker processes per variant (--bark-processes), interleaved across variants (--bark-interleave), and
adaptive rounds (--bark-target-precision): the rounds are timed here and handed to pytest-benchmark afterwards.

Each worker process is a fresh ``WorkerProcess`` with its own load, memory call and warm-up, as pyperf's workers
are; the order of the processes is ``schedule.plan``'s. A round is timed as pytest-benchmark's ``pedantic`` times
one: the host's ``perf_counter`` around the round trip to the worker (which synchronizes its device before it
answers), the seed set untimed before it, the garbage collector off during it (the benchmark marks ask for
``disable_gc``).

Interleaving needs every variant's processes to run before any variant's test can finish, so the first benchmark
test of the session runs the whole schedule (``InterleavedRun``) and every test then records its own variant's
rounds. Recording goes through pytest-benchmark's ``pedantic``: ``record_rounds`` replays the durations measured
here through the fixture's timer, so pytest-benchmark computes the stats, stores every round (all processes ×
rounds) and compares by the test id as for any benchmark. pytest-benchmark has no public way to add externally
timed rounds; the timer is the one private attribute this touches (``BenchmarkFixture._timer``, read by
``_make_runner`` on every round in pytest-benchmark 4.x and 5.x).

Interrupts: an interrupt during the schedule stops it (the worker is killed where it waited); the variants whose
processes all finished are recorded by their tests as usual, and the first variant that did not finish records
itself as interrupted and re-raises the interrupt, so pytest ends the session and saves what finished. A
variant that fails (out of memory, a dead worker) is recorded as failed by its test; the others go on.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from barkbench import stats as bstats
from barkbench.measure import noise, schedule, sources
from barkbench.measure.optimize import VariantUnsupported
from barkbench.measure.runner import RoundResult, Runner, RunnerInfo
from barkbench.measure.worker import VariantFailed, start_runner
from barkbench.measure.workload import Workload
from barkbench.pytest_plugin.progress import Progress
from barkbench.pytest_plugin.session import BarkBench
from barkbench.variants import Variant

#: --bark-max-time's default: seconds of timed rounds after which adaptive rounds stop being added.
DEFAULT_MAX_SECONDS = 600.0
#: The name pytest-benchmark stores as the timer of recorded rounds (``options.timer`` in its JSON).
RECORDED_TIMER_NAME = "perf_counter_recorded_by_barkbench"


# -- handing the rounds to pytest-benchmark ----------------------------------------------------------------------


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
    """The replayed round's target: the work happened in the worker, timed there by the schedule."""


def record_rounds(benchmark: Any, durations: Sequence[float]) -> None:
    """Give pytest-benchmark ``durations`` as the benchmark's rounds, through ``pedantic`` (so its stats, JSON
    and compare see an ordinary benchmark); 0 warm-up rounds: the warm-ups ran in the workers."""
    if not durations:
        raise ValueError("record_rounds: no durations to record")
    timer = _ReplayTimer(durations)
    benchmark._timer = timer  # the only private attribute: see the module's docstring
    benchmark.pedantic(_nothing, rounds=len(durations), warmup_rounds=0, iterations=1)
    if timer.pending:
        raise RuntimeError(f"pytest-benchmark took fewer rounds than recorded ({len(timer.pending)} left over)")


# -- one variant's processes -------------------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """One worker process of a variant: its warm-up and its timed rounds."""

    index: int
    info: RunnerInfo
    warmup_seconds: list[float] = field(default_factory=list)
    #: Host-timed round trips, what pytest-benchmark stores.
    round_seconds: list[float] = field(default_factory=list)
    #: Wall-clock time (Unix seconds) at each timed round's start: the order the rounds ran in, across variants.
    round_started_unix_s: list[float] = field(default_factory=list)
    results: list[RoundResult] = field(default_factory=list)
    usage: bstats.CpuUsage | None = None


@dataclass
class VariantRun:
    """Everything measured for one variant across its processes."""

    variant: Variant
    processes_expected: int
    processes: list[ProcessRun] = field(default_factory=list)
    #: (message, failure kind) when a process failed; the variant's other processes are not run.
    failure: tuple[str, str] | None = None
    #: Why the variant is not supported here (a skip).
    unsupported: str | None = None
    #: The adaptive rule's last decision (None without --bark-target-precision).
    decision: schedule.Decision | None = None
    #: What the last process recorded after its rounds (wav_path, quality).
    extra: dict[str, Any] = field(default_factory=dict)
    #: Lines for the terminal (quality summaries) printed when the variant's test records it.
    notes: list[str] = field(default_factory=list)
    progress: Progress | None = None

    @property
    def settled(self) -> bool:
        """Nothing more will run for it: every process finished, or it failed, or it is unsupported."""
        return self.complete or self.failure is not None or self.unsupported is not None

    @property
    def complete(self) -> bool:
        return self.failure is None and self.unsupported is None and len(self.processes) == self.processes_expected

    @property
    def round_seconds(self) -> list[float]:
        return [d for p in self.processes for d in p.round_seconds]

    @property
    def results(self) -> list[RoundResult]:
        return [r for p in self.processes for r in p.results]


def _combined_usage(usages: Sequence[bstats.CpuUsage | None]) -> bstats.CpuUsage | None:
    """The machine's load over all of a variant's timed blocks: times added, the highest load average kept."""
    known = [u for u in usages if u is not None]
    if not known:
        return None

    def highest(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    return bstats.CpuUsage(
        wall_seconds=sum(u.wall_seconds for u in known),
        other_cpu_seconds=sum(u.other_cpu_seconds for u in known),
        own_cpu_seconds=sum(u.own_cpu_seconds for u in known),
        cpu_count=known[0].cpu_count,
        load_average_start=highest([u.load_average_start for u in known]),
        load_average_end=highest([u.load_average_end for u in known]),
    )


def process_spread(process_means: Sequence[float], process_rounds: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Within- and between-process spread, as fractions of the mean: the mean of the processes' own standard
    deviations, and the standard deviation of the processes' means (None where fewer than 2 values)."""
    overall = statistics.fmean(process_means) if process_means else None
    within = [statistics.stdev(r) for r in process_rounds if len(r) >= 2]
    return {
        "within_process_cv": statistics.fmean(within) / overall if within and overall else None,
        "between_process_cv": (
            statistics.stdev(process_means) / overall if len(process_means) >= 2 and overall else None
        ),
    }


class VariantMeasurer:
    """Runs a variant's worker processes one at a time (the order is the caller's)."""

    def __init__(self, bench: BarkBench, workload: Workload | None = None) -> None:
        self.bench = bench
        self.config = bench.config
        self.workload = workload
        cfg = self.config
        self.rule = (
            schedule.PrecisionRule(
                target=cfg.target_precision,
                min_rounds=cfg.rounds * cfg.processes,
                max_rounds=cfg.max_rounds or max(schedule.DEFAULT_MAX_ROUNDS, cfg.rounds * cfg.processes),
                max_seconds=cfg.max_time_s if cfg.max_time_s is not None else DEFAULT_MAX_SECONDS,
            )
            if cfg.target_precision is not None
            else None
        )

    def new_run(self, variant: Variant) -> VariantRun:
        run = VariantRun(variant, self.config.processes)
        session = self.bench.session
        cfg = self.config
        run.progress = (
            session.progress(variant.id, True)
            if session is not None
            else Progress(None, variant.id, cfg.warmup_rounds, cfg.rounds, True, processes=cfg.processes)
        )
        return run

    def measure_process(self, run: VariantRun) -> None:
        """Start the variant's next worker process, warm it up, time its rounds, close it. Failures are recorded
        on ``run``; an interrupt propagates (the worker is killed where it waited)."""
        cfg = self.config
        variant = run.variant
        index = len(run.processes)
        last = index == run.processes_expected - 1
        progress = run.progress
        workload = self.workload or cfg.workload(variant)
        clock = self.bench.session.clock if self.bench.session is not None else None
        started = clock.now() if clock is not None else time.monotonic()
        reference = self.bench._reference(variant, workload) if cfg.quality and last else None
        try:
            runner = start_runner(
                cfg.spec(variant, workload), isolated=cfg.isolated, round_timeout_s=cfg.round_timeout_s
            )
        except VariantUnsupported as exc:
            run.unsupported = str(exc)
            return
        except (VariantFailed, sources.SourceError) as exc:
            run.failure = (str(exc), getattr(exc, "kind", "error"))
            return
        if progress is not None:
            progress.start_process(started)
        record = ProcessRun(index, runner.info)
        sampler = noise.CpuSampler(sorted({os.getpid(), runner.info.pid}))
        try:
            for _ in range(cfg.warmup_rounds):
                record.warmup_seconds.append(self._timed_call(runner, progress)[0])
            with sampler:
                while True:
                    seconds, result = self._timed_call(runner, progress, record.round_started_unix_s)
                    record.round_seconds.append(seconds)
                    record.results.append(result)
                    if len(record.round_seconds) < cfg.rounds:
                        continue
                    if not last or self.rule is None:
                        break
                    # Adaptive rounds go to the variant's last process, each after a look at all its rounds.
                    run.decision = self.rule.decide(run.round_seconds + record.round_seconds)
                    if not run.decision.more:
                        break
            record.usage = sampler.usage
            if progress is not None:
                progress.process_done()
            if last:
                self._finish(run, runner, reference)
        except VariantFailed as exc:
            run.failure = (str(exc), exc.kind)
            return
        finally:
            runner.close()
            if progress is not None:
                progress.close()
        run.processes.append(record)

    def _timed_call(
        self, runner: Runner, progress: Progress | None, started_at: list[float] | None = None
    ) -> tuple[float, RoundResult]:
        if progress is not None:
            progress.next_round()
        runner.prepare()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if started_at is not None:
                started_at.append(time.time())
            start = time.perf_counter()
            result = runner.generate()
            seconds = time.perf_counter() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        return seconds, result

    def _finish(self, run: VariantRun, runner: Runner, reference: tuple[str, dict[str, Any]] | None) -> None:
        """In the last process, after its rounds: the WAV and the quality figures, as the one-process run does."""
        cfg = self.config
        if cfg.wav_dir:
            from pathlib import Path

            wav = Path(cfg.wav_dir).resolve() / f"{run.variant.id}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            run.extra["wav_path"] = runner.save_wav(str(wav))
        if reference is not None and run.progress is not None:
            holder = SimpleNamespace(extra_info=run.extra)
            self.bench._record_quality(holder, runner, reference, run.progress)

    def measure_all(self, run: VariantRun) -> None:
        """The variant's processes back to back (no interleaving)."""
        while not run.settled:
            self.measure_process(run)
        self._drop_unrun(run)

    def _drop_unrun(self, run: VariantRun) -> None:
        session = self.bench.session
        if session is not None and not run.complete:
            session.clock.drop(run.processes_expected - len(run.processes))


class InterleavedRun:
    """The whole session's processes in interleaved order (``schedule.plan``), run once, by the first test."""

    def __init__(self, bench: BarkBench, variants: Sequence[Variant]) -> None:
        self.measurer = VariantMeasurer(bench)
        self.runs = {v.id: self.measurer.new_run(v) for v in variants}
        #: The interrupt that stopped the schedule, and the step it stopped in.
        self.interrupt: tuple[BaseException, str] | None = None

    def run(self) -> None:
        slots = schedule.plan(list(self.runs), self.measurer.config.processes, interleave=True)
        for slot in slots:
            run = self.runs[slot.variant]
            if run.settled or len(run.processes) != slot.process:
                continue  # failed or unsupported in an earlier pass
            try:
                self.measurer.measure_process(run)
            except KeyboardInterrupt as exc:
                step = run.progress.current_step() if run.progress is not None else None
                self.interrupt = (exc, f"{slot.variant}'s {step or 'set-up'}")
                return
            except Exception as exc:  # noqa: BLE001 - one variant's unexpected error must not stop the others
                run.failure = (f"{type(exc).__name__}: {exc}", "error")
            if run.settled and not run.complete:
                self.measurer._drop_unrun(run)


# -- what a variant's test does ----------------------------------------------------------------------------------


def wants_engine(bench: BarkBench, benchmark: Any) -> bool:
    """Several processes, interleaving or adaptive rounds asked for, with pytest-benchmark timing."""
    cfg = bench.config
    return bool(benchmark.enabled and (cfg.processes > 1 or cfg.interleave or cfg.target_precision is not None))


def run_variant(bench: BarkBench, benchmark: Any, variant: Variant, workload: Workload) -> list[RoundResult]:
    """Measure ``variant`` (or take what the interleaved schedule measured) and record it in ``benchmark``."""
    cfg = bench.config
    session = bench.session
    interleaved = cfg.interleave and session is not None and workload.workload_id == cfg.workload(variant).workload_id
    run: VariantRun | None = None
    if interleaved and session is not None:
        schedule_run = session.interleaved_run(bench)
        run = schedule_run.runs.get(variant.id)
        if run is not None and not run.settled:
            exc, step = schedule_run.interrupt or (KeyboardInterrupt(), "the schedule")
            finished = len(run.round_seconds)
            bench._record_interrupted(benchmark, variant.id, exc, step, finished)
            raise type(exc)(*exc.args)
    if run is None:
        # Not part of the session's interleaved schedule (a test with its own prompts): its processes in a row.
        measurer = VariantMeasurer(bench, workload)
        run = measurer.new_run(variant)
        try:
            measurer.measure_all(run)
        except KeyboardInterrupt as exc:
            step = run.progress.current_step() if run.progress is not None else None
            bench._record_interrupted(benchmark, variant.id, exc, step or "its set-up", len(run.round_seconds))
            raise
    if run.unsupported is not None:
        pytest.skip(run.unsupported)
    if run.failure is not None:
        message, kind = run.failure
        bench._record_failure(benchmark, message, kind)
        pytest.fail(f"{variant.id}: {message}", pytrace=False)
    return _record(bench, benchmark, run)


def _record(bench: BarkBench, benchmark: Any, run: VariantRun) -> list[RoundResult]:
    cfg = bench.config
    first = run.processes[0].info
    record_rounds(benchmark, run.round_seconds)
    process_means = [statistics.fmean(p.round_seconds) for p in run.processes]
    # Memory: every process's own untimed memory call gives its figure (they should agree: the memory call is
    # made to read the same in every fresh process). The variant's figure is their maximum, the one a memory
    # budget must hold in whichever process runs it; the per-process figures show how far they agree.
    process_peaks = [max(r.peak_memory_bytes for r in p.results) for p in run.processes]
    benchmark.extra_info.update(
        attention_impl=first.attention_impl,
        device=first.device,
        device_index=first.device_index,
        device_name=first.device_name,
        model_memory_bytes=max(p.info.model_memory_bytes for p in run.processes),
        weights_bytes=first.weights_bytes,
        warnings=list(first.warnings),
        worker_pid=first.pid,
        rounds=len(run.round_seconds),
        processes=len(run.processes),
        interleave=bool(cfg.interleave),
        process_pids=[p.info.pid for p in run.processes],
        process_rounds=[len(p.round_seconds) for p in run.processes],
        process_means_s=process_means,
        process_peak_memory_bytes=process_peaks,
        round_started_unix_s=[t for p in run.processes for t in p.round_started_unix_s],
        **process_spread(process_means, [p.round_seconds for p in run.processes]),
    )
    if first.compiled or first.quantized_linear:
        benchmark.extra_info.update(compiled=list(first.compiled), quantized_linear=first.quantized_linear)
    if run.decision is not None:
        benchmark.extra_info.update(
            target_precision=cfg.target_precision,
            precision_met=run.decision.precision_met,
            precision_reason=run.decision.reason,
            precision_half_width=run.decision.relative_half_width,
        )
    benchmark.extra_info.update(run.extra)
    progress = run.progress
    assert progress is not None, "VariantMeasurer.new_run gives every run its progress"
    for note in run.notes:
        progress.warn(note)
    if run.decision is not None:
        progress.warn(_precision_line(run.decision, cfg.target_precision, len(run.round_seconds)))
    measured = run.results
    usage = _combined_usage([p.usage for p in run.processes])
    bench._record_figures(benchmark, run.variant, measured, first, usage, progress)
    return measured


def _precision_line(decision: schedule.Decision, target: float | None, rounds: int) -> str:
    width = "?" if decision.relative_half_width is None else f"{decision.relative_half_width * 100:.1f} %"
    goal = "?" if target is None else f"{target * 100:.1f} %"
    verdict = "met" if decision.precision_met else "NOT met"
    interval = f"95 % CI ±{width} of the mean, target ±{goal}"
    return f"precision {verdict} after {rounds} rounds ({decision.reason}): {interval}"
