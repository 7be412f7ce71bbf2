"""pytest plugin: command-line options, the variant parametrization, fixtures and pytest-benchmark hooks.

Loaded by the top-level ``conftest.py``. The measuring itself lives in ``isolation`` (a worker per variant),
``trackers`` and ``workload``; this module only wires options to them and records what they return.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Any

import pytest

from barkbench import device as device_mod
from barkbench import sources
from barkbench.isolation import RoundResult, RunSpec, VariantFailed, start_runner
from barkbench.optimize import VariantUnsupported, unsupported_reason
from barkbench.variants import DEFAULT_VARIANTS, Variant, VariantError, dedupe, parse_variants
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
        sources.parse_model_source(value)
    except sources.SourceError as exc:
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
    group.addoption("--bark-bt-via", choices=("transform", "to_bettertransformer"), default="transform",
                    help="how the bettertransformer variant is applied: BetterTransformer.transform(model, "
                    "keep_original_model=False) or the blog's model.to_bettertransformer()")


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

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> BenchConfig:
        model = config.getoption("bark_model")
        values = config.getoption("variants") or [DEFAULT_VARIANTS]
        variants = dedupe([v for value in values for v in parse_variants(value)])
        rounds = config.getoption("nb_loops") or DEFAULT_ROUNDS.get(model, DEFAULT_ROUNDS_OTHER)
        device = config.getoption("bark_device")
        return cls(
            model=model,
            variants=tuple(variants),
            rounds=rounds,
            warmup_rounds=config.getoption("warmup_rounds"),
            semantic_max_new_tokens=config.getoption("semantic_max_new_tokens"),
            isolated=config.getoption("bark_isolation") == "process",
            device_type=device_mod.device_type() if device == "auto" else device,
            bt_via=config.getoption("bark_bt_via"),
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
        )


_CONFIG_KEY = pytest.StashKey[BenchConfig]()


def bench_config(config: pytest.Config) -> BenchConfig:
    if _CONFIG_KEY not in config.stash:
        config.stash[_CONFIG_KEY] = BenchConfig.from_pytest_config(config)
    return config.stash[_CONFIG_KEY]


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
    results: list[RoundResult], variant: Variant, mean_seconds: float | None
) -> dict[str, Any]:
    """extra_info numbers from the measured rounds (plain JSON values: pytest-benchmark stores them as given).

    ``mean_seconds`` is pytest-benchmark's mean when it timed the rounds (None when disabled); throughput and
    the audio rate divide by it so they agree with the table pytest-benchmark prints.
    """
    worker_mean = statistics.fmean(r.seconds for r in results)
    seconds = mean_seconds if mean_seconds else worker_mean
    audio = statistics.fmean(r.audio_seconds for r in results)
    return {
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

    def __init__(self, config: BenchConfig) -> None:
        self.config = config

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
            }
        )
        try:
            runner = start_runner(cfg.spec(variant), isolated=cfg.isolated)
        except VariantUnsupported as exc:
            pytest.skip(str(exc))
        except (VariantFailed, sources.SourceError) as exc:
            benchmark.extra_info.update(status="failed", error=str(exc))
            pytest.fail(f"{variant.id}: {exc}", pytrace=False)
        results: list[RoundResult] = []

        def one_round() -> None:
            results.append(runner.generate())

        try:
            info = runner.info
            benchmark.extra_info.update(
                attention_impl=info.attention_impl,
                device=info.device,
                device_name=info.device_name,
                model_memory_bytes=info.model_memory_bytes,
                warnings=list(info.warnings),
                worker_pid=info.pid,
            )
            benchmark.pedantic(
                one_round, setup=runner.prepare, rounds=cfg.rounds, warmup_rounds=cfg.warmup_rounds, iterations=1
            )
        except VariantFailed as exc:
            benchmark.extra_info.update(status="failed", error=str(exc))
            pytest.fail(f"{variant.id}: {exc}", pytrace=False)
        finally:
            runner.close()
        measured = results[-cfg.rounds:] if benchmark.enabled else results
        stats = getattr(benchmark, "stats", None)
        mean = stats.stats.mean if benchmark.enabled and stats is not None else None
        benchmark.extra_info.update(summarize(measured, variant, mean), status="ok")
        return measured


@pytest.fixture(scope="session")
def bark_bench(request: pytest.FixtureRequest) -> BarkBench:
    return BarkBench(bench_config(request.config))
