"""pytest plugin: command-line options, the variant parametrization, fixtures and pytest-benchmark hooks.

Loaded by the top-level ``conftest.py``. The measuring itself lives in ``isolation`` (a worker per variant),
``trackers`` and ``workload``; this module only wires options to them and records what they return.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from barkbench import budgets as budgets_mod
from barkbench import device as device_mod
from barkbench import sources
from barkbench.isolation import RoundResult, RunSpec, VariantFailed, start_runner
from barkbench.optimize import VariantUnsupported, unsupported_reason
from barkbench.stages import summarize_stages
from barkbench.variants import (
    CPU_DEFAULT_NOTE,
    DEFAULT_VARIANTS,
    Variant,
    VariantError,
    dedupe,
    default_variants,
    parse_variants,
)
from barkbench.workload import DEFAULT_SEMANTIC_TOKENS, Workload, WorkloadError

#: Rounds when --nb-loops is not given: enough to see the spread on the tiny model inside the 10-minute
#: budget; bigger models are slower per call, so fewer samples fit but each is steadier.
DEFAULT_ROUNDS = {"tiny": 3}
DEFAULT_ROUNDS_OTHER = 3
ISOLATION_MODES = ("process", "off")
DEVICES = ("auto", "cpu", "cuda", "xpu", "mps")


def _positive_int(name: str, minimum: int = 1):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {number}")
        return number

    return parse


parse_nb_loops = _positive_int("--nb-loops")
parse_warmup_rounds = _positive_int("--warmup-rounds", minimum=0)
parse_semantic_tokens = _positive_int("--semantic-max-new-tokens")


def parse_variants_option(value: str) -> str:
    """Validate at parse time, so a typo fails before any model is loaded; keep the string."""
    try:
        parse_variants(value)
    except VariantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_model_option(value: str) -> str:
    try:
        source = sources.parse_model_source(value)
        if source.kind == "folder":
            # A missing or incomplete folder fails here, once, instead of in every variant's worker.
            sources.resolve(source)
    except sources.SourceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def parse_budgets_option(value: str) -> str:
    """Load the budgets file at parse time, so a typo in it fails before any model is loaded."""
    try:
        budgets_mod.load_budgets(value)
    except budgets_mod.BudgetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("barkbench", "Bark benchmark harness")
    group.addoption(
        "--bark-model",
        default="tiny",
        type=parse_model_option,
        help="model source: tiny (default, built offline), random:bark-small, random:bark, a hub id "
        "(suno/bark-small) or a folder written by save_pretrained",
    )
    group.addoption(
        "--variants",
        action="append",
        type=parse_variants_option,
        help=f"variants to run (repeatable; ';' separates items): presets/groups such as baseline, sdpa, "
        f"blog, blog-sdpa, or ad hoc attention=sdpa,dtype=bf16,offload=cpu,batch=8. Default: {DEFAULT_VARIANTS}",
    )
    group.addoption("--nb-loops", type=parse_nb_loops, default=None,
                    help="measured rounds per variant (default: 3)")
    group.addoption("--warmup-rounds", type=parse_warmup_rounds, default=1,
                    help="unmeasured generate calls before the rounds (default: 1)")
    group.addoption("--semantic-max-new-tokens", type=parse_semantic_tokens, default=DEFAULT_SEMANTIC_TOKENS,
                    help="pinned semantic length; random weights never stop early (default: 256, the blog's)")
    group.addoption("--bark-isolation", choices=ISOLATION_MODES, default="process",
                    help="process (default): a fresh process per variant; off: in this process (debugging)")
    group.addoption("--bark-device", choices=DEVICES, default="auto",
                    help="device to run on (default: the accelerator if there is one, else cpu)")
    group.addoption("--bark-wav-dir", default=None, metavar="DIR",
                    help="save one WAV per variant (the last round's first sample) as DIR/<variant-id>.wav")
    group.addoption("--fixed-length", action="store_true", default=False,
                    help="force every call to exactly --semantic-max-new-tokens semantic tokens (EOS masked "
                    "until then): removes output-length variance from A/B comparisons of real checkpoints")
    group.addoption("--bark-bt-via", choices=("transform", "to_bettertransformer"), default="transform",
                    help="how the bettertransformer variant is applied: BetterTransformer.transform(model, "
                    "keep_original_model=False) or the blog's model.to_bettertransformer()")
    group.addoption("--bark-budgets", type=parse_budgets_option, default=None, metavar="FILE|default",
                    help="at the end of the run, hold every variant to the memory budgets of FILE (TOML; "
                    "'default' = barkbench's budgets.toml) and fail the session if one is exceeded")


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

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> BenchConfig:
        model = config.getoption("bark_model")
        device = config.getoption("bark_device")
        device_type = device_mod.device_type() if device == "auto" else device
        values = config.getoption("variants")
        if values:
            variants = dedupe([v for value in values for v in parse_variants(value)])
        else:
            variants = default_variants(device_type)
        rounds = config.getoption("nb_loops") or DEFAULT_ROUNDS.get(model, DEFAULT_ROUNDS_OTHER)
        return cls(
            model=model,
            variants=tuple(variants),
            rounds=rounds,
            warmup_rounds=config.getoption("warmup_rounds"),
            semantic_max_new_tokens=config.getoption("semantic_max_new_tokens"),
            isolated=config.getoption("bark_isolation") == "process",
            device_type=device_type,
            bt_via=config.getoption("bark_bt_via"),
            wav_dir=config.getoption("bark_wav_dir"),
            fixed_length=config.getoption("fixed_length"),
        )

    def workload(self, variant: Variant) -> Workload:
        return Workload(batch_size=variant.batch_size, semantic_max_new_tokens=self.semantic_max_new_tokens)

    def spec(self, variant: Variant) -> RunSpec:
        return RunSpec(
            source=self.model,
            variant=variant,
            workload=self.workload(variant),
            device_type=self.device_type,
            bt_via=self.bt_via,
            env={"TRANSFORMERS_VERBOSITY": "error"},
            fixed_length=self.fixed_length,
        )


_CONFIG_KEY = pytest.StashKey[BenchConfig]()


def bench_config(config: pytest.Config) -> BenchConfig:
    if _CONFIG_KEY not in config.stash:
        config.stash[_CONFIG_KEY] = BenchConfig.from_pytest_config(config)
    return config.stash[_CONFIG_KEY]


def pytest_report_header(config: pytest.Config) -> str | None:
    cfg = bench_config(config)
    if config.getoption("variants") or cfg.device_type != "cpu":
        return None
    return f"barkbench: {CPU_DEFAULT_NOTE}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bark_variant" in metafunc.fixturenames:
        # Parametrized by id (a plain string: pytest-benchmark stores params in its JSON), resolved to the
        # Variant by the fixture below.
        ids = [v.id for v in bench_config(metafunc.config).variants]
        metafunc.parametrize("bark_variant", ids, ids=ids, indirect=True)


@pytest.fixture()
def bark_variant(request: pytest.FixtureRequest) -> Variant:
    by_id = {v.id: v for v in bench_config(request.config).variants}
    return by_id[request.param]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["barkbench"] = device_mod.machine_info()


def summarize(
    results: list[RoundResult], variant: Variant, mean_seconds: float | None, stddev_seconds: float | None = None
) -> dict[str, Any]:
    """extra_info numbers from the measured rounds (plain JSON values: pytest-benchmark stores them as given).

    ``mean_seconds`` is pytest-benchmark's mean when it timed the rounds (None when disabled); throughput and
    the audio rate divide by it so they agree with the table pytest-benchmark prints. ``latency_cv`` is
    pytest-benchmark's stddev / mean when given, else the workers' own.
    """
    worker_mean = statistics.fmean(r.seconds for r in results)
    seconds = mean_seconds if mean_seconds else worker_mean
    audio = statistics.fmean(r.audio_seconds for r in results)
    if stddev_seconds is None and len(results) > 1:
        stddev_seconds = statistics.stdev(r.seconds for r in results)
    length_normalized = {
        **summarize_stages([r.stages for r in results], [r.seconds for r in results]),
        # Wall seconds per second of audio: below 1 is faster than real time.
        "real_time_factor": seconds / audio if audio > 0 else None,
        "latency_cv": stddev_seconds / seconds if stddev_seconds is not None and seconds > 0 else None,
    }
    return {
        **length_normalized,
        "peak_memory_bytes": max(r.peak_memory_bytes for r in results),
        "peak_memory_bytes_mean": int(statistics.fmean(r.peak_memory_bytes for r in results)),
        "memory_method": results[0].memory_method,
        "throughput_samples_per_s": variant.batch_size / seconds,
        "audio_seconds": audio,
        "audio_seconds_per_wall_second": audio / seconds,
        "worker_latency_mean_s": worker_mean,
        "output_lengths": list(results[-1].output_lengths),
    }


class BarkBench:
    """What a benchmark test calls: start the variant's worker, time its rounds, record the figures."""

    def __init__(self, config: BenchConfig, pytest_config: pytest.Config | None = None) -> None:
        self.config = config
        self.pytest_config = pytest_config
        #: extra_info of every variant measured / failed so far: what --bark-budgets checks at session end and
        #: what the JSON gets for failed variants (pytest-benchmark itself drops a benchmark that raised).
        self.completed: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []

    def run(self, benchmark: Any, variant: Variant) -> list[RoundResult]:
        cfg = self.config
        reason = unsupported_reason(variant, cfg.device_type)
        if reason:
            pytest.skip(reason)
        try:
            workload = cfg.workload(variant)
        except WorkloadError as exc:
            pytest.fail(str(exc), pytrace=False)
        benchmark.group = f"{cfg.model} bs{variant.batch_size}"
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
            }
        )
        try:
            runner = start_runner(cfg.spec(variant), isolated=cfg.isolated)
        except VariantUnsupported as exc:
            pytest.skip(str(exc))
        except (VariantFailed, sources.SourceError) as exc:
            self._record_failure(benchmark, exc)
            pytest.fail(f"{variant.id}: {exc}", pytrace=False)
        results: list[RoundResult] = []

        def one_round() -> None:
            results.append(runner.generate())

        progress = Progress(self.pytest_config, variant.id, cfg.warmup_rounds, cfg.rounds,
                            benchmark.enabled)

        def setup() -> None:
            progress.next_round()
            runner.prepare()

        try:
            info = runner.info
            benchmark.extra_info.update(
                attention_impl=info.attention_impl,
                device=info.device,
                device_name=info.device_name,
                model_memory_bytes=info.model_memory_bytes,
                weights_bytes=info.weights_bytes,
                warnings=list(info.warnings),
                worker_pid=info.pid,
            )
            if info.compiled or info.quantized_linear:
                benchmark.extra_info.update(compiled=list(info.compiled), quantized_linear=info.quantized_linear)
            benchmark.pedantic(
                one_round, setup=setup, rounds=cfg.rounds, warmup_rounds=cfg.warmup_rounds, iterations=1
            )
            if cfg.wav_dir:
                wav = Path(cfg.wav_dir).resolve() / f"{variant.id}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                benchmark.extra_info["wav_path"] = runner.save_wav(str(wav))
        except VariantFailed as exc:
            self._record_failure(benchmark, exc)
            pytest.fail(f"{variant.id}: {exc}", pytrace=False)
        finally:
            runner.close()
        measured = results[-cfg.rounds:] if benchmark.enabled else results
        stats = getattr(benchmark, "stats", None)
        mean = stats.stats.mean if benchmark.enabled and stats is not None else None
        stddev = stats.stats.stddev if mean is not None and cfg.rounds > 1 else None
        benchmark.extra_info.update(summarize(measured, variant, mean, stddev), status="ok")
        if runner.info.first_call_seconds is not None:
            # The compiling first call, and its excess over the steady state: the cost of compilation.
            steady = statistics.fmean(r.seconds for r in measured)
            benchmark.extra_info.update(first_call_seconds=runner.info.first_call_seconds,
                                        compile_seconds=max(0.0, runner.info.first_call_seconds - steady))
        self.completed.append(dict(benchmark.extra_info))
        return measured

    def _record_failure(self, benchmark: Any, exc: BaseException) -> None:
        benchmark.extra_info.update(status="failed", error=str(exc))
        self.failed.append(failed_benchmark_json(benchmark))


def failed_benchmark_json(benchmark: Any) -> dict[str, Any]:
    """A failed variant in pytest-benchmark's per-benchmark shape: identity and extra_info (status, error) and
    ``stats: null`` — it has no timings, and none are invented."""
    return {
        "group": benchmark.group,
        "name": benchmark.name,
        "fullname": benchmark.fullname,
        "params": benchmark.params,
        "param": benchmark.param,
        "extra_info": dict(benchmark.extra_info),
        "options": {},
        "stats": None,
    }


class Progress:
    """One terminal line per loaded variant and per round, so a long run shows where it is."""

    def __init__(self, config: pytest.Config | None, variant_id: str, warmup: int, rounds: int,
                 enabled: bool) -> None:
        self._reporter = config.pluginmanager.get_plugin("terminalreporter") if config else None
        self._capture = config.pluginmanager.get_plugin("capturemanager") if config else None
        self._variant_id = variant_id
        self._steps = [f"warm-up {i + 1}/{warmup}" for i in range(warmup)] if enabled else []
        self._steps += [f"round {i + 1}/{rounds}" for i in range(rounds)] if enabled else ["run 1/1"]
        self._done = 0

    def next_round(self) -> None:
        step = self._steps[self._done] if self._done < len(self._steps) else f"call {self._done + 1}"
        self._done += 1
        if self._reporter is None:
            return
        # The test's output is captured at the file-descriptor level; suspend it as pytest's live logging does.
        suspended = self._capture.global_and_fixture_disabled() if self._capture else contextlib.nullcontext()
        with suspended:
            self._reporter.write_line(f"[barkbench] {self._variant_id}: {step}")


@pytest.fixture(scope="session")
def bark_bench(request: pytest.FixtureRequest) -> BarkBench:
    bench = BarkBench(bench_config(request.config), request.config)
    request.config.stash[_BENCH_KEY] = bench
    return bench


# -- Session end: failed variants in the JSON, atomic JSON files, memory budgets ----------------------------------

_BENCH_KEY = pytest.StashKey[BarkBench]()
_VERDICTS_KEY = pytest.StashKey[list]()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that anyone reading it — or a run killed half-way — finds the old file or
    the new one, never a part: a temporary file in the same folder, fsync, then ``os.replace`` (atomic)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _add_failures(config: pytest.Config, output_json: dict[str, Any]) -> None:
    """Append the failed variants (``stats: null``) to the ``--benchmark-json`` file's benchmarks. Not to the
    autosaved files: pytest-benchmark's own loader (``--benchmark-compare``, ``pytest-benchmark compare``)
    rejects a whole file when one benchmark has no stats."""
    bench = config.stash.get(_BENCH_KEY, None)
    if bench is None:
        return
    present = {entry.get("fullname") for entry in output_json.get("benchmarks", [])}
    output_json.setdefault("benchmarks", []).extend(e for e in bench.failed if e["fullname"] not in present)


def _make_saves_atomic(bs: Any, config: pytest.Config) -> None:
    """pytest-benchmark writes ``--benchmark-json`` and its autosave files with a plain ``open(..., "wb")``: a
    Ctrl-C or a kill during the write leaves a truncated file that no reader can parse. Route both writes
    through ``atomic_write_bytes``, keeping pytest-benchmark's bytes and log lines."""
    from pytest_benchmark.utils import safe_dumps

    def dumps(output_json: Any) -> bytes:
        return safe_dumps(output_json, ensure_ascii=True, indent=4).encode()

    if isinstance(getattr(bs, "json", None), (str, os.PathLike)):
        def save_json(output_json: Any) -> None:
            _add_failures(config, output_json)
            atomic_write_bytes(bs.json, dumps(output_json))
            bs.logger.info(f"Wrote benchmark data in: {bs.json}", purple=True)

        bs.save_json = save_json
    storage = getattr(bs, "storage", None)
    # Only the file storage (the default); its private _next_num is stable across pytest-benchmark 5.x.
    if type(storage).__name__ == "FileStorage" and hasattr(storage, "_next_num"):
        def save(output_json: Any, save: str) -> None:
            output_file = storage.get(f"{storage._next_num}_{save}.json")
            atomic_write_bytes(output_file, dumps(output_json))
            storage.logger.info(f"Saved benchmark data in: {output_file}")

        storage.save = save


def pytest_sessionstart(session: pytest.Session) -> None:
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is not None:
        _make_saves_atomic(bs, session.config)


def _save_failures_only(config: pytest.Config, bs: Any) -> None:
    """pytest-benchmark writes no file when no benchmark has timings; a run whose every variant failed still
    owes the user the reasons, so write the file it would have written; ``save_json`` adds the failures."""
    machine_info = bs.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output_json = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=[], include_data=True, machine_info=machine_info, commit_info=commit_info
    )
    config.hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=output_json)
    bs.save_json(output_json)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # pytest-benchmark's own sessionfinish is a hook wrapper that has already saved the results at this point.
    config = session.config
    bench = config.stash.get(_BENCH_KEY, None)
    bs = getattr(config, "_benchmarksession", None)
    if bench is not None and bench.failed and bs is not None and bs.json and not bs.benchmarks and not bs.disabled:
        _save_failures_only(config, bs)
    value = config.getoption("bark_budgets", None)
    if not value:
        return
    verdicts = budgets_mod.check_extra_infos(bench.completed if bench else [], budgets_mod.load_budgets(value))
    config.stash[_VERDICTS_KEY] = verdicts
    if budgets_mod.failures(verdicts) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    verdicts = terminalreporter.config.stash.get(_VERDICTS_KEY, None)
    if verdicts is None:
        return
    terminalreporter.section("barkbench memory budgets")
    if not verdicts:
        terminalreporter.write_line("no measured variant matched a budget; nothing was checked")
        return
    for verdict in verdicts:
        terminalreporter.write_line(verdict.message, red=not verdict.ok, green=verdict.ok)
    failed = budgets_mod.failures(verdicts)
    if failed:
        terminalreporter.write_line(
            f"{len(failed)} of {len(verdicts)} budget check(s) failed: the session fails", red=True, bold=True
        )
