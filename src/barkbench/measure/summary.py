"""A variant's figures from its measured rounds, as plain values: what the record's figure fields are filled from.

Each ``RoundSummary`` field is named as the record's field (the ``extra_info`` key) it fills; nothing here knows
how a record is written.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from barkbench import record
from barkbench.measure.runner import RoundResult
from barkbench.measure.stages import summarize_stages


@dataclass(frozen=True)
class RoundSummary:
    """The figures of a variant's measured rounds."""

    #: Per-stage figures ({"semantic": {"seconds", "peak_memory_bytes", "tokens"}, ...}); None without stages.
    stages: Mapping[str, Mapping[str, float | int]] | None
    semantic_tokens_per_s: float | None
    coarse_tokens_per_s: float | None
    unattributed_seconds: float | None
    #: Wall seconds per second of audio: below 1 is faster than real time.
    real_time_factor: float | None
    latency_cv: float | None
    peak_memory_bytes: int
    peak_memory_bytes_mean: int
    memory_method: str
    throughput_samples_per_s: float
    audio_seconds: float
    audio_seconds_per_wall_second: float
    #: The worker's own mean of the rounds' seconds (the call alone, without the round trip).
    worker_latency_mean_s: float
    #: The last round's per-sample output lengths.
    output_lengths: tuple[int, ...]
    #: Long-form: each piece's mean seconds over the rounds, in order (None: one call per round).
    segment_seconds: tuple[float, ...] | None
    #: Accelerator rows only (None on the CPU): the highest of the rounds' allocator reserved peaks, NVML readings of
    #: the process's device memory and host peak resident sets; why one is missing (each reason once).
    peak_memory_reserved_bytes: int | None = None
    device_process_memory_bytes: int | None = None
    host_peak_rss_bytes: int | None = None
    gpu_memory_notes: tuple[str, ...] | None = None


#: ``RoundSummary``'s fields that only an accelerator row has (the record's fields of the same names).
GPU_MEMORY_FIELDS = (
    "peak_memory_reserved_bytes",
    "device_process_memory_bytes",
    "host_peak_rss_bytes",
    "gpu_memory_notes",
)


def summarize(
    results: Sequence[RoundResult], batch_size: int, mean_seconds: float | None, stddev_seconds: float | None = None
) -> RoundSummary:
    """``mean_seconds`` is pytest-benchmark's mean when it recorded the rounds (None when disabled); throughput and
    the audio rate divide by it so they agree with the table pytest-benchmark prints. ``latency_cv`` is
    pytest-benchmark's stddev / mean when given, else the workers' own.
    """
    worker_mean = statistics.fmean(r.seconds for r in results)
    seconds = mean_seconds if mean_seconds else worker_mean
    audio = statistics.fmean(r.audio_seconds for r in results)
    if stddev_seconds is None and len(results) > 1:
        stddev_seconds = statistics.stdev(r.seconds for r in results)
    stages = summarize_stages([r.stages for r in results], [r.seconds for r in results])
    return RoundSummary(
        stages=stages.get("stages"),
        semantic_tokens_per_s=stages.get("semantic_tokens_per_s"),
        coarse_tokens_per_s=stages.get("coarse_tokens_per_s"),
        unattributed_seconds=stages.get("unattributed_seconds"),
        real_time_factor=record.real_time_factor_of(seconds, audio),
        latency_cv=stddev_seconds / seconds if stddev_seconds is not None and seconds > 0 else None,
        peak_memory_bytes=max(r.peak_memory_bytes for r in results),
        peak_memory_bytes_mean=int(statistics.fmean(r.peak_memory_bytes for r in results)),
        memory_method=results[0].memory_method,
        throughput_samples_per_s=batch_size / seconds,
        audio_seconds=audio,
        audio_seconds_per_wall_second=audio / seconds,
        worker_latency_mean_s=worker_mean,
        output_lengths=tuple(results[-1].output_lengths),
        segment_seconds=_segment_means(results),
        peak_memory_reserved_bytes=_highest(r.reserved_peak_bytes for r in results),
        device_process_memory_bytes=_highest(r.device_process_bytes for r in results),
        host_peak_rss_bytes=_highest(r.host_peak_rss_bytes for r in results),
        gpu_memory_notes=tuple(dict.fromkeys(n for r in results for n in r.memory_notes)) or None,
    )


def _highest(values: Iterable[int | None]) -> int | None:
    """The largest of the values that were measured; None when none was (a CPU row: not 0)."""
    measured = [v for v in values if v is not None]
    return max(measured) if measured else None


def _segment_means(results: Sequence[RoundResult]) -> tuple[float, ...] | None:
    """Long-form: each piece's mean seconds over the rounds, in order; the latency is their total."""
    if not results or not results[-1].segment_seconds:
        return None
    pieces = zip(*(r.segment_seconds for r in results), strict=True)
    return tuple(statistics.fmean(p) for p in pieces)


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
