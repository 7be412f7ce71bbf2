"""``barkbench export-github RUN.json``: github-action-benchmark "custom" JSON for memory and throughput.

benchmark-action/github-action-benchmark charts a metric over commits from a list of
``{"name", "unit", "value"}`` entries; its ``customSmallerIsBetter`` and ``customBiggerIsBetter`` tools each
take one file, so peak memory (smaller is better) and throughput (bigger is better) go to two files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkbench.results import schema
from barkbench.results.load import BenchmarkResult, ResultsError, Run


@dataclass(frozen=True)
class Series:
    """One github-action-benchmark input file: the schema's metric, in its unit, rounded to ``digits``."""

    suffix: str
    metric: schema.Metric
    digits: int

    @property
    def tool(self) -> str:
        # The action's tool follows the metric's direction.
        return "customSmallerIsBetter" if self.metric.direction == "lower" else "customBiggerIsBetter"

    @property
    def unit(self) -> str:
        return self.metric.unit

    def value(self, result: BenchmarkResult) -> float | None:
        value = self.metric.in_unit(getattr(result.record, self.metric.key))
        return None if value is None else round(value, self.digits)


SERIES = (Series("memory", schema.PEAK_MEMORY, 3), Series("throughput", schema.THROUGHPUT, 6))


def entry_name(result: BenchmarkResult) -> str:
    """Stable across runs (the action joins history by name); the machine is left out on purpose, since a
    runner's host name can change between jobs while the workflow pins the hardware."""
    return f"{result.variant} ({result.model_source}, {result.device})"


def entries(run: Run, series: Series) -> list[dict[str, Any]]:
    """The action's custom format; failed variants have no figure and are left out (and noted by the CLI)."""
    out = []
    for result in run.benchmarks:
        value = None if result.failed else series.value(result)
        if value is not None:
            out.append({"name": entry_name(result), "unit": series.unit, "value": value})
    return out


def output_paths(prefix: Path) -> dict[str, Path]:
    return {s.suffix: prefix.with_name(f"{prefix.name}-{s.suffix}.json") for s in SERIES}


def export_github(run: Run, prefix: Path) -> dict[str, Path]:
    """Write ``PREFIX-memory.json`` and ``PREFIX-throughput.json``; return them by series name."""
    if not run.benchmarks:
        raise ResultsError(
            f"{run.path}: no barkbench benchmarks to export; "
            f"pass a run written by `pytest bench/ --benchmark-json=FILE`"
        )
    paths = output_paths(prefix)
    for series in SERIES:
        path = paths[series.suffix]
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries(run, series), indent=2) + "\n", encoding="utf-8")
    return paths
