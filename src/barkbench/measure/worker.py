"""The worker transport: a ``VariantRunner`` in a fresh spawned process, driven over a pipe.

Changing dtype in place leaves resident memory behind, a freed CUDA model leaves allocator state behind, and the
first model loaded warms caches for the next: a variant measured after another is not the variant measured
alone. ``WorkerProcess`` hosts a ``VariantRunner`` in a spawned interpreter (nothing inherited but the
arguments) and implements the same ``Runner`` protocol by sending it typed requests, one at a time:

    Prepare -> Done(None); Generate -> Done(RoundResult); SaveWav(path) -> Done(path); Stop -> the worker exits.

A long-form call (or load, whose untimed calls run every piece too) sends ``Piece`` messages before its answer,
one per piece finished but the last: the parent hands them to ``on_piece`` (the progress line) and waits on.

Loading replies ``Done(RunnerInfo)`` first. Any failure replies ``Failed(kind, one-line message)``. The parent
keeps the failure kinds apart: ``unsupported`` becomes a skip (``VariantUnsupported``), ``oom`` and ``error``
a ``VariantFailed`` of that kind, a worker that vanished without a reply (killed, crashed) one of kind ``died``
(with the signal name or exit code, as the operating system reports it; kind ``oom`` where the kernel's
out-of-memory kill count, ``oom_kills``, rose while it died by SIGKILL), and a request left unanswered past its
time limit one of kind ``timeout`` (the worker is killed); the kind is recorded in the results as ``failure_kind``.
Two limits apply, each named in its failure: the load's (``load_timeout_s``, --bark-load-timeout) and every later
request's (``round_timeout_s``, --bark-round-timeout).

The worker never outlives the parent: it asks the kernel for SIGKILL when its parent dies (Linux
``PR_SET_PDEATHSIG``; elsewhere a thread watching the parent), ignores SIGINT (a Ctrl-C at the terminal reaches
the whole process group; the parent decides), and any interrupt of the parent while it waits kills the worker at
once (``kill``: SIGKILL also ends a stopped process). The worker's stderr — tracebacks, library warnings — goes to
a log file (``log_path``) that failure messages name.

Importing this module does not import torch: the parent never needs it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from barkbench.measure.lifetime import die_with_parent
from barkbench.measure.oom_kills import OomKillCount, describe_sigkill, oom_kill_count, oom_killed
from barkbench.measure.optimize import VariantUnsupported
from barkbench.measure.runner import PieceDone, RoundResult, Runner, RunnerInfo, RunSpec, VariantRunner
from barkbench.measure.sources import first_line

#: How long a worker may take to start and load its model before the parent gives up, unless --bark-load-timeout
#: says otherwise: the first build of a random model and a hub download happen inside the load.
LOAD_TIMEOUT_S = 1800.0

#: A generate call's time limit when none is given: generous, from the slowest call so far (the warm-up's), never
#: under this floor; before any call has finished, ``LOAD_TIMEOUT_S``.
ROUND_TIMEOUT_FLOOR_S = 300.0
ROUND_TIMEOUT_FACTOR = 10.0

#: Why a variant failed: out of memory, any other exception in the worker, a worker that died unanswered, or one
#: that did not answer within its time limit.
FailureKind = Literal["oom", "error", "died", "timeout"]


#: Testing hook: ``BARKBENCH_STOP_AT_LOAD=<variant id>`` makes that variant's worker stop itself (SIGSTOP) before it
#: loads anything, as a worker hung in its load would be: what --bark-load-timeout bounds. Worker processes only.
STOP_AT_LOAD_ENV = "BARKBENCH_STOP_AT_LOAD"


class VariantFailed(RuntimeError):
    """The variant ran and failed; the message is one line with the reason, ``kind`` says which way."""

    def __init__(self, message: str, kind: FailureKind = "error") -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


# -- messages ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepare:
    """Run the untimed per-round set-up (the seed)."""


@dataclass(frozen=True)
class Generate:
    """Run one measured call; the reply holds its ``RoundResult``."""


@dataclass(frozen=True)
class BareGenerate:
    """Run the call bare (``VariantRunner.bare_generate``); the reply holds its seconds."""


@dataclass(frozen=True)
class SaveWav:
    path: str


@dataclass(frozen=True)
class Stop:
    """End the worker."""


@dataclass(frozen=True)
class CaptureReference:
    """As the reference: record the sampling to ``path``; the reply holds the noise floor."""

    path: str


@dataclass(frozen=True)
class Drift:
    """Measure the drift from the reference recorded at ``path``; the reply holds it."""

    path: str


Request = Prepare | Generate | BareGenerate | SaveWav | CaptureReference | Drift | Stop


@dataclass(frozen=True)
class Done:
    value: RunnerInfo | RoundResult | float | str | dict[str, Any] | None


@dataclass(frozen=True)
class Failed:
    kind: Literal["unsupported", "oom", "error"]
    message: str


@dataclass(frozen=True)
class Piece:
    """Long-form progress, sent while a request runs: ``done`` of ``total`` pieces finished, the last in ``seconds``."""

    done: int
    total: int
    seconds: float


Reply = Done | Failed


def _one_line(exc: BaseException) -> str:
    first = first_line(str(exc))
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def classify(exc: BaseException) -> Failed:
    """The reply for a failure in the worker."""
    import torch

    if isinstance(exc, VariantUnsupported):
        return Failed("unsupported", str(exc))
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return Failed("oom", f"out of memory: {_one_line(exc)}")
    return Failed("error", _one_line(exc))


def _handle(
    runner: VariantRunner, request: Prepare | Generate | BareGenerate | SaveWav | CaptureReference | Drift
) -> Done:
    if isinstance(request, Prepare):
        runner.prepare()
        return Done(None)
    if isinstance(request, CaptureReference):
        return Done(runner.capture_reference(request.path))
    if isinstance(request, Drift):
        return Done(runner.drift(request.path))
    if isinstance(request, Generate):
        return Done(runner.generate())
    if isinstance(request, BareGenerate):
        return Done(runner.bare_generate())
    return Done(runner.save_wav(request.path))


def describe_exit(
    exitcode: int | None, oom_before: OomKillCount | None = None, oom_after: OomKillCount | None = None
) -> str:
    """A dead process's cause as the operating system reports it: the signal's name, or the exit code; for SIGKILL,
    whether the kernel's out-of-memory killer sent it where its ``oom_kill`` counts (before, after) were read."""
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if name == "SIGKILL":
            return describe_sigkill(oom_before, oom_after)
        return f"killed by {name}"
    return f"exit code {exitcode}"


def _worker_main(conn: Any, spec: RunSpec, parent_pid: int | None = None, log_path: str | None = None) -> None:
    # A terminal Ctrl-C reaches the whole process group; the parent decides what happens to this worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if log_path is not None:
        # Everything written to stderr, C libraries' messages included, goes to the log the parent names.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    os.environ.update(spec.env)
    if os.environ.get(STOP_AT_LOAD_ENV) == spec.variant.id:
        os.kill(os.getpid(), signal.SIGSTOP)

    def piece_done(done: int, total: int, seconds: float) -> None:
        conn.send(Piece(done, total, seconds))

    try:
        runner = VariantRunner(spec, on_piece=piece_done)
        conn.send(Done(runner.info))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent as a message
        traceback.print_exc()
        conn.send(classify(exc))
        return
    while True:
        try:
            request: Request = conn.recv()
        except EOFError:
            return
        if isinstance(request, Stop):
            return
        try:
            conn.send(_handle(runner, request))
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            conn.send(classify(exc))


class WorkerProcess:
    """A ``VariantRunner`` in its own spawned process: the ``Runner`` protocol over a pipe."""

    def __init__(
        self,
        spec: RunSpec,
        load_timeout_s: float | None = None,
        round_timeout_s: float | None = None,
        on_piece: PieceDone | None = None,
    ) -> None:
        """Start the worker and wait for its model to load: ``load_timeout_s`` bounds the load (a worker stopped or
        stuck while loading is killed then; None: ``LOAD_TIMEOUT_S``), ``round_timeout_s`` every request after it.
        ``on_piece`` hears a long-form call's progress (``Piece``)."""
        self.log_path = _new_log_path(spec.variant.id)
        self._on_piece = on_piece
        #: --bark-round-timeout: every request's time limit after loading (None: from the slowest call so far).
        self._round_timeout_s = round_timeout_s
        self._slowest_s: float | None = None
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_worker_main,
            args=(child, spec, os.getpid(), self.log_path),
            daemon=True,
            name="barkbench-worker",
        )
        # The kernel's out-of-memory kill count of the cgroup the worker is about to inherit, read before it starts:
        # compared with the count after a SIGKILL, it says whether the out-of-memory killer sent it.
        self._oom_before = oom_kill_count()
        self._process.start()
        child.close()
        load_limit = LOAD_TIMEOUT_S if load_timeout_s is None else load_timeout_s
        info = self._reply(load_limit, "load its model", "--bark-load-timeout")
        assert isinstance(info, RunnerInfo)
        self._info = info

    @property
    def info(self) -> RunnerInfo:
        return self._info

    def round_timeout(self) -> float:
        """The time limit of the next request: --bark-round-timeout, else generous from the slowest call so far."""
        if self._round_timeout_s is not None:
            return self._round_timeout_s
        if self._slowest_s is None:
            return LOAD_TIMEOUT_S
        return max(ROUND_TIMEOUT_FLOOR_S, ROUND_TIMEOUT_FACTOR * self._slowest_s)

    def _reply(
        self, timeout: float, what: str, option: str = "--bark-round-timeout"
    ) -> RunnerInfo | RoundResult | float | str | dict[str, Any] | None:
        """The worker's answer within ``timeout`` seconds (the limit ``option`` sets, which a timeout names); the
        long-form progress it sends first goes to ``on_piece``, inside the same limit."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, timeout, what, option)
            if not isinstance(reply, Piece):
                break
            try:
                if self._on_piece is not None:
                    self._on_piece(reply.done, reply.total, reply.seconds)
            except BaseException:
                self.kill()  # an interrupt while the line is written: as while waiting
                raise
        if isinstance(reply, Done):
            return reply.value
        self.close()
        if reply.kind == "unsupported":
            raise VariantUnsupported(reply.message)
        raise VariantFailed(f"{reply.message} (traceback in {self.log_path})", reply.kind)

    def _receive(self, deadline: float, timeout: float, what: str, option: str) -> Reply | Piece:
        """The worker's next message before ``deadline``; a timeout or a dead worker is the variant's failure."""
        try:
            answered = self._conn.poll(max(0.0, deadline - time.monotonic()))
        except BaseException:
            # Ctrl-C, SIGTERM: stop the worker now, whatever it is doing (stopped, deadlocked, mid-call).
            self.kill()
            raise
        if not answered:
            self.kill()
            raise VariantFailed(
                f"worker did not {what} within {_seconds(timeout)} s ({option}); it was killed, "
                f"its log: {self.log_path}",
                "timeout",
            )
        try:
            message: Reply | Piece = self._conn.recv()
        except (EOFError, ConnectionError):
            self._process.join(5)
            code = self._process.exitcode
            oom_after = None if self._oom_before is None else self._oom_before.again()
            why = describe_exit(code, self._oom_before, oom_after)
            kind: FailureKind = "oom" if oom_killed(code, self._oom_before, oom_after) else "died"
            self.kill()
            raise VariantFailed(f"worker process died ({why}); its log: {self.log_path}", kind) from None
        return message

    def _call(
        self, request: Prepare | Generate | BareGenerate | SaveWav | CaptureReference | Drift
    ) -> RunnerInfo | RoundResult | float | str | dict[str, Any] | None:
        timeout = self.round_timeout()
        start = time.monotonic()
        try:
            self._conn.send(request)
        except BaseException:
            self.kill()
            raise
        value = self._reply(timeout, what=f"answer {type(request).__name__}")
        if isinstance(request, Generate | BareGenerate):
            elapsed = time.monotonic() - start
            self._slowest_s = elapsed if self._slowest_s is None else max(self._slowest_s, elapsed)
        return value

    def prepare(self) -> None:
        self._call(Prepare())

    def generate(self) -> RoundResult:
        result = self._call(Generate())
        assert isinstance(result, RoundResult)
        return result

    def bare_generate(self) -> float:
        seconds = self._call(BareGenerate())
        assert isinstance(seconds, float)
        return seconds

    def save_wav(self, path: str) -> str:
        saved = self._call(SaveWav(path))
        assert isinstance(saved, str)
        return saved

    def capture_reference(self, path: str) -> dict[str, Any]:
        floor = self._call(CaptureReference(path))
        assert isinstance(floor, dict)
        return floor

    def drift(self, path: str) -> dict[str, Any]:
        result = self._call(Drift(path))
        assert isinstance(result, dict)
        return result

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def kill(self) -> None:
        """End the worker at once (SIGKILL ends a stopped or deadlocked process too) and reap it."""
        with contextlib.suppress(OSError, ValueError):
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        with contextlib.suppress(OSError):
            self._conn.close()

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(Stop())
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        self._conn.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:g}"


def _new_log_path(variant_id: str) -> str:
    """A fresh log file for one worker, in the temporary folder (kept: failure messages name it)."""
    folder = Path(tempfile.gettempdir()) / "barkbench-logs"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in variant_id)
    fd, path = tempfile.mkstemp(prefix=f"worker-{safe}-", suffix=".log", dir=folder)
    os.close(fd)
    return path


def start_runner(
    spec: RunSpec,
    isolated: bool = True,
    round_timeout_s: float | None = None,
    load_timeout_s: float | None = None,
    on_piece: PieceDone | None = None,
) -> Runner:
    """A fresh worker process per variant (default), or the runner in this process. In this process the spec's
    environment holds while the model loads (the limits probe runs then) and is restored after, as a worker's
    would end with it; no time limit applies there (nothing could stop a runaway load but the user)."""
    if isolated:
        return WorkerProcess(spec, load_timeout_s=load_timeout_s, round_timeout_s=round_timeout_s, on_piece=on_piece)
    with _environment(spec.env):
        return VariantRunner(spec, on_piece=on_piece)


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
