"""The worker transport: typed replies, and the three failure kinds kept apart (oom, error, died) up to the
parent, where a failed variant's ``failure_kind`` comes from; a worker killed by SIGKILL is ``oom`` only when the
kernel's out-of-memory kill count says so."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from barkbench.measure.oom_kills import OomKillCount, oom_kill_count, oom_killed
from barkbench.measure.optimize import VariantUnsupported
from barkbench.measure.runner import FAIL_VARIANT_ENV, RunSpec
from barkbench.measure.worker import Failed, VariantFailed, WorkerProcess, classify, describe_exit
from barkbench.measure.workload import Workload
from barkbench.variants import Variant

# The kernel's out-of-memory kill count, read from crafted /proc and /sys/fs/cgroup trees: a SIGKILL is called out
# of memory only when the count rose, cleared when it did not, and left as a possibility when it cannot be read.
MEMORY_EVENTS = "low 0\nhigh 0\nmax 4\noom 2\noom_kill {}\noom_group_kill 0\n"


def test_a_failure_in_the_worker_is_classified_by_kind():
    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")) == Failed(
        "oom", "out of memory: OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"
    )
    # A RuntimeError saying so is an out-of-memory too (older torch, other backends).
    assert classify(RuntimeError("MPS backend out of memory\nmore")).kind == "oom"
    assert classify(ValueError("bad\nsecond line")) == Failed("error", "ValueError: bad")
    assert classify(VariantUnsupported("needs a GPU")) == Failed("unsupported", "needs a GPU")


@pytest.mark.parametrize(
    ("fault", "kind", "message"),
    [
        ("died", "oom", "worker process died (killed by the kernel's out-of-memory killer (oom_kill count 0→1 in "),
        ("error", "error", "RuntimeError"),
    ],
    ids=["oom", "error"],
)
def test_the_parent_keeps_the_failure_kind(
    tiny_source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, kind: str, message: str
) -> None:
    # ``died``: the worker really dies by SIGKILL; the kernel's out-of-memory kill count is a crafted file that rises
    # meanwhile, as the out-of-memory killer would make it (never triggered for real). A SIGKILL with the count
    # unchanged (kind ``died``) is tests/test_faults.py's real signal. ``error``: the worker answered with its
    # exception; a risen count does not make that an out-of-memory.
    events = tmp_path / "memory.events"
    events.write_text(MEMORY_EVENTS.format(0))
    monkeypatch.setattr("barkbench.measure.worker.oom_kill_count", lambda: OomKillCount(events, 0))
    variant = Variant()
    spec = RunSpec(
        source=tiny_source,
        variant=variant,
        workload=Workload(semantic_max_new_tokens=8),
        device_type="cpu",
        env={FAIL_VARIANT_ENV: f"{variant.id}:{fault}", "OMP_NUM_THREADS": "1"},
    )
    with WorkerProcess(spec) as worker:
        worker.prepare()
        events.write_text(MEMORY_EVENTS.format(1))
        with pytest.raises(VariantFailed) as failed:
            worker.generate()
    assert failed.value.kind == kind and message in str(failed.value)


def _cgroup_tree(tmp_path: Path, cgroup_lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_lines)
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return proc, root


@pytest.mark.parametrize(
    ("cgroup_lines", "relative", "text"),
    [
        ("0::/user.slice/bench.scope\n", "user.slice/bench.scope/memory.events", MEMORY_EVENTS),
        # Hybrid hierarchy: cgroup2 mounted at /sys/fs/cgroup/unified.
        ("1:name=systemd:/\n0::/bench.scope\n", "unified/bench.scope/memory.events", MEMORY_EVENTS),
        # cgroup v1: the memory controller's own hierarchy and file.
        (
            "5:cpu,cpuacct:/\n4:memory:/jobs/abc\n0::/\n",
            "memory/jobs/abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n",
        ),
    ],
)
def test_a_sigkill_is_out_of_memory_only_when_the_kernels_count_rose(
    tmp_path: Path, cgroup_lines: str, relative: str, text: str
) -> None:
    proc, root = _cgroup_tree(tmp_path, cgroup_lines, {relative: text.format(3)})
    before = oom_kill_count(proc=proc, cgroup_root=root)
    assert before == OomKillCount(root / relative, 3)

    unchanged = before.again()
    assert oom_killed(-signal.SIGKILL, before, unchanged) is False
    assert describe_exit(-signal.SIGKILL, before, unchanged) == (
        f"killed by SIGKILL (not the out-of-memory killer: {root / relative} shows no new oom_kill)"
    )

    (root / relative).write_text(text.format(5))
    rose = before.again()
    assert oom_killed(-signal.SIGKILL, before, rose) is True
    assert describe_exit(-signal.SIGKILL, before, rose) == (
        f"killed by the kernel's out-of-memory killer (oom_kill count 3→5 in {root / relative})"
    )
    # The out-of-memory killer sends SIGKILL only: a risen count never turns another death into one.
    assert oom_killed(-signal.SIGSEGV, before, rose) is False
    assert describe_exit(-signal.SIGSEGV, before, rose) == "killed by SIGSEGV"


@pytest.mark.parametrize(
    ("cgroup_lines", "files"),
    [
        # The root cgroup has no memory.events; another cgroup's file is never taken for this one's.
        ("0::/\n", {"other.scope/memory.events": MEMORY_EVENTS.format(0)}),
        # Kernels before 4.13 have no oom_kill field.
        ("4:memory:/jobs/abc\n", {"memory/jobs/abc/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"}),
        # A cgroup path this process cannot see (a container showing the host's path).
        ("4:memory:/docker/123\n", {"memory/memory.oom_control": "oom_kill 0\n"}),
    ],
)
def test_a_sigkill_stays_a_possibility_where_the_count_cannot_be_read(
    tmp_path: Path, cgroup_lines: str, files: dict[str, str]
) -> None:
    proc, root = _cgroup_tree(tmp_path, cgroup_lines, files)
    assert oom_kill_count(proc=proc, cgroup_root=root) is None
    assert oom_kill_count(pid=12345, proc=proc, cgroup_root=root) is None  # no /proc/12345
    assert oom_killed(-signal.SIGKILL, None, None) is None
    assert describe_exit(-signal.SIGKILL) == (
        "killed by SIGKILL (the kernel's out-of-memory killer sends this; dmesg says whether it did)"
    )
    # A count read before but not after (the file went away) claims nothing either.
    before = OomKillCount(tmp_path / "gone" / "memory.events", 0)
    assert before.again() is None and oom_killed(-signal.SIGKILL, before, before.again()) is None
