"""A variant's figures from its measured rounds: the ``Figures`` the plugin records in ``extra_info``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from barkbench.measure.runner import RoundResult
from barkbench.measure.stages import summarize_stages
from barkbench.results.schema import Figures


def summarize(
    results: Sequence[RoundResult], batch_size: int, mean_seconds: float | None, stddev_seconds: float | None = None
) -> Figures:
    """``mean_seconds`` is pytest-benchmark's mean when it timed the rounds (None when disabled); throughput and
    the audio rate divide by it so they agree with the table pytest-benchmark prints. ``latency_cv`` is
    pytest-benchmark's stddev / mean when given, else the workers' own.
    """
    worker_mean = statistics.fmean(r.seconds for r in results)
    seconds = mean_seconds if mean_seconds else worker_mean
    audio = statistics.fmean(r.audio_seconds for r in results)
    if stddev_seconds is None and len(results) > 1:
        stddev_seconds = statistics.stdev(r.seconds for r in results)
    stages = summarize_stages([r.stages for r in results], [r.seconds for r in results])
    return Figures(
        stages=stages.get("stages"),
        semantic_tokens_per_s=stages.get("semantic_tokens_per_s"),
        coarse_tokens_per_s=stages.get("coarse_tokens_per_s"),
        unattributed_seconds=stages.get("unattributed_seconds"),
        # Wall seconds per second of audio: below 1 is faster than real time.
        real_time_factor=seconds / audio if audio > 0 else None,
        latency_cv=stddev_seconds / seconds if stddev_seconds is not None and seconds > 0 else None,
        peak_memory_bytes=max(r.peak_memory_bytes for r in results),
        peak_memory_bytes_mean=int(statistics.fmean(r.peak_memory_bytes for r in results)),
        memory_method=results[0].memory_method,
        throughput_samples_per_s=batch_size / seconds,
        audio_seconds=audio,
        audio_seconds_per_wall_second=audio / seconds,
        worker_latency_mean_s=worker_mean,
        output_lengths=tuple(results[-1].output_lengths),
    )
