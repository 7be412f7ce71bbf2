"""The terminal's progress lines: the pytest glue's implementation of the engine's ``Progress``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from barkbench.measure import schedule


class Progress:
    """One terminal line per loaded variant and per round, so a long run shows where it is: the step, the time
    since the run began and an estimate of what is left for the variant and for the run (``schedule.estimate``).
    On an interactive terminal the line is rewritten in place (a live bar); otherwise (CI, a pipe) each step is
    a line of its own."""

    def __init__(
        self,
        config: pytest.Config | None,
        variant_id: str,
        warmup: int,
        rounds: int,
        enabled: bool,
        clock: schedule.RunClock | None = None,
        processes: int = 1,
    ) -> None:
        self._reporter = config.pluginmanager.get_plugin("terminalreporter") if config else None
        self._capture = config.pluginmanager.get_plugin("capturemanager") if config else None
        self._variant_id = variant_id
        self._clock = clock
        self._processes = processes if enabled else 1
        self._steps_per_process = (warmup + rounds) if enabled else 1
        self._steps: list[str] = []
        for p in range(self._processes):
            prefix = f"process {p + 1}/{processes} " if self._processes > 1 else ""
            self._steps += [f"{prefix}warm-up {i + 1}/{warmup}" for i in range(warmup)] if enabled else []
            self._steps += [f"{prefix}round {i + 1}/{rounds}" for i in range(rounds)] if enabled else ["run 1/1"]
        self._done = 0
        #: Wall seconds of this process's calls so far (from one step's announcement to the next).
        self._calls: list[float] = []
        self._step_started: float | None = None
        self._process_started: float | None = None
        self._process_calls = 0
        self._live = bool(self._reporter is not None and getattr(self._reporter, "isatty", False))
        self._line_open = False
        #: Processes started so far, and the step while one loads (None once its first call is announced).
        self._loads = 0
        self._loading_step: str | None = None
        #: Long-form: the seconds of the pieces the call under way has finished.
        self._pieces: list[float] = []

    def warn(self, message: str) -> None:
        """A line about the variant outside the round steps (e.g. its figures failed the noise checks)."""
        self._write(f"[barkbench] {self._variant_id}: {message}", yellow=True)

    def current_step(self) -> str | None:
        """The step under way (the last announced, or the load), e.g. ``round 2/3``."""
        if self._loading_step is not None:
            return self._loading_step
        return self._steps[self._done - 1] if 0 < self._done <= len(self._steps) else None

    def next_round(self) -> None:
        self._loading_step = None
        now = self._clock.now() if self._clock else None
        if self._clock is not None and now is not None:
            self._clock.start()
            if self._step_started is not None:
                self._calls.append(now - self._step_started)
            if self._process_started is None:
                self._process_started = now
            self._step_started = now
            self._process_calls += 1
        # Past the planned steps: rounds the adaptive rule added.
        extra = self._done + 1 - len(self._steps)
        step = self._steps[self._done] if self._done < len(self._steps) else f"extra round {extra}"
        self._done += 1
        line = f"[barkbench] {self._variant_id}: {step}"
        if self._clock is not None:
            line += f" ({schedule.format_eta(self._eta())})"
        self._write(line, live=True)

    def _eta(self) -> schedule.Eta:
        assert self._clock is not None
        per = self._steps_per_process
        # Steps left in this process (the one announced now included); processes of this variant not started.
        in_process = (self._done - 1) % per if per else 0
        calls_left = max(0, per - in_process) if self._done <= len(self._steps) else 1
        process_index = (self._done - 1) // per if per else 0
        later = max(0, self._processes - process_index - 1)
        return self._clock.eta(self._calls, calls_left, later)

    def process_done(self) -> None:
        """A worker process's calls are over: its last call's time and its whole wall time go to the clock (the
        next process of this variant starts its own; another variant's may run in between)."""
        if self._clock is None or self._step_started is None:
            return
        now = self._clock.now()
        self._calls.append(now - self._step_started)
        if self._process_started is not None:
            self._clock.process_finished(now - self._process_started, self._process_calls)
        self._step_started = self._process_started = None
        self._calls = []
        self._process_calls = 0

    def loading(self) -> None:
        """A worker process starts loading: its load counts in the process's wall time, and an interrupt now
        stops it while ``loading the model``."""
        self._loads += 1
        prefix = f"process {self._loads}/{self._processes} " if self._processes > 1 else ""
        self._loading_step = f"{prefix}loading the model"
        if self._clock is not None:
            self._process_started = self._clock.now()

    def piece(self, done: int, total: int, seconds: float) -> None:
        """Long-form: how far the call under way is, with the time its pieces left should take at the pace of those
        done (a call of many pieces runs for minutes between two step lines)."""
        import statistics

        from barkbench.measure.schedule import format_duration

        if done == 1:
            self._pieces = []
        self._pieces.append(seconds)
        left = statistics.fmean(self._pieces) * (total - done)
        step = self.current_step() or "call"
        left_text = f"this call ~{format_duration(left)} left"
        self._write(f"[barkbench] {self._variant_id}: {step}: piece {done}/{total} done ({left_text})", live=True)

    def dropped(self, processes: int) -> None:
        """Processes of this variant that will not run: the run's estimate leaves them out."""
        if self._clock is not None:
            self._clock.drop(processes)

    def close(self) -> None:
        """End the live line (the next output starts on a line of its own)."""
        reporter = self._reporter
        if self._line_open and reporter is not None:
            self._emit(lambda: reporter.write("\n"))
            self._line_open = False

    def _write(self, line: str, live: bool = False, **markup: bool) -> None:
        if self._reporter is None:
            return
        reporter = self._reporter
        if live and self._live:

            def rewrite() -> None:
                if not self._line_open:
                    reporter.ensure_newline()  # off pytest's own line (the file name, the status letters)
                reporter.rewrite(line, erase=True, flush=True)  # no newline: the terminal shows it only when flushed

            self._emit(rewrite)
            self._line_open = True
            return
        if self._line_open:
            self._emit(lambda: reporter.write("\n"))
            self._line_open = False
        self._emit(lambda: reporter.write_line(line, **markup))

    def _emit(self, write: Callable[[], None]) -> None:
        # The test's output is captured at the file-descriptor level; suspend it as pytest's live logging does.
        suspended = self._capture.global_and_fixture_disabled() if self._capture else contextlib.nullcontext()
        with suspended:
            write()
