"""The options, read once, and what the session measures from them.

- ``BenchOptions``: every ``--bark-*`` value (and ``--benchmark-json``'s path) as ``options.py``'s parsers typed
  it, read from pytest in one place (``BenchOptions.read``, at ``pytest_configure``). Reading has no side effects
  and imports no torch: it runs in every pytest session of any project that installs barkbench.
- ``BenchConfig``: what the session measures, derived from the options once, on first use (``auto`` asks torch
  for the device, so not at configure time): the device, the variants, the rounds, the workload's files read.

Nothing after these two reads an option again: the session, its checks and its gates read these values.

This module is imported at configure in every pytest session of any project that installs barkbench: what it needs
from the engine (the plan, the run spec, the schedule's rules) is imported where a Bark test uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from barkbench.measure import device as device_mod
from barkbench.measure import sources
from barkbench.measure.workload import DEFAULT_SEMANTIC_TOKENS, Workload, WorkloadError
from barkbench.measure.workload import workload_from_files as workload_fields_from_files
from barkbench.sweep import shards as shards_mod
from barkbench.variants import Variant, dedupe, default_variants

if TYPE_CHECKING:
    from barkbench.measure import schedule
    from barkbench.measure.engine import Plan
    from barkbench.measure.runner import RunSpec
    from barkbench.results import budgets as budgets_mod
    from barkbench.results import quality as quality_mod
    from barkbench.sweep.shards import Shard

#: Rounds when --bark-rounds is not given: enough to see the spread on the tiny model inside the 10-minute
#: budget; bigger models are slower per call, so fewer samples fit but each is steadier.
DEFAULT_ROUNDS = {"tiny": 3}
DEFAULT_ROUNDS_OTHER = 3
#: The model source when --bark-model is not given.
DEFAULT_SOURCE = "tiny"


@dataclass(frozen=True)
class BenchOptions:
    """The command line's ``--bark-*`` values, typed by their parsers; each field's default is the option's."""

    #: --bark-model (None: not given, the tiny model).
    model: sources.ModelSource | None = None
    #: --bark-variants, one list per occurrence (None: not given, the device's defaults).
    variants: tuple[tuple[Variant, ...], ...] | None = None
    shard: Shard | None = None
    rounds: int | None = None
    warmup_rounds: int = 1
    semantic_tokens: int = DEFAULT_SEMANTIC_TOKENS
    round_timeout_s: float | None = None
    load_timeout_s: float | None = None
    quality: bool = False
    quality_gates: tuple[quality_mod.Gate, ...] | None = None
    prompts: str | None = None
    voice: str | None = None
    long_form: bool = False
    isolation: str = "process"
    device: str = "auto"
    wav_dir: str | None = None
    fixed_length: bool = False
    bt_via: str = "transform"
    threads: int | None = None
    processes: int = 1
    interleave: bool = False
    target_precision: float | None = None
    max_rounds: int | None = None
    max_time_s: float | None = None
    remeasure_limits: bool = False
    budgets: budgets_mod.Budgets | None = None
    #: --bark-tables: what the session prints at its end (``report.terminal_summary``'s ``tables``); the default is
    #: ``report.DEFAULT_TABLES``, not imported here: reporting loads numpy and matplotlib.
    tables: tuple[str, ...] = ("compact",)
    #: pytest-benchmark's --benchmark-json, as a path (None: not given, or pytest-benchmark not loaded).
    benchmark_json: Path | None = None

    @classmethod
    def read(cls, config: pytest.Config) -> BenchOptions:
        """Every option, read once. A value left at None by pytest (an option not given, a plugin not loaded)
        takes the field's default."""
        names = {f.name: f"bark_{_OPTION_NAMES.get(f.name, f.name)}" for f in fields(cls)}
        names["benchmark_json"] = "benchmark_json"
        given = {name: config.getoption(dest, None) for name, dest in names.items()}
        values = {name: value for name, value in given.items() if value is not None}
        if "variants" in values:
            values["variants"] = tuple(tuple(chosen) for chosen in values["variants"])
        if "benchmark_json" in values:
            from barkbench.pytest_plugin.benchmark_patches import json_option_path

            values["benchmark_json"] = json_option_path(values["benchmark_json"])
        return cls(**values)

    @property
    def source(self) -> sources.ModelSource:
        """The model source, the default's included."""
        return self.model or sources.parse_model_source(DEFAULT_SOURCE)


#: Field name -> the option's dest less ``bark_``, where the two differ.
_OPTION_NAMES = {"round_timeout_s": "round_timeout", "load_timeout_s": "load_timeout", "max_time_s": "max_time"}


@dataclass(frozen=True)
class BenchConfig:
    """What the session measures, derived once from its options."""

    source: sources.ModelSource
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
    #: --bark-load-timeout: seconds a worker may take to start and load its model (None: the worker's default).
    load_timeout_s: float | None = None
    #: --bark-processes: fresh worker processes per variant, each with its own warm-up and ``rounds`` rounds.
    processes: int = 1
    #: --bark-interleave: every variant's first process, then every variant's second, ... (``engine.run``).
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
    #: --bark-remeasure-limits: the workers measure the machine's limits again (through their environment).
    remeasure_limits: bool = False

    @classmethod
    def from_options(cls, options: BenchOptions) -> BenchConfig:
        """The config the options ask for; ``pytest.UsageError`` (one line) when they contradict each other."""
        source = options.source
        device_type = device_mod.device_type() if options.device == "auto" else options.device
        variants = _variants(options, device_type)
        rounds = _rounds(options)
        check_combinations(options)
        return cls(
            source=source,
            variants=tuple(options.shard.select(variants) if options.shard else variants),
            shard=options.shard,
            matrix=tuple(variants),
            rounds=rounds,
            warmup_rounds=options.warmup_rounds,
            semantic_max_new_tokens=options.semantic_tokens,
            isolated=options.isolation == "process",
            device_type=device_type,
            bt_via=options.bt_via,
            wav_dir=options.wav_dir,
            fixed_length=options.fixed_length,
            threads=options.threads,
            round_timeout_s=options.round_timeout_s,
            load_timeout_s=options.load_timeout_s,
            processes=options.processes,
            interleave=options.interleave,
            target_precision=options.target_precision,
            max_rounds=options.max_rounds,
            max_time_s=options.max_time_s,
            workload_fields=_workload_fields(options, source),
            quality=options.quality or options.quality_gates is not None,
            remeasure_limits=options.remeasure_limits,
        )

    @property
    def model(self) -> str:
        """The model source as the user gave it: what the results record."""
        return self.source.label

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
        chosen = dict(self.workload_fields)
        if prompts is not None:
            chosen.update(prompts=tuple(prompts), prompt_voices=())
        return Workload(batch_size=variant.batch_size, semantic_max_new_tokens=self.semantic_max_new_tokens, **chosen)

    def spec(self, variant: Variant, workload: Workload | None = None) -> RunSpec:
        """What a worker loads and runs for ``variant``."""
        from barkbench.measure.limits import REMEASURE_ENV
        from barkbench.measure.runner import RunSpec

        env = {"TRANSFORMERS_VERBOSITY": "error"}
        if self.remeasure_limits:
            env[REMEASURE_ENV] = "1"
        return RunSpec(
            source=self.source,
            variant=variant,
            workload=workload or self.workload(variant),
            device_type=self.device_type,
            bt_via=self.bt_via,
            env=env,
            fixed_length=self.fixed_length,
            threads=self.threads,
        )

    @property
    def several_processes(self) -> bool:
        """Several processes, interleaving or adaptive rounds: the rounds are recorded per process."""
        return self.processes > 1 or self.interleave or self.target_precision is not None

    def plan(self, specs: tuple[RunSpec, ...], timed: bool, interleave: bool = False) -> Plan:
        """The engine's plan for ``specs``. Untimed (``--benchmark-disable``): one call in one process, nothing
        sampled, as pytest-benchmark's disabled ``pedantic`` makes."""
        from barkbench.measure.engine import Plan

        if not timed:
            return Plan(
                specs=specs,
                warmup_rounds=0,
                rounds=1,
                isolated=self.isolated,
                round_timeout_s=self.round_timeout_s,
                load_timeout_s=self.load_timeout_s,
                sample_cpu=False,
                wav_dir=self.wav_dir,
                quality=self.quality,
            )
        return Plan(
            specs=specs,
            warmup_rounds=self.warmup_rounds,
            rounds=self.rounds,
            processes=self.processes,
            interleave=interleave,
            precision=self._precision_rule(),
            isolated=self.isolated,
            round_timeout_s=self.round_timeout_s,
            load_timeout_s=self.load_timeout_s,
            wav_dir=self.wav_dir,
            quality=self.quality,
        )

    def _precision_rule(self) -> schedule.PrecisionRule | None:
        if self.target_precision is None:
            return None
        from barkbench.measure import schedule  # scipy's t-distribution: a Bark test's import, not every session's

        asked = self.rounds * self.processes
        return schedule.PrecisionRule(
            target=self.target_precision,
            min_rounds=asked,
            max_rounds=self.max_rounds or max(schedule.DEFAULT_MAX_ROUNDS, asked),
            max_seconds=self.max_time_s if self.max_time_s is not None else schedule.DEFAULT_MAX_SECONDS,
        )


def _variants(options: BenchOptions, device_type: str) -> list[Variant]:
    if options.variants:
        return dedupe([v for chosen in options.variants for v in chosen])
    half_native = device_type != "cpu" or not device_mod.cpu_emulates_half_precision()
    return default_variants(device_type, half_native)


def _rounds(options: BenchOptions) -> int:
    """--bark-rounds, or the model's default."""
    return options.rounds or DEFAULT_ROUNDS.get(options.source.label, DEFAULT_ROUNDS_OTHER)


def check_combinations(options: BenchOptions) -> None:
    """Options that contradict each other: ``pytest.UsageError``, one line. Checked at configure from the options
    alone, before collection: raised while a test is parametrized, the same error would be a collection error."""
    if options.processes > 1 and options.isolation != "process":
        raise pytest.UsageError("--bark-processes needs a fresh worker process per run; drop --bark-isolation off")
    _check_adaptive_options(options, _rounds(options))


def _check_adaptive_options(options: BenchOptions, rounds: int) -> None:
    """The caps only mean something with a target, and cannot be below the rounds the run asks for anyway."""
    if options.target_precision is None:
        given = [
            name
            for name, value in (("--bark-max-rounds", options.max_rounds), ("--bark-max-time", options.max_time_s))
            if value
        ]
        if given:
            raise pytest.UsageError(
                f"{' and '.join(given)} caps adaptive rounds; add --bark-target-precision (e.g. 0.02)"
            )
        return
    asked = rounds * options.processes
    if options.max_rounds is not None and options.max_rounds < asked:
        raise pytest.UsageError(
            f"--bark-max-rounds {options.max_rounds} is below the {asked} rounds asked for (--bark-rounds x "
            "--bark-processes); raise it or ask for fewer rounds"
        )


def _workload_fields(options: BenchOptions, source: sources.ModelSource) -> dict[str, Any]:
    try:
        return workload_fields_from_files(
            options.prompts, options.voice, options.long_form, random_model=source.kind == "random"
        )
    except WorkloadError as exc:
        raise pytest.UsageError(str(exc)) from None
