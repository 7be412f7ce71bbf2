"""The accelerator and the CPU: what this machine offers, found without creating a CUDA context in the caller.

The pytest process only coordinates: the measuring happens in a worker process per variant. A CUDA context in the
parent would take GPU memory from the worker and, on a GPU in exclusive-process mode, make the worker fail. So the
parent never calls ``torch.cuda``: ``probe()`` asks a short-lived child process (only when the torch build has
an accelerator backend at all), and the worker records its own device facts.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from barkbench.measure import limits_cache

#: /proc/cpuinfo flags of native half-precision arithmetic. Without any of them (AVX2-only CPUs), torch emulates
#: bf16/fp16 matmuls by converting to fp32: slower than fp32 itself (a bark-small bf16 call took about 6x an
#: fp32 one on such a CPU), so those rows measure the emulation, not the optimization.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_FP16_FLAGS = ("avx512_fp16", "amx_fp16")


@dataclass(frozen=True)
class DeviceFacts:
    """One accelerator as its own process saw it (``probe``)."""

    index: int
    name: str
    total_memory_bytes: int | None = None
    #: CUDA compute capability "8.0"; None elsewhere.
    capability: str | None = None
    #: Native bfloat16 (not emulated); None where unknown.
    bf16_native: bool | None = None


@dataclass(frozen=True)
class AcceleratorFacts:
    """What ``probe`` found: the accelerator kind (None: none usable) and its devices."""

    kind: str | None
    devices: tuple[DeviceFacts, ...] = ()
    torch: str | None = None
    #: torch's CUDA build version ("13.0"); None for a CPU build.
    cuda_build: str | None = None
    driver: str | None = None
    #: Why probing failed, when it did (the kind is then None).
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe_here() -> AcceleratorFacts:
    """The facts, read in this process (the child ``probe`` starts; the worker)."""
    import torch

    kind: str | None = None
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        if accelerator.is_available():
            kind = accelerator.current_accelerator().type
    elif torch.cuda.is_available():
        kind = "cuda"
    devices: list[DeviceFacts] = []
    if kind == "cuda":
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                DeviceFacts(
                    index=index,
                    name=props.name,
                    total_memory_bytes=int(props.total_memory),
                    capability=f"{props.major}.{props.minor}",
                    # Ampere (8.0) and later compute in bf16; earlier GPUs emulate it (torch would say supported).
                    bf16_native=props.major >= 8,
                )
            )
    elif kind is not None:
        module = getattr(torch, kind, None)
        get_name = getattr(module, "get_device_name", None)
        devices.append(DeviceFacts(index=0, name=get_name() if get_name else kind))
    return AcceleratorFacts(
        kind=kind,
        devices=tuple(devices),
        torch=torch.__version__,
        cuda_build=torch.version.cuda,
        driver=_nvidia_driver() if kind == "cuda" else None,
    )


def _torch_has_accelerator_backend() -> bool:
    """Whether this torch build could see an accelerator at all: read from build constants, no device calls."""
    import torch

    if torch.version.cuda or getattr(torch.version, "hip", None) or getattr(torch.version, "xpu", None):
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_built())


@functools.lru_cache(maxsize=1)
def probe() -> AcceleratorFacts:
    """The accelerator facts, asked of a child process so that this one never initializes the device. A CPU-only
    torch build answers from its build constants without a child."""
    import torch

    if not _torch_has_accelerator_backend():
        return AcceleratorFacts(kind=None, torch=torch.__version__)
    code = "import json; from barkbench.measure.device import _probe_here; print(json.dumps(_probe_here().as_dict()))"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, env=os.environ
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        last = stderr.strip().splitlines()[-1] if stderr.strip() else type(exc).__name__
        return AcceleratorFacts(kind=None, torch=torch.__version__, error=f"device probe failed: {last}")
    devices = tuple(DeviceFacts(**d) for d in data.pop("devices"))
    return AcceleratorFacts(devices=devices, **data)


def accelerator_type() -> str | None:
    """``"cuda"``, ``"xpu"``, ... when an accelerator is usable, else None (asked of a child process)."""
    return probe().kind


def device_type() -> str:
    return accelerator_type() or "cpu"


def cuda_unavailable_reason(option: str = "--bark-device") -> str | None:
    """Why ``<option> cuda`` cannot run here (one line), or None. ``option`` names the flag the user gave
    (``barkbench overhead --device``)."""
    facts = probe()
    if facts.kind == "cuda" and facts.devices:
        return None
    import torch

    if not torch.version.cuda:
        return (
            f"{option} cuda: this torch ({torch.__version__}) is a CPU-only build; install a CUDA build of "
            f"torch (e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128) or use "
            f"{option} cpu"
        )
    why = f" ({facts.error})" if facts.error else ""
    return (
        f"{option} cuda: torch {torch.__version__} sees no CUDA GPU{why}; check nvidia-smi and "
        f"CUDA_VISIBLE_DEVICES, or use {option} cpu"
    )


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo, Linux); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_half_precision() -> dict[str, bool | None]:
    """Native bf16 / fp16 arithmetic on this CPU (None where the flags cannot be read)."""
    flags = cpu_flags()
    if not flags:
        return {"bf16": None, "fp16": None}
    return {"bf16": any(f in flags for f in CPU_BF16_FLAGS), "fp16": any(f in flags for f in CPU_FP16_FLAGS)}


def cpu_emulates_half_precision() -> bool:
    """True when the CPU's flags are known and show neither native bf16 nor native fp16."""
    native = cpu_half_precision()
    return native["bf16"] is False and native["fp16"] is False


def device_kind_and_index(device: Any) -> tuple[str, int | None]:
    """``"cuda:0"`` -> ("cuda", 0); ``"cpu"`` -> ("cpu", None). Results group by the kind (an offloaded model's
    device is the hook's ``cuda:0``, the others' ``cuda``)."""
    kind, _, index = str(device).partition(":")
    return kind, int(index) if index.isdigit() else None


def synchronize(device_type: str) -> None:
    """Wait for the work queued on ``device_type``, so that a host clock read after it is honest.

    The device is named by the caller, never found out: on CPU this returns before touching ``torch.cuda`` or
    ``torch.accelerator``, because their queries start the CUDA driver in any process of a machine that has a GPU
    (``torch.accelerator.is_available()`` and ``torch.cuda.device_count()`` ask the driver for its devices), and the
    driver's host memory would then count in a CPU row's figures (issue 24 item 2)."""
    if device_type == "cpu":
        return  # CPU work is done when the call returns: nothing is queued
    import torch

    if device_type == "cuda":
        torch.cuda.synchronize()  # the current device's queued work, all streams (torch.cuda.synchronize docs)
        return
    module = getattr(torch, device_type, None)
    wait = getattr(module, "synchronize", None)
    if wait is not None:  # torch.xpu.synchronize, torch.mps.synchronize, ...
        wait()


def synchronized_perf_counter(device_type: str = "cpu") -> float:
    """A clock read after ``device_type``'s queued work, for timing inside the process that runs the model. The
    pytest process times its round trip to the worker with plain ``time.perf_counter``: the worker has synchronized
    before it answers, and the parent has no device work to wait for."""
    synchronize(device_type)
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


def machine_info(device_type: str) -> dict[str, Any]:
    """What pytest-benchmark's machine_info gets under ``barkbench``: libraries and the device the run uses.

    No CUDA call in this process (``probe`` asks a child). A run on the CPU is not labelled with a GPU's name,
    even on a machine that has one."""
    info: dict[str, Any] = {
        **library_versions(),
        "device": device_type,
        "gpu_name": None,
        "gpu_driver": None,
        "cuda": None,
        "gpu_memory_bytes": None,
        "cpu_half_precision": cpu_half_precision(),
        # The machine-limits probe's entries measured on this machine (a file read; the workers measure).
        "limits": limits_cache.cached_entries(),
    }
    if device_type == "cpu":
        return info
    facts = probe()
    if facts.kind == device_type and facts.devices:
        first = facts.devices[0]
        info.update(gpu_name=first.name, gpu_memory_bytes=first.total_memory_bytes)
    if device_type == "cuda":
        info.update(cuda=facts.cuda_build, gpu_driver=facts.driver)
    return info
