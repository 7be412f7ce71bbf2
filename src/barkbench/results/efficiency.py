"""How far each stage is from the machine's limit: the share of the measured machine limits
(``barkbench.measure.limits``) a stage reaches, from the bytes and FLOPs its shapes imply (``barkbench.bark``).

Plain arithmetic on plain values (no torch), so reports can recompute it from stored results.

- **semantic, coarse** (autoregressive, one token per step, memory-bound): every step reads the sub-model's
  weights as stored (an int8-quantized ``nn.Linear`` counts one byte per weight) and the KV cache up to the step's
  context. ``bark.decode_bytes`` sums that over the stage's forward passes (the prefill included: it reads the
  weights once too), from the forward count and the summed key positions the stage tracker records.
- **fine** (non-causal, compute-bound): ``bark.fine_flops`` counts the multiply-adds of its forwards (every window
  of ``bark.FINE_WINDOW`` frames, once per predicted codebook) from the shapes: projections, attention, output head.
- **codec**: time and its share of the call only.

The three-level breakdown of a decode step: the **bandwidth floor** (bytes per step / the machine's bandwidth),
the **kernel floor** (the step's matmuls alone, measured in a loop) and the **measured step**.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from barkbench.bark import DECODE_STAGES, SubModelShape, decode_bytes, decode_linear_bytes, fine_flops, fine_frames

# -- efficiency of a measured run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StageEfficiency:
    """One stage of one variant against the machine's limits (plain numbers for ``extra_info["efficiency"]``)."""

    stage: str
    seconds: float
    #: Decode stages: bytes read and bytes/s achieved; fine: FLOPs and FLOP/s achieved.
    work: float | None = None
    achieved_per_s: float | None = None
    #: achieved / the machine's limit (bandwidth for decode stages, matmul rate for fine), as a fraction.
    fraction_of_limit: float | None = None
    #: Decode stages: the three levels of one step, in seconds.
    bandwidth_floor_s: float | None = None
    kernel_floor_s: float | None = None
    measured_step_s: float | None = None
    #: Share of the call's latency spent in this stage.
    time_share: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "seconds": self.seconds,
            "work": self.work,
            "achieved_per_s": self.achieved_per_s,
            "fraction_of_limit": self.fraction_of_limit,
            "bandwidth_floor_s": self.bandwidth_floor_s,
            "kernel_floor_s": self.kernel_floor_s,
            "measured_step_s": self.measured_step_s,
            "time_share": self.time_share,
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def stage_efficiencies(
    stages: Mapping[str, Mapping[str, Any]],
    shapes: Mapping[str, SubModelShape],
    limits: Mapping[str, Any],
    element_bytes: int,
    linear_weight_bytes: float,
    batch: int,
    latency_s: float,
) -> dict[str, StageEfficiency]:
    """Per-stage efficiency from the mean per-stage figures (``summarize_stages``'s ``stages``: seconds, tokens,
    and for decode stages ``forwards`` and ``key_positions`` per call), the sub-model shapes and the machine's
    limits (``limits.probe``'s dict: ``bandwidth_bytes_per_s``, ``matmul_flops_per_s``,
    ``kernel_step_seconds`` per decode stage)."""
    out: dict[str, StageEfficiency] = {}
    bandwidth = _float(limits.get("bandwidth_bytes_per_s"))
    matmul = _float(limits.get("matmul_flops_per_s"))
    kernel_steps = limits.get("kernel_step_seconds") or {}
    for name, figures in stages.items():
        seconds = float(figures.get("seconds") or 0.0)
        share = _ratio(seconds, latency_s)
        if name in DECODE_STAGES and name in shapes and figures.get("forwards"):
            forwards = float(figures["forwards"])
            work = decode_bytes(
                shapes[name], element_bytes, linear_weight_bytes, int(forwards), int(figures.get("key_positions", 0))
            )
            achieved = _ratio(work, seconds)
            step_bytes = work / forwards
            # The probe times the step's Linear matmuls; what else the step reads (the KV cache, LayerNorm and
            # embedding rows) is counted at the bandwidth. The probe's bandwidth is at least its GEMV rate, so
            # this kernel floor is never below the bandwidth floor.
            # Only the probe's kernels for the same weights count: fp32 kernels say nothing of int8 ones. The probe
            # records the bytes per Linear weight its kernels read; entries older than that key timed the
            # activation dtype's own kernels.
            probed = _float(limits.get("linear_weight_bytes")) or element_bytes
            gemv = _float(kernel_steps.get(name)) if linear_weight_bytes == probed else None
            rest = step_bytes - decode_linear_bytes(shapes[name], linear_weight_bytes)
            kernel = gemv + rest / bandwidth if gemv is not None and bandwidth else None
            out[name] = StageEfficiency(
                name,
                seconds,
                work,
                achieved,
                _ratio(achieved, bandwidth),
                bandwidth_floor_s=_ratio(step_bytes, bandwidth),
                kernel_floor_s=kernel,
                measured_step_s=seconds / forwards,
                time_share=share,
            )
        elif name == "fine" and "fine" in shapes and figures.get("tokens"):
            frames = fine_frames(float(figures["tokens"]), batch)
            work = float(fine_flops(shapes["fine"], batch, frames))
            achieved = _ratio(work, seconds)
            out[name] = StageEfficiency(name, seconds, work, achieved, _ratio(achieved, matmul), time_share=share)
        else:
            out[name] = StageEfficiency(name, seconds, time_share=share)
    return out


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


#: A stage beyond this fraction of its measured limit is flagged: within it, cache-resident weights and timing
#: noise can carry a stage somewhat past a limit measured over DRAM-sized buffers.
ABOVE_LIMIT = 1.5
#: What marks a figure beyond ``ABOVE_LIMIT``, in the limit tables and in the session summary's flag column.
ABOVE_LIMIT_MARK = "⚠ above the probe's limit"


def percent(fraction: Any) -> str:
    """A fraction as "% of limit" text ("" when absent)."""
    value = _float(fraction)
    if value is None:
        return ""
    # Two significant digits below 10 %: a stage at 0.3 % of the limit is not "0 %".
    text = f"{100 * value:.2g} %" if abs(value) < 0.1 else f"{100 * value:.0f} %"
    if value > ABOVE_LIMIT:
        # Far above what the probe measured: the probe's kernel is not the one the stage ran (seen: bf16 on a
        # CPU without bf16 instructions, where the probe's GEMM is emulated 39x slower than the fine stage's
        # Linear layers), so the figure is flagged, not shown as an efficiency.
        text += f" {ABOVE_LIMIT_MARK}"
    return text


def extra_info(
    stages: Mapping[str, Mapping[str, Any]] | None,
    latency_s: float | None,
    limits: Mapping[str, Any],
    inputs: Mapping[str, Any],
    batch: int,
) -> dict[str, Any]:
    """``extra_info`` entries of one variant: ``efficiency`` (per stage, ``StageEfficiency.as_dict``) and
    ``limits`` (the probe's figures it was held to, and when they were measured). Empty without stage figures."""
    if not stages or not limits or not latency_s:
        return {}
    shapes = {stage: SubModelShape(**values) for stage, values in (inputs.get("shapes") or {}).items()}
    per_stage = stage_efficiencies(
        stages,
        shapes,
        limits,
        int(inputs["element_bytes"]),
        float(inputs["linear_weight_bytes"]),
        batch,
        latency_s,
    )
    kept = (
        "bandwidth_bytes_per_s",
        "copy_bytes_per_s",
        "gemv_bytes_per_s",
        "matmul_flops_per_s",
        "matmul_shape",
        "linear_weights",
        "linear_weight_bytes",
    )
    return {
        "efficiency": {name: figures.as_dict() for name, figures in per_stage.items()},
        "limits": {
            **{key: limits.get(key) for key in kept},
            "kernel_step_seconds": dict(limits.get("kernel_step_seconds") or {}),
            "dtype": limits.get("dtype"),
            "measured_at": limits.get("measured_at"),
            "cached": limits.get("cached"),
        },
    }


# -- rendering --------------------------------------------------------------------------------------------------

LIMIT_CAPTION = (
    "How close to the limit (the machine's limits measured by barkbench's probe, cached per machine and "
    "libraries): semantic and coarse = bytes a step must read (weights as stored + KV cache) × steps/s, as % "
    "of the measured bandwidth; fine = FLOPs from the shapes / time, as % of the measured matmul rate in the "
    "dtype (int8/fp16 weights: of their quantized Linear kernels); codec = its share of the call. One decode "
    "step in ms: bandwidth floor / kernel floor (the step's matmuls alone, in a loop, with the variant's own "
    "kernels) / measured — measured far above the kernel floor means the time goes to the Python and small ops "
    "around the matmuls."
)


def _efficiency_of(extra: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]] | None:
    value = extra.get("efficiency")
    return value if isinstance(value, Mapping) and value else None


def _ms(value: Any) -> str:
    seconds = _float(value)
    if seconds is None:
        return "—"
    return f"{1000 * seconds:.3g}"


def limit_rows(results: Any) -> list[tuple[str, Mapping[str, Mapping[str, Any]]]]:
    """(variant, efficiency) of the results (``BenchmarkResult``-like: ``variant``, ``extra_info``) that have it."""
    rows = []
    for r in results:
        found = _efficiency_of(getattr(r, "extra_info", {}) or {})
        if found is not None:
            rows.append((str(r.variant), found))
    return rows


#: The columns of ``_limit_cells``: each stage's "% of limit" and the decode steps' three levels.
LIMIT_HEADERS = (
    "semantic % of bandwidth",
    "coarse % of bandwidth",
    "fine % of matmul",
    "codec % of time",
    "semantic step ms (floor / kernels / measured)",
    "coarse step ms (floor / kernels / measured)",
)


def limit_table(results: Any) -> str | None:
    """The "% of limit" table and the three levels of a decode step, or None when no row has efficiency."""
    from barkbench.results import markdown as md

    rows = limit_rows(results)
    if not rows:
        return None
    headers = ("Variant", *LIMIT_HEADERS)
    cells = [[f"`{variant}`", *_limit_cells(figures)] for variant, figures in rows]
    return "\n".join([LIMIT_CAPTION, "", md.table(headers, cells)])


def _limit_cells(figures: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The "% of limit" cells of one variant: semantic, coarse, fine, codec, then each decode step's levels."""

    def get(stage: str, key: str) -> Any:
        return (figures.get(stage) or {}).get(key)

    def levels(stage: str) -> str:
        return " / ".join(_ms(get(stage, k)) for k in ("bandwidth_floor_s", "kernel_floor_s", "measured_step_s"))

    return [
        percent(get("semantic", "fraction_of_limit")) or "—",
        percent(get("coarse", "fraction_of_limit")) or "—",
        percent(get("fine", "fraction_of_limit")) or "—",
        percent(get("codec", "time_share")) or "—",
        levels("semantic"),
        levels("coarse"),
    ]


def bound_by(levels: tuple[float, float, float] | None) -> str:
    """Where most of a decode step goes, from its three levels: "bandwidth" (the bytes at the machine's
    bandwidth), "kernels" (the matmul kernels' time beyond that) or "around" (the measured step beyond the
    kernels: Python, small ops, generate's per-token work); "—" without the three levels."""
    if levels is None:
        return "—"
    floor, kernel, measured = levels
    parts = {"bandwidth": floor, "kernels": max(0.0, kernel - floor), "around": max(0.0, measured - kernel)}
    return max(parts, key=lambda name: parts[name])


RANKING_CAPTION = (
    "Ranked by mean latency (fastest first); speed-up = the baseline's latency / the row's (eager fp32 without "
    'offload, int8 or compile; — when it did not run). "Bound by": the largest of a decode step\'s three parts — '
    "bandwidth (its bytes at the measured bandwidth), kernels (the matmul kernels' time beyond that), around (the "
    "measured step beyond the kernels: Python, small ops, generate's per-token work)."
)


def limit_ranking(results: Any) -> str | None:
    """The "How close to the limit" table (docs/measurement.md): every variant with efficiency figures, ranked by
    latency, with its speed-up, stage efficiencies, decode-step levels and what bounds each decode stage; then the
    limits they were held to. ``results``: ``BenchmarkResult``-like (``variant``, ``extra_info``, ``latency_mean``,
    ``is_reference_baseline``). None when no row has efficiency figures."""
    from barkbench.results import markdown as md

    rows = [r for r in results if _efficiency_of(getattr(r, "extra_info", {}) or {}) is not None]
    if not rows:
        return None
    baseline = next((r for r in rows if getattr(r, "is_reference_baseline", False)), None)
    base_latency = _float(getattr(baseline, "latency_mean", None))

    def latency(r: Any) -> float:
        value = _float(getattr(r, "latency_mean", None))
        return math.inf if value is None else value

    headers = ("Rank", "Variant", "Latency s", "Speed-up", *LIMIT_HEADERS, "semantic bound by", "coarse bound by")
    cells = []
    for rank, r in enumerate(sorted(rows, key=latency), start=1):
        figures = _efficiency_of(r.extra_info) or {}
        mean = _float(getattr(r, "latency_mean", None))
        speedup = f"{base_latency / mean:.2f}×" if base_latency and mean else "—"
        cells.append(
            [
                str(rank),
                f"`{r.variant}`",
                md.significant(mean),
                speedup,
                *_limit_cells(figures),
                bound_by(step_levels(figures, "semantic")),
                bound_by(step_levels(figures, "coarse")),
            ]
        )
    numeric = range(2, 10)
    return "\n".join([LIMIT_CAPTION, RANKING_CAPTION, "", md.table(headers, cells, numeric), "", *_limits_used(rows)])


def _limits_used(rows: Any) -> list[str]:
    """One line per distinct set of limits the rows were held to (e.g. fp32, bf16 and int8 kernels)."""
    seen: dict[tuple[Any, ...], list[str]] = {}
    for r in rows:
        used = r.extra_info.get("limits") or {}
        key = tuple(
            used.get(k)
            for k in ("dtype", "linear_weights", "bandwidth_bytes_per_s", "matmul_flops_per_s", "measured_at")
        )
        seen.setdefault(key, []).append(str(r.variant))
    lines = []
    for (dtype, weights, bandwidth, matmul, when), variants in seen.items():
        kind = f"{dtype}" + (f" with {weights} Linear weights" if weights and weights != dtype else "")
        band = f"{bandwidth / 1e9:.3g} GB/s" if _float(bandwidth) else "—"
        rate = f"{matmul / 1e9:.3g} GFLOP/s" if _float(matmul) else "—"
        names = ", ".join(f"`{v}`" for v in variants)
        lines.append(
            f"- Limits for {kind} (measured {when or 'at an unknown time'}): bandwidth {band}, matmul {rate} — {names}"
        )
    return lines


def step_levels(figures: Mapping[str, Mapping[str, Any]], stage: str) -> tuple[float, float, float] | None:
    """(bandwidth floor, kernel floor, measured step) of a decode stage in seconds; None when one is missing."""
    values = [_float((figures.get(stage) or {}).get(k)) for k in ("bandwidth_floor_s", "kernel_floor_s")]
    measured = _float((figures.get(stage) or {}).get("measured_step_s"))
    if values[0] is None or values[1] is None or measured is None:
        return None
    return values[0], values[1], measured
