"""The accelerator, found through ``torch.accelerator`` (device-agnostic), and what to say about it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import time
from typing import Any


def accelerator_type() -> str | None:
    """``"cuda"``, ``"xpu"``, ... when an accelerator is usable in this process, else None."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        if accelerator.is_available():
            return accelerator.current_accelerator().type
        return None
    return "cuda" if torch.cuda.is_available() else None


def device_type() -> str:
    return accelerator_type() or "cpu"


def synchronize() -> None:
    """Wait for queued device work, so a host clock read after it is honest. No-op on CPU, and in a process
    that never initialized the accelerator (nothing can be queued there)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        return
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available() and accelerator.current_accelerator().type != "cuda":
        accelerator.synchronize()


def synchronized_perf_counter() -> float:
    """pytest-benchmark timer (``--benchmark-timer barkbench.measure.device.synchronized_perf_counter``): syncs the
    device before reading the clock, so asynchronous kernels are inside the time they belong to."""
    synchronize()
    return time.perf_counter()


def device_name(kind: str) -> str:
    if kind == "cpu":
        return platform.processor() or platform.machine()
    import torch

    if kind == "cuda":
        return torch.cuda.get_device_name(torch.cuda.current_device())
    module = getattr(torch, kind, None)
    get_name = getattr(module, "get_device_name", None)
    return get_name() if get_name else kind


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {name: _version(name) for name in ("torch", "transformers", "optimum", "accelerate", "barkbench")}


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def machine_info() -> dict[str, Any]:
    """What pytest-benchmark's machine_info gets under ``barkbench``: libraries and accelerator."""
    import torch

    kind = device_type()
    info: dict[str, Any] = {
        **library_versions(),
        "device": kind,
        "gpu_name": None,
        "gpu_driver": None,
        "cuda": None,
        "gpu_memory_bytes": None,
    }
    if kind == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(
            gpu_name=props.name,
            gpu_memory_bytes=int(props.total_memory),
            cuda=torch.version.cuda,
            gpu_driver=_nvidia_driver(),
        )
    elif kind != "cpu":
        info["gpu_name"] = device_name(kind)
    return info
