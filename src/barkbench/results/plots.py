"""PNG plots for the report: latency vs peak memory (with its Pareto front, and the quality drift as marker colour
where measured) and throughput vs batch size.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas directly, never through
pyplot: no GUI backend is touched, no global figure state leaks between plots, and it works headless on CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from barkbench.results import quality as quality_mod
from barkbench.results.load import BenchmarkResult

_SIZE_INCHES = (7.0, 4.8)
_DPI = 120
#: Perceptually uniform, readable in greyscale; low agreement dark, full agreement yellow.
_CMAP = "viridis"


def pareto_front(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point beats on every axis (all minimised), sorted by the first axis.

    A point is dominated when another is at least as good on every axis and strictly better on one; the
    remaining points are the trade-offs worth choosing between.
    """
    front = [
        i
        for i, p in enumerate(points)
        if not any(all(o <= v for o, v in zip(other, p, strict=True)) and other != p for other in points)
    ]
    return sorted(front, key=lambda i: points[i])


#: The quality figure the latency-memory plot encodes: teacher-forced top-1 agreement of the semantic stage with
#: the fp32 eager reference (what is said; deterministic, unlike the sampled audio distance).
QUALITY_STAGE = "semantic"
QUALITY_LABEL = "semantic top-1 agreement with fp32 eager (1 = same)"


def _quality(result: BenchmarkResult) -> float | None:
    return quality_mod.figure(result.extra_info.get("quality"), "top1_agreement", QUALITY_STAGE)


def latency_vs_memory(results: Sequence[BenchmarkResult], title: str, path: Path) -> Path:
    """One labelled point per variant; the Pareto front (low latency and low memory) marked and joined. Where
    results carry quality figures (``--bark-quality``), the marker colour is the semantic top-1 agreement (with a
    colour bar) and the marked front is over latency, memory and that agreement together."""
    return _save(latency_vs_memory_figure(results, title), path)


def latency_vs_memory_figure(results: Sequence[BenchmarkResult], title: str) -> Figure:
    usable: list[BenchmarkResult] = []
    points: list[tuple[float, float]] = []
    for r in results:
        if r.latency_mean is not None and r.peak_memory_mb is not None:
            usable.append(r)
            points.append((r.latency_mean, r.peak_memory_mb))
    agreement = [_quality(r) for r in usable]
    with_quality = bool(usable) and all(a is not None for a in agreement)
    if with_quality:
        # Disagreement minimised beside latency and memory: a fast variant that says something else does not
        # push a slower, faithful one off the front.
        front = set(pareto_front([(x, y, 1.0 - float(a or 0.0)) for (x, y), a in zip(points, agreement, strict=True)]))
    else:
        front = set(pareto_front(points))
    fig = Figure(figsize=_SIZE_INCHES, dpi=_DPI)
    ax = fig.add_subplot()
    shown = [a for a in agreement if a is not None]
    norm = Normalize(vmin=min([*shown, 0.9]), vmax=1.0) if shown else None
    for i, (result, (x, y)) in enumerate(zip(usable, points, strict=True)):
        on_front = i in front
        style: dict[str, Any] = {"s": 70 if on_front else 40, "marker": "o" if on_front else "X", "zorder": 3}
        value = agreement[i]
        if norm is not None and value is not None:
            ax.scatter(
                [x], [y], c=[value], cmap=_CMAP, norm=norm, edgecolors="tab:red" if on_front else "none",
                linewidths=1.5, **style,
            )  # fmt: skip
        elif norm is not None:
            ax.scatter([x], [y], color="lightgrey", edgecolors="tab:red" if on_front else "none", **style)
        else:
            ax.scatter([x], [y], color="tab:red" if on_front else "tab:blue", **style)
        ax.annotate(result.variant, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ordered = [points[i] for i in pareto_front(points)]
    if ordered:
        # Drawn as a staircase: between two front points, nothing better than the worse of them is reachable.
        ax.step(
            [p[0] for p in ordered],
            [p[1] for p in ordered],
            where="post",
            color="grey" if with_quality else "tab:red",
            linestyle="--",
            linewidth=1.2,
            label="latency-memory front (quality ignored)"
            if with_quality
            else "Pareto front (lower is better on both)",
        )
        if with_quality:
            ax.scatter([], [], marker="o", color="white", edgecolors="tab:red", label="Pareto front with quality")
        ax.legend(loc="best", fontsize=8)
    if norm is not None:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=_CMAP), ax=ax)
        bar.set_label(QUALITY_LABEL + ("" if with_quality else "; grey: not measured"), fontsize=8)
    ax.set_xlabel("latency per generate call, mean (s)")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    return fig


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
