"""SIGINT and SIGTERM during a benchmark session: the first interrupts where the session is, the session saves what
finished, and the interrupted variant is named by its signal."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the session is: pytest ends an interrupted session the way it ends a Ctrl-C."""


def signal_name(exc: BaseException) -> str:
    """The signal an interrupt stands for: SIGTERM (``Terminated``) or SIGINT (a Ctrl-C's ``KeyboardInterrupt``)."""
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


class SaveGuard:
    """SIGINT and SIGTERM for the session. The first interrupts where the session is (SIGTERM as ``Terminated``,
    a ``KeyboardInterrupt``, so pytest ends the session as after a Ctrl-C and saves). A second one — an impatient
    Ctrl-C while the worker is killed, the report printed or the files written — is noted and waits for the save
    to end; a third quits at once without saving. During the save itself even the first waits: atomic writes
    keep a file whole, this keeps it written at all."""

    def __init__(self) -> None:
        self.count = 0
        self.saving = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1 and not self.saving:
            raise Terminated(name) if signum == signal.SIGTERM else KeyboardInterrupt
        if self.count >= 3:
            os._exit(128 + signum)
        os.write(2, f"\nbarkbench: {name} again: saving what finished first; once more quits without saving\n".encode())

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Any:
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        if self.count:
            # The session ends now, with what was saved; no traceback from inside the save.
            session.exitstatus = pytest.ExitCode.INTERRUPTED

    def pytest_unconfigure(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
