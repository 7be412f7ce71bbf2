"""``barkbench doctor``: what this machine can measure, before a long run.

The torch build and its accelerator (read by ``device.probe()``: a child process, as in a benchmark session, so
this command creates no CUDA context of its own), the optional pieces (flash-attn, triton, a C compiler and
Python's headers, accelerate, optimum, soundfile), the installed stack, the CPU's half-precision support and
threads; then every preset variant with "runs" or the skip reason the benchmark would give: the same function,
``optimize.unsupported_reason``, not a copy; then the machine's limits the benchmarks hold each stage against
(``measure.limits``): read from the probe's cache file, so the command stays fast. ``--limits [VARIANTS]`` measures
them now for those variants' dtypes and weights (default: the baseline) on the shapes of ``--limits-model``,
replacing the cached entries, as a benchmark's worker would on its first run. Always exits 0 (unless the
``--limits`` arguments are wrong): it reports, it does not judge.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sysconfig
from typing import Any


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LimitsArgumentError(ValueError):
    """A ``--limits``/``--limits-model`` value doctor cannot measure; the message says what to give instead."""


def architecture_shapes(model: str) -> dict[str, Any]:
    from barkbench.bark import ARCHITECTURES
    from barkbench.bark import architecture_shapes as shapes_of

    arch = "tiny" if model == "tiny" else model.removeprefix("random:")
    if arch not in ARCHITECTURES:
        names = ", ".join("tiny" if a == "tiny" else f"random:{a}" for a in ARCHITECTURES)
        raise LimitsArgumentError(
            f"--limits-model {model!r} is not an architecture doctor knows; use one of {names} (a checkpoint has "
            "its architecture's shapes)"
        )
    return shapes_of(arch)


def measure_limits(variants_spec: str, model: str, device_type: str) -> list[dict[str, Any]]:
    """Measure (again) the limits of each variant's dtype and quantized weights; one dict per distinct probe:
    the entry, or ``skip_reason`` where the variant cannot run here (the benchmark's own reason)."""
    from barkbench.measure import limits, optimize
    from barkbench.variants import VariantError, parse_variants

    try:
        variants = parse_variants(variants_spec)
    except VariantError as exc:
        raise LimitsArgumentError(f"--limits: {exc}") from None
    shapes = architecture_shapes(model)
    done: dict[tuple[str, str | None, int] | str, dict[str, Any]] = {}
    for variant in variants:
        reason = optimize.unsupported_reason(variant, device_type)
        if reason:
            done[variant.id] = {"variant": variant.id, "skip_reason": reason}
            continue
        weights = None if variant.quantization == "none" else variant.quantization
        key = (variant.dtype, weights, variant.batch_size)
        if key in done:
            continue
        entry = limits.probe(device_type, variant.dtype, shapes, variant.batch_size, remeasure=True, weights=weights)
        done[key] = {"variant": variant.id, **entry}
    return list(done.values())


def _architecture(shapes: Any) -> str | None:
    """The architecture name of a cached entry's shapes (``bark.ARCHITECTURES``), else "L layers × H"."""
    from barkbench.bark import ARCHITECTURES

    semantic = shapes.get("semantic") if isinstance(shapes, dict) else None
    if not isinstance(semantic, dict):
        return None
    found = (semantic.get("layers"), semantic.get("heads"), semantic.get("hidden"))
    for name, arch in ARCHITECTURES.items():
        if arch == found:
            return name
    return f"{found[0]} layers x {found[2]} hidden"


def limits_facts(torch_version: str, transformers_version: str | None) -> dict[str, Any]:
    """The cached limits entries (a file read), each marked ``current`` when measured with this stack."""
    from barkbench.measure import limits

    entries = []
    for entry in limits.cached_entries():
        versions = entry.get("versions") or {}
        entries.append(
            {
                **{k: v for k, v in entry.items() if k not in ("shapes", "key")},
                "architecture": _architecture(entry.get("shapes")),
                "current": versions.get("torch") == torch_version
                and versions.get("transformers") == transformers_version,
            }
        )
    entries.sort(key=lambda e: (str(e.get("device")), str(e.get("dtype")), _batch(e), str(e.get("measured_at"))))
    return {"cache_file": str(limits.cache_path()), "entries": entries}


def _batch(entry: dict[str, Any]) -> int:
    batch = entry.get("batch")
    return batch if isinstance(batch, int) else 0


def facts(device_choice: str = "auto") -> dict[str, Any]:
    """Everything doctor reports, as plain values (what ``--json`` prints)."""
    import torch
    import transformers

    from barkbench.measure import device, noise, optimize
    from barkbench.variants import CPU_EMULATED_HALF_NOTE, PRESETS, default_variants

    accelerator = device.probe()
    chosen = device.device_type() if device_choice == "auto" else device_choice
    half = device.cpu_half_precision()
    half_native = chosen != "cpu" or not device.cpu_emulates_half_precision()
    defaults = {v.id for v in default_variants(chosen, half_native)}
    include = sysconfig.get_paths().get("include") or ""
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    presets = []
    for name, variant in PRESETS.items():
        reason = optimize.unsupported_reason(variant, chosen)
        presets.append(
            {
                "preset": name,
                "variant": variant.id,
                "runs": reason is None,
                "skip_reason": reason,
                "in_default_run": variant.id in defaults,
            }
        )
    return {
        "torch": torch.__version__,
        "torch_build": f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU",
        "accelerator": accelerator.as_dict(),
        "device": chosen,
        "packages": {
            name: _version(name)
            for name in ("transformers", "accelerate", "optimum", "flash-attn", "triton", "soundfile", "barkbench")
        },
        # Importable, not only installed: a broken install shows here.
        "importable": {name: _found(name) for name in ("flash_attn", "triton", "soundfile", "optimum")},
        "stack": f"{'current' if int(transformers.__version__.split('.')[0]) >= 5 else 'legacy'} "
        f"(transformers {transformers.__version__})",
        "c_compiler": shutil.which(cc) if cc else None,
        "python_headers": os.path.exists(os.path.join(include, "Python.h")),
        "cpu": {
            **noise.machine_facts().as_dict(),
            "native_bf16": half["bf16"],
            "native_fp16": half["fp16"],
            "amx": any(f.startswith("amx") for f in device.cpu_flags()),
            "torch_threads": torch.get_num_threads(),
        },
        "default_run_note": CPU_EMULATED_HALF_NOTE if not half_native else None,
        "presets": presets,
        "limits": limits_facts(torch.__version__, transformers.__version__),
    }


def facts_text(report: dict[str, Any]) -> str:
    acc = report["accelerator"]
    lines = [f"torch {report['torch']} ({report['torch_build']} build); stack: {report['stack']}"]
    if acc["devices"]:
        for d in acc["devices"]:
            memory = f", {d['total_memory_bytes'] / 2**30:.1f} GiB" if d.get("total_memory_bytes") else ""
            capability = f", compute capability {d['capability']}" if d.get("capability") else ""
            bf16 = {True: ", native bf16", False: ", bf16 emulated", None: ""}[d.get("bf16_native")]
            lines.append(f"{acc['kind']}:{d['index']}: {d['name']}{memory}{capability}{bf16}")
        if acc.get("driver"):
            lines.append(f"NVIDIA driver {acc['driver']}")
    else:
        lines.append("accelerator: none" + (f" ({acc['error']})" if acc.get("error") else ""))
    packages = report["packages"]
    lines.append("packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in packages.items()))
    lines.append(
        f"C compiler: {report['c_compiler'] or 'missing'}; Python headers: "
        f"{'found' if report['python_headers'] else 'missing'}"
    )
    cpu = report["cpu"]
    lines.append(
        f"CPU: {cpu.get('cpu_model')}; native bf16: {cpu['native_bf16']}, native fp16: {cpu['native_fp16']}, "
        f"AMX: {cpu['amx']}; torch threads {cpu['torch_threads']} of {cpu.get('usable_cpu_count')} usable CPUs"
    )
    if report["default_run_note"]:
        lines.append(f"default run: {report['default_run_note']}")
    lines.append(f"presets on {report['device']} (what `pytest bench/ --bark-device {report['device']}` would do):")
    width = max(len(p["variant"]) for p in report["presets"])
    for p in report["presets"]:
        if p["runs"]:
            state = "runs" + ("" if p["in_default_run"] else " (asked by name; not in the default run)")
        else:
            state = f"skipped: {p['skip_reason']}"
        lines.append(f"  {p['variant']:<{width}}  {state}")
    lines += limits_lines(report["limits"], report.get("limits_measured"))
    return "\n".join(lines)


def _rate(value: Any, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value / 1e9:.3g} G{unit}/s"


def limits_lines(limits: dict[str, Any], measured: list[dict[str, Any]] | None = None) -> list[str]:
    """The limits section of the text report: one line per cached entry (and the skips of ``--limits``)."""
    lines = [
        f"machine limits (cached in {limits['cache_file']}; `barkbench doctor --limits [VARIANTS]` measures them):"
    ]
    for skipped in measured or []:
        if skipped.get("skip_reason"):
            lines.append(f"  {skipped['variant']}: not measured: {skipped['skip_reason']}")
    if not limits["entries"]:
        lines.append("  none cached yet: a benchmark's worker measures them on its first run, or use --limits")
    for e in limits["entries"]:
        weights = e.get("linear_weights")
        kind = f"{e.get('dtype')}" + (f", {weights} Linear weights" if weights and weights != e.get("dtype") else "")
        versions = e.get("versions") or {}
        # A CPU's device name is its architecture (x86_64): its model says more.
        name = e.get("cpu_model") if e.get("device") == "cpu" and e.get("cpu_model") else e.get("device_name")
        stack = f"torch {versions.get('torch')}, transformers {versions.get('transformers')}"
        kernels = ", ".join(
            f"{stage} {1000 * seconds:.3g} ms"
            for stage, seconds in sorted((e.get("kernel_step_seconds") or {}).items())
        )
        # The batch tells entries of one dtype and architecture apart: each batch size is probed on its own shapes.
        lines.append(
            f"  {e.get('device')} ({name}) {kind}, {e.get('architecture') or 'shapes unrecorded'}, "
            f"batch {e.get('batch', '?')}, {e.get('threads')} threads, measured {e.get('measured_at')} with {stack}"
            + ("" if e.get("current") else " (another stack than this one)")
        )
        lines.append(
            f"    bandwidth {_rate(e.get('bandwidth_bytes_per_s'), 'B')} "
            f"(copy {_rate(e.get('copy_bytes_per_s'), 'B')}, GEMV {_rate(e.get('gemv_bytes_per_s'), 'B')}), "
            f"fine matmul {_rate(e.get('matmul_flops_per_s'), 'FLOP')}"
            + (f"; one decode step's matmuls: {kernels}" if kernels else "")
        )
    return lines
