"""PNG plots for the report: latency vs peak memory (with its Pareto front) and throughput vs batch size.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas directly, never through
pyplot: no GUI backend is touched, no global figure state leaks between plots, and it works headless on CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from barkbench.results.load import BenchmarkResult

_SIZE_INCHES = (7.0, 4.8)
_DPI = 120


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both minimised), sorted by the first axis.

    A point is dominated when another is at least as good on both axes and strictly better on one; the
    remaining points are the trade-offs worth choosing between.
    """
    front = [
        i for i, (x, y) in enumerate(points) if not any(ox <= x and oy <= y and (ox < x or oy < y) for ox, oy in points)
    ]
    return sorted(front, key=lambda i: points[i])


def latency_vs_memory(results: Sequence[BenchmarkResult], title: str, path: Path) -> Path:
    """One labelled point per variant; the Pareto front (low latency and low memory) marked and joined."""
    usable: list[BenchmarkResult] = []
    points: list[tuple[float, float]] = []
    for r in results:
        if r.latency_mean is not None and r.peak_memory_mb is not None:
            usable.append(r)
            points.append((r.latency_mean, r.peak_memory_mb))
    front = set(pareto_front(points))
    fig = Figure(figsize=_SIZE_INCHES, dpi=_DPI)
    ax = fig.add_subplot()
    for i, (result, (x, y)) in enumerate(zip(usable, points, strict=True)):
        on_front = i in front
        ax.scatter(
            [x],
            [y],
            s=60 if on_front else 36,
            marker="o" if on_front else "x",
            color="tab:red" if on_front else "tab:blue",
            zorder=3,
        )
        ax.annotate(result.variant, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ordered = [points[i] for i in pareto_front(points)]
    if ordered:
        # Drawn as a staircase: between two front points, nothing better than the worse of them is reachable.
        ax.step(
            [p[0] for p in ordered],
            [p[1] for p in ordered],
            where="post",
            color="tab:red",
            linestyle="--",
            linewidth=1.2,
            label="Pareto front (lower is better on both)",
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("latency per generate call, mean (s)")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    return _save(fig, path)


def throughput_vs_batch(results: Sequence[BenchmarkResult], title: str, path: Path) -> Path:
    """One line per variant-without-batch-size (same attention, dtype, offload) across the batch sizes."""
    series: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        if r.throughput_samples_per_s is not None and not r.failed:
            series.setdefault(r.series, []).append((r.batch_size, r.throughput_samples_per_s))
    fig = Figure(figsize=_SIZE_INCHES, dpi=_DPI)
    ax = fig.add_subplot()
    for label, values in series.items():
        values.sort()
        ax.plot([b for b, _ in values], [t for _, t in values], marker="o", label=label)
    batch_sizes = sorted({b for values in series.values() for b, _ in values})
    if batch_sizes:
        # Batch sizes are few and discrete (1, 4, 8...): tick exactly those, not matplotlib's fractions.
        ax.set_xticks(batch_sizes)
        ax.legend(fontsize=8)
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (samples/s)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.1)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def step_breakdown(variant: str, levels: Mapping[str, tuple[float, float, float]], path: Path) -> Path:
    """One stacked bar per decode stage: the bandwidth floor, what the step's matmuls add above it (kernel floor),
    and what the measured step adds above that (everything around the matmuls), in ms."""
    fig = Figure(figsize=(5.0, 3.4), dpi=_DPI)
    ax = fig.add_subplot()
    names = list(levels)
    floor = [1000 * levels[n][0] for n in names]
    kernels = [1000 * max(0.0, levels[n][1] - levels[n][0]) for n in names]
    rest = [1000 * max(0.0, levels[n][2] - max(levels[n][1], levels[n][0])) for n in names]
    ax.bar(names, floor, color="tab:green", label="bandwidth floor")
    ax.bar(names, kernels, bottom=floor, color="tab:orange", label="matmul kernels above it")
    ax.bar(names, rest, bottom=[a + b for a, b in zip(floor, kernels, strict=True)], color="tab:red", label="rest")
    ax.set_ylabel("ms per decode step")
    ax.set_title(f"Where a decode step goes: {variant}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
