"""The GitHub workflows parse and keep the properties that matter: the self-hosted GPU runner never runs fork
code, the model cache persists, both dependency stacks are tested, and the commands they call exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from barkbench.cli import build_parser

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"
FORK_GUARD = "github.event_name != 'pull_request' || github.event.pull_request.head.repo.full_name == github.repository"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads a bare `on:` key as the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


def run_scripts(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job.get("steps", []) if "run" in step]


def uses(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in job.get("steps", []) if "uses" in step]


@pytest.fixture(scope="module")
def gpu() -> dict[str, Any]:
    return load("gpu.yml")


@pytest.fixture(scope="module")
def cpu() -> dict[str, Any]:
    return load("cpu.yml")


def test_gpu_runs_on_self_hosted_gpu_and_never_for_forks(gpu: dict[str, Any]) -> None:
    assert gpu["jobs"]
    for job in gpu["jobs"].values():
        assert {"self-hosted", "gpu"} <= set(job["runs-on"])
        # The sweep jobs add their own condition after the guard, never instead of it.
        assert job["if"] == FORK_GUARD or job["if"].startswith(f"({FORK_GUARD}) && ")


def test_gpu_triggers(gpu: dict[str, Any]) -> None:
    on = triggers(gpu)
    assert on["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in on and "pull_request" in on
    assert on["schedule"] and all("cron" in entry for entry in on["schedule"])


def test_gpu_has_persistent_hf_home(gpu: dict[str, Any]) -> None:
    env = {**gpu.get("env", {}), **gpu["jobs"]["benchmark"].get("env", {})}
    assert env["HF_HOME"].startswith("/")  # an absolute path on the runner, outside the wiped workspace


def test_gpu_benchmarks_and_gates(gpu: dict[str, Any]) -> None:
    job = gpu["jobs"]["benchmark"]
    script = "\n".join(run_scripts(job))
    joined = script.replace("\\\n", " ")
    bench = "pytest bench/ --bark-model suno/bark-small --bark-device cuda --bark-fixed-length"
    assert bench in " ".join(joined.split())
    assert "--benchmark-compare=0001 --benchmark-compare-fail=mean:10%" in script
    # Consistent thresholds: latency +10 % is throughput -9.1 % (throughput = batch / latency).
    assert "barkbench compare baseline.json run.json --fail-on memory:5% --fail-on throughput:9%" in script
    assert "barkbench report run.json" in script
    assert "barkbench export-github run.json" in script
    actions = uses(job)
    assert any(step["uses"] == "actions/upload-artifact@v4" for step in actions)
    tools = {
        step["with"]["tool"]: step["with"]["output-file-path"]
        for step in actions
        if step["uses"] == "benchmark-action/github-action-benchmark@v1"
    }
    assert tools == {
        "customSmallerIsBetter": "github-benchmark-memory.json",
        "customBiggerIsBetter": "github-benchmark-throughput.json",
    }


def test_gpu_installs_a_cuda_torch_and_checks_it_before_benchmarking(gpu: dict[str, Any]) -> None:
    job = gpu["jobs"]["benchmark"]
    steps = job["steps"]
    install = next(step["run"] for step in steps if "run" in step and "pip install" in step["run"])
    # `torch==2.13.*` alone also matches a +cpu wheel that pip ranks higher: the CUDA index is named.
    assert re.search(r'pip install "torch==[^"]+" --index-url "\$TORCH_CUDA_INDEX"', install)
    assert "/whl/cu" in {**gpu.get("env", {}), **job.get("env", {})}["TORCH_CUDA_INDEX"]
    assert "torch.cuda.is_available()" in install and "assert" in install
    names = [step.get("name", "") for step in steps]
    bench = next(i for i, step in enumerate(steps) if "pytest bench/" in step.get("run", ""))
    assert bench > names.index(next(n for n in names if n.startswith("Install")))


def test_gpu_saves_the_baseline_before_the_dashboard_push(gpu: dict[str, Any]) -> None:
    job = gpu["jobs"]["benchmark"]
    steps = job["steps"]
    names = [step.get("name", "") for step in steps]
    save = next(i for i, n in enumerate(names) if n.startswith("Save baseline"))
    charts = [i for i, step in enumerate(steps) if step.get("uses", "").startswith("benchmark-action/")]
    assert charts and all(save < i for i in charts)
    # A missing gh-pages branch fails the push: it must not fail the job.
    assert all(steps[i].get("continue-on-error") is True for i in charts)


def test_cpu_runs_tests_on_both_stacks(cpu: dict[str, Any]) -> None:
    on = triggers(cpu)
    assert "push" in on and "pull_request" in on
    stacks = set()
    for job in cpu["jobs"].values():
        script = "\n".join(run_scripts(job))
        match = re.search(r'pip install -e "?\.\[(\w+),test\]"?', script)
        if match and re.search(r"^pytest tests/", script, re.MULTILINE):
            stacks.add(match.group(1))
            # torch comes from the CPU index before the project is installed, so pip keeps that build.
            torch_at = script.find('pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX"')
            assert 0 <= torch_at < match.start()
    assert stacks == {"current", "legacy"}
    assert cpu["env"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert cpu["env"]["TORCH_SPEC"].startswith("torch==2.13")


def test_cpu_smoke_benchmark_and_report(cpu: dict[str, Any]) -> None:
    scripts = {name: "\n".join(run_scripts(job)) for name, job in cpu["jobs"].items()}
    smoke = next(name for name, script in scripts.items() if "pytest bench/" in script)
    script = scripts[smoke]
    assert "pytest bench/ --benchmark-json=run.json --bark-rounds 1 --bark-semantic-tokens 16" in script
    assert "barkbench report run.json --output-dir report" in script
    upload = [s for s in uses(cpu["jobs"][smoke]) if s["uses"] == "actions/upload-artifact@v4"]
    assert upload and "report/" in upload[0]["with"]["path"]


@pytest.mark.parametrize("name", ["cpu.yml", "gpu.yml"])
def test_barkbench_commands_in_workflows_parse(name: str) -> None:
    """Every `barkbench ...` line a workflow runs is accepted by the real argument parser."""
    parser = build_parser()
    commands = []
    for job in load(name)["jobs"].values():
        for script in run_scripts(job):
            joined = script.replace("\\\n", " ")
            commands += [m.group(1) for m in re.finditer(r"^\s*barkbench ([^|\n]+)", joined, re.MULTILINE)]
    assert commands
    for command in commands:
        args = parser.parse_args(shlex.split(command))
        assert callable(args.handler)


@pytest.mark.parametrize("name", ["cpu.yml", "gpu.yml"])
def test_constraint_files_referenced_by_workflows_exist(name: str) -> None:
    root = WORKFLOWS.parents[1]
    scripts = "\n".join(s for job in load(name)["jobs"].values() for s in run_scripts(job))
    for path in re.findall(r"\s-c\s+(\S+)", scripts):
        assert (root / path).is_file(), f"{name} installs with -c {path}, which does not exist"


def test_gpu_sweep_runs_kinds_by_shards_then_merges_gates_and_reports(gpu: dict[str, Any]) -> None:
    jobs = gpu["jobs"]
    sweep = jobs["sweep"]
    matrix = sweep["strategy"]["matrix"]
    assert matrix["shard"] == [1, 2] and "inputs.gpu-kinds" in matrix["kind"]
    assert "${{ matrix.kind }}" in sweep["runs-on"]
    script = " ".join("\n".join(run_scripts(sweep)).replace("\\\n", " ").split())
    assert "--bark-shard ${{ matrix.shard }}/2" in script and "--benchmark-json=shard.json" in script
    assert any(step["uses"] == "actions/upload-artifact@v4" for step in uses(sweep))
    merge = jobs["sweep-merge"]
    assert merge["needs"] == "sweep"
    merge_script = "\n".join(run_scripts(merge))
    assert "barkbench merge shards/*/shard.json" in merge_script and "--require-complete" in merge_script
    assert "--fail-on latency:10%" in merge_script
    report = jobs["sweep-report"]
    assert report["needs"] == "sweep-merge"
    assert "barkbench report merged/*.json" in "\n".join(run_scripts(report))
