"""``barkbench doctor``: what this machine can measure, before a long run.

The torch build and its accelerator (read by ``device.probe()``: a child process, as in a benchmark session, so
this command creates no CUDA context of its own), the optional pieces (flash-attn, triton, a C compiler and
Python's headers, accelerate, optimum, soundfile), the installed stack, the CPU's half-precision support and
threads; then every preset variant with "runs" or the skip reason the benchmark would give: the same function,
``optimize.unsupported_reason``, not a copy. Always exits 0: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sysconfig
from typing import Any

HELP = "show what this machine can measure: torch build, devices, optional packages, and each preset's skip reason"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "xpu", "mps"),
        default="auto",
        help="judge the presets for this device (default: the one `pytest bench/` would pick)",
    )


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
    }


def _text(report: dict[str, Any]) -> str:
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
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = facts(args.device)
    print(json.dumps(report, indent=2, default=str) if args.json else _text(report))
    return 0
