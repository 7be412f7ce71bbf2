"""Latency and peak-memory trackers: small context managers that fill in a small dataclass.

Memory means the device's allocator on an accelerator (``max_memory_allocated`` after
``reset_peak_memory_stats``, like the blog) and the process's peak resident set on CPU. GPU rows also get the
allocator's reserved peak, the device's own view of the process (NVML, ``device_process_memory``) and the host's peak
resident set (offload keeps the idle sub-models there): ``PeakMemory``'s optional fields. Linux keeps the peak
(VmHWM) per process and resets it to the current RSS when ``5`` is written to ``/proc/self/clear_refs`` —
no poller thread, no missed spikes. Where that file cannot be written, a 1 ms RSS poller stands in and
says so in ``method``.

On CPU the resident set counts whatever the C allocator keeps and whatever file pages happen to be mapped, so
two fresh processes doing the same work read differently unless both are pinned down (measured: the same tiny
fp32 call in fresh processes peaked anywhere between 142 and 204 MB; page-cache state moved it by another 2 MB).
``pin_allocator`` and ``make_mapped_weights_resident`` pin them; ``release_allocator`` hands the allocator back
for the timed calls. docs/measurement.md ("Memory on CPU") has the measurements.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from barkbench.measure.device import synchronize

_STATUS = Path("/proc/self/status")
#: How far the kernel's RSS figures may trail the truth: Linux folds per-CPU RSS counters into the total in
#: batches, so VmRSS and VmHWM are exact only to a few hundred KiB.
RSS_COUNTER_TOLERANCE = 1 << 20
_CLEAR_REFS = Path("/proc/self/clear_refs")


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def release_free_heap() -> None:
    """Return glibc's free heap pages to the OS. Without it, an allocation that reuses pages which were freed
    but still resident at the start of a region is partly invisible to an RSS difference."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's initial mmap threshold. Pinned, every block of this size or more gets its own mapping, returned to
#: the OS the moment it is freed, so the resident set follows the bytes that are live. Left dynamic (glibc's
#: default), the threshold rises to the largest block freed so far and later blocks come from the heap, whose
#: freed pages stay resident in an order that depends on the allocation history: the same call measured 142-204 MB
#: in fresh processes that way, 115.4-116.0 MB pinned.
PINNED_MMAP_THRESHOLD = 128 << 10
#: The thresholds glibc's dynamic mode moves towards (its maxima on 64-bit): what an ordinary process runs with
#: once it has freed a few large blocks. Pinned, every large block costs page faults on each call (+45 % latency
#: on the tiny model), so timed calls run with these instead; measured: the same latency and page-fault counts as
#: glibc's untouched default.
RELEASED_MMAP_THRESHOLD = 32 << 20
RELEASED_TRIM_THRESHOLD = 64 << 20


def _mallopt(param: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(param, value))
    except (OSError, AttributeError):  # not glibc: its allocator has its own rules and no mallopt
        return False


def pin_allocator() -> bool:
    """Make the process's resident set follow its live allocations (see ``PINNED_MMAP_THRESHOLD``); call it
    before the model loads. False where the C library is not glibc."""
    return _mallopt(_M_MMAP_THRESHOLD, PINNED_MMAP_THRESHOLD)


def release_allocator() -> bool:
    """After the memory call: let large blocks be reused from the heap again, as in any long-running process."""
    return _mallopt(_M_MMAP_THRESHOLD, RELEASED_MMAP_THRESHOLD) and _mallopt(_M_TRIM_THRESHOLD, RELEASED_TRIM_THRESHOLD)


#: Weight files a loader maps into memory (safetensors always, torch.load(mmap=True) for .bin).
WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin")
_MADV_POPULATE_READ = 22  # Linux >= 5.14


def make_mapped_weights_resident(maps: Path = Path("/proc/self/maps")) -> int:
    """Fault in every page of the weight files this process maps; return the bytes of those mappings.

    fp32 weights loaded from safetensors stay mapped from the file, and only the pages a call touches become
    resident: which ones, and how many neighbours the kernel maps along with each fault, depends on what the page
    cache held (a cold cache measured 2 MB less on the tiny model), and the embedding rows no prompt uses are
    never counted at all. Made resident right after loading, every weight counts once, as on a GPU, whatever
    the page cache held. Where ``MADV_POPULATE_READ`` is missing (Linux < 5.14), each page is read instead.
    """
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return 0
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    total = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].strip().endswith(WEIGHT_FILE_SUFFIXES) or "r" not in fields[1]:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if libc.madvise(start, end - start, _MADV_POPULATE_READ) != 0:
            page = os.sysconf("SC_PAGE_SIZE")
            for address in range(start, end, page):
                ctypes.string_at(address, 1)
        total += end - start
    return total


def peak_rss() -> int:
    """The process's peak resident set since the last reset (VmHWM); the current RSS where the kernel has none."""
    return _status_kib("VmHWM") or current_rss()


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark to the current RSS; False where the kernel does not allow it."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@dataclass
class Latency:
    seconds: float = 0.0


class LatencyTracker:
    """Wall time of the block; an accelerator is synchronized at both ends (the host clock must not stop while the
    block's kernels are still queued). ``device_type`` is named by the caller: on CPU no device query is made."""

    def __init__(self, device_type: str = "cpu") -> None:
        self.device_type = device_type
        self.result = Latency()

    def __enter__(self) -> Latency:
        synchronize(self.device_type)
        self._start = time.perf_counter()
        return self.result

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device_type)
        self.result.seconds = time.perf_counter() - self._start


@dataclass
class PeakMemory:
    """``peak_bytes``: the block's peak above ``baseline_bytes``. ``method`` says how it was measured.

    On an accelerator (None elsewhere, never 0): ``reserved_peak_bytes``, the caching allocator's reserved peak
    (``max_memory_reserved``: the pool it holds from the device, cached blocks included); ``host_peak_rss_bytes``,
    the process's peak resident set during the block (VmHWM, reset at its start); on CUDA ``device_process_bytes``,
    what NVML reports the process using on the device at the block's end (``device_process_memory``). ``notes``
    says why one of them is missing.
    """

    peak_bytes: int = 0
    baseline_bytes: int = 0
    method: str = ""
    reserved_peak_bytes: int | None = None
    host_peak_rss_bytes: int | None = None
    device_process_bytes: int | None = None
    notes: tuple[str, ...] = ()


class _RssPoller(threading.Thread):
    # Fallback where /proc/self/clear_refs is not writable: a 1 ms poller can miss short spikes.
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = current_rss()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.001):
            self.peak = max(self.peak, current_rss())

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, current_rss())


class MemoryTracker:
    """Peak memory of the block on ``device_type`` above ``baseline_bytes``.

    ``baseline_bytes`` defaults to the usage at entry; pass the usage before the model was loaded to count the
    weights too (what the blog's tables do).
    """

    def __init__(self, device_type: str = "cpu", baseline_bytes: int | None = None) -> None:
        self.device_type = device_type
        self.baseline_bytes = baseline_bytes
        self.result = PeakMemory()
        self._poller: _RssPoller | None = None
        self._host_reset = False

    def _accelerator(self) -> Any:
        import torch

        return getattr(torch, self.device_type)

    def __enter__(self) -> PeakMemory:
        if self.device_type == "cpu":
            release_free_heap()
            start = current_rss()
            if reset_peak_rss():
                self.result.method = "cpu_peak_rss"
            else:
                self._poller = _RssPoller()
                self._poller.start()
                self.result.method = "cpu_rss_poll_1ms"
        else:
            # No synchronize: the caching allocator keeps its statistics on the host, updated when a tensor is
            # allocated or freed (stream-ordered), so they are current without waiting for the device.
            module = self._accelerator()
            module.reset_peak_memory_stats()
            start = int(module.memory_allocated())
            self.result.method = f"{self.device_type}_max_memory_allocated"
            self._host_reset = reset_peak_rss()
        self.result.baseline_bytes = start if self.baseline_bytes is None else self.baseline_bytes
        return self.result

    def __exit__(self, *exc: object) -> None:
        if self.device_type == "cpu":
            polled = self._poller.stop() if self._poller is not None else None
            peak = polled or peak_rss()
        else:
            module = self._accelerator()
            peak = int(module.max_memory_allocated())
            self.result.reserved_peak_bytes = int(module.max_memory_reserved())
            self._read_host_and_device()
        self.result.peak_bytes = max(0, peak - self.result.baseline_bytes)

    def _read_host_and_device(self) -> None:
        """The accelerator block's host peak and, on CUDA, NVML's view of the process (read after the block)."""
        notes = []
        if self._host_reset:
            self.result.host_peak_rss_bytes = peak_rss()
        else:
            notes.append(HOST_PEAK_UNAVAILABLE)
        if self.device_type == "cuda":
            used, why = device_process_memory()
            self.result.device_process_bytes = used
            notes.extend([why] if why else [])
        self.result.notes = tuple(notes)


#: Why ``host_peak_rss_bytes`` is missing where /proc/self/clear_refs cannot reset the kernel's high-water mark.
HOST_PEAK_UNAVAILABLE = (
    "host peak RSS: /proc/self/clear_refs is not writable here, so the process's peak cannot be reset per call"
)


def device_process_memory(pid: int | None = None) -> tuple[int | None, str | None]:
    """Device memory NVML reports ``pid`` (default: this process) using, summed over the GPUs it runs on: the CUDA
    context, the caching allocator's pool and whatever is allocated outside it (cuBLAS, lazily loaded kernels).

    Returns (bytes, None), or (None, why) in one line. Through nvidia-ml-py (``pip install 'barkbench[gpu]'``):
    ``nvmlDeviceGetComputeRunningProcesses`` lists each device's compute processes with ``pid`` and
    ``usedGpuMemory`` (None where the driver cannot say, e.g. under Windows' WDDM). NVML reports host pids: in a
    container with its own PID namespace this process's pid is not among them. Every device is searched rather
    than the CUDA index mapped to NVML's (CUDA_VISIBLE_DEVICES renumbers CUDA's devices, not NVML's)."""
    try:
        import pynvml
    except ImportError:
        return None, "device process memory: nvidia-ml-py is not installed (pip install 'barkbench[gpu]')"
    pid = os.getpid() if pid is None else pid
    try:
        _nvml_started(pynvml)
        used = [
            process.usedGpuMemory
            for index in range(pynvml.nvmlDeviceGetCount())
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(index))
            if process.pid == pid
        ]
    except pynvml.NVMLError as exc:
        return None, f"device process memory: NVML failed: {exc}"
    if not used:
        return None, (
            f"device process memory: pid {pid} is not among NVML's compute processes (a container's own PID "
            "namespace hides the host pid NVML reports)"
        )
    if any(value is None for value in used):
        return None, "device process memory: NVML cannot report this process's memory on this driver"
    return int(sum(used)), None


@functools.lru_cache(maxsize=1)
def _nvml_started(pynvml: Any) -> bool:
    # nvmlInit once per process (NVML's docs: it may be called again, but each call must be paired with a shutdown);
    # NVML starts no CUDA context, so this costs the GPU nothing. lru_cache does not remember a raised error.
    pynvml.nvmlInit()
    return True


def memory_in_use(device_type: str) -> int:
    """Memory the process holds now on ``device_type`` (RSS on CPU, allocator bytes on an accelerator)."""
    if device_type == "cpu":
        release_free_heap()  # as MemoryTracker does at entry, so the two figures are comparable
        return current_rss()
    import torch

    return int(getattr(torch, device_type).memory_allocated())


# -- stage clocks: intervals inside one call, read once at its end ----------------------------------------------


class StageClock(Protocol):
    """Marks points inside one call and turns pairs of them into seconds afterwards (``StageTracker``).

    ``mark`` is all that runs between the stages; ``settle`` runs once, after the call, before any ``seconds``."""

    def mark(self) -> Any: ...

    def settle(self) -> None: ...

    def seconds(self, start: Any, end: Any) -> float: ...


class HostClock:
    """CPU: ``perf_counter``. A CPU call's work is done when it returns, so there is nothing to wait for."""

    def mark(self) -> float:
        return time.perf_counter()

    def settle(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaEventClock:
    """CUDA: an event recorded on the current stream at each mark, read after one synchronize at the end.

    ``torch.cuda.Event(enable_timing=True).record()`` enqueues a timestamp and returns at once (no host sync), so the
    decode loops run as they would unmeasured; ``elapsed_time`` gives the milliseconds between two recorded events
    once both have completed, which the single ``torch.cuda.synchronize()`` in ``settle`` guarantees
    (torch.cuda.Event docs)."""

    def __init__(self) -> None:
        import torch

        self._cuda = torch.cuda

    def mark(self) -> Any:
        event = self._cuda.Event(enable_timing=True)
        event.record()
        return event

    def settle(self) -> None:
        self._cuda.synchronize()

    def seconds(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1000.0


class SynchronizedClock:
    """Other accelerators (xpu, mps): the device synchronized at each mark, then ``perf_counter``."""

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type

    def mark(self) -> float:
        synchronize(self.device_type)
        return time.perf_counter()

    def settle(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


def stage_clock(device_type: str) -> StageClock:
    """The clock of a call on ``device_type``: events on CUDA, ``perf_counter`` on CPU (no device query)."""
    if device_type == "cpu":
        return HostClock()
    if device_type == "cuda":
        return CudaEventClock()
    return SynchronizedClock(device_type)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
