"""Every results file under tests/data (the oldest format, GPU runs, today's main's before the record) loads through
``load_run`` — and so through ``barkbench.record`` — with the figures every reader took from it before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from barkbench import record
from barkbench.record import FIELDS, FORMAT_KEY, FORMAT_VERSION
from barkbench.results import budgets, compare, export, schema
from barkbench.results.load import BenchmarkResult, ResultsError, load_run

DATA = Path(__file__).parent / "data"
DATA_FILES = sorted(DATA.glob("*.json"))
#: What every reader took from each file in tests/data before the record existed: ``figures`` below, run on commit
#: 9ab9e8f (where ``BenchmarkResult.figures`` held what ``record`` holds now, and the schema helpers took the raw
#: extra_info).
EXPECTED = Path(__file__).parent / "expected" / "figures-before-record.json"
#: The figures the record took over from ``results.schema.Figures`` (that class's fields).
FIGURE_KEYS = (
    "real_time_factor",
    "latency_cv",
    "peak_memory_bytes",
    "peak_memory_bytes_mean",
    "memory_method",
    "throughput_samples_per_s",
    "audio_seconds",
    "audio_seconds_per_wall_second",
    "worker_latency_mean_s",
    "output_lengths",
    "stages",
    "semantic_tokens_per_s",
    "coarse_tokens_per_s",
    "unattributed_seconds",
    "model_memory_bytes",
    "weights_bytes",
    "noise",
    "cpu_usage",
    "torch_threads",
)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def figures(r: BenchmarkResult) -> dict[str, Any]:
    """One row as the readers see it: identity, latency, the figures, metric and export values, budget figures."""
    measurement = budgets.Measurement.from_extra_info(r.extra_info)
    return {
        "fullname": r.fullname,
        "name": r.name,
        "variant": r.variant,
        "attention": r.attention,
        "dtype": r.dtype,
        "offload": r.offload,
        "batch_size": r.batch_size,
        "model_source": r.model_source,
        "device": r.device,
        "device_index": r.device_index,
        "device_name": r.device_name,
        "machine": r.machine,
        "status": r.status,
        "error": r.error,
        "attention_impl": r.attention_impl,
        "semantic_max_new_tokens": r.semantic_max_new_tokens,
        "latency": None if r.latency is None else vars(r.latency),
        "round_seconds": list(r.round_seconds),
        "is_reference_baseline": r.is_reference_baseline,
        "failed": r.failed,
        "series": r.series,
        "label": r.label,
        "stage_rows": [list(s) for s in r.stages],
        "unstable": r.unstable,
        "figures": {key: _plain(getattr(r.record, key)) for key in FIGURE_KEYS},
        "metrics": {name: compare.metric_value(r, m.descriptor) for name, m in compare.METRICS.items()},
        "export": {s.suffix: s.value(r) for s in export.SERIES},
        "workload_key": [list(pair) for pair in schema.workload_key(r.record)],
        "workload_label": schema.workload_label(r.record),
        "budget_figures": None if measurement is None else dict(measurement.figures),
    }


@pytest.mark.parametrize("path", DATA_FILES, ids=[p.name for p in DATA_FILES])
def test_every_data_file_loads_with_the_figures_it_had(path: Path) -> None:
    expected = json.loads(EXPECTED.read_text())[path.name]
    run = load_run(path)
    assert run.machine == expected["machine"] and list(run.ignored) == expected["ignored"]
    assert [figures(r) for r in run.benchmarks] == expected["rows"]


def test_the_expected_figures_cover_every_data_file() -> None:
    assert sorted(json.loads(EXPECTED.read_text())) == [p.name for p in DATA_FILES]


def test_old_files_give_their_figures() -> None:
    """A few figures spelled out: the oldest format (run-cpu.json), a GPU run, and today's main's files."""
    cpu = {r.variant: r for r in load_run(DATA / "run-cpu.json").benchmarks}
    assert cpu["sdpa-fp32-bs1"].peak_memory_bytes == 760_000_000
    assert cpu["sdpa-fp32-bs1"].latency_mean == pytest.approx(1.46)
    assert cpu["sdpa-fp32-bs1"].record.quantization == "none"  # an axis the file predates, at its default
    assert cpu["sdpa-bf16-bs8"].failed and cpu["sdpa-bf16-bs8"].latency is None
    h200 = {r.variant: r for r in load_run(DATA / "h200-tiny.json").benchmarks}
    assert h200["eager-fp32-bs1"].peak_memory_bytes == 214_539_264
    assert h200["eager-fp32-bs1"].latency_mean == pytest.approx(0.49993667933334035)
    assert h200["eager-fp32-bs1"].is_reference_baseline and h200["eager-fp32-bs1"].device_index == 0
    default = {r.variant: r for r in load_run(DATA / "main-2026-12-06-default.json").benchmarks}
    assert default["sdpa-fp32-bs1"].peak_memory_bytes == 194_191_360
    assert default["sdpa-fp32-bs1"].latency_mean == pytest.approx(0.6856865875000153)
    p2 = {r.variant: r for r in load_run(DATA / "main-2026-12-06-p2.json").benchmarks}
    assert p2["eager-fp32-bs1"].peak_memory_bytes == 212_258_816
    assert p2["eager-fp32-bs1"].record.process_means_s == (0.7690583439999727, 0.7993962069999725)
    assert p2["eager-fp32-bs1"].record.precision_met is True and p2["eager-fp32-bs1"].device_index is None


def test_a_newer_format_fails_in_one_line(tmp_path: Path) -> None:
    data = json.loads((DATA / "main-2026-12-06-default.json").read_text())
    data["benchmarks"][0]["extra_info"][FORMAT_KEY] = FORMAT_VERSION + 1
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError) as raised:
        load_run(path)
    assert str(raised.value) == f"{path}: written by a newer barkbench (format {FORMAT_VERSION + 1}); upgrade barkbench"
    del data["benchmarks"][0]["extra_info"][FORMAT_KEY]
    path.write_text(json.dumps({**data, FORMAT_KEY: FORMAT_VERSION + 1}))  # a file-level format is held to it too
    with pytest.raises(ResultsError, match="newer barkbench"):
        load_run(path)


def test_metrics_take_unit_and_direction_from_the_record() -> None:
    assert schema.PEAK_MEMORY.direction == FIELDS["peak_memory_bytes"].better == "lower"
    assert schema.THROUGHPUT.direction == FIELDS["throughput_samples_per_s"].better == "higher"
    assert schema.THROUGHPUT.unit == FIELDS["throughput_samples_per_s"].unit
    assert schema.PEAK_MEMORY.render(760_000_000) == "760 MB"
    assert schema.LATENCY.direction == record.LATENCY_MEAN.better and schema.LATENCY.unit == "s"
