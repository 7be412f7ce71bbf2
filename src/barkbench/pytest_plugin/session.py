"""The benchmark session: the object that owns what a session accumulates (``BarkSession``: completed and failed
variants, the budget verdicts, the clock of the progress lines), and the run of one variant (``BarkBench``:
measured by ``barkbench.measure.engine``, recorded by ``recording``). The session object is built by the plugin's
``SessionHandle`` (registered in ``pytest_configure``, the way pytest-xdist's ``DSession`` and pytest-codspeed's
plugin object are) when a Bark test needs it, and the handle's hooks call its methods once collection has found
one, so they read its own state rather than stash keys. Options are read once (``config``); nothing here reads
one again.

Nothing here imports torch at import time: the measuring happens in a worker process by default.
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from barkbench.measure import device as device_mod
from barkbench.measure import engine, noise, schedule, sources
from barkbench.measure.optimize import unsupported_reason
from barkbench.measure.runner import RoundResult
from barkbench.measure.workload import Workload, WorkloadError, unused_prompts_note
from barkbench.pytest_plugin import benchmark_patches
from barkbench.pytest_plugin.config import BenchConfig, BenchOptions
from barkbench.pytest_plugin.progress import Progress
from barkbench.pytest_plugin.recording import RecordContext, write_record
from barkbench.pytest_plugin.signals import SaveGuard, signal_name
from barkbench.results import budgets as budgets_mod
from barkbench.results import quality as quality_gates
from barkbench.results.load import parse_run
from barkbench.results.report import terminal_summary
from barkbench.sweep import shards as shards_mod
from barkbench.variants import CPU_DEFAULT_NOTE, CPU_EMULATED_HALF_NOTE, Variant


# eq=False keeps object identity for equality and hashing: pytest before 9.1 keeps plugins in sets and dicts,
# and a dataclass's generated __eq__ would make the session unhashable (every session then dies at start).
@dataclass(eq=False)
class BarkSession:
    """What one pytest session with Bark tests accumulates; its hooks are called by the plugin's handle."""

    pytest_config: pytest.Config
    #: The command line's --bark-* values, read once at configure.
    options: BenchOptions = field(default_factory=BenchOptions)
    #: extra_info of every variant measured so far: what --bark-budgets checks at session end.
    completed: list[dict[str, Any]] = field(default_factory=list)
    #: Failed variants in pytest-benchmark's per-benchmark shape: pytest-benchmark drops a benchmark that
    #: raised, so they are added to the --benchmark-json file at save time.
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: --bark-quality-gates verdicts, once checked at session end (None: not given).
    quality_verdicts: list[quality_gates.Verdict] | None = None
    #: --bark-quality: the reference's recorded call and noise floor per (batch size, workload id).
    references: engine.ReferenceStore = field(default_factory=engine.ReferenceStore)
    #: The budget verdicts, once checked at session end (None: --bark-budgets not given).
    verdicts: list[budgets_mod.Verdict] | None = None
    #: Set when --bark-budgets matched no measured variant: the gate's failure message.
    unmatched_budgets: str = ""
    #: The variant an interrupt (Ctrl-C, SIGTERM) stopped, and the signal's name; None while not interrupted.
    interrupted: tuple[str, str] | None = None
    #: Files pytest-benchmark wrote this session (--benchmark-json, autosave), for the line after an interrupt.
    saved_paths: list[str] = field(default_factory=list)
    #: One line per destination that could not be written at the end (where its rows went instead): printed at
    #: the end, and the session fails.
    unsaved: list[str] = field(default_factory=list)
    #: Elapsed time and what finished, for the progress lines' estimate of what is left.
    clock: schedule.RunClock = field(default_factory=schedule.RunClock)
    #: Ids of the collected --bark-variants tests, in run order: what --bark-interleave schedules.
    collected_variants: list[str] = field(default_factory=list)
    #: --bark-interleave: the session's schedule, measured by the first benchmark test (``interleaved``).
    _schedule: dict[str, engine.VariantMeasurement] | None = None
    _config: BenchConfig | None = None
    _machine_facts: noise.MachineFacts | None = None

    @property
    def config(self) -> BenchConfig:
        """What the session measures, derived from the options on first use (``auto`` asks torch for the device,
        so not at configure time)."""
        if self._config is None:
            self._config = BenchConfig.from_options(self.options)
        return self._config

    def bench(self, config: BenchConfig | None = None) -> BarkBench:
        """What a benchmark test calls, with this session's config or ``config``."""
        return BarkBench(config or self.config, self)

    def interleaved(self, bench: BarkBench) -> dict[str, engine.VariantMeasurement]:
        """The interleaved schedule of every collected variant this machine supports, measured on first use."""
        if self._schedule is None:
            cfg = bench.config
            by_id = {v.id: v for v in cfg.variants}
            chosen = [by_id[i] for i in self.collected_variants if i in by_id]
            supported = [v for v in chosen if not unsupported_reason(v, cfg.device_type)]
            plan = cfg.plan(tuple(cfg.spec(v) for v in supported), timed=True, interleave=True)
            self._schedule = engine.run(plan, lambda variant: bench.progress(variant, True), self.references)
        return self._schedule

    # -- hooks -------------------------------------------------------------------------------------------------

    @property
    def machine_facts(self) -> noise.MachineFacts:
        """CPU model, frequency policy and the load when the session began (read once, at the header)."""
        if self._machine_facts is None:
            self._machine_facts = noise.machine_facts()
        return self._machine_facts

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        lines = []
        busy = self.machine_facts.busy_warning()
        if busy:
            lines.append(f"barkbench: WARNING: {busy}")
        if not (self.options.variants or self.config.device_type != "cpu"):
            lines.append(f"barkbench: {CPU_DEFAULT_NOTE}")
            if device_mod.cpu_emulates_half_precision():
                lines.append(f"barkbench: {CPU_EMULATED_HALF_NOTE}")
        return lines or None

    def activate(self, session: pytest.Session) -> None:
        """The session has Bark tests (collection found one): patch pytest-benchmark's saves, guard them from
        signals, keep the rounds in the autosave. Never in a session without one."""
        benchmark_patches.install(session.config, self.failed, self.saved_paths, self.unsaved)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM ends the session the way Ctrl-C does: the worker is killed, finished variants are saved.
            guard = SaveGuard()
            guard.install()
            session.config.pluginmanager.register(guard, "barkbench-save-guard")
        bs = getattr(session.config, "_benchmarksession", None)
        if bs is not None:
            # Autosaved files keep the per-round timings too: `barkbench compare` tests significance on them.
            bs.save_data = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            callspec = getattr(item, "callspec", None)
            variant_id = callspec.params.get("bark_variant") if callspec is not None else None
            if isinstance(variant_id, str) and variant_id not in self.collected_variants:
                self.collected_variants.append(variant_id)
        if self.collected_variants:
            cfg = self.config
            self.clock.planned = len(self.collected_variants) * cfg.processes
            self.clock.calls_per_process = cfg.warmup_rounds + cfg.rounds
        if any("bark_variant" in getattr(item, "fixturenames", ()) for item in session.items):
            startup_checks(self.options)
            self._check_storage()
            self._check_batch_memory()
            self._warn_unused_prompts()

    def _warn_unused_prompts(self) -> None:
        """Once, at start: a prompts file longer than every batch leaves prompts unspoken (a call takes the first)."""
        cfg = self.config
        note = unused_prompts_note(self.options.prompts, cfg.workload_fields, [v.batch_size for v in cfg.variants])
        reporter = self.pytest_config.pluginmanager.get_plugin("terminalreporter")
        if note and reporter is not None:
            reporter.write_line(f"barkbench: WARNING: {note}", yellow=True)

    def _check_storage(self) -> None:
        """The autosave's folder (--benchmark-storage), when --benchmark-autosave or --benchmark-save asks for it:
        found unwritable now rather than after every variant is measured."""
        folder = benchmark_patches.storage_folder(self.pytest_config)
        if folder is not None:
            _check_writable(folder, f"--benchmark-storage {folder}", "give a writable folder (file://PATH)")

    def _check_batch_memory(self) -> None:
        """Refuse a batch whose lower-bound memory estimate exceeds the machine's memory; warn above what is free.
        CPU only: the worker's memory is the machine's."""
        import psutil

        from barkbench.measure import estimate

        cfg = self.config
        arch = estimate.architecture(cfg.source)
        if cfg.device_type != "cpu" or arch is None:
            return
        memory = psutil.virtual_memory()
        for variant in cfg.variants:
            element = 2 if variant.dtype in ("fp16", "bf16") else 4
            need = estimate.estimate(arch, cfg.semantic_max_new_tokens, element).total(variant.batch_size)
            gb = f"at least {need / 1e9:.1f} GB (weights + key/value caches, a lower bound)"
            if need > memory.total:
                raise pytest.UsageError(
                    f"{variant.id}: batch {variant.batch_size} needs {gb}; this machine has "
                    f"{memory.total / 1e9:.1f} GB; use a smaller batch"
                )
            if need > memory.available:
                reporter = self.pytest_config.pluginmanager.get_plugin("terminalreporter")
                if reporter is not None:
                    reporter.write_line(
                        f"barkbench: WARNING: {variant.id}: batch {variant.batch_size} needs {gb}; "
                        f"{memory.available / 1e9:.1f} GB is free now: the worker may be killed",
                        yellow=True,
                    )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # pytest-benchmark's own sessionfinish is a hook wrapper that has already saved the results here.
        if self.unsaved and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        gates = self.options.quality_gates
        if gates is not None:
            self.quality_verdicts = quality_gates.check(self.completed, gates)
            if any(not v.ok for v in self.quality_verdicts) and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        budgets = self.options.budgets
        if budgets is None:
            return
        self.verdicts = budgets_mod.check_extra_infos(self.completed, budgets)
        if not self.verdicts:
            self.unmatched_budgets = budgets_mod.nothing_matched(self.completed, budgets)
        failed = budgets_mod.failures(self.verdicts) or not self.verdicts
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self._print_tables(terminalreporter)
        if self.interrupted is not None:
            terminalreporter.write_line(self.interrupt_line(), yellow=True, bold=True)
        for line in self.unsaved:
            terminalreporter.write_line(line, red=True, bold=True)
        if self.quality_verdicts is not None:
            terminalreporter.section("barkbench quality gates")
            for qv in self.quality_verdicts:
                terminalreporter.write_line(qv.message, red=not qv.ok, green=qv.ok)
            if not self.quality_verdicts:
                terminalreporter.write_line("no measured variant matched a quality gate; nothing was checked")
            elif any(not qv.ok for qv in self.quality_verdicts):
                terminalreporter.write_line("a quality gate failed: the session fails", red=True, bold=True)
        if self.verdicts is None:
            return
        terminalreporter.section("barkbench memory budgets")
        if not self.verdicts:
            terminalreporter.write_line(f"FAILED: {self.unmatched_budgets}; the session fails", red=True, bold=True)
            return
        for verdict in self.verdicts:
            terminalreporter.write_line(verdict.message, red=not verdict.ok, green=verdict.ok)
        failed = budgets_mod.failures(self.verdicts)
        if failed:
            terminalreporter.write_line(
                f"{len(failed)} of {len(self.verdicts)} budget check(s) failed: the session fails", red=True, bold=True
            )

    def update_machine_info(self, machine_info: dict[str, Any]) -> None:
        """The device's and the CPU's facts, for pytest-benchmark's ``machine_info``."""
        machine_info["barkbench"] = device_mod.machine_info(self.config.device_type)
        # CPU model, frequency policy and the load at the session's start: what makes two runs' timings differ.
        machine_info["barkbench"]["cpu"] = self.machine_facts.as_dict()

    def update_json(self, output_json: dict[str, Any], skipped: dict[str, str]) -> None:
        """The shard, the whole matrix's fingerprint and the workload: what `barkbench merge` checks and completes;
        the skipped variants (unsupported here) are accounted for, so a merge does not call them missing."""
        if self._config is None:
            return  # no barkbench variant in this session (a bark_bench test alone): nothing to record
        record = self.config.sweep_record()
        record["skipped"] = dict(skipped)
        output_json[shards_mod.JSON_KEY] = record

    def interrupt_line(self) -> str:
        """One line after an interrupt: what was saved where, and what was not."""
        bs = getattr(self.pytest_config, "_benchmarksession", None)
        finished = len(bs.benchmarks) if bs is not None else 0
        where = (
            " and ".join(dict.fromkeys(self.saved_paths)) or "nowhere (give --benchmark-json or --benchmark-autosave)"
        )
        variant, signame = self.interrupted or ("?", "interrupt")
        head = f"barkbench: {signame}: stopped during {variant} (recorded as interrupted, no timings kept)"
        return f"{head}; {finished} finished variant(s) saved to {where}"

    def _print_tables(self, terminalreporter: Any) -> None:
        text = _session_tables(self)
        if text is None:
            return
        terminalreporter.section("barkbench results")
        for line in text.splitlines():
            terminalreporter.write_line(line)


def startup_checks(options: BenchOptions) -> None:
    """What can be checked before a model loads, checked once: one line with the fix, no traceback."""
    json_path = options.benchmark_json
    if json_path is not None and json_path.is_dir():
        raise pytest.UsageError(
            f"--benchmark-json {json_path}: is a directory; give a file path, e.g. {json_path / 'run.json'}"
        )
    if json_path is not None:
        _check_writable(json_path.parent, f"--benchmark-json {json_path}", "give a path in a writable folder")
    wav_dir = options.wav_dir
    if wav_dir:
        _check_writable(Path(wav_dir), f"--bark-wav-dir {wav_dir}", "give a writable folder")
    source = options.model
    if source is None or source.kind in ("tiny", "random"):
        cache = sources.cache_dir()
        setting = (
            f"BARKBENCH_CACHE={os.environ['BARKBENCH_CACHE']}"
            if os.environ.get("BARKBENCH_CACHE")
            else f"the model cache {cache} (from XDG_CACHE_HOME or ~/.cache)"
        )
        _check_writable(cache, setting, "set BARKBENCH_CACHE to a writable folder")
    if source is not None:
        # A missing, unreadable or corrupt folder, a hub id not in the offline cache: found once here, from the
        # files alone (no torch in this process), instead of in every variant's worker after it starts.
        try:
            sources.check_source(source)
        except sources.SourceError as exc:
            raise pytest.UsageError(str(exc)) from None


def _fail(message: str) -> NoReturn:
    """Fail the test in ``message`` alone: ``pytest.fail`` raised in an ``except`` block chains the exception being
    handled, and pytest prints it too ("During handling of the above exception..."), so a one-line error would
    show twice."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def _check_writable(folder: Path, what: str, fix: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise pytest.UsageError(f"{what}: cannot write there ({exc.strerror or exc}); {fix}") from None


def _session_tables(session: BarkSession) -> str | None:
    """The summary of what this session measured, as --bark-tables asks (None: nothing timed)."""
    config = session.pytest_config
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or bs.disabled or not (bs.benchmarks or session.failed):
        return None
    output = config.hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=bs.benchmarks,
        include_data=True,
        # The group titles need no machine details; skip pytest-benchmark's slow CPU probe.
        machine_info={"node": platform.node()},
        commit_info={},
    )
    output["benchmarks"].extend(session.failed)
    run = parse_run(output, Path("this session"))
    return terminal_summary(run, session.options.tables) if run.benchmarks else None


class BarkBench:
    """What a benchmark test calls: measure a variant with the engine, record it in pytest-benchmark."""

    def __init__(self, config: BenchConfig, session: BarkSession | None = None) -> None:
        self.config = config
        self.session = session

    def run(self, benchmark: Any, variant: Variant, prompts: tuple[str, ...] | None = None) -> list[RoundResult]:
        """Measure ``variant`` with pytest-benchmark's ``benchmark`` fixture; ``prompts`` replaces the blog's
        (a batch cycles through them). Returns the measured rounds' results."""
        cfg = self.config
        reason = unsupported_reason(variant, cfg.device_type)
        if reason:
            if self.session is not None:
                self.session.clock.drop(cfg.processes)
            pytest.skip(reason)
        try:
            workload = cfg.workload(variant, prompts)
        except WorkloadError as exc:
            _fail(str(exc))
        benchmark.group = f"{cfg.model} bs{variant.batch_size}"
        if workload.workload_id != Workload().workload_id:
            # Another workload is another benchmark: its group (and so the comparison key) names it.
            benchmark.group += f" workload {workload.workload_id}"
        measurement = self._measure(variant, workload, benchmark.enabled)
        return self._record(benchmark, measurement, RecordContext(cfg, workload, benchmark.enabled))

    def progress(self, variant: Variant, timed: bool) -> Progress:
        """The variant's terminal lines (the steps of a timed run, or its one untimed call)."""
        cfg = self.config
        session = self.session
        return Progress(
            session.pytest_config if session else None,
            variant.id,
            cfg.warmup_rounds,
            cfg.rounds,
            timed,
            session.clock if session else None,
            cfg.processes,
        )

    def _measure(self, variant: Variant, workload: Workload, timed: bool) -> engine.VariantMeasurement:
        """The session's interleaved schedule's measurement of ``variant`` where it has one (the session's own
        workload, timed); else the variant's processes in a row."""
        cfg, session = self.config, self.session
        own_workload = workload.workload_id == cfg.workload(variant).workload_id
        if timed and cfg.interleave and session is not None and own_workload:
            scheduled = session.interleaved(self).get(variant.id)
            if scheduled is not None:
                return scheduled
        plan = cfg.plan((cfg.spec(variant, workload),), timed)
        references = session.references if session is not None else None
        return engine.run(plan, lambda v: self.progress(v, timed), references)[variant.id]

    def _record(
        self, benchmark: Any, measurement: engine.VariantMeasurement, context: RecordContext
    ) -> list[RoundResult]:
        """Write the variant's record, then end its test as the measurement says: passed, skipped, failed in one
        line, or interrupted (re-raised once what finished is recorded)."""
        variant = measurement.variant
        if measurement.unsupported is not None:
            pytest.skip(measurement.unsupported)
        write_record(benchmark, measurement, context, self.progress(variant, context.timed).warn)
        session = self.session
        if measurement.complete:
            if session is not None:
                session.completed.append(dict(benchmark.extra_info))
            return measurement.results
        if session is not None:
            session.failed.append(benchmark_patches.failed_benchmark_json(benchmark))
        benchmark_patches.mark_recorded(benchmark)
        interruption = measurement.interruption
        if interruption is not None:
            benchmark.has_error = True
            if session is not None:
                session.interrupted = (variant.id, signal_name(interruption.exception))
            raise interruption.exception
        assert measurement.failure is not None, "an unfinished variant failed or was interrupted"
        _fail(f"{variant.id}: {measurement.failure.message}")
