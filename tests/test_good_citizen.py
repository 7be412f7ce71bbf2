"""Installing barkbench changes no other project: its ``pytest11`` plugin loads in every pytest session of an
environment where barkbench is installed, so a session with no Bark test (no test using ``bark_variant`` or
``bark_bench``) must be what pytest-benchmark alone gives — the same ``--benchmark-json``, terminal output and exit
status — and importing the plugin must not load the engine's or the reports' heavy libraries.

Each comparison runs the same plain project twice in fresh processes: with barkbench, and with ``-p no:barkbench``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

PLAIN_PROJECT = """
import time


def test_ordinary():
    assert sum([1, 2]) == 3


def test_benchmarked(benchmark):
    # pedantic: a fixed number of rounds, no calibration (quick, and the same rows in both runs).
    benchmark.pedantic(time.sleep, args=(0.002,), rounds=3, iterations=1)
"""
#: What importing the plugin, or a session without Bark tests, must not load (seconds of start-up in every
#: project), and barkbench's own heavy modules, which load when a Bark test is collected.
HEAVY = (
    "scipy",
    "matplotlib",
    "torch",
    "transformers",
    "numpy",
    "barkbench.pytest_plugin.session",
    "barkbench.measure.engine",
    "barkbench.results.report",
)
#: The header line that names the loaded plugins: barkbench's presence is the difference being tested.
PLUGINS_LINE = re.compile(r"^plugins: ")


def run_plain(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    out = pytester.path / "run.json"
    out.unlink(missing_ok=True)
    result = pytester.runpytest_subprocess(f"--benchmark-json={out}", "-p", "no:cacheprovider", *args, timeout=120)
    return result, json.loads(out.read_text())


def comparable_json(data: dict[str, Any]) -> dict[str, Any]:
    """The file less what differs between any two runs: the date, the CPU probe's readings (its keys stay), the
    timings (the stats' keys stay)."""
    data = json.loads(json.dumps(data))
    del data["datetime"]
    data["machine_info"]["cpu"] = sorted(data["machine_info"]["cpu"])
    for bench in data["benchmarks"]:
        bench["stats"] = sorted(bench["stats"])
    return data


def comparable_lines(result: pytest.RunResult) -> list[str]:
    """stdout and stderr, each line with its numbers (times, timings, their units and widths) made one token."""
    lines = []
    for line in result.outlines + result.errlines:
        if PLUGINS_LINE.match(line):
            continue
        line = re.sub(r"\(time in \w+\)|\(\w*ops/s\)", "(unit)", line)
        line = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", line)
        lines.append(re.sub(r"-+", "-", re.sub(r"=+", "=", re.sub(r"\s+", " ", line))).strip())
    return lines


def test_a_session_without_bark_tests_is_what_pytest_benchmark_alone_gives(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN_PROJECT)
    with_barkbench, saved = run_plain(pytester)
    alone, saved_alone = run_plain(pytester, "-p", "no:barkbench")
    assert with_barkbench.ret == alone.ret == pytest.ExitCode.OK, with_barkbench.stdout.str()
    # Not even an empty barkbench_sweep block or machine_info["barkbench"]: the same keys, the same values.
    assert comparable_json(saved) == comparable_json(saved_alone)
    assert comparable_lines(with_barkbench) == comparable_lines(alone)
    assert any("barkbench" in line for line in with_barkbench.outlines if PLUGINS_LINE.match(line)), "not loaded"


def test_a_session_without_bark_tests_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain=f"""
import sys


def test_nothing_heavy_is_loaded(benchmark):
    benchmark.pedantic(sum, args=([1, 2],), rounds=1)
    assert not [m for m in {HEAVY!r} if m in sys.modules]
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)


def test_importing_the_plugin_loads_only_what_declaring_the_options_needs() -> None:
    code = f"import sys\nimport barkbench.pytest_plugin.plugin\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_deselected_bark_test_leaves_the_session_alone(pytester: pytest.Pytester) -> None:
    # Bark tests in the project, none selected (-k): no lines, no sweep block, no machine info of barkbench's.
    pytester.makepyfile(test_plain=PLAIN_PROJECT)
    pytester.makepyfile(test_bark="def test_generate(benchmark, bark_bench, bark_variant):\n    raise AssertionError\n")
    with_barkbench, saved = run_plain(pytester, "-k", "not generate", "--bark-device", "cpu")
    alone, saved_alone = run_plain(pytester, "-k", "not generate", "-p", "no:barkbench")
    assert with_barkbench.ret == alone.ret == pytest.ExitCode.OK, with_barkbench.stdout.str()
    assert comparable_json(saved) == comparable_json(saved_alone)
    assert "barkbench" not in with_barkbench.stdout.str().replace("barkbench-", "")


def test_bark_tests_still_get_barkbench_s_additions(pytester: pytest.Pytester) -> None:
    # Bark tests that measure nothing (one times sum(), one skips): collected, they turn the additions on.
    pytester.makepyfile(
        test_bark="""
import pytest


def test_generate(benchmark, bark_bench, bark_variant):
    if bark_variant.dtype == "bf16":
        pytest.skip("not measured here")
    benchmark.pedantic(sum, args=([1, 2],), rounds=1)
"""
    )
    result, saved = run_plain(pytester, "--bark-device", "cpu", "--bark-variants", "baseline;bf16")
    result.assert_outcomes(passed=1, skipped=1)
    assert "barkbench" in saved["machine_info"]
    assert saved["barkbench_sweep"]["skipped"] == {"eager-bf16-bs1": "not measured here"}
