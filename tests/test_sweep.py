"""barkbench sweep with submitit's local executor, end to end on the tiny model: two shards give the unsharded
run's variants and figures; a shard that dies is named with its log, the merge names what is missing, and running
the sweep again runs only that shard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from barkbench.results.load import load_runs
from barkbench.results.report import write_report
from barkbench.sweep.shards import JSON_KEY

pytest.importorskip("submitit", reason="submitit (the [sweep] extra) is not installed")

from barkbench.sweep.launch import sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Short and quick: the structure is what is compared, not the timings.
ARGS = [
    "bench/test_bark.py",
    "--bark-variants=baseline,sdpa",
    "--bark-semantic-tokens=8",
    "--bark-rounds=1",
    "--bark-warmup-rounds=0",
    "-p",
    "no:cacheprovider",
    "-q",
]
# Shard 2 of 2 dies at start-up while the file `poison` exists: a job that fails without writing its JSON.
POISON_CONFTEST = """
import os
from pathlib import Path

def pytest_configure(config):
    shard = config.getoption("bark_shard", None)
    if shard is not None and shard.index == 2 and Path("poison").exists():
        os._exit(3)
"""


def keys(bench: dict) -> tuple[list[str], list[str]]:
    return sorted(bench["extra_info"]), sorted(bench["stats"] or {})


@pytest.mark.one_stack("legacy")
def test_local_sweep_matches_one_run_and_retries_only_the_failed_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "test_bark.py").write_text((REPO / "bench" / "test_bark.py").read_text())
    (tmp_path / "conftest.py").write_text(POISON_CONFTEST)
    monkeypatch.chdir(tmp_path)
    single = tmp_path / "single.json"
    done = subprocess.run([sys.executable, "-m", "pytest", *ARGS, f"--benchmark-json={single}"], check=False)
    assert done.returncode == 0
    lines: list[str] = []

    (tmp_path / "poison").write_text("")
    first = sweep(ARGS, 2, tmp_path / "out", gpus=[], poll_s=0.2, progress=lines.append)
    states = {o.label: o for o in first.outcomes}
    assert states["1/2"].state == "ok"
    assert states["2/2"].state == "failed"
    assert states["2/2"].log and Path(states["2/2"].log).is_file()
    assert states["2/2"].log in states["2/2"].line()
    assert first.merged is not None and not first.ok
    assert first.merged.missing_variants == ("sdpa-fp32-bs1",)
    assert "missing variant(s): sdpa-fp32-bs1" in first.merged.summary()

    (tmp_path / "poison").unlink()
    second = sweep(ARGS, 2, tmp_path / "out", gpus=[], poll_s=0.2, progress=lines.append)
    assert [o.state for o in second.outcomes] == ["skipped", "ok"]  # shard 1 is not run again
    assert second.ok and second.merged is not None and second.merged.complete

    merged = json.loads(second.output.read_text())
    unsharded = json.loads(single.read_text())
    assert [b["name"] for b in merged["benchmarks"]] == [b["name"] for b in unsharded["benchmarks"]]
    for ours, theirs in zip(merged["benchmarks"], unsharded["benchmarks"], strict=True):
        assert keys(ours) == keys(theirs)
    assert merged[JSON_KEY]["matrix_fingerprint"] == unsharded[JSON_KEY]["matrix_fingerprint"]
    assert unsharded[JSON_KEY]["shard"] == "1/1"
    # report on the merged file equals report on the union of the shards' rows (one file, same name).
    shard_files = [tmp_path / "out" / f"shard-{k}-of-2.json" for k in (1, 2)]
    union = json.loads(shard_files[0].read_text())
    union["benchmarks"] = [b for f in shard_files for b in json.loads(f.read_text())["benchmarks"]]
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "merged.json").write_text(json.dumps(union))
    ours = write_report(load_runs([second.output]), tmp_path / "r1", plots_enabled=False).markdown
    theirs = write_report(load_runs([tmp_path / "u" / "merged.json"]), tmp_path / "r2", plots_enabled=False).markdown
    assert ours == theirs
    assert any("started on CPU" in line for line in lines)
