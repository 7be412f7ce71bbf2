"""The measuring engine: one loop for every measured round barkbench takes.

``run(plan)`` starts each variant's worker processes in ``schedule.plan``'s order (back to back, or interleaved
across the variants as asv's ``--interleave-processes``), warms each up, times its rounds, adds rounds to a
variant's last process while the adaptive rule (``schedule.PrecisionRule``) asks for more, samples the machine's
CPU time over the measured rounds (``noise.CpuSampler``), and, after the last process's rounds, saves the WAV and
measures the drift from the quality reference. It returns one ``VariantMeasurement`` per variant: plain values,
nothing written anywhere else. The pytest glue replays the rounds into pytest-benchmark and writes the record;
``barkbench overhead`` reads the rounds directly. This module never imports the glue: what it reports while it
runs goes through ``Progress``, a protocol the caller implements.

Rules the loop keeps:

- A round is timed here, by the host: ``perf_counter`` around the round trip to the worker (which synchronizes
  its device before it answers). The seed (``Runner.prepare``) is set untimed before it, the garbage collector is
  off during it, and nothing else runs inside it: the wall-clock start is read before the timed window opens.
- Each worker process is fresh (its own load, memory call and warm-up), as pyperf's workers are.
- A failure (out of memory, a dead or hung worker, a load error) ends that variant's processes; the other
  variants go on. An unexpected exception does the same when the plan holds other variants; alone, it propagates
  with its traceback (``--bark-isolation off`` is for debugging).
- An interrupt (Ctrl-C, SIGTERM raised as a ``KeyboardInterrupt``) kills the worker at once (SIGKILL also ends a
  stopped one), stops the schedule, and marks every variant not finished as interrupted; nothing finished is lost.
  The caller re-raises it once it has recorded what finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from barkbench.measure import noise, schedule
from barkbench.measure.optimize import VariantUnsupported
from barkbench.measure.optimize.offload import OffloadPlacementError
from barkbench.measure.runner import RoundResult, Runner, RunnerInfo, RunSpec
from barkbench.measure.sources import SourceError
from barkbench.measure.worker import VariantFailed, WorkerProcess, classify, start_runner
from barkbench.stats import CpuUsage
from barkbench.variants import Variant

# -- what the engine reports while it runs ---------------------------------------------------------------------


class Progress(Protocol):
    """What the engine tells its caller about one variant while it runs (the pytest glue prints it)."""

    def loading(self) -> None:
        """A worker process is about to start and load the model: its wall time starts here."""

    def next_round(self) -> None:
        """A call (a warm-up or a round) is about to start."""

    def process_done(self) -> None:
        """The process's calls are over."""

    def current_step(self) -> str | None:
        """The step under way, as the interruption names it (e.g. ``round 2/3``); None before any."""

    def warn(self, message: str) -> None:
        """A line about the variant outside the steps (the quality summary)."""

    def dropped(self, processes: int) -> None:
        """Planned processes that will not run (the variant failed or is unsupported)."""

    def piece(self, done: int, total: int, seconds: float) -> None:
        """Long-form: ``done`` of the ``total`` pieces of the call under way (or of the load's untimed calls) have
        finished, the last in ``seconds``; told between the step announcements of a call that can take minutes."""

    def close(self) -> None:
        """After each process: end any line left open."""


class SilentProgress:
    """A ``Progress`` that says nothing (``barkbench overhead``, tests)."""

    def loading(self) -> None:
        pass

    def next_round(self) -> None:
        pass

    def process_done(self) -> None:
        pass

    def current_step(self) -> str | None:
        return None

    def warn(self, message: str) -> None:
        pass

    def dropped(self, processes: int) -> None:
        pass

    def piece(self, done: int, total: int, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


# -- what to run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to run and how: the variants' worker specs and the loop's settings, all plain values."""

    #: One per variant, in the order the schedule takes them (distinct variant ids).
    specs: tuple[RunSpec, ...]
    warmup_rounds: int
    #: Timed rounds per process (the adaptive rule may add more to the last one).
    rounds: int
    processes: int = 1
    #: Every variant's first process, then every variant's second, ... (else each variant's in a row).
    interleave: bool = False
    #: Adaptive rounds (None: fixed rounds).
    precision: schedule.PrecisionRule | None = None
    #: A fresh worker process per run (False: in this process, for debugging).
    isolated: bool = True
    round_timeout_s: float | None = None
    #: A worker's time to start and load its model (--bark-load-timeout; None: the worker's default). The rounds
    #: have ``round_timeout_s``.
    load_timeout_s: float | None = None
    #: Sample the machine's CPU time over the measured rounds (off for a run that is not timed).
    sample_cpu: bool = True
    #: Save the last round's first sample as ``<wav_dir>/<variant id>.wav`` (None: no WAV).
    wav_dir: str | None = None
    #: Measure the drift from the fp32 eager reference after the last process's rounds.
    quality: bool = False


# -- what was measured ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessMeasurement:
    """One worker process of a variant that finished its rounds."""

    index: int
    info: RunnerInfo
    warmup_seconds: tuple[float, ...]
    #: Host-timed round trips: what pytest-benchmark stores.
    round_seconds: tuple[float, ...]
    #: Wall-clock time (Unix seconds) at each round's start: the order the rounds ran in, across variants.
    round_started_unix_s: tuple[float, ...]
    results: tuple[RoundResult, ...]
    #: The machine's CPU time over the rounds (None: not sampled, or a process exited during them).
    cpu_usage: CpuUsage | None


@dataclass(frozen=True)
class Failure:
    """Why a variant failed: a one-line message and its kind (``oom``, ``error``, ``died``, ``timeout``)."""

    message: str
    kind: str


@dataclass(frozen=True)
class Interruption:
    """The interrupt that stopped a variant before it finished."""

    #: The ``KeyboardInterrupt`` (or subclass) raised; the caller re-raises it.
    exception: BaseException
    #: Where the schedule was when it came, e.g. ``round 2/3`` (``<variant>'s round 2/3`` when interleaved).
    during: str
    #: Timed rounds finished before it (all of them are dropped: a partial variant is never a result).
    finished_rounds: int


@dataclass(frozen=True)
class VariantMeasurement:
    """Everything measured for one variant. Exactly one of these holds once the engine returns: it is complete,
    it has a ``failure``, it is ``unsupported`` here, or it has an ``interruption``."""

    variant: Variant
    processes_planned: int
    #: The processes that finished their rounds, in the order they ran.
    processes: tuple[ProcessMeasurement, ...] = ()
    #: Every process that loaded its model, the unfinished one included: what a failed variant's row records.
    loaded: tuple[RunnerInfo, ...] = ()
    failure: Failure | None = None
    unsupported: str | None = None
    interruption: Interruption | None = None
    #: The adaptive rule's last decision (None without a precision rule).
    decision: schedule.Decision | None = None
    wav_path: str | None = None
    #: The drift from the reference and its noise floor, or ``{"error": ...}`` (None: not asked for).
    quality: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        stopped = self.failure or self.unsupported or self.interruption
        return not stopped and len(self.processes) == self.processes_planned

    @property
    def settled(self) -> bool:
        """Nothing more will run for it."""
        return self.complete or bool(self.failure or self.unsupported or self.interruption)

    @property
    def round_seconds(self) -> list[float]:
        return [s for p in self.processes for s in p.round_seconds]

    @property
    def results(self) -> list[RoundResult]:
        return [r for p in self.processes for r in p.results]

    @property
    def cpu_usage(self) -> CpuUsage | None:
        return noise.combined_usage([p.cpu_usage for p in self.processes])


# -- the quality reference --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The reference's recorded call (``path``) and its noise floor, or the floor ``{"error": ...}``."""

    path: str
    floor: dict[str, Any]


@dataclass
class ReferenceStore:
    """The references measured so far, one per (batch size, workload): each runs once per session, in its own
    worker, before the variant that needs it loads. Mutable: one per session."""

    made: dict[tuple[int, str], Reference] = field(default_factory=dict)

    def reference(self, spec: RunSpec, plan: Plan) -> Reference:
        key = (spec.variant.batch_size, spec.workload.workload_id)
        if key not in self.made:
            self.made[key] = _capture_reference(spec, plan)
        return self.made[key]


def _capture_reference(spec: RunSpec, plan: Plan) -> Reference:
    """Eager fp32 at the variant's batch size, on the same workload; its failure is recorded, never raised."""
    folder = Path(tempfile.mkdtemp(prefix="barkbench-reference-"))
    path = str(folder / f"reference-bs{spec.variant.batch_size}.pt")
    reference = dataclasses.replace(spec, variant=Variant(batch_size=spec.variant.batch_size))
    try:
        runner = start_runner(
            reference, isolated=plan.isolated, round_timeout_s=plan.round_timeout_s, load_timeout_s=plan.load_timeout_s
        )
        try:
            return Reference(path, runner.capture_reference(path))
        finally:
            runner.close()
    except (VariantFailed, VariantUnsupported, RuntimeError) as exc:
        return Reference(path, {"error": f"the reference ({reference.variant.id}) did not run: {exc}"})


# -- the loop ---------------------------------------------------------------------------------------------------


def run(
    plan: Plan,
    progress: Callable[[Variant], Progress] = lambda _variant: SilentProgress(),
    references: ReferenceStore | None = None,
) -> dict[str, VariantMeasurement]:
    """Measure every variant of ``plan``; keyed by variant id, in the plan's order. ``progress`` gives each
    variant's reporter; ``references`` keeps the quality references across calls (a session's)."""
    specs = {spec.variant.id: spec for spec in plan.specs}
    reporters = {vid: progress(spec.variant) for vid, spec in specs.items()}
    found = {vid: VariantMeasurement(spec.variant, plan.processes) for vid, spec in specs.items()}
    store = references if references is not None else ReferenceStore()
    for slot in schedule.plan(list(specs), plan.processes, plan.interleave):
        measured = found[slot.variant]
        if measured.settled or len(measured.processes) != slot.process:
            continue  # failed or unsupported in an earlier pass
        measured = _next_process(plan, specs[slot.variant], measured, reporters[slot.variant], store)
        found[slot.variant] = measured
        if measured.interruption is not None:
            return _interrupt_the_rest(found, measured.interruption, slot.variant, plan.interleave)
        if measured.settled and not measured.complete:
            reporters[slot.variant].dropped(measured.processes_planned - len(measured.processes))
    return found


def _interrupt_the_rest(
    found: dict[str, VariantMeasurement], interruption: Interruption, where: str, interleaved: bool
) -> dict[str, VariantMeasurement]:
    """Every variant not finished when the interrupt came is interrupted; in an interleaved schedule the step is
    named with the variant it stopped in."""
    during = f"{where}'s {interruption.during}" if interleaved else interruption.during
    out = {}
    for vid, measured in found.items():
        if measured.settled and measured.interruption is None:
            out[vid] = measured
            continue
        finished = interruption.finished_rounds if vid == where else len(measured.round_seconds)
        out[vid] = dataclasses.replace(measured, interruption=Interruption(interruption.exception, during, finished))
    return out


def _next_process(
    plan: Plan, spec: RunSpec, measured: VariantMeasurement, progress: Progress, references: ReferenceStore
) -> VariantMeasurement:
    """Start the variant's next worker process, warm it up, time its rounds, close it; the variant's measurement
    with that process (or its failure, or the interrupt) added."""
    last = len(measured.processes) == measured.processes_planned - 1
    progress.loading()
    try:
        reference = references.reference(spec, plan) if plan.quality and last else None
        runner = start_runner(
            spec,
            isolated=plan.isolated,
            round_timeout_s=plan.round_timeout_s,
            load_timeout_s=plan.load_timeout_s,
            on_piece=progress.piece,
        )
    except KeyboardInterrupt as exc:
        return _interrupted(measured, exc, progress, finished_in_process=0)
    except VariantUnsupported as exc:
        return dataclasses.replace(measured, unsupported=str(exc))
    except VariantFailed as exc:
        return dataclasses.replace(measured, failure=Failure(str(exc), exc.kind))
    except SourceError as exc:
        return dataclasses.replace(measured, failure=Failure(str(exc), "error"))
    except OffloadPlacementError as exc:
        # Raised at load in this process (--bark-isolation off): the row fails in the line a worker would send.
        failed = classify(exc)
        return dataclasses.replace(measured, failure=Failure(failed.message, failed.kind))
    except Exception as exc:
        return _unexpected(plan, measured, exc)
    measured = dataclasses.replace(measured, loaded=(*measured.loaded, runner.info))
    rounds = _Rounds()
    try:
        return _measure_process(plan, measured, runner, progress, rounds, reference, last)
    except KeyboardInterrupt as exc:
        if isinstance(runner, WorkerProcess):
            runner.kill()  # at once: no polite stop to a worker that may be stopped or deadlocked
        return _interrupted(measured, exc, progress, finished_in_process=len(rounds.seconds))
    except VariantFailed as exc:
        return dataclasses.replace(measured, failure=Failure(str(exc), exc.kind))
    except Exception as exc:
        return _unexpected(plan, measured, exc)
    finally:
        runner.close()
        progress.close()


def _interrupted(
    measured: VariantMeasurement, exc: KeyboardInterrupt, progress: Progress, finished_in_process: int
) -> VariantMeasurement:
    during = progress.current_step() or "its set-up"
    finished = len(measured.round_seconds) + finished_in_process
    return dataclasses.replace(measured, interruption=Interruption(exc, during, finished))


def _unexpected(plan: Plan, measured: VariantMeasurement, exc: Exception) -> VariantMeasurement:
    """A bug or an unforeseen error: the variant's failure when other variants must still run, else raised."""
    if len(plan.specs) == 1:
        raise exc
    return dataclasses.replace(measured, failure=Failure(f"{type(exc).__name__}: {exc}", "error"))


@dataclass
class _Rounds:
    """One process's timed rounds so far (mutable while the process runs; frozen into ``ProcessMeasurement``)."""

    seconds: list[float] = field(default_factory=list)
    started_unix_s: list[float] = field(default_factory=list)
    results: list[RoundResult] = field(default_factory=list)

    def add(self, timed: tuple[float, float, RoundResult]) -> None:
        seconds, started, result = timed
        self.seconds.append(seconds)
        self.started_unix_s.append(started)
        self.results.append(result)


def _measure_process(
    plan: Plan,
    measured: VariantMeasurement,
    runner: Runner,
    progress: Progress,
    rounds: _Rounds,
    reference: Reference | None,
    last: bool,
) -> VariantMeasurement:
    warmups = tuple(timed_round(runner, progress)[0] for _ in range(plan.warmup_rounds))
    sampler = noise.CpuSampler(sorted({os.getpid(), runner.info.pid}))
    decision = measured.decision
    with sampler if plan.sample_cpu else contextlib.nullcontext():
        while True:
            rounds.add(timed_round(runner, progress))
            if len(rounds.seconds) < plan.rounds:
                continue
            if not last or plan.precision is None:
                break
            # Adaptive rounds go to the variant's last process, each after a look at all its rounds so far.
            decision = plan.precision.decide(measured.round_seconds + rounds.seconds)
            if not decision.more:
                break
    progress.process_done()
    process = ProcessMeasurement(
        index=len(measured.processes),
        info=runner.info,
        warmup_seconds=warmups,
        round_seconds=tuple(rounds.seconds),
        round_started_unix_s=tuple(rounds.started_unix_s),
        results=tuple(rounds.results),
        cpu_usage=sampler.usage if plan.sample_cpu else None,
    )
    measured = dataclasses.replace(measured, processes=(*measured.processes, process), decision=decision)
    return _after_rounds(plan, measured, runner, progress, reference) if last else measured


def timed_round(runner: Runner, progress: Progress) -> tuple[float, float, RoundResult]:
    """One call, timed as every round is (warm-ups included): (host seconds of the round trip, wall-clock start, the
    worker's ``RoundResult``). ``barkbench overhead --paired`` times its harness calls with it."""
    progress.next_round()
    runner.prepare()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.time()
        start = time.perf_counter()
        result = runner.generate()
        seconds = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return seconds, started, result


def _after_rounds(
    plan: Plan, measured: VariantMeasurement, runner: Runner, progress: Progress, reference: Reference | None
) -> VariantMeasurement:
    """In the last process, untimed, after its rounds: the WAV and the drift from the reference."""
    wav_path = None
    if plan.wav_dir:
        wav = Path(plan.wav_dir).resolve() / f"{measured.variant.id}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav_path = runner.save_wav(str(wav))
    quality = _drift(runner, reference, progress) if reference is not None else None
    return dataclasses.replace(measured, wav_path=wav_path, quality=quality)


def _drift(runner: Runner, reference: Reference, progress: Progress) -> dict[str, Any]:
    """The variant's drift beside the noise floor; ``{"error": ...}`` (and a line saying so) when it cannot run."""
    from barkbench.measure import quality as quality_mod

    if "error" in reference.floor:
        progress.warn(f"quality not measured: {reference.floor['error']}")
        return {"error": reference.floor["error"]}
    try:
        result = {**runner.drift(reference.path), "floor": reference.floor}
    except (VariantFailed, RuntimeError) as exc:
        progress.warn(f"quality not measured: {exc}")
        return {"error": str(exc)}
    progress.warn(f"quality: {quality_mod.summary_line(result)}")
    return result
