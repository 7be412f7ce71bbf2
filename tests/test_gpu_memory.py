"""Every kind of memory on a GPU row (issue 24 item 4), checked on a machine without a GPU: stand-ins for torch.cuda's
allocator counters and for nvidia-ml-py's ``pynvml`` say what each figure must be read from; a CPU row has none of
them (None, never 0)."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator

import pytest
import torch

from barkbench.measure import trackers
from barkbench.measure.runner import RoundResult
from barkbench.measure.summary import GPU_MEMORY_FIELDS, summarize
from barkbench.pytest_plugin.recording import _summary_fields
from barkbench.record import FIELDS, Record

MB = 1_000_000


class FakeNvml(types.ModuleType):
    """``pynvml`` with two GPUs: ``processes[i]`` lists device i's compute processes as (pid, usedGpuMemory)."""

    class NVMLError(Exception):
        pass

    def __init__(self, processes: list[list[tuple[int, int | None]]]) -> None:
        super().__init__("pynvml")
        self.processes = processes
        self.calls: list[str] = []
        self.fail: str | None = None

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.processes)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[types.SimpleNamespace]:
        self.calls.append(f"processes:{handle}")
        if self.fail:
            raise self.NVMLError(self.fail)
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.processes[handle]]


@pytest.fixture()
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    # This process uses 600 MB on GPU 1 and 100 MB on GPU 0 (its context there); another process uses GPU 0.
    fake = FakeNvml([[(os.getpid() + 1, 900 * MB), (os.getpid(), 100 * MB)], [(os.getpid(), 600 * MB)]])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    trackers._nvml_started.cache_clear()
    yield fake
    trackers._nvml_started.cache_clear()


class FakeCudaMemory:
    """torch.cuda's allocator counters; ``synchronize`` must not be needed to read them (host-side)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda device=None: self.calls.append("reset"))
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: 50 * MB)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: 300 * MB)
        monkeypatch.setattr(cuda, "max_memory_reserved", lambda device=None: 420 * MB)
        monkeypatch.setattr(cuda, "synchronize", self._forbidden)

    def _forbidden(self, device: object = None) -> None:
        raise AssertionError("the memory figures need no synchronize")


@pytest.fixture()
def host_peak(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kernel's high-water mark: reset at the block's start, read at its end (2 GB)."""
    calls: list[str] = []
    monkeypatch.setattr(trackers, "reset_peak_rss", lambda: calls.append("reset") or True)
    monkeypatch.setattr(trackers, "peak_rss", lambda: calls.append("read") or 2_000 * MB)
    return calls


def test_a_cuda_block_records_every_kind_of_memory_from_its_own_call(monkeypatch, nvml, host_peak):
    cuda = FakeCudaMemory(monkeypatch)
    with trackers.MemoryTracker("cuda", baseline_bytes=10 * MB) as peak:
        assert cuda.calls == ["reset"] and host_peak == ["reset"] and nvml.calls == []
    assert peak.method == "cuda_max_memory_allocated"
    assert peak.peak_bytes == 290 * MB  # max_memory_allocated above the baseline, as before
    assert peak.reserved_peak_bytes == 420 * MB  # max_memory_reserved
    assert peak.host_peak_rss_bytes == 2_000 * MB and host_peak == ["reset", "read"]  # VmHWM of the block
    # NVML: this pid on every GPU (100 MB of context on GPU 0, 600 MB on GPU 1), not the other process's 900 MB.
    assert peak.device_process_bytes == 700 * MB and peak.notes == ()
    assert nvml.calls == ["nvmlInit", "processes:0", "processes:1"]


def test_nvml_is_started_once_per_process(monkeypatch, nvml, host_peak):
    FakeCudaMemory(monkeypatch)
    for _ in range(3):
        with trackers.MemoryTracker("cuda"):
            pass
    assert nvml.calls.count("nvmlInit") == 1


def test_without_nvidia_ml_py_the_figure_is_skipped_with_its_reason(monkeypatch, host_peak):
    FakeCudaMemory(monkeypatch)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with trackers.MemoryTracker("cuda") as peak:
        pass
    assert peak.device_process_bytes is None and peak.reserved_peak_bytes == 420 * MB
    [note] = peak.notes
    assert "nvidia-ml-py is not installed" in note and "barkbench[gpu]" in note


@pytest.mark.parametrize(
    ("processes", "fail", "why"),
    [
        ([[(1, 5 * MB)]], None, "is not among NVML's compute processes"),
        ([[(os.getpid(), None)]], None, "cannot report this process's memory"),
        ([[]], "Insufficient Permissions", "NVML failed: Insufficient Permissions"),
    ],
    ids=["pid-unseen", "value-not-available", "nvml-error"],
)
def test_nvml_says_why_it_has_no_figure(monkeypatch, processes, fail, why):
    fake = FakeNvml(processes)
    fake.fail = fail
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    trackers._nvml_started.cache_clear()
    used, reason = trackers.device_process_memory()
    assert used is None and reason is not None and why in reason and "\n" not in reason


def test_a_kernel_without_a_resettable_peak_gives_no_host_figure(monkeypatch, nvml):
    FakeCudaMemory(monkeypatch)
    monkeypatch.setattr(trackers, "reset_peak_rss", lambda: False)
    with trackers.MemoryTracker("cuda") as peak:
        pass
    assert peak.host_peak_rss_bytes is None and peak.notes == (trackers.HOST_PEAK_UNAVAILABLE,)


def test_a_cpu_block_has_none_of_the_gpu_figures(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with trackers.MemoryTracker("cpu") as peak:
        pass
    assert (peak.reserved_peak_bytes, peak.host_peak_rss_bytes, peak.device_process_bytes, peak.notes) == (
        None,
        None,
        None,
        (),
    )


# -- from the rounds to the record ---------------------------------------------------------------------------------


def _round(reserved: int | None, device: int | None, host: int | None, notes: tuple[str, ...] = ()) -> RoundResult:
    return RoundResult(
        seconds=1.0,
        peak_memory_bytes=300 * MB,
        memory_method="cuda_max_memory_allocated" if reserved is not None else "cpu_peak_rss",
        audio_seconds=2.0,
        output_lengths=(48_000,),
        reserved_peak_bytes=reserved,
        device_process_bytes=device,
        host_peak_rss_bytes=host,
        memory_notes=notes,
    )


def test_the_summary_keeps_each_kinds_highest_round_and_each_reason_once():
    why = "device process memory: nvidia-ml-py is not installed (pip install 'barkbench[gpu]')"
    summary = summarize(
        [_round(400 * MB, None, 2_000 * MB, (why,)), _round(420 * MB, None, 1_900 * MB, (why,))], 1, 1.0
    )
    assert summary.peak_memory_reserved_bytes == 420 * MB and summary.host_peak_rss_bytes == 2_000 * MB
    assert summary.device_process_memory_bytes is None and summary.gpu_memory_notes == (why,)


def test_a_gpu_rows_record_carries_every_kind_and_a_cpu_rows_none():
    gpu = _summary_fields(summarize([_round(420 * MB, 900 * MB, 2_000 * MB)], 1, 1.0))
    assert {key: gpu[key] for key in GPU_MEMORY_FIELDS if key in gpu} == {
        "peak_memory_reserved_bytes": 420 * MB,
        "device_process_memory_bytes": 900 * MB,
        "host_peak_rss_bytes": 2_000 * MB,
    }
    info = Record(**gpu).to_extra_info()
    # Written together (one group): the missing reason as null, so a reader sees it was looked for.
    assert info["device_process_memory_bytes"] == 900 * MB and info["gpu_memory_notes"] is None
    assert Record.from_extra_info(info) == Record(**gpu)

    cpu = _summary_fields(summarize([_round(None, None, None)], 1, 1.0))
    assert not set(GPU_MEMORY_FIELDS) & set(cpu)
    record = Record(**cpu)
    assert not set(GPU_MEMORY_FIELDS) & set(record.to_extra_info())
    assert all(getattr(record, key) is None for key in GPU_MEMORY_FIELDS)  # None, not 0


def test_the_new_fields_are_typed_bytes_that_are_better_lower():
    for key in ("peak_memory_reserved_bytes", "device_process_memory_bytes", "host_peak_rss_bytes"):
        assert FIELDS[key].unit == "bytes" and FIELDS[key].better == "lower" and FIELDS[key].group == "device_memory"
    assert FIELDS["gpu_memory_notes"].better is None
    with pytest.raises(TypeError, match="peak_memory_reserved_bytes"):
        Record(peak_memory_reserved_bytes=1.5)


# -- a whole round on the CUDA path, the model on the CPU behind stand-ins -------------------------------------------


@pytest.fixture(scope="module")
def cpu_runner(tiny_source):
    from barkbench.measure.runner import RunSpec, VariantRunner
    from barkbench.measure.workload import Workload
    from barkbench.variants import Variant

    runner = VariantRunner(
        RunSpec(tiny_source, Variant(), Workload(semantic_max_new_tokens=8), device_type="cpu", fixed_length=True)
    )
    yield runner
    runner.close()


def test_a_cuda_round_waits_only_outside_the_call_and_records_every_kind(cpu_runner, monkeypatch, nvml, host_peak):
    import dataclasses

    log: list[str] = []

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing

        def record(self, stream: object = None) -> None:
            log.append("record")

        def elapsed_time(self, end: object) -> float:
            return 4.0

    reserved = iter([100 * MB] + [500 * MB] * 100)  # the stages' readings, then the call's own (after the last reset)
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "Event", Event)
    monkeypatch.setattr(cuda, "synchronize", lambda device=None: log.append("synchronize"))
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda device=None: log.append("reset"))
    monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: 50 * MB)
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: 300 * MB)
    monkeypatch.setattr(cuda, "max_memory_reserved", lambda device=None: next(reserved))
    # The same runner, its calls measured as a CUDA worker's are (the model itself stays on the CPU).
    monkeypatch.setattr(cpu_runner, "spec", dataclasses.replace(cpu_runner.spec, device_type="cuda"))
    cpu_runner.prepare()
    result = cpu_runner._measured_call()
    waits = [i for i, entry in enumerate(log) if entry == "synchronize"]
    # The latency's two ends and the stage clock's one settle: nothing waits between the clock's start and stop.
    assert len(waits) == 3 and log[waits[0] + 1 : waits[1]].count("record") == 8
    assert "synchronize" not in log[waits[0] + 1 : waits[1]] and waits[2] == len(log) - 1
    assert result.memory_method == "cuda_max_memory_allocated"
    assert result.reserved_peak_bytes == 500 * MB and result.host_peak_rss_bytes == 2_000 * MB
    assert result.device_process_bytes == 700 * MB and result.memory_notes == ()
    assert all(stage["seconds"] == pytest.approx(0.004) for stage in result.stages.values())


def test_a_cpu_round_has_none_of_the_gpu_figures(cpu_runner):
    cpu_runner.prepare()
    result = cpu_runner.generate()
    assert (result.reserved_peak_bytes, result.device_process_bytes, result.host_peak_rss_bytes) == (None, None, None)
    assert result.memory_notes == ()
