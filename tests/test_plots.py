"""The latency-memory plot's quality encoding, on crafted runs (no model)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.colors import to_rgba

from barkbench.results import plots
from barkbench.results.load import BenchmarkResult, load_run

CPU_RUN = Path(__file__).parent / "data" / "run-cpu.json"


def _with_top1(result: BenchmarkResult, top1: float) -> BenchmarkResult:
    stage = {"kl_mean": 0.01, "kl_p99": 0.1, "top1_agreement": top1, "first_diff_token": None, "tokens": 8}
    quality = {"stages": {"semantic": stage}, "audio_log_mel_db": 1.0, "floor": {"audio_log_mel_db": 2.0}}
    return dataclasses.replace(result, extra_info={**result.extra_info, "quality": quality})


def _bs1() -> list[BenchmarkResult]:
    rows = [r for r in load_run(CPU_RUN).benchmarks if r.batch_size == 1 and not r.failed]
    assert len(rows) >= 3 and all(r.latency_mean is not None and r.peak_memory_mb is not None for r in rows)
    return rows


def _point_colours(fig) -> list[np.ndarray]:
    FigureCanvasAgg(fig).draw()  # colour-mapped face colours are resolved at draw time
    ax = fig.axes[0]
    return [c.get_facecolors()[0] for c in ax.collections if len(c.get_offsets()) == 1]


def test_marker_colour_encodes_top1_agreement_with_a_colour_bar(tmp_path: Path) -> None:
    rows = _bs1()
    drifts = [1.0, 0.95, *([0.8] * (len(rows) - 2))]
    fig = plots.latency_vs_memory_figure([_with_top1(r, d) for r, d in zip(rows, drifts, strict=True)], "t")
    colours = _point_colours(fig)
    assert len(colours) == len(rows)
    # Different drift, different colour; the same drift, the same colour.
    assert not np.allclose(colours[0], colours[1]) and not np.allclose(colours[1], colours[2])
    assert len(rows) < 4 or np.allclose(colours[2], colours[3])
    assert len(fig.axes) == 2 and plots.QUALITY_LABEL in fig.axes[1].get_ylabel()
    assert any(isinstance(getattr(a, "_colorbar", None), Colorbar) for a in fig.axes)
    png = plots.latency_vs_memory(
        [_with_top1(r, d) for r, d in zip(rows, drifts, strict=True)], "t", tmp_path / "q.png"
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_quality_there_is_no_colour_bar() -> None:
    fig = plots.latency_vs_memory_figure(_bs1(), "t")
    assert len(fig.axes) == 1
    assert {tuple(np.round(c, 3)) for c in _point_colours(fig)} <= {
        tuple(np.round(to_rgba("tab:red"), 3)),
        tuple(np.round(to_rgba("tab:blue"), 3)),
    }


def test_the_front_accounts_for_quality() -> None:
    # Three axes minimised: the slowest, largest point stays on the front when it alone agrees fully.
    points = [(1.0, 1.0, 0.5), (2.0, 2.0, 0.0), (1.5, 3.0, 0.5)]
    assert plots.pareto_front(points) == [0, 1]
    assert plots.pareto_front([p[:2] for p in points]) == [0]
