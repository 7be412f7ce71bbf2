"""The worker transport: a ``VariantRunner`` in a fresh spawned process, driven over a pipe.

Changing dtype in place leaves resident memory behind, a freed CUDA model leaves allocator state behind, and the
first model loaded warms caches for the next: a variant measured after another is not the variant measured
alone. ``WorkerProcess`` hosts a ``VariantRunner`` in a spawned interpreter (nothing inherited but the
arguments) and implements the same ``Runner`` protocol by sending it typed requests, one at a time:

    Prepare -> Done(None); Generate -> Done(RoundResult); SaveWav(path) -> Done(path); Stop -> the worker exits.

Loading replies ``Done(RunnerInfo)`` first. Any failure replies ``Failed(kind, one-line message)``. The parent
keeps the failure kinds apart: ``unsupported`` becomes a skip (``VariantUnsupported``), ``oom`` and ``error``
a ``VariantFailed`` of that kind, and a worker that vanished without a reply (killed, crashed) one of kind
``died``; the kind is recorded in the results as ``failure_kind``.

Importing this module does not import torch: the parent never needs it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from dataclasses import dataclass
from typing import Any, Literal

from barkbench.measure.optimize import VariantUnsupported
from barkbench.measure.runner import RoundResult, Runner, RunnerInfo, RunSpec, VariantRunner

#: How long a worker may take to start and load its model before the parent gives up.
LOAD_TIMEOUT_S = 1800.0

#: Why a variant failed: out of memory, any other exception in the worker, or a worker that died unanswered.
FailureKind = Literal["oom", "error", "died"]


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
class SaveWav:
    path: str


@dataclass(frozen=True)
class Stop:
    """End the worker."""


Request = Prepare | Generate | SaveWav | Stop


@dataclass(frozen=True)
class Done:
    value: RunnerInfo | RoundResult | str | None


@dataclass(frozen=True)
class Failed:
    kind: Literal["unsupported", "oom", "error"]
    message: str


Reply = Done | Failed


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def classify(exc: BaseException) -> Failed:
    """The reply for a failure in the worker."""
    import torch

    if isinstance(exc, VariantUnsupported):
        return Failed("unsupported", str(exc))
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return Failed("oom", f"out of memory: {_one_line(exc)}")
    return Failed("error", _one_line(exc))


def _handle(runner: VariantRunner, request: Prepare | Generate | SaveWav) -> Done:
    if isinstance(request, Prepare):
        runner.prepare()
        return Done(None)
    if isinstance(request, Generate):
        return Done(runner.generate())
    return Done(runner.save_wav(request.path))


def _worker_main(conn: Any, spec: RunSpec) -> None:
    os.environ.update(spec.env)
    try:
        runner = VariantRunner(spec)
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

    def __init__(self, spec: RunSpec, load_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_worker_main, args=(child, spec), daemon=True, name="barkbench-worker")
        self._process.start()
        child.close()
        info = self._reply(timeout=load_timeout_s)
        assert isinstance(info, RunnerInfo)
        self._info = info

    @property
    def info(self) -> RunnerInfo:
        return self._info

    def _reply(self, timeout: float | None = None) -> RunnerInfo | RoundResult | str | None:
        if timeout is not None and not self._conn.poll(timeout):
            self.close()
            raise VariantFailed(f"worker did not answer within {timeout:.0f} s", "error")
        try:
            reply: Reply = self._conn.recv()
        except (EOFError, ConnectionError):
            self._process.join(5)
            code = self._process.exitcode
            why = "killed (out of memory?)" if code is not None and code < 0 else f"exit code {code}"
            raise VariantFailed(f"worker process died ({why}); its stderr above has the details", "died") from None
        if isinstance(reply, Done):
            return reply.value
        self.close()
        if reply.kind == "unsupported":
            raise VariantUnsupported(reply.message)
        raise VariantFailed(reply.message, reply.kind)

    def _call(self, request: Prepare | Generate | SaveWav) -> RunnerInfo | RoundResult | str | None:
        self._conn.send(request)
        return self._reply()

    def prepare(self) -> None:
        self._call(Prepare())

    def generate(self) -> RoundResult:
        result = self._call(Generate())
        assert isinstance(result, RoundResult)
        return result

    def save_wav(self, path: str) -> str:
        saved = self._call(SaveWav(path))
        assert isinstance(saved, str)
        return saved

    @property
    def pid(self) -> int | None:
        return self._process.pid

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


def start_runner(spec: RunSpec, isolated: bool = True) -> Runner:
    """A fresh worker process per variant (default), or the runner in this process."""
    return WorkerProcess(spec) if isolated else VariantRunner(spec)
