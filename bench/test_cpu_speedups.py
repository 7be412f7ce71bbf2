"""Opt-in CPU benchmark: what each CPU technique buys on the bark-small architecture, in ONE run.

    HF_HUB_OFFLINE=1 .venv/bin/pytest bench/test_cpu_speedups.py --bark-model random:bark-small \\
        --benchmark-json=cpu-speedups.json

Skipped unless ``--bark-model random:bark-small`` is given (the default ``pytest bench/`` stays fast). Each
variant of the ``cpu`` group (eager-fp32, sdpa-fp32, eager-bf16, sdpa-bf16, eager-fp16) and sdpa+int8 runs
through the harness — a fresh worker process, ``--bark-warmup-rounds`` then ``--bark-rounds`` rounds — at 64 semantic
tokens forced with the fixed-length mode; then the same generate call runs in a bare loop in a fresh ``python`` process,
without pytest-benchmark, trackers or IPC, to measure what the harness itself costs. The speed-ups, against
the goals the project set, are printed as a table at the end of the session and added to the JSON under
``barkbench_cpu_speedups``. Every ratio comes from this one run: the variants share the machine's state.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from barkbench.measure import overhead
from barkbench.pytest_plugin.plugin import bark_session
from barkbench.pytest_plugin.session import BarkBench
from barkbench.variants import GROUPS, PRESETS

# The engine times each round with the host clock around the round trip to the worker (which synchronizes its
# device before answering); this mark records those settings in the JSON's options.
pytestmark = pytest.mark.benchmark(timer=time.perf_counter, disable_gc=True)

MODEL = "random:bark-small"
SEMANTIC_TOKENS = 64
#: The ``cpu`` group (the blog's techniques that run on a CPU, plus bf16) and dynamic int8 with SDPA.
VARIANTS = {v.id: v for v in [*GROUPS["cpu"], PRESETS["sdpa+int8"]]}
BASELINE = "eager-fp32-bs1"
#: (label, faster variant, goal speed-up over the baseline or None, when the goal applies).
RATIOS = (
    ("sdpa vs eager (fp32)", "sdpa-fp32-bs1", 1.2, "always"),
    ("bf16 vs fp32 (eager)", "eager-bf16-bs1", 1.9, "bf16"),
    ("sdpa+bf16 vs eager fp32", "sdpa-bf16-bs1", 2.3, "bf16"),
    ("fp16 vs fp32 (eager)", "eager-fp16-bs1", None, "always"),
    ("sdpa+int8 vs eager fp32", "sdpa-fp32-int8-bs1", None, "always"),
)
#: The best combination: whichever measured variant is fastest, against this goal.
BEST_GOAL = 2.3
#: The harness may cost at most this much over a bare generate loop.
OVERHEAD_GOAL = 0.01
SKIP_REASON = (
    f"opt-in CPU benchmark (several minutes): run `pytest bench/test_cpu_speedups.py --bark-model {MODEL} "
    f"--benchmark-json=cpu-speedups.json`"
)


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: what makes bf16 matmuls fast on a CPU (without them bf16 is emulated)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


class SpeedupSummary:
    """Collects each variant's figures; prints the table at the end and adds it to the JSON."""

    def __init__(self) -> None:
        self.variants: dict[str, dict[str, Any]] = {}
        self.bare: list[float] = []

    def table(self) -> dict[str, Any] | None:
        base = self.variants.get(BASELINE)
        if base is None:
            return None
        rows = []
        for label, variant, goal, when in RATIOS:
            other = self.variants.get(variant)
            if other is None:
                continue
            speedup = base["mean_s"] / other["mean_s"]
            applies = when == "always" or cpu_has_bf16()
            rows.append(
                {
                    "comparison": label,
                    "variant": variant,
                    "speedup": speedup,
                    "goal": goal if applies else None,
                    "met": None if goal is None or not applies else speedup >= goal,
                }
            )
        best = min(self.variants, key=lambda vid: self.variants[vid]["mean_s"])
        best_speedup = base["mean_s"] / self.variants[best]["mean_s"]
        rows.append(
            {
                "comparison": f"best: {best} vs eager fp32",
                "variant": best,
                "speedup": best_speedup,
                "goal": BEST_GOAL,
                "met": best_speedup >= BEST_GOAL,
            }
        )
        overhead = None
        if self.bare:
            bare_mean, bare_min = statistics.fmean(self.bare), min(self.bare)
            overhead = {
                "bare_mean_s": bare_mean,
                "bare_min_s": bare_min,
                "harness_mean_s": base["mean_s"],
                "harness_min_s": base["min_s"],
                "overhead_mean": base["mean_s"] / bare_mean - 1,
                "overhead_min": base["min_s"] / bare_min - 1,
                "goal": OVERHEAD_GOAL,
            }
            overhead["met"] = overhead["overhead_min"] <= OVERHEAD_GOAL
        return {
            "model": MODEL,
            "semantic_tokens": SEMANTIC_TOKENS,
            "cpu": cpu_model(),
            "cpus": len(os.sched_getaffinity(0)),
            "bf16_instructions": cpu_has_bf16(),
            "baseline": BASELINE,
            "variants": self.variants,
            "ratios": rows,
            "harness_overhead": overhead,
        }

    def lines(self) -> list[str]:
        table = self.table()
        if table is None:
            return []
        out = [
            f"{MODEL}, {SEMANTIC_TOKENS} semantic tokens (fixed length), {table['cpu']}, "
            f"{table['cpus']} CPUs, bf16 instructions: {'yes' if table['bf16_instructions'] else 'no'}",
            "",
            f"{'variant':<20}{'mean s':>9}{'CV':>7}{'sem tok/s':>11}{'RTF':>7}{'peak MB':>9}",
        ]
        for vid, v in table["variants"].items():
            out.append(
                f"{vid:<20}{v['mean_s']:>9.2f}{v['latency_cv']:>7.1%}{v['semantic_tokens_per_s']:>11.1f}"
                f"{v['real_time_factor']:>7.1f}{v['peak_memory_bytes'] / 1e6:>9.0f}"
            )
        out += ["", f"{'comparison':<40}{'speed-up':>9}{'goal':>8}  result"]
        for row in table["ratios"]:
            goal = f">={row['goal']:.1f}x" if row["goal"] else "-"
            met = {True: "met", False: "MISSED", None: ""}[row["met"]]
            out.append(f"{row['comparison']:<40}{row['speedup']:>8.2f}x{goal:>8}  {met}")
        oh = table["harness_overhead"]
        if oh:
            out.append(
                f"{'harness vs bare generate loop':<40}{oh['overhead_min']:>+8.1%} {'<=1%':>8}  "
                f"{'met' if oh['met'] else 'MISSED'} (by min; by mean {oh['overhead_mean']:+.1%}; "
                f"bare {oh['bare_min_s']:.2f}/{oh['bare_mean_s']:.2f} s min/mean)"
            )
        return out

    # -- hooks, registered for this session by the fixture below ---------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = self.lines()
        if lines:
            terminalreporter.section("barkbench CPU speed-ups (one run)")
            for line in lines:
                terminalreporter.write_line(line)

    def pytest_benchmark_update_json(self, config: Any, benchmarks: Any, output_json: dict[str, Any]) -> None:
        table = self.table()
        if table is not None:
            output_json["barkbench_cpu_speedups"] = table


@pytest.fixture(scope="module")
def speedups(request: pytest.FixtureRequest) -> tuple[BarkBench, SpeedupSummary]:
    config = request.config
    session = bark_session(config)
    if session.config.model != MODEL:
        pytest.skip(SKIP_REASON)
    cfg = dataclasses.replace(
        session.config,
        semantic_max_new_tokens=SEMANTIC_TOKENS,
        device_type="cpu",
        fixed_length=True,
        variants=tuple(VARIANTS.values()),
    )
    summary = SpeedupSummary()
    config.pluginmanager.register(summary, "barkbench-cpu-speedups")
    return session.bench(cfg), summary


def test_bare_generate_loop(speedups):
    """The baseline's generate call in a plain loop in a fresh process: the reference for harness overhead.
    Runs right before the harnessed baseline so the two see the same machine state."""
    bench, summary = speedups
    cfg = bench.config
    # The same bare loop `barkbench overhead` runs: the worker's model load, inputs and generate kwargs.
    summary.bare = overhead.bare_loop_times(
        cfg.model,
        SEMANTIC_TOKENS,
        cfg.warmup_rounds,
        cfg.rounds,
        threads=None,
        fixed=True,
        env=dict(cfg.spec(VARIANTS[BASELINE]).env),
    )
    assert len(summary.bare) == cfg.rounds


@pytest.mark.parametrize("variant_id", list(VARIANTS))
def test_cpu_variant(benchmark, speedups, variant_id):
    bench, summary = speedups
    bench.run(benchmark, VARIANTS[variant_id])
    info = benchmark.extra_info
    if benchmark.enabled:
        stats = benchmark.stats.stats
        summary.variants[variant_id] = {
            "mean_s": stats.mean,
            "min_s": stats.min,
            "latency_cv": info["latency_cv"] or 0.0,
            "semantic_tokens_per_s": info["semantic_tokens_per_s"],
            "real_time_factor": info["real_time_factor"],
            "peak_memory_bytes": info["peak_memory_bytes"],
            "rounds": stats.rounds,
        }
    # Fixed length held: every round generated exactly the pinned semantic length.
    assert info["stages"]["semantic"]["tokens"] == SEMANTIC_TOKENS
