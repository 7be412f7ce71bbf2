"""barkbench as an installed package: the pytest plugin loads through its ``pytest11`` entry point in a project
that is not this repository (no conftest), the docs' own benchmark test runs there, importing the plugin, the
CLI and the results package pulls in neither torch nor transformers, and the command has ``--version``,
``python -m barkbench`` and ``budgets``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import barkbench
from barkbench.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
LONG_PROMPT = " ".join(["Wow, batching is so great!"] * 60)


def readme_test() -> str:
    """docs/usage.md's example test file (the python block that starts with ``# test_my_prompt.py``)."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "usage.md").read_text(), re.DOTALL)
    (block,) = [b for b in blocks if b.startswith("# test_my_prompt.py")]
    return block


def test_importing_the_plugin_cli_and_results_loads_no_torch() -> None:
    modules = [
        "barkbench.pytest_plugin.plugin",
        "barkbench.cli",
        "barkbench.results",
        "barkbench.results.report",
        "barkbench.results.compare",
        "barkbench.results.budgets",
        "barkbench.results.export",
    ]
    code = (
        f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.one_stack("current")
def test_the_readme_benchmark_runs_in_another_project_with_no_conftest(pytester: pytest.Pytester) -> None:
    # pytester.path is a fresh folder outside this repository: nothing of ours is there but the test file.
    pytester.makepyfile(
        test_my_prompt=readme_test()
        + f"""

def test_a_long_prompt_reaches_the_worker(benchmark, bark_bench, bark_variant):
    bark_bench.run(benchmark, bark_variant, prompts=({LONG_PROMPT!r},))
"""
    )
    assert not list(pytester.path.rglob("conftest.py")) and REPO not in pytester.path.parents
    out = pytester.path / "run.json"
    result = pytester.runpytest_subprocess(
        "test_my_prompt.py",
        "--bark-variants", "baseline",
        "--bark-rounds", "1",
        "--bark-warmup-rounds", "0",
        "--bark-semantic-tokens", "8",
        f"--benchmark-json={out}",
        "-p", "no:cacheprovider",
        timeout=600,
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_my_prompt*eager-fp32-bs1*"])
    by_name = {b["name"]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    mine = by_name["test_my_prompt[eager-fp32-bs1]"]
    assert mine["status"] == "ok" and mine["peak_memory_bytes"] > 0 and mine["warnings"] == []
    # The test's own prompt is what the worker tokenized: the long one is truncated, and says so.
    (warning,) = by_name["test_a_long_prompt_reaches_the_worker[eager-fp32-bs1]"]["warnings"]
    assert "Bark keeps the first 256" in warning


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"barkbench {barkbench.__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "barkbench", "--version"], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == f"barkbench {barkbench.__version__}"


def test_budgets_command_checks_a_saved_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # run-cpu.json: tiny on cpu, sdpa-fp32-bs1 peaks at 760 MB against the baseline's 800 MB (0.95 x).
    lenient, strict = tmp_path / "lenient.toml", tmp_path / "strict.toml"
    lenient.write_text('["tiny".cpu."sdpa-*-bs1"]\npeak_memory_ratio = 1.0\n')
    strict.write_text('["tiny".cpu."sdpa-fp32-bs1"]\npeak_memory_ratio = 0.9\n')
    assert main(["budgets", str(DATA / "run-cpu.json"), "--budgets", str(lenient)]) == 0
    out = capsys.readouterr().out
    # sdpa-bf16-bs1 and sdpa-fp32-bs1 match; the failed sdpa-bf16-bs8 has no figures and is not held to it.
    assert out.count("ok: tiny cpu sdpa-") == 2 and "OK: 2 budget check(s) passed." in out
    assert main(["budgets", str(DATA / "run-cpu.json"), "--budgets", str(strict)]) == 1
    out = capsys.readouterr().out
    assert "BUDGET EXCEEDED: tiny cpu sdpa-fp32-bs1 peak_memory 760.0 MB > allowed 720.0 MB" in out
    assert main(["budgets", str(DATA / "run-cpu.json"), "--budgets", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_objects_the_plugin_registers_are_hashable(pytester: pytest.Pytester) -> None:
    # pytest before 9.1 keeps registered plugins in sets (FixtureManager.parsefactories): an unhashable plugin
    # object ended every pytest session of every project with barkbench installed, at start.
    config = pytester.parseconfigure()
    session = config.pluginmanager.get_plugin("barkbench-session")
    assert session is not None
    assert hash(session) == hash(session)
    assert {session} == {session}
