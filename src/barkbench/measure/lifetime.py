"""Child processes end with their parent: a worker or a model builder never outlives the pytest process that started
it, however that process ends (a Ctrl-C, SIGKILL, a crash). Its own module so that both the worker transport and the
model builder (``sources.prebuild``) can use it without importing each other."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

#: Linux prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make sure this process (a worker, a model builder) ends when its parent does, however the parent ends
    (SIGKILL included)."""
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="barkbench-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request above took effect


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess`` (Linux; None elsewhere) that asks the kernel for SIGKILL when the parent
    dies, in the child before it runs any code of its own: a child stopped or stuck in its interpreter's start-up,
    before ``die_with_parent`` could run, dies with its parent too. Only a prctl call runs between fork and exec
    (the library is resolved here, in the parent), as little as ``preexec_fn`` should do."""
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if not libc_name:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl

    def request() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return request
