"""End to end: a benchmark sub-session prints the blog's tables, and marks its rows unstable under a CPU hog.

The hog is more busy-looping processes than the machine has CPUs, each bounded in time and killed when the test
ends, so the sub-session's rounds share the CPUs with them whatever else the machine is doing. No assert depends
on a duration: the rows are flagged by the CPU time the hog took, which the noise sampler counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from barkbench.measure.noise import cpu_count

FAST = ["--bark-semantic-tokens", "8", "-p", "no:cacheprovider", "--bark-warmup-rounds", "0"]
#: Upper bound on a hog's life should the test process die before killing it.
HOG_SECONDS = 300
HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@pytest.fixture()
def cpu_hog() -> Iterator[int]:
    count = cpu_count() + 1
    procs = [subprocess.Popen([sys.executable, "-c", HOG.format(seconds=HOG_SECONDS)]) for _ in range(count)]
    try:
        yield count
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@pytest.mark.one_stack("legacy")
def test_rows_are_flagged_unstable_under_a_cpu_hog(bench_pytester: pytest.Pytester, cpu_hog: int) -> None:
    out = bench_pytester.path / "run.json"
    result = bench_pytester.runpytest_subprocess(
        "bench",
        *FAST,
        "--bark-variants",
        "baseline",
        "--bark-rounds",
        "2",
        "--bark-threads",
        "1",
        f"--benchmark-json={out}",
        timeout=600,
    )
    result.assert_outcomes(passed=1)
    # The blog's absolute table, printed by the session itself, with the row marked and the reason given.
    result.stdout.fnmatch_lines(
        [
            "*barkbench results*",
            "*Variant*Latency*Peak memory (MB)*Throughput (samples/s)*",
            "*eager-fp32-bs1*unstable*",
        ]
    )
    result.stdout.fnmatch_lines(["*other processes used * of the machine's CPU time*"])
    data = json.loads(out.read_text())
    info = data["benchmarks"][0]["extra_info"]
    assert info["torch_threads"] == 1  # --bark-threads reached the worker and is recorded
    cpu = data["machine_info"]["barkbench"]["cpu"]
    assert cpu["cpu_count"] == cpu_count() and "load_average_at_start" in cpu
    assert len(data["benchmarks"][0]["stats"]["data"]) == 2
    noise = info["noise"]
    assert noise["unstable"] is True
    assert any("other processes used" in reason for reason in noise["reasons"])
    assert noise["other_cpu_share"] > 0.10
    assert info["cpu_usage"]["other_cpu_seconds"] > 0
