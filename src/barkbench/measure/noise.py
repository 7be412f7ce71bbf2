"""What else the machine was doing: load average, other processes' CPU time, CPU model and frequency policy.

pyperf's advice is to benchmark on a quiet machine; this module measures how quiet it was, so a row's figures
can be flagged instead of trusted blindly (``barkbench.stats.check_noise`` judges them).

Other processes' CPU time is the system-wide busy time (``/proc/stat`` via ``psutil.cpu_times``) minus the time
of the processes we own (the pytest process and the variant's worker). That catches short-lived processes a
per-process scan would miss; its resolution is the kernel's clock tick (10 ms). No torch here: the worker
records its own thread count.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from barkbench.stats import CpuUsage

#: Where Linux exposes the CPU frequency policy; absent in most containers and VMs (then recorded as None).
_SYS_CPU = Path("/sys/devices/system/cpu")


def cpu_count() -> int:
    """The CPUs ``/proc/stat`` covers (all of the machine's): the capacity the others' CPU time is a share of."""
    return psutil.cpu_count(logical=True) or os.cpu_count() or 1


def usable_cpu_count() -> int:
    """The CPUs this process may run on (affinity / container limits): what torch's thread pool defaults to."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return cpu_count()


def load_average() -> float | None:
    """The 1-minute load average (runnable + uninterruptible tasks), None where the OS has none."""
    try:
        return float(psutil.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    # guest time is already counted in user on Linux; idle and iowait are the CPUs doing nothing.
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def _process_seconds(pids: Iterable[int]) -> float | None:
    """User + system CPU seconds of ``pids``; None when one has exited (its time can no longer be read)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        total += times.user + times.system
    return total


class CpuSampler:
    """``with CpuSampler(pids) as sampler: <rounds>`` then ``sampler.usage``: the block's ``CpuUsage``.

    ``pids`` are the processes whose CPU time is ours (default: this one); give the worker's pid too.
    ``usage`` is None when one of them exited during the block, since its time would count as another's.
    """

    def __init__(self, pids: Sequence[int] | None = None) -> None:
        self.pids = tuple(pids) if pids else (os.getpid(),)
        self.usage: CpuUsage | None = None
        self._start: tuple[float, float, float | None, float | None] | None = None

    def __enter__(self) -> CpuSampler:
        self._start = (time.perf_counter(), _busy_seconds(), _process_seconds(self.pids), load_average())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._start is not None, "CpuSampler exited without being entered"
        wall0, busy0, own0, load0 = self._start
        own1, busy1, wall1 = _process_seconds(self.pids), _busy_seconds(), time.perf_counter()
        if own0 is None or own1 is None:
            return
        own = max(0.0, own1 - own0)
        # Tick rounding can make busy - own slightly negative on an idle machine.
        others = max(0.0, (busy1 - busy0) - own)
        self.usage = CpuUsage(
            wall_seconds=wall1 - wall0,
            other_cpu_seconds=others,
            own_cpu_seconds=own,
            cpu_count=cpu_count(),
            load_average_start=load0,
            load_average_end=load_average(),
        )


def combined_usage(usages: Sequence[CpuUsage | None]) -> CpuUsage | None:
    """The machine's load over several blocks of rounds (a variant's processes): times added, the highest load
    average kept; None when no block was sampled."""
    known = [u for u in usages if u is not None]
    if not known:
        return None

    def highest(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    return CpuUsage(
        wall_seconds=sum(u.wall_seconds for u in known),
        other_cpu_seconds=sum(u.other_cpu_seconds for u in known),
        own_cpu_seconds=sum(u.own_cpu_seconds for u in known),
        cpu_count=known[0].cpu_count,
        load_average_start=highest([u.load_average_start for u in known]),
        load_average_end=highest([u.load_average_end for u in known]),
    )


@dataclass(frozen=True)
class MachineFacts:
    """CPU facts that change how fast the same code runs; None where this machine does not expose them."""

    cpu_model: str | None
    cpu_count: int
    usable_cpu_count: int
    physical_cores: int | None
    frequency_mhz: float | None
    frequency_max_mhz: float | None
    #: cpufreq scaling governor of CPU 0 (``performance`` is what pyperf's ``system tune`` sets).
    scaling_governor: str | None
    #: Turbo / boost enabled (intel_pstate ``no_turbo`` or cpufreq ``boost``); frequency then varies with load.
    turbo: bool | None
    load_average_at_start: float | None

    @property
    def busy_at_start(self) -> bool:
        """Load above the machine's CPUs: it was oversubscribed before we began. The load average counts every
        task on the machine (a container sees the host's), so it is held to all CPUs, not to our share."""
        return self.load_average_at_start is not None and self.load_average_at_start > self.cpu_count

    def busy_warning(self) -> str | None:
        if not self.busy_at_start:
            return None
        return (
            f"the machine is busy: load average {self.load_average_at_start:.1f} above its "
            f"{self.cpu_count} CPUs at start; timings will be noisy (rows are checked and marked)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_model": self.cpu_model,
            "cpu_count": self.cpu_count,
            "usable_cpu_count": self.usable_cpu_count,
            "physical_cores": self.physical_cores,
            "frequency_mhz": self.frequency_mhz,
            "frequency_max_mhz": self.frequency_max_mhz,
            "scaling_governor": self.scaling_governor,
            "turbo": self.turbo,
            "load_average_at_start": self.load_average_at_start,
        }


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    """The ``model name`` of /proc/cpuinfo, else what the platform module knows."""
    text = _read(Path("/proc/cpuinfo"))
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or None


def turbo_enabled(sys_cpu: Path = _SYS_CPU) -> bool | None:
    no_turbo = _read(sys_cpu / "intel_pstate" / "no_turbo")
    if no_turbo in ("0", "1"):
        return no_turbo == "0"
    boost = _read(sys_cpu / "cpufreq" / "boost")
    if boost in ("0", "1"):
        return boost == "1"
    return None


def machine_facts(sys_cpu: Path = _SYS_CPU) -> MachineFacts:
    try:
        freq = psutil.cpu_freq()
    except (AttributeError, OSError, NotImplementedError):
        freq = None
    return MachineFacts(
        cpu_model=cpu_model(),
        cpu_count=cpu_count(),
        usable_cpu_count=usable_cpu_count(),
        physical_cores=psutil.cpu_count(logical=False),
        frequency_mhz=float(freq.current) if freq and freq.current else None,
        # psutil reports 0.0 where the maximum is unknown (VMs): not a real frequency.
        frequency_max_mhz=float(freq.max) if freq and freq.max else None,
        scaling_governor=_read(sys_cpu / "cpu0" / "cpufreq" / "scaling_governor"),
        turbo=turbo_enabled(sys_cpu),
        load_average_at_start=load_average(),
    )
