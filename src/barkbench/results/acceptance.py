"""``barkbench acceptance``: what must hold in any GPU run, checked on its JSON files, and a Markdown summary.

``./dev.sh gpu-acceptance`` runs a short fixed-length benchmark on a GPU and then this. The checks do not depend
on the GPU's speed, only on what the harness must get right there: memory read from the CUDA allocator, every row
on a CUDA device, CPU offload below the same run's no-offload peak, fp16 weights half of fp32, and offload rows
grouped with their baseline in the report (an offloaded BarkModel reports ``cuda:0``, the others ``cuda``).
Reads JSON only (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from barkbench.results.load import BenchmarkResult, Run
from barkbench.results.report import group_results

#: fp16/fp32 weights: parameters halve exactly; a few buffers keep their dtype (tiny: 0.515).
HALF_WEIGHTS = (0.49, 0.53)


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


def check_run(run: Run) -> list[Check]:
    name = run.path.name
    ok_rows = [r for r in run.benchmarks if not r.failed]
    checks = [
        Check(name, "rows measured", bool(ok_rows), f"{len(ok_rows)} ok, {len(run.benchmarks) - len(ok_rows)} not")
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
    uncompared, compared = [], 0
    for r in ok_rows:
        if r.offload == "none" or _peak(r) is None:
            continue
        # The twin: the same variant without offload; where the preset has none (the blog's sdpa+fp16+offload
        # comes without sdpa+fp16), the same dtype, batch size and model with another attention, whose weights
        # and activations take the same memory to within a few percent.
        same = [
            o
            for o in ok_rows
            if o.offload == "none"
            and _peak(o) is not None
            and (o.dtype, o.batch_size, o.model_source) == (r.dtype, r.batch_size, r.model_source)
        ]
        twin = next((o for o in same if o.attention == r.attention), same[0] if same else None)
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
    for r in ok_rows:
        if r.dtype != "fp16":
            continue
        fp32 = next(
            (o for o in ok_rows if o.dtype == "fp32" and o.model_source == r.model_source and _weights(o)), None
        )
        if fp32 is None or _weights(r) is None:
            continue
        ratio = (_weights(r) or 0) / (_weights(fp32) or 1)
        checks.append(
            Check(
                name,
                f"`{r.variant}` weights half of fp32",
                HALF_WEIGHTS[0] <= ratio <= HALF_WEIGHTS[1],
                f"{ratio:.3f} x `{fp32.variant}`",
            )
        )
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
