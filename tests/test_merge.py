"""barkbench merge: shards of one run merge back into the run; mixed experiments are refused; gaps are named."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from barkbench.cli import main
from barkbench.results.load import load_runs
from barkbench.results.report import write_report
from barkbench.sweep.shards import JSON_KEY, Shard, sweep_record
from barkbench.variants import Variant

DATA = Path(__file__).parent / "data" / "run-cpu.json"
WORKLOAD = {"model_source": "tiny", "device": "cpu", "semantic_max_new_tokens": 8, "workload_id": "w"}


def shard_files(tmp_path: Path, count: int = 2) -> tuple[dict[str, Any], list[Path]]:
    """run-cpu.json's measured rows cut into ``count`` shards the way --bark-shard cuts its matrix, each with its
    record. (Its failed row is left out: pytest-benchmark's own compare cannot load a row without stats.)"""
    run = json.loads(DATA.read_text())
    run["benchmarks"] = [b for b in run["benchmarks"] if b["extra_info"].get("status") == "ok"]
    by_id = {b["extra_info"]["variant"]: b for b in run["benchmarks"]}
    matrix = [Variant.from_dict(b["extra_info"]) for b in run["benchmarks"]]
    paths = []
    for k in range(1, count + 1):
        shard = Shard(k, count)
        data = copy.deepcopy(run)
        data["benchmarks"] = [by_id[v.id] for v in shard.select(matrix)]
        data[JSON_KEY] = sweep_record(matrix, shard, WORKLOAD)
        path = tmp_path / f"shard-{k}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
    return run, paths


@pytest.mark.one_stack("legacy")
def test_merged_shards_read_as_the_unsharded_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, shards = shard_files(tmp_path)
    out = tmp_path / "merged" / "run.json"
    assert main(["merge", *map(str, shards), "-o", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert sorted(b["fullname"] for b in merged["benchmarks"]) == sorted(b["fullname"] for b in run["benchmarks"])
    assert merged[JSON_KEY]["missing_variants"] == [] and merged[JSON_KEY]["missing_shards"] == []
    union = tmp_path / "union" / "run.json"  # same file name: the report's runs table names the file
    union.parent.mkdir()
    union.write_text(json.dumps(run))
    report_merged = write_report(load_runs([out]), tmp_path / "r1", plots_enabled=False).markdown
    report_union = write_report(load_runs([union]), tmp_path / "r2", plots_enabled=False).markdown
    assert report_merged == report_union
    # pytest-benchmark's own compare reads the merged file.
    done = subprocess.run(
        [sys.executable, "-c", "from pytest_benchmark.cli import main; main()", "compare", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "eager-fp32-bs1" in done.stdout


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda d: d[JSON_KEY]["workload"].update(semantic_max_new_tokens=256), "workloads"),
        (lambda d: d["machine_info"]["barkbench"].update(transformers="4.48.0"), "library versions"),
    ],
)
def test_merge_refuses_mixed_experiments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, what: str
) -> None:
    _, (one, two) = shard_files(tmp_path)
    data = json.loads(two.read_text())
    change(data)
    two.write_text(json.dumps(data))
    out = tmp_path / "merged.json"
    assert main(["merge", str(one), str(two), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"different {what}" in err and "--allow-mixed" in err
    assert not out.exists()
    assert main(["merge", str(one), str(two), "-o", str(out), "--allow-mixed"]) == 0


def test_merge_names_missing_shards_and_failed_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, (one, two) = shard_files(tmp_path)
    in_two = json.loads(two.read_text())[JSON_KEY]["variants"]
    data = json.loads(one.read_text())
    failed = next(b for b in data["benchmarks"] if b["extra_info"].get("status") == "ok")
    failed["extra_info"].update(status="failed", error="boom")
    failed["stats"] = None
    one.write_text(json.dumps(data))
    out = tmp_path / "merged.json"
    assert main(["merge", str(one), "-o", str(out), "--require-complete"]) == 1
    err = capsys.readouterr().err
    assert "missing shard(s): 2/2" in err
    assert f"{failed['extra_info']['variant']} (failed)" in err
    for variant in in_two:
        assert variant in err
    missing = json.loads(out.read_text())[JSON_KEY]["missing_variants"]
    assert set(missing) >= {failed["extra_info"]["variant"], *in_two}


def test_sweep_passes_pytest_arguments_through_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from barkbench.sweep import launch

    seen: dict[str, Any] = {}

    def fake_sweep(pytest_args: list[str], shards: int, out_dir: Path, **kwargs: Any) -> launch.SweepResult:
        seen.update(pytest_args=list(pytest_args), shards=shards, **kwargs)
        return launch.SweepResult((), None, out_dir / "merged.json")

    monkeypatch.setattr(launch, "sweep", fake_sweep)
    argv = ["sweep", "bench/", "--bark-variants", "baseline", "--shards", "3", "-q", "--timeout-min", "9"]
    assert main([*argv, "--out-dir", str(tmp_path)]) == 1  # nothing merged: the fake ran no shard
    assert seen["pytest_args"] == ["bench/", "--bark-variants", "baseline", "-q"]
    assert seen["shards"] == 3 and seen["timeout_min"] == 9 and seen["executor"] == "local"
    assert "no shard wrote a result file" in capsys.readouterr().err
    # Other commands still refuse arguments they do not know, in one line.
    assert main(["merge", str(DATA), "-o", str(tmp_path / "m.json"), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
