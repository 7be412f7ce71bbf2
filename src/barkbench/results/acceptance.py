"""``barkbench acceptance``: what must hold in any GPU run, checked on its JSON files, and a Markdown summary.

``./dev.sh gpu-acceptance`` runs a short fixed-length benchmark on a GPU and then this. The checks do not depend
on the GPU's speed, only on what the harness must get right there (issue 24): every row measured (a failed or
interrupted row fails the run), memory read from the CUDA allocator, every row on a CUDA device, half precision
half of fp32's measured model memory, offload rows grouped with their baseline in the report (an offloaded BarkModel
reports ``cuda:0``, the others ``cuda``), and offload that really offloads: the placement check ran and passed in the
worker, and the peak lies between what one sub-model alone holds and what the no-offload twin holds less the weights
that must have left the device. Reads JSON only (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from barkbench.bark import HUB_ARCHITECTURES
from barkbench.results.load import BenchmarkResult, Run
from barkbench.results.report import group_results

#: fp16 or bf16 against fp32, measured model memory (the CUDA allocator after loading): parameters halve exactly,
#: some buffers keep their dtype. Measured: tiny 0.509 (H200, eager-fp16 74.1 MB vs eager-fp32 145.5 MB). A dtype
#: path that stays fp32 measures 1.0; one that keeps the fp32 copy alive beside the half one, 1.5.
HALF_MODEL_MEMORY = (0.49, 0.53)

#: The largest sub-model and its share of the whole model's parameters and buffers (numel x element size, fp32),
#: per architecture: counted on BarkModel(BarkConfig(...)) built on the meta device (transformers 5.25; tiny
#: 143.4 MB, bark-small 1,676.5 MB, bark 4,486.4 MB in all). With offload only one sub-model is on the device at
#: a time, so an offloaded peak holds at least that one (bark-small: the semantic model, 784.5 MB in fp32) and
#: lacks at least the rest. The half-offloaded H200 row (semantic layers left on the CPU) peaked at 536.2 MB.
LARGEST_SUB_MODEL: dict[str, tuple[str, float]] = {
    "tiny": ("codec_model", 0.649),
    "bark-small": ("semantic", 0.468),
    "bark": ("semantic", 0.403),
}
#: The lower bound: the largest sub-model's share of the twin's model memory, less 5 % (allocator rounding).
OFFLOAD_FLOOR = 0.95
#: The upper bound: the twin's peak less at least half of the weights that are never on the device with the
#: largest sub-model (the other half allows for activations that peak in another stage than the twin's).
OFFLOAD_MIN_SAVED = 0.5
#: What the worker records when the placement check (measure/optimize/offload.py) ran and passed.
PLACEMENT_CHECKED = "checked"


@dataclass(frozen=True)
class Check:
    file: str
    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"| {'ok' if self.ok else '**FAIL**'} | `{self.file}` | {self.what} | {self.detail} |"


def _peak(r: BenchmarkResult) -> int | None:
    value = r.extra_info.get("peak_memory_bytes")
    return int(value) if isinstance(value, (int, float)) else None


def _weights(r: BenchmarkResult) -> int | None:
    value = r.extra_info.get("weights_bytes")
    return int(value) if isinstance(value, (int, float)) and value else None


def _model_memory(r: BenchmarkResult) -> int | None:
    value = r.extra_info.get("model_memory_bytes")
    return int(value) if isinstance(value, (int, float)) and value else None


def _plain(r: BenchmarkResult) -> bool:
    """No offload, int8, compile or static cache: the whole model in its dtype on the device, nothing else held."""
    extra = r.extra_info
    return (
        r.offload == "none"
        and str(extra.get("quantization") or "none") == "none"
        and not extra.get("compile")
        and str(extra.get("kv_cache") or "dynamic") == "dynamic"
    )


def check_run(run: Run) -> list[Check]:
    name = run.path.name
    ok_rows = [r for r in run.benchmarks if not r.failed]
    not_ok = [r for r in run.benchmarks if r.failed]
    checks = [Check(name, "rows measured", bool(ok_rows) and not not_ok, f"{len(ok_rows)} ok, {len(not_ok)} not")]
    # A failed or interrupted row fails the run: what it would have shown is unknown (the H200 run's interrupted
    # sdpa-fp16-bs8 row passed unnoticed before).
    checks += [
        Check(name, f"`{r.variant}` measured", False, f"{r.status}: {r.error or 'no reason recorded'}") for r in not_ok
    ]
    for r in run.benchmarks:
        if r.device != "cuda":
            checks.append(Check(name, f"`{r.variant}` device kind", False, f"recorded {r.extra_info.get('device')!r}"))
    methods = {str(r.extra_info.get("memory_method")) for r in ok_rows}
    checks.append(
        Check(
            name,
            "memory from the CUDA allocator",
            bool(methods) and all(m.startswith("cuda_") for m in methods),
            ", ".join(sorted(methods)),
        )
    )
    checks += _offload_checks(name, ok_rows)
    checks += _half_precision_checks(name, ok_rows)
    for group in group_results(run.benchmarks):
        offloaded = [r for r in group.results if r.offload != "none"]
        if offloaded:
            together = any(r.offload == "none" for r in group.results)
            checks.append(
                Check(
                    name,
                    f"report groups offload with its baseline ({group.model_source}, bs{group.batch_size})",
                    together,
                    f"{len(group.results)} rows in the group, {len(offloaded)} with offload",
                )
            )
    return checks


def _offload_checks(name: str, ok_rows: Sequence[BenchmarkResult]) -> list[Check]:
    """Per offload row: the placement check ran, the peak is below its no-offload twin's, and within the bounds a
    real offload lies in (``_bounds_check``); a run whose offload rows have no twin at all fails."""
    checks: list[Check] = []
    uncompared, compared = [], 0
    for r in ok_rows:
        if r.offload == "none":
            continue
        checks.append(_placement_check(name, r))
        if _peak(r) is None:
            continue
        twin = _twin(r, ok_rows)
        if twin is None:
            uncompared.append(r.variant)
            continue
        low, high = _peak(r) or 0, _peak(twin) or 0
        compared += 1
        checks.append(
            Check(
                name,
                f"`{r.variant}` peak below `{twin.variant}`",
                low < high,
                f"{low / 1e6:,.1f} vs {high / 1e6:,.1f} MB",
            )
        )
        checks.append(_bounds_check(name, r, twin))
    if uncompared:
        checks.append(
            Check(
                name,
                "offload compared with a no-offload peak",
                compared > 0,
                f"no no-offload row of the same dtype and batch size for {', '.join(f'`{v}`' for v in uncompared)}"
                + (f"; {compared} other(s) compared" if compared else ""),
            )
        )
    return checks


def _twin(r: BenchmarkResult, ok_rows: Sequence[BenchmarkResult]) -> BenchmarkResult | None:
    """The same variant without offload; where the preset has none (the blog's sdpa+fp16+offload comes without
    sdpa+fp16), the same dtype, batch size and model with another attention, whose weights and activations take
    the same memory to within a few percent. Never an int8, compiled or static-cache row (other memory)."""
    same = [
        o
        for o in ok_rows
        if _plain(o)
        and _peak(o) is not None
        and (o.dtype, o.batch_size, o.model_source) == (r.dtype, r.batch_size, r.model_source)
    ]
    return next((o for o in same if o.attention == r.attention), same[0] if same else None)


def _placement_check(name: str, r: BenchmarkResult) -> Check:
    value = r.extra_info.get("offload_placement")
    detail = (
        f"recorded {value!r}"
        if value is not None
        else "not recorded: a run from before the placement check (issue 24), whose offload may have left the "
        "semantic layers on the CPU"
    )
    return Check(name, f"`{r.variant}` offload placement checked", value == PLACEMENT_CHECKED, detail)


def _bounds_check(name: str, r: BenchmarkResult, twin: BenchmarkResult) -> Check:
    """A real offload's peak holds the largest sub-model and lacks at least half of the rest; a half-offloaded model
    (part of a sub-model left on the CPU) peaks below the first bound, one that offloads nothing above the second."""
    what = f"`{r.variant}` peak within offload's bounds"
    model = _model_memory(twin)
    if model is None:
        return Check(name, what, False, f"`{twin.variant}` recorded no model memory to bound it with")
    sub_model, low_share, high_share = _largest_sub_model(r.model_source)
    peak, twin_peak = _peak(r) or 0, _peak(twin) or 0
    low = OFFLOAD_FLOOR * low_share * model
    high = twin_peak - OFFLOAD_MIN_SAVED * (1 - high_share) * model
    share = f"{low_share:.3f}" if low_share == high_share else f"{low_share:.3f}-{high_share:.3f}"
    detail = (
        f"{peak / 1e6:,.1f} MB in {low / 1e6:,.1f}-{high / 1e6:,.1f} MB ({sub_model} {share} of "
        f"`{twin.variant}`'s {model / 1e6:,.1f} MB model memory)"
    )
    if peak < low:
        detail += "; below the largest sub-model alone: part of it never reached the device"
    elif peak > high:
        detail += "; too close to the no-offload peak: the sub-models did not leave the device"
    return Check(name, what, low <= peak <= high, detail)


def _largest_sub_model(source: str) -> tuple[str, float, float]:
    """(name, share for the lower bound, share for the upper bound); an unknown architecture gets the loosest."""
    arch = source.removeprefix("random:") if source.startswith("random:") else HUB_ARCHITECTURES.get(source, source)
    if arch in LARGEST_SUB_MODEL:
        sub_model, share = LARGEST_SUB_MODEL[arch]
        return sub_model, share, share
    shares = [share for _, share in LARGEST_SUB_MODEL.values()]
    return "largest sub-model (architecture unknown)", min(shares), max(shares)


def _half_precision_checks(name: str, ok_rows: Sequence[BenchmarkResult]) -> list[Check]:
    """fp16 and bf16 rows against fp32, by measured model memory (numel x element size halves by construction and
    could not catch a dtype path that stays fp32 on the device)."""
    checks, uncompared = [], []
    for r in ok_rows:
        if r.dtype not in ("fp16", "bf16") or not _plain(r) or _model_memory(r) is None:
            continue
        fp32 = next(
            (
                o
                for o in ok_rows
                if o.dtype == "fp32" and _plain(o) and o.model_source == r.model_source and _model_memory(o)
            ),
            None,
        )
        if fp32 is None:
            uncompared.append(r.variant)
            continue
        half, full = _model_memory(r) or 0, _model_memory(fp32) or 1
        checks.append(
            Check(
                name,
                f"`{r.variant}` model memory half of fp32",
                HALF_MODEL_MEMORY[0] <= half / full <= HALF_MODEL_MEMORY[1],
                f"{half / full:.3f} x `{fp32.variant}` ({half / 1e6:,.1f} vs {full / 1e6:,.1f} MB)",
            )
        )
    if uncompared:
        checks.append(
            Check(
                name,
                "half precision compared with fp32",
                False,
                f"no fp32 row without offload, int8 or compile for {', '.join(f'`{v}`' for v in uncompared)}",
            )
        )
    return checks


def summary(runs: Sequence[Run], checks: Sequence[Check]) -> str:
    lines = ["# barkbench GPU acceptance", ""]
    for run in runs:
        info = run.machine_info.get("barkbench", {}) if isinstance(run.machine_info, dict) else {}
        lines.append(
            f"## `{run.path.name}`: {info.get('gpu_name') or 'unknown GPU'}, CUDA {info.get('cuda')}, "
            f"torch {info.get('torch')}, transformers {info.get('transformers')}"
        )
        lines += ["", "| variant | latency mean s | peak memory MB | weights MB | samples/s |", "|---|---|---|---|---|"]
        for r in run.benchmarks:
            if r.failed:
                lines.append(f"| `{r.variant}` | {r.status}: {r.error} | | | |")
                continue
            mean = f"{r.latency.mean:.3f}" if r.latency else "-"
            peak, weights = _peak(r), _weights(r)
            throughput = r.extra_info.get("throughput_samples_per_s")
            lines.append(
                f"| `{r.variant}` | {mean} | {peak / 1e6:,.1f} | {(weights or 0) / 1e6:,.1f} | {throughput:.3g} |"
                if peak is not None and isinstance(throughput, (int, float))
                else f"| `{r.variant}` | {mean} | - | - | - |"
            )
        lines.append("")
    failed = [c for c in checks if not c.ok]
    lines += ["## Checks", "", "| verdict | file | check | figures |", "|---|---|---|---|"]
    lines += [c.line() for c in checks]
    lines += ["", f"{len(checks) - len(failed)} of {len(checks)} checks passed."]
    return "\n".join(lines) + "\n"
