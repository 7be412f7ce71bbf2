"""How barkbench's recorded figures are compared and rendered: ``Metric`` descriptors built from the record's field
definitions (``barkbench.record``: one home for each figure's unit and direction), the workload and set-up keys that
make two results comparable, and the baseline rule. The figures themselves are defined, written and read by
``barkbench.record.Record``. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from barkbench import record
from barkbench.record import Record
from barkbench.results import markdown as md
from barkbench.variants import Variant

#: SI megabytes, so the tables can be checked by hand (and match github-action-benchmark's "MB" unit).
BYTES_PER_MB = 1_000_000

#: extra_info keys that mark a benchmark as one of ours; other benchmarks in a file are skipped with a note.
IDENTITY_KEYS = ("variant", "attention", "dtype", "offload", "batch_size")

#: What a benchmark measured, besides the variant: results that differ in any of these are not the same
#: benchmark, and neither ``compare`` nor a relative table puts them side by side. New workload fields recorded
#: in extra_info join here (and so join every check that uses ``workload_key`` / ``run_differences``).
WORKLOAD_KEYS = ("semantic_max_new_tokens", "fixed_length", "workload_id")
#: Where it ran: a model source or device kind apart makes timings incomparable too.
SETUP_KEYS = ("model_source", "device")


def _device_kind(value: Any) -> str:
    return str(value).partition(":")[0]


def workload_key(rec: Record) -> tuple[tuple[str, str], ...]:
    """The recorded workload fields, as comparable pairs (a field the file never recorded is left out)."""
    return tuple((key, str(value)) for key in WORKLOAD_KEYS if (value := getattr(rec, key)) is not None)


def workload_label(rec: Record) -> str:
    """The workload in a few words, for tables and messages."""
    parts = []
    if rec.semantic_max_new_tokens is not None:
        parts.append(f"{rec.semantic_max_new_tokens} semantic tokens")
    if rec.fixed_length:
        parts.append("fixed length")
    if rec.workload_id:
        parts.append(f"workload {rec.workload_id}")
    return ", ".join(parts) or "workload not recorded"


def run_differences(base: Record, new: Record) -> list[str]:
    """How two benchmarks' workload, model source or device differ ("semantic_max_new_tokens 8 vs 64"); empty when
    they measured the same thing. Fields recorded by only one side are not held against it."""
    out = []
    for key in (*SETUP_KEYS, *WORKLOAD_KEYS):
        a, b = getattr(base, key), getattr(new, key)
        if a is None or b is None:
            continue
        if key == "device":
            a, b = _device_kind(a), _device_kind(b)
        if str(a) != str(b):
            out.append(f"{key} {a} vs {b}")
    return out


def baseline_of(variant: Variant) -> Variant:
    """The row a variant is compared with: ``Variant.is_baseline``'s rule (eager, fp32, no offload, no int8, no
    compile) at the variant's batch size."""
    return Variant(batch_size=variant.batch_size)


def is_baseline(rec: Record) -> bool:
    """Whether a recorded benchmark is the baseline: its axes name a baseline variant whose id is the id recorded
    (an older file without the int8/compile axes keeps them in its id)."""
    try:
        variant = rec.as_variant()
    except (KeyError, TypeError, ValueError):
        return False
    return variant.is_baseline and variant.id == rec.variant


# -- metrics ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One comparable figure: where it is read from, its unit, which direction is better, how it renders. Built by
    ``metric`` from the record's definition of the figure."""

    name: str
    #: The ``Record`` field holding it (``latency_mean`` is pytest-benchmark's, from the stats block).
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


#: How a recorded unit is shown: (the unit in tables, raw value / scale, the number's format). Other units show
#: as recorded, with significant digits.
_DISPLAY: dict[str, tuple[str, float, Callable[[float | None], str]]] = {"bytes": ("MB", BYTES_PER_MB, md.thousands)}


def metric(name: str, definition: record.FieldInfo, label: str) -> Metric:
    """The metric of a figure the record defines: its key, unit and better direction from ``definition``."""
    if definition.better is None:
        raise ValueError(f"{definition.key} has no better direction: it is no metric")
    unit, scale, format = _DISPLAY.get(definition.unit, (definition.unit, 1.0, md.significant))
    return Metric(name, definition.key, label, unit, definition.better, scale, format)


PEAK_MEMORY = metric("peak_memory", record.FIELDS["peak_memory_bytes"], "peak memory")
MODEL_MEMORY = metric("model_memory", record.FIELDS["model_memory_bytes"], "model memory")
WEIGHTS = metric("weights", record.FIELDS["weights_bytes"], "weights")
THROUGHPUT = metric("throughput", record.FIELDS["throughput_samples_per_s"], "throughput")
LATENCY = metric("latency", record.LATENCY_MEAN, "latency mean")
AUDIO_RATE = metric("audio_rate", record.FIELDS["audio_seconds_per_wall_second"], "audio s / wall s")

#: Every metric, by name.
METRICS: dict[str, Metric] = {m.name: m for m in (PEAK_MEMORY, MODEL_MEMORY, WEIGHTS, THROUGHPUT, LATENCY, AUDIO_RATE)}
