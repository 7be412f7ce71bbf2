"""The benchmark session: the options parsed once (``BenchConfig``), the run of one variant (``BarkBench``), and
the object that owns what a session accumulates (``BarkSession``: completed and failed variants, the budget
verdicts, terminal progress). The session object is registered as a plugin in ``pytest_configure`` (the way
pytest-xdist's ``DSession`` and pytest-codspeed's plugin object are), so its hooks read its own state rather
than stash keys.

Nothing here imports torch at import time: the measuring happens in ``barkbench.measure``, in a worker process
by default.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest

from barkbench import stats as bstats
from barkbench.measure import device as device_mod
from barkbench.measure import noise, schedule, sources
from barkbench.measure.optimize import VariantUnsupported, unsupported_reason
from barkbench.measure.runner import RoundResult, RunnerInfo, RunSpec
from barkbench.measure.summary import summarize
from barkbench.measure.worker import VariantFailed, WorkerProcess, start_runner
from barkbench.measure.workload import Workload, WorkloadError
from barkbench.measure.workload import workload_from_files as workload_fields_from_files
from barkbench.pytest_plugin import benchmark_patches
from barkbench.pytest_plugin.progress import Progress
from barkbench.pytest_plugin.signals import SaveGuard, signal_name
from barkbench.results import budgets as budgets_mod
from barkbench.results import efficiency
from barkbench.results import quality as quality_gates
from barkbench.results.load import parse_run
from barkbench.results.report import terminal_tables
from barkbench.sweep import shards as shards_mod
from barkbench.sweep.shards import Shard
from barkbench.variants import CPU_DEFAULT_NOTE, CPU_EMULATED_HALF_NOTE, Variant, dedupe, default_variants

#: Rounds when --bark-rounds is not given: enough to see the spread on the tiny model inside the 10-minute
#: budget; bigger models are slower per call, so fewer samples fit but each is steadier.
DEFAULT_ROUNDS = {"tiny": 3}
DEFAULT_ROUNDS_OTHER = 3
DEFAULT_MODEL = "tiny"


@dataclass(frozen=True)
class BenchConfig:
    """The harness's options, parsed once."""

    model: str
    variants: tuple[Variant, ...]
    rounds: int
    warmup_rounds: int
    semantic_max_new_tokens: int
    isolated: bool
    device_type: str
    bt_via: str
    wav_dir: str | None = None
    fixed_length: bool = False
    #: --bark-threads: the worker's torch intra-op threads (None: torch's default).
    threads: int | None = None
    #: --bark-round-timeout: seconds a worker's call may take before it is killed (None: from the warm-up).
    round_timeout_s: float | None = None
    #: --bark-processes: fresh worker processes per variant, each with its own warm-up and ``rounds`` rounds.
    processes: int = 1
    #: --bark-interleave: every variant's first process, then every variant's second, ... (``processes.py``).
    interleave: bool = False
    #: --bark-target-precision / --bark-max-rounds / --bark-max-time: adaptive rounds (None: fixed rounds).
    target_precision: float | None = None
    max_rounds: int | None = None
    max_time_s: float | None = None
    #: --bark-prompts / --bark-voice / --bark-long-form, checked: ``workload.workload_from_files``'s fields.
    workload_fields: dict[str, Any] = field(default_factory=dict, compare=False)
    #: --bark-quality (or --bark-quality-gates): measure each variant's drift from the fp32 eager reference.
    quality: bool = False
    #: --bark-shard: this process runs ``shard.select(matrix)``; ``matrix`` is the whole selection.
    shard: Shard | None = None
    matrix: tuple[Variant, ...] = ()

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> BenchConfig:
        source: sources.ModelSource | None = config.getoption("bark_model")
        model = source.label if source is not None else DEFAULT_MODEL
        device = config.getoption("bark_device")
        device_type = device_mod.device_type() if device == "auto" else device
        chosen: list[list[Variant]] | None = config.getoption("bark_variants")
        half_native = device_type != "cpu" or not device_mod.cpu_emulates_half_precision()
        variants = (
            dedupe([v for values in chosen for v in values]) if chosen else default_variants(device_type, half_native)
        )
        rounds = config.getoption("bark_rounds") or DEFAULT_ROUNDS.get(model, DEFAULT_ROUNDS_OTHER)
        if (config.getoption("bark_processes", None) or 1) > 1 and config.getoption("bark_isolation") != "process":
            raise pytest.UsageError("--bark-processes needs a fresh worker process per run; drop --bark-isolation off")
        _check_adaptive_options(config, rounds)
        shard: Shard | None = config.getoption("bark_shard", None)
        return cls(
            model=model,
            variants=tuple(shard.select(variants) if shard else variants),
            shard=shard,
            matrix=tuple(variants),
            rounds=rounds,
            warmup_rounds=config.getoption("bark_warmup_rounds"),
            semantic_max_new_tokens=config.getoption("bark_semantic_tokens"),
            isolated=config.getoption("bark_isolation") == "process",
            device_type=device_type,
            bt_via=config.getoption("bark_bt_via"),
            wav_dir=config.getoption("bark_wav_dir"),
            fixed_length=config.getoption("bark_fixed_length"),
            threads=config.getoption("bark_threads", None),
            round_timeout_s=config.getoption("bark_round_timeout", None),
            processes=config.getoption("bark_processes", None) or 1,
            interleave=bool(config.getoption("bark_interleave", False)),
            target_precision=config.getoption("bark_target_precision", None),
            max_rounds=config.getoption("bark_max_rounds", None),
            max_time_s=config.getoption("bark_max_time", None),
            workload_fields=_workload_fields(config, source),
            quality=bool(config.getoption("bark_quality", False) or config.getoption("bark_quality_gates", None)),
        )

    def sweep_record(self) -> dict[str, Any]:
        """The shard, the whole matrix and the workload, for the result file (``barkbench merge`` reads it)."""
        workload = {
            "model_source": self.model,
            "device": self.device_type,
            "semantic_max_new_tokens": self.semantic_max_new_tokens,
            "fixed_length": self.fixed_length,
            "rounds": self.rounds,
            "warmup_rounds": self.warmup_rounds,
            "workload_id": self.workload(Variant()).workload_id,
        }
        return shards_mod.sweep_record(self.matrix or self.variants, self.shard, workload)

    def workload(self, variant: Variant, prompts: tuple[str, ...] | None = None) -> Workload:
        """The measured call: the blog's prompts unless a test gives its own."""
        fields = dict(self.workload_fields)
        if prompts is not None:
            fields.update(prompts=tuple(prompts), prompt_voices=())
        return Workload(batch_size=variant.batch_size, semantic_max_new_tokens=self.semantic_max_new_tokens, **fields)

    def spec(self, variant: Variant, workload: Workload | None = None) -> RunSpec:
        return RunSpec(
            source=self.model,
            variant=variant,
            workload=workload or self.workload(variant),
            device_type=self.device_type,
            bt_via=self.bt_via,
            env={"TRANSFORMERS_VERBOSITY": "error"},
            fixed_length=self.fixed_length,
            threads=self.threads,
        )


def _check_adaptive_options(config: pytest.Config, rounds: int) -> None:
    """The caps only mean something with a target, and cannot be below the rounds the run asks for anyway."""
    target = config.getoption("bark_target_precision", None)
    max_rounds = config.getoption("bark_max_rounds", None)
    if target is None:
        given = [
            o
            for o in ("--bark-max-rounds", "--bark-max-time")
            if config.getoption(o.lstrip("-").replace("-", "_"), None)
        ]
        if given:
            raise pytest.UsageError(
                f"{' and '.join(given)} caps adaptive rounds; add --bark-target-precision (e.g. 0.02)"
            )
        return
    asked = rounds * (config.getoption("bark_processes", None) or 1)
    if max_rounds is not None and max_rounds < asked:
        raise pytest.UsageError(
            f"--bark-max-rounds {max_rounds} is below the {asked} rounds asked for (--bark-rounds x --bark-processes); "
            "raise it or ask for fewer rounds"
        )


def _workload_fields(config: pytest.Config, source: sources.ModelSource | None) -> dict[str, Any]:
    try:
        return workload_fields_from_files(
            config.getoption("bark_prompts", None),
            config.getoption("bark_voice", None),
            bool(config.getoption("bark_long_form", False)),
            random_model=source is None or source.kind == "random",
        )
    except WorkloadError as exc:
        raise pytest.UsageError(str(exc)) from None


# eq=False keeps object identity for equality and hashing: pytest before 9.1 keeps plugins in sets and dicts,
# and a dataclass's generated __eq__ would make the session unhashable (every session then dies at start).
@dataclass(eq=False)
class BarkSession:
    """What one pytest session accumulates; registered as a plugin by ``pytest_configure``."""

    pytest_config: pytest.Config
    #: extra_info of every variant measured so far: what --bark-budgets checks at session end.
    completed: list[dict[str, Any]] = field(default_factory=list)
    #: Failed variants in pytest-benchmark's per-benchmark shape: pytest-benchmark drops a benchmark that
    #: raised, so they are added to the --benchmark-json file at save time.
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: --bark-quality-gates verdicts, once checked at session end (None: not given).
    quality_verdicts: list[quality_gates.Verdict] | None = None
    #: --bark-quality: the reference's recorded call and noise floor per (batch size, workload id).
    references: dict[tuple[int, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)
    #: The budget verdicts, once checked at session end (None: --bark-budgets not given).
    verdicts: list[budgets_mod.Verdict] | None = None
    #: Set when --bark-budgets matched no measured variant: the gate's failure message.
    unmatched_budgets: str = ""
    #: The variant an interrupt (Ctrl-C, SIGTERM) stopped, and the signal's name; None while not interrupted.
    interrupted: tuple[str, str] | None = None
    #: Files pytest-benchmark wrote this session (--benchmark-json, autosave), for the line after an interrupt.
    saved_paths: list[str] = field(default_factory=list)
    #: Elapsed time and what finished, for the progress lines' estimate of what is left.
    clock: schedule.RunClock = field(default_factory=schedule.RunClock)
    #: Ids of the collected --bark-variants tests, in run order: what --bark-interleave schedules.
    collected_variants: list[str] = field(default_factory=list)
    #: --bark-interleave: the session's schedule, run by the first benchmark test (``processes.InterleavedRun``).
    _interleaved: Any = None
    _config: BenchConfig | None = None
    _machine_facts: noise.MachineFacts | None = None

    @property
    def config(self) -> BenchConfig:
        """The options, parsed on first use (``auto`` asks torch for the device, so not at configure time)."""
        if self._config is None:
            self._config = BenchConfig.from_pytest_config(self.pytest_config)
        return self._config

    def bench(self, config: BenchConfig | None = None) -> BarkBench:
        """What a benchmark test calls, with this session's options or ``config``."""
        return BarkBench(config or self.config, self)

    def progress(self, variant_id: str, enabled: bool) -> Progress:
        cfg = self.config
        return Progress(
            self.pytest_config, variant_id, cfg.warmup_rounds, cfg.rounds, enabled, self.clock, cfg.processes
        )

    def interleaved_run(self, bench: BarkBench) -> Any:
        """The interleaved schedule of every collected variant this machine supports, run on first use."""
        if self._interleaved is None:
            from barkbench.pytest_plugin import processes

            by_id = {v.id: v for v in bench.config.variants}
            chosen = [by_id[i] for i in self.collected_variants if i in by_id]
            supported = [v for v in chosen if not unsupported_reason(v, bench.config.device_type)]
            self._interleaved = processes.InterleavedRun(bench, supported)
            self._interleaved.run()
        return self._interleaved

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
        if not (config.getoption("bark_variants") or self.config.device_type != "cpu"):
            lines.append(f"barkbench: {CPU_DEFAULT_NOTE}")
            if device_mod.cpu_emulates_half_precision():
                lines.append(f"barkbench: {CPU_EMULATED_HALF_NOTE}")
        return lines or None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        benchmark_patches.install(session.config, self.failed, self.saved_paths)
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
            startup_checks(session.config)
            self._check_batch_memory()

    def _check_batch_memory(self) -> None:
        """Refuse a batch whose lower-bound memory estimate exceeds the machine's memory; warn above what is free.
        CPU only: the worker's memory is the machine's."""
        import psutil

        from barkbench.measure import estimate

        cfg = self.config
        arch = estimate.architecture(self.pytest_config.getoption("bark_model", None))
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
        benchmark_patches.save_failures_only(session.config, self.failed)
        gates = session.config.getoption("bark_quality_gates", None)
        if gates is not None:
            self.quality_verdicts = quality_gates.check(self.completed, gates)
            if any(not v.ok for v in self.quality_verdicts) and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        budgets: budgets_mod.Budgets | None = session.config.getoption("bark_budgets", None)
        if budgets is None:
            return
        self.verdicts = budgets_mod.check_extra_infos(self.completed, budgets)
        if not self.verdicts:
            self.unmatched_budgets = budgets_mod.nothing_matched(self.completed, budgets)
        failed = budgets_mod.failures(self.verdicts) or not self.verdicts
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self._print_tables(terminalreporter)
        if self.interrupted is not None:
            terminalreporter.write_line(self.interrupt_line(), yellow=True, bold=True)
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


def startup_checks(config: pytest.Config) -> None:
    """What can be checked before a model loads, checked once: one line with the fix, no traceback."""
    json_path = benchmark_patches.json_option_path(config.getoption("benchmark_json", None))
    if json_path is not None:
        _check_writable(json_path.parent, f"--benchmark-json {json_path}", "give a path in a writable folder")
    wav_dir = config.getoption("bark_wav_dir", None)
    if wav_dir:
        _check_writable(Path(wav_dir), f"--bark-wav-dir {wav_dir}", "give a writable folder")
    source: sources.ModelSource | None = config.getoption("bark_model", None)
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
    """The blog's tables of what this session measured, by ``barkbench report``'s code (None: nothing timed)."""
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
    return terminal_tables(run) if run.benchmarks else None


class BarkBench:
    """What a benchmark test calls: start the variant's runner, time its rounds, record the figures."""

    def __init__(self, config: BenchConfig, session: BarkSession | None = None) -> None:
        self.config = config
        self.session = session

    def run(self, benchmark: Any, variant: Variant, prompts: tuple[str, ...] | None = None) -> list[RoundResult]:
        """Measure ``variant`` with pytest-benchmark's ``benchmark`` fixture; ``prompts`` replaces the blog's
        (a batch cycles through them)."""
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
        benchmark.extra_info.update(
            {
                **variant.as_dict(),
                "model_source": cfg.model,
                "device": cfg.device_type,
                "semantic_max_new_tokens": workload.semantic_max_new_tokens,
                "rounds": cfg.rounds,
                "warmup_rounds": cfg.warmup_rounds,
                "isolation": "process" if cfg.isolated else "off",
                "fixed_length": cfg.fixed_length,
                **workload.as_extra_info(),
            }
        )
        from barkbench.pytest_plugin import processes

        if processes.wants_engine(self, benchmark):
            # Several processes, interleaved or adaptive: timed by barkbench, recorded in pytest-benchmark after.
            return processes.run_variant(self, benchmark, variant, workload)
        reference = self._reference(variant, workload) if cfg.quality else None
        clock = self.session.clock if self.session is not None else None
        load_started = clock.now() if clock is not None else None
        try:
            runner = start_runner(
                cfg.spec(variant, workload), isolated=cfg.isolated, round_timeout_s=cfg.round_timeout_s
            )
        except KeyboardInterrupt as exc:
            # The worker was killed where it waited; nothing of this variant was measured.
            self._record_interrupted(benchmark, variant.id, exc, "loading the model", 0)
            raise
        except VariantUnsupported as exc:
            pytest.skip(str(exc))
        except VariantFailed as exc:
            self._record_failure(benchmark, str(exc), exc.kind)
            _fail(f"{variant.id}: {exc}")
        except sources.SourceError as exc:
            self._record_failure(benchmark, str(exc), "error")
            _fail(f"{variant.id}: {exc}")
        results: list[RoundResult] = []

        def one_round() -> None:
            results.append(runner.generate())

        pytest_config = self.session.pytest_config if self.session else None
        progress = Progress(pytest_config, variant.id, cfg.warmup_rounds, cfg.rounds, benchmark.enabled, clock)
        if load_started is not None:
            progress.start_process(load_started)

        # Other processes' CPU time and the load, over the measured rounds only (from the first measured round's
        # setup to the end): what the noise checks hold the rounds to.
        sampler = noise.CpuSampler(sorted({os.getpid(), runner.info.pid}))
        sampling = contextlib.ExitStack()
        calls = 0

        def setup() -> None:
            nonlocal calls
            progress.next_round()
            if benchmark.enabled and calls == cfg.warmup_rounds:
                sampling.enter_context(sampler)
            calls += 1
            runner.prepare()

        try:
            info = runner.info
            benchmark.extra_info.update(
                attention_impl=info.attention_impl,
                device=info.device,
                device_index=info.device_index,
                device_name=info.device_name,
                model_memory_bytes=info.model_memory_bytes,
                weights_bytes=info.weights_bytes,
                warnings=list(info.warnings),
                worker_pid=info.pid,
            )
            if info.compiled or info.quantized_linear:
                benchmark.extra_info.update(compiled=list(info.compiled), quantized_linear=info.quantized_linear)
            with sampling:
                benchmark.pedantic(
                    one_round, setup=setup, rounds=cfg.rounds, warmup_rounds=cfg.warmup_rounds, iterations=1
                )
            progress.process_done()
            if cfg.wav_dir:
                wav = Path(cfg.wav_dir).resolve() / f"{variant.id}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                benchmark.extra_info["wav_path"] = runner.save_wav(str(wav))
            if reference is not None:
                self._record_quality(benchmark, runner, reference, progress)
        except VariantFailed as exc:
            self._record_failure(benchmark, str(exc), exc.kind)
            _fail(f"{variant.id}: {exc}")
        except KeyboardInterrupt as exc:
            if isinstance(runner, WorkerProcess):
                runner.kill()  # at once: no polite stop to a worker that may be stopped or deadlocked
            step = progress.current_step() or "its set-up"
            self._record_interrupted(benchmark, variant.id, exc, step, max(0, len(results) - cfg.warmup_rounds))
            raise
        finally:
            runner.close()
            progress.close()
        measured = results[-cfg.rounds :] if benchmark.enabled else results
        usage = sampler.usage
        self._record_figures(benchmark, variant, measured, runner.info, usage, progress)
        return measured

    def _record_figures(
        self,
        benchmark: Any,
        variant: Variant,
        measured: list[RoundResult],
        info: RunnerInfo,
        cpu_usage: bstats.CpuUsage | None,
        progress: Progress,
    ) -> None:
        """The variant's figures from its measured rounds and pytest-benchmark's stats, into ``extra_info``."""
        stats: Any = getattr(benchmark, "stats", None)
        mean = stats.stats.mean if benchmark.enabled and stats is not None else None
        stddev = stats.stats.stddev if mean is not None and len(stats.stats.data) > 1 else None
        figures = replace(summarize(measured, variant.batch_size, mean, stddev), torch_threads=info.torch_threads)
        if mean is not None:
            # The timings pytest-benchmark stores, so a report re-checking them reads the same numbers.
            check = bstats.check_noise(list(stats.stats.data), cpu_usage)
            usage = cpu_usage.as_dict() if cpu_usage else None
            figures = replace(figures, noise=check.as_dict(), cpu_usage=usage)
            if check.unstable:
                progress.warn(f"unstable: {check.summary}")
        benchmark.extra_info.update(figures.to_extra_info(), status="ok")
        machine_limits = info.limits
        if machine_limits.get("error"):
            benchmark.extra_info["limits_error"] = machine_limits["error"]
        elif machine_limits:
            # Each stage against the machine's measured limits ("% of limit"); stage times are the worker's.
            benchmark.extra_info.update(
                efficiency.extra_info(
                    figures.stages,
                    figures.worker_latency_mean_s,
                    machine_limits["limits"],
                    machine_limits["efficiency_inputs"],
                    variant.batch_size,
                )
            )
        if measured and measured[-1].segment_seconds:
            # Long-form: each piece's mean seconds over the rounds, in order; the latency is their total.
            pieces = zip(*(r.segment_seconds for r in measured), strict=True)
            benchmark.extra_info["segment_seconds"] = [statistics.fmean(p) for p in pieces]
        if info.first_call_seconds is not None:
            # The compiling first call, and its excess over the steady state: the cost of compilation.
            steady = statistics.fmean(r.seconds for r in measured)
            benchmark.extra_info.update(
                first_call_seconds=info.first_call_seconds,
                compile_seconds=max(0.0, info.first_call_seconds - steady),
            )
        if self.session is not None:
            self.session.completed.append(dict(benchmark.extra_info))

    def _record_interrupted(
        self, benchmark: Any, variant_id: str, exc: BaseException, step: str, finished_rounds: int
    ) -> None:
        """The variant an interrupt stopped: recorded as ``interrupted`` with no timings (never a normal row), and
        taken out of pytest-benchmark's list so neither its JSON nor its autosave holds a partial result (an
        empty one would also fail pytest-benchmark's save)."""
        signame = signal_name(exc)
        benchmark.extra_info.update(
            status="interrupted",
            error=f"interrupted by {signame} during {step}; {finished_rounds} measured round(s) finished, none kept",
            failure_kind="interrupted",
        )
        benchmark.has_error = True
        bs = getattr(self.session.pytest_config, "_benchmarksession", None) if self.session else None
        partial = getattr(benchmark, "stats", None)
        if bs is not None and partial is not None:
            with contextlib.suppress(ValueError):
                bs.benchmarks.remove(partial)
        if self.session is not None:
            self.session.failed.append(benchmark_patches.failed_benchmark_json(benchmark))
            self.session.interrupted = (variant_id, signame)

    def _reference(self, variant: Variant, workload: Workload) -> tuple[str, dict[str, Any]] | None:
        """The reference (eager fp32 at the variant's batch size, same workload) recorded once per session in
        its own worker, before the variant loads; None (with the reason in the terminal) if it cannot run."""
        if self.session is None:
            return None
        key = (variant.batch_size, workload.workload_id)
        if key not in self.session.references:
            cfg = self.config
            folder = Path(tempfile.mkdtemp(prefix="barkbench-reference-"))
            path = str(folder / f"reference-bs{variant.batch_size}.pt")
            ref_variant = Variant(batch_size=variant.batch_size)
            try:
                ref_runner = start_runner(
                    cfg.spec(ref_variant, workload), isolated=cfg.isolated, round_timeout_s=cfg.round_timeout_s
                )
                try:
                    floor = ref_runner.capture_reference(path)
                finally:
                    ref_runner.close()
            except (VariantFailed, VariantUnsupported, RuntimeError) as exc:
                floor = {"error": f"the reference ({ref_variant.id}) did not run: {exc}"}
            self.session.references[key] = (path, floor)
        return self.session.references[key]

    def _record_quality(
        self, benchmark: Any, runner: Any, reference: tuple[str, dict[str, Any]], progress: Progress
    ) -> None:
        """Untimed, after the rounds: the variant's drift, beside the noise floor, as extra_info ``quality``."""
        from barkbench.measure import quality as quality_mod

        path, floor = reference
        if "error" in floor:
            benchmark.extra_info["quality"] = {"error": floor["error"]}
            progress.warn(f"quality not measured: {floor['error']}")
            return
        try:
            result = {**runner.drift(path), "floor": floor}
        except (VariantFailed, RuntimeError) as exc:
            benchmark.extra_info["quality"] = {"error": str(exc)}
            progress.warn(f"quality not measured: {exc}")
            return
        benchmark.extra_info["quality"] = result
        progress.warn(f"quality: {quality_mod.summary_line(result)}")

    def _record_failure(self, benchmark: Any, error: str, kind: str) -> None:
        benchmark.extra_info.update(status="failed", error=error, failure_kind=kind)
        if self.session is not None:
            self.session.failed.append(benchmark_patches.failed_benchmark_json(benchmark))
