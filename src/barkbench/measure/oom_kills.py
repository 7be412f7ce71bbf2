"""The kernel's own count of out-of-memory kills, so a worker killed by SIGKILL is called out of memory only
when the kernel says so.

SIGKILL is what the kernel's out-of-memory killer sends, but anyone can send it (a user, a job scheduler, the
harness's own time limit). The kernel counts every out-of-memory kill in the victim's memory cgroup, whether the
cgroup's limit or the whole machine ran out: cgroup v2 ``memory.events`` and cgroup v1 ``memory.oom_control``
(Linux 4.13 or later) both have an ``oom_kill`` field. Read before a worker starts and again after it dies, the
count tells: it rose, the out-of-memory killer acted; it did not, it did not kill the worker. Where no such file
can be read (not Linux, the cgroup hidden from this process, an older kernel) nothing is claimed either way.

The count is per cgroup, not per process: the worker shares its cgroup with its parent (it inherits it), so a
rise while the worker died by SIGKILL is read as the worker's kill even if, rarely, another process of the same
cgroup was the victim at the same moment. An unchanged count is certain: the worker's own kill would raise it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class OomKillCount:
    """The ``oom_kill`` count of a memory cgroup, and the file it was read from."""

    path: Path
    count: int

    def again(self) -> OomKillCount | None:
        """The same file's count now (None: no longer readable)."""
        count = _read_oom_kill(self.path)
        return None if count is None else OomKillCount(self.path, count)


def _read_oom_kill(path: Path) -> int | None:
    """The ``oom_kill`` field of a ``memory.events`` or ``memory.oom_control`` file (lines ``name value``)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def oom_kill_count(pid: int | str = "self", proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT) -> OomKillCount | None:
    """The ``oom_kill`` count of ``pid``'s memory cgroup, or None where the kernel's count cannot be read.

    ``/proc/<pid>/cgroup`` names the cgroup: a cgroup v2 line ``0::<path>`` (``memory.events`` under the cgroup2
    mount: ``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid systems), a cgroup v1 line
    ``<id>:...memory...:<path>`` (``memory.oom_control`` under ``/sys/fs/cgroup/memory``). The path is taken as
    given, never guessed: a file of another cgroup would show no kill and wrongly clear the out-of-memory killer.
    """
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, cgroup = rest.partition(":")
        relative = cgroup.lstrip("/")
        if hierarchy == "0" and controllers == "":
            candidates += [
                cgroup_root / relative / "memory.events",
                cgroup_root / "unified" / relative / "memory.events",
            ]
        elif "memory" in controllers.split(","):
            candidates.append(cgroup_root / "memory" / relative / "memory.oom_control")
    for path in candidates:
        count = _read_oom_kill(path)
        if count is not None:
            return OomKillCount(path, count)
    return None


def oom_killed(exitcode: int | None, before: OomKillCount | None, after: OomKillCount | None) -> bool | None:
    """Whether the kernel's out-of-memory killer ended a process: None where its count could not be read."""
    if exitcode != -signal.SIGKILL:
        return False  # the out-of-memory killer sends SIGKILL and nothing else
    if before is None or after is None or before.path != after.path:
        return None
    return after.count > before.count


def describe_sigkill(before: OomKillCount | None, after: OomKillCount | None) -> str:
    """A SIGKILL's cause with the kernel's verdict where it can be read, else only where to look."""
    verdict = oom_killed(-signal.SIGKILL, before, after)
    if verdict is None or before is None or after is None:
        # Only a possibility: the kernel log (dmesg) says whether the OOM killer sent it.
        return "killed by SIGKILL (the kernel's out-of-memory killer sends this; dmesg says whether it did)"
    if verdict:
        counts = f"{before.count}→{after.count}"
        return f"killed by the kernel's out-of-memory killer (oom_kill count {counts} in {after.path})"
    return f"killed by SIGKILL (not the out-of-memory killer: {after.path} shows no new oom_kill)"
