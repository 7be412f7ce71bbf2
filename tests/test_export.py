"""``barkbench export-github``: the exact custom JSON that benchmark-action/github-action-benchmark reads.

Its customSmallerIsBetter / customBiggerIsBetter tools take a JSON list of ``{"name", "unit", "value"}``
objects (``value`` a number); anything else fails the action or splits the chart history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from barkbench.cli import main
from barkbench.results.export import export_github
from barkbench.results.load import load_run

DATA = Path(__file__).parent / "data"
CPU_RUN = DATA / "run-cpu.json"


def test_export_files_have_exact_shape_and_values(tmp_path: Path) -> None:
    paths = export_github(load_run(CPU_RUN), tmp_path / "gb")
    assert paths == {"memory": tmp_path / "gb-memory.json", "throughput": tmp_path / "gb-throughput.json"}
    memory = json.loads(paths["memory"].read_text())
    throughput = json.loads(paths["throughput"].read_text())
    # Peak memory in MB (bytes / 1e6); the failed sdpa-bf16-bs8 has no figure and is left out.
    assert memory == [
        {"name": "eager-fp32-bs1 (tiny, cpu)", "unit": "MB", "value": 800.0},
        {"name": "sdpa-fp32-bs1 (tiny, cpu)", "unit": "MB", "value": 760.0},
        {"name": "sdpa-bf16-bs1 (tiny, cpu)", "unit": "MB", "value": 480.0},
        {"name": "eager-fp32-offload-bs1 (tiny, cpu)", "unit": "MB", "value": 350.0},
        {"name": "eager-fp32-bs8 (tiny, cpu)", "unit": "MB", "value": 2400.0},
        {"name": "sdpa-fp32-bs8 (tiny, cpu)", "unit": "MB", "value": 2136.0},
    ]
    # batch size / mean latency, rounded to 6 decimals: 1/2, 1/1.46, 1/1.2, 1/3.1, 8/9.6, 8/7.2.
    assert throughput == [
        {"name": "eager-fp32-bs1 (tiny, cpu)", "unit": "samples/s", "value": 0.5},
        {"name": "sdpa-fp32-bs1 (tiny, cpu)", "unit": "samples/s", "value": 0.684932},
        {"name": "sdpa-bf16-bs1 (tiny, cpu)", "unit": "samples/s", "value": 0.833333},
        {"name": "eager-fp32-offload-bs1 (tiny, cpu)", "unit": "samples/s", "value": 0.322581},
        {"name": "eager-fp32-bs8 (tiny, cpu)", "unit": "samples/s", "value": 0.833333},
        {"name": "sdpa-fp32-bs8 (tiny, cpu)", "unit": "samples/s", "value": 1.111111},
    ]
    for entries in (memory, throughput):
        assert isinstance(entries, list)
        for entry in entries:
            assert set(entry) == {"name", "unit", "value"}
            assert isinstance(entry["name"], str) and isinstance(entry["unit"], str)
            assert isinstance(entry["value"], float) and not isinstance(entry["value"], bool)
        # The action keys history by name: names must be unique within a file.
        assert len({e["name"] for e in entries}) == len(entries)


def test_cli_export_github(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = tmp_path / "out" / "github-benchmark"
    assert main(["export-github", str(CPU_RUN), "--output", str(prefix)]) == 0
    captured = capsys.readouterr()
    assert f"{prefix}-memory.json  (tool: customSmallerIsBetter, unit: MB)" in captured.out
    assert f"{prefix}-throughput.json  (tool: customBiggerIsBetter, unit: samples/s)" in captured.out
    assert "left out failed variant(s): sdpa-bf16-bs8" in captured.err
    assert len(json.loads((tmp_path / "out" / "github-benchmark-memory.json").read_text())) == 6


def test_cli_export_github_default_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export-github", str(CPU_RUN)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "github-benchmark-memory.json",
        "github-benchmark-throughput.json",
    ]


def test_cli_export_github_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-github", str(tmp_path / "run.json"), "--output", str(tmp_path / "gb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("barkbench: error: ") and "run.json: no such file" in err
    assert not list(tmp_path.iterdir())
