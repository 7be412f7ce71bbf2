"""The single definition of barkbench's measured figures: what goes into a benchmark's ``extra_info``, how it is
read back, and how each metric is named, measured in units, compared and rendered.

``Figures`` is written by the pytest plugin (``to_extra_info``) and read by every reader — loading, report,
compare, export, plots, budgets — through ``from_extra_info``; ``Metric`` descriptors give each comparable figure
its key, unit, direction and rendering; ``BYTES_PER_MB`` and the baseline rule are defined once, here. Nothing
here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from barkbench.results import markdown as md
from barkbench.variants import Variant

#: SI megabytes, so the tables can be checked by hand (and match github-action-benchmark's "MB" unit).
BYTES_PER_MB = 1_000_000

#: extra_info keys that mark a benchmark as one of ours; other benchmarks in a file are skipped with a note.
IDENTITY_KEYS = ("variant", "attention", "dtype", "offload", "batch_size")

#: Per-stage figures: {"semantic": {"seconds", "peak_memory_bytes", "tokens"}, "coarse": ..., ...}.
StageFigures = Mapping[str, Mapping[str, float | int]]


#: What a benchmark measured, besides the variant: results that differ in any of these are not the same
#: benchmark, and neither ``compare`` nor a relative table puts them side by side. New workload fields recorded
#: in extra_info join here (and so join every check that uses ``workload_key`` / ``run_differences``).
WORKLOAD_KEYS = ("semantic_max_new_tokens", "fixed_length", "workload_id")
#: Where it ran: a model source or device kind apart makes timings incomparable too.
SETUP_KEYS = ("model_source", "device")


def _device_kind(value: Any) -> str:
    return str(value).partition(":")[0]


def workload_key(extra_info: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The recorded workload fields, as comparable pairs (a field the file never recorded is left out)."""
    return tuple((key, str(extra_info[key])) for key in WORKLOAD_KEYS if key in extra_info)


def workload_label(extra_info: Mapping[str, Any]) -> str:
    """The workload in a few words, for tables and messages."""
    parts = []
    if "semantic_max_new_tokens" in extra_info:
        parts.append(f"{extra_info['semantic_max_new_tokens']} semantic tokens")
    if extra_info.get("fixed_length"):
        parts.append("fixed length")
    if extra_info.get("workload_id"):
        parts.append(f"workload {extra_info['workload_id']}")
    return ", ".join(parts) or "workload not recorded"


def run_differences(base: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """How two benchmarks' workload, model source or device differ ("semantic_max_new_tokens 8 vs 64"); empty when
    they measured the same thing. Fields recorded by only one side are not held against it."""
    out = []
    for key in (*SETUP_KEYS, *WORKLOAD_KEYS):
        if key not in base or key not in new:
            continue
        a, b = base[key], new[key]
        if key == "device":
            a, b = _device_kind(a), _device_kind(b)
        if str(a) != str(b):
            out.append(f"{key} {a} vs {b}")
    return out


def baseline_of(variant: Variant) -> Variant:
    """The row a variant is compared with: ``Variant.is_baseline``'s rule (eager, fp32, no offload, no int8, no
    compile) at the variant's batch size."""
    return Variant(batch_size=variant.batch_size)


def is_baseline(extra_info: Mapping[str, Any]) -> bool:
    """Whether a recorded benchmark is the baseline: its axes parse to a baseline variant whose id is the id
    recorded (an older file without the int8/compile axes keeps them in its id)."""
    try:
        variant = Variant.from_dict(extra_info)
    except (KeyError, TypeError, ValueError):
        return False
    return variant.is_baseline and variant.id == extra_info.get("variant")


@dataclass(frozen=True)
class Figures:
    """A variant's measured figures, as ``extra_info`` holds them (plain JSON values).

    Written at the end of a variant's run from its measured rounds; ``model_memory_bytes`` and ``weights_bytes``
    are recorded at load time, before the rounds, and are written only when set. When read back, any figure the
    file lacks (a failed variant, an older file) is None.
    """

    real_time_factor: float | None = None
    latency_cv: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_bytes_mean: int | None = None
    memory_method: str | None = None
    throughput_samples_per_s: float | None = None
    audio_seconds: float | None = None
    audio_seconds_per_wall_second: float | None = None
    worker_latency_mean_s: float | None = None
    output_lengths: tuple[int, ...] | None = None
    #: The per-stage breakdown and what is derived from it; absent when the run recorded no stages.
    stages: StageFigures | None = None
    semantic_tokens_per_s: float | None = None
    coarse_tokens_per_s: float | None = None
    unattributed_seconds: float | None = None
    #: Recorded when the model is loaded, before any round.
    model_memory_bytes: int | None = None
    weights_bytes: int | None = None
    #: ``barkbench.stats.NoiseCheck.as_dict()`` of the measured rounds: stability figures and why it is unstable.
    noise: Mapping[str, Any] | None = None
    #: ``barkbench.stats.CpuUsage.as_dict()``: load and other processes' CPU time while the rounds ran.
    cpu_usage: Mapping[str, Any] | None = None
    #: torch's intra-op threads in the worker (``--bark-threads``, else torch's default).
    torch_threads: int | None = None

    def to_extra_info(self) -> dict[str, Any]:
        """The extra_info entries, in the order the results files have always had them."""
        out: dict[str, Any] = {}
        if self.stages is not None:
            out.update(
                stages={name: dict(figures) for name, figures in self.stages.items()},
                semantic_tokens_per_s=self.semantic_tokens_per_s,
                coarse_tokens_per_s=self.coarse_tokens_per_s,
                unattributed_seconds=self.unattributed_seconds,
            )
        out.update(
            real_time_factor=self.real_time_factor,
            latency_cv=self.latency_cv,
            peak_memory_bytes=self.peak_memory_bytes,
            peak_memory_bytes_mean=self.peak_memory_bytes_mean,
            memory_method=self.memory_method,
            throughput_samples_per_s=self.throughput_samples_per_s,
            audio_seconds=self.audio_seconds,
            audio_seconds_per_wall_second=self.audio_seconds_per_wall_second,
            worker_latency_mean_s=self.worker_latency_mean_s,
            output_lengths=None if self.output_lengths is None else list(self.output_lengths),
        )
        for key in ("model_memory_bytes", "weights_bytes", "torch_threads"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("noise", "cpu_usage"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value)
        return out

    @classmethod
    def from_extra_info(cls, extra: Mapping[str, Any]) -> Figures:
        """Read the figures back; TypeError/ValueError when one is of the wrong kind (a malformed file)."""
        stages = extra.get("stages")
        lengths = extra.get("output_lengths")
        return cls(
            real_time_factor=_float(extra.get("real_time_factor")),
            latency_cv=_float(extra.get("latency_cv")),
            peak_memory_bytes=_int(extra.get("peak_memory_bytes")),
            peak_memory_bytes_mean=_int(extra.get("peak_memory_bytes_mean")),
            memory_method=_str(extra.get("memory_method")),
            throughput_samples_per_s=_float(extra.get("throughput_samples_per_s")),
            audio_seconds=_float(extra.get("audio_seconds")),
            audio_seconds_per_wall_second=_float(extra.get("audio_seconds_per_wall_second")),
            worker_latency_mean_s=_float(extra.get("worker_latency_mean_s")),
            output_lengths=tuple(int(n) for n in lengths) if isinstance(lengths, list) else None,
            stages=(
                {str(k): v for k, v in stages.items() if isinstance(v, Mapping)}
                if isinstance(stages, Mapping)
                else None
            ),
            semantic_tokens_per_s=_float(extra.get("semantic_tokens_per_s")),
            coarse_tokens_per_s=_float(extra.get("coarse_tokens_per_s")),
            unattributed_seconds=_float(extra.get("unattributed_seconds")),
            model_memory_bytes=_int(extra.get("model_memory_bytes")),
            weights_bytes=_int(extra.get("weights_bytes")),
            noise=_mapping(extra.get("noise")),
            cpu_usage=_mapping(extra.get("cpu_usage")),
            torch_threads=_int(extra.get("torch_threads")),
        )

    def stage_rows(self) -> tuple[tuple[str, float | None, int | None, float | None], ...]:
        """``stages`` as (stage, seconds, peak_memory_bytes, tokens) rows."""
        if not self.stages:
            return ()
        return tuple(
            (name, _float(s.get("seconds")), _int(s.get("peak_memory_bytes")), _float(s.get("tokens")))
            for name, s in self.stages.items()
        )


# -- metrics ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One comparable figure: where it is read from, its unit, which direction is better, how it renders."""

    name: str
    #: The ``Figures`` attribute holding it (``latency_mean`` is pytest-benchmark's, from the stats block).
    key: str
    label: str
    unit: str
    direction: Literal["lower", "higher"]
    #: Raw value / scale = the value in ``unit`` (bytes -> MB).
    scale: float = 1.0
    format: Callable[[float | None], str] = md.significant

    @property
    def higher_is_worse(self) -> bool:
        return self.direction == "lower"

    def in_unit(self, value: float | None) -> float | None:
        return None if value is None else value / self.scale

    def render(self, value: float | None) -> str:
        """The raw value in its unit, e.g. ``760 MB``; ``—`` when absent."""
        if value is None:
            return md.MISSING
        text = self.format(self.in_unit(value))
        return f"{text} {self.unit}" if self.unit else text


PEAK_MEMORY = Metric("peak_memory", "peak_memory_bytes", "peak memory", "MB", "lower", BYTES_PER_MB, md.thousands)
MODEL_MEMORY = Metric("model_memory", "model_memory_bytes", "model memory", "MB", "lower", BYTES_PER_MB, md.thousands)
WEIGHTS = Metric("weights", "weights_bytes", "weights", "MB", "lower", BYTES_PER_MB, md.thousands)
THROUGHPUT = Metric("throughput", "throughput_samples_per_s", "throughput", "samples/s", "higher")
LATENCY = Metric("latency", "latency_mean", "latency mean", "s", "lower")
AUDIO_RATE = Metric("audio_rate", "audio_seconds_per_wall_second", "audio s / wall s", "", "higher")

#: Every metric, by name.
METRICS: dict[str, Metric] = {m.name: m for m in (PEAK_MEMORY, MODEL_MEMORY, WEIGHTS, THROUGHPUT, LATENCY, AUDIO_RATE)}


def _float(value: Any) -> float | None:
    # bool is an int subclass; a True here is a schema slip, not the number 1.
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    return int(value)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
