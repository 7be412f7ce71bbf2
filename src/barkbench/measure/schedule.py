"""The order worker processes run in, when to stop adding rounds, and how long is left: pure rules on plain
numbers (no torch, no processes), so each is tested on crafted figures.

- Several processes per variant, as pyperf does (its manager spawns ``--processes`` workers one after another
  for one benchmark, each with its own warm-up, and pools their values): process-to-process variance (address
  layout, allocator and page-cache state, thread placement) is part of what a fresh run of a variant sees, and one
  process per variant cannot tell it from the harness's own effect.
- Interleaved order, as asv's ``--interleave-processes`` (``asv run``: for each round, every benchmark once in a
  fresh process, then the next round): ``A1 B1 C1 A2 B2 C2 ...``, so slow drift of the machine (thermal state,
  other load coming and going) falls on every variant alike instead of on whichever ran last. asv also reverses
  the commits' order on every other round; barkbench keeps the plain cyclic order the variants were collected in,
  so the schedule reads the same as the test order within each pass.
- Adaptive rounds stop when the 95 % Student-t interval of the mean is narrow enough relative to the mean, or when
  a cap (rounds, seconds) is hit; the decision says which.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

#: Default cap on a variant's measured rounds when a target precision is given without --bark-max-rounds.
DEFAULT_MAX_ROUNDS = 50
#: Default cap (--bark-max-time) on the seconds of a variant's timed rounds, after which no round is added.
DEFAULT_MAX_SECONDS = 600.0


@dataclass(frozen=True)
class Slot:
    """One worker process of one variant: the unit the schedule orders."""

    variant: str
    #: 0-based index of the process among the variant's processes.
    process: int


def plan(variants: Sequence[str], processes: int, interleave: bool) -> list[Slot]:
    """The order of every worker process of every variant.

    Interleaved: pass 1 runs each variant's first process in the given order, pass 2 each variant's second, and so
    on (``A1 B1 C1 A2 B2 C2``). Otherwise each variant's processes run back to back (``A1 A2 B1 B2``), as pyperf
    runs one benchmark's workers before the next benchmark's.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if len(set(variants)) != len(variants):
        raise ValueError(f"variant ids must be distinct, got {list(variants)}")
    if interleave:
        return [Slot(v, p) for p in range(processes) for v in variants]
    return [Slot(v, p) for v in variants for p in range(processes)]


# -- adaptive rounds -----------------------------------------------------------------------------------------


def relative_half_width(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t confidence interval of the mean, divided by the mean (None below 2 values or
    with a non-positive mean). The t interval, not a bootstrap: with few rounds the bootstrap understates the
    width (it cannot see past the values it has), and the stopping rule must not stop early on that."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean <= 0:
        return None
    sd = statistics.stdev(values)
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1))
    return t * sd / math.sqrt(len(values)) / mean


@dataclass(frozen=True)
class Decision:
    """Whether to time another round, and if not, why."""

    more: bool
    #: Whether the target precision holds (None while undecided or when no target is set).
    precision_met: bool | None
    #: "target met", "max rounds reached", "time cap reached", or "" while more rounds are wanted.
    reason: str
    #: The current relative half-width (None below 2 rounds).
    relative_half_width: float | None


@dataclass(frozen=True)
class PrecisionRule:
    """--bark-target-precision with its caps: add rounds until the 95 % CI half-width of the mean is at most
    ``target`` × the mean, or ``max_rounds`` rounds were timed, or the rounds took ``max_seconds``."""

    target: float
    #: Never fewer than this many rounds (the --bark-rounds × --bark-processes the schedule asks for anyway).
    min_rounds: int = 2
    max_rounds: int = DEFAULT_MAX_ROUNDS
    #: Seconds of timed rounds (their sum) after which no round is added; None: no time cap.
    max_seconds: float | None = None
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target precision must be a fraction between 0 and 1, got {self.target}")
        if self.max_rounds < max(2, self.min_rounds):
            raise ValueError(
                f"max rounds {self.max_rounds} is below the rounds the run asks for ({max(2, self.min_rounds)})"
            )

    def decide(self, values: Sequence[float]) -> Decision:
        """After each timed round: ``values`` are all the variant's round timings so far."""
        width = relative_half_width(values, self.confidence)
        n = len(values)
        if n >= max(2, self.min_rounds) and width is not None and width <= self.target:
            return Decision(False, True, "target met", width)
        if n >= self.max_rounds:
            return Decision(False, False, "max rounds reached", width)
        if self.max_seconds is not None and sum(values) >= self.max_seconds and n >= max(2, self.min_rounds):
            return Decision(False, False, "time cap reached", width)
        return Decision(True, None, "", width)


# -- time left -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eta:
    """Seconds since the run began, and left for the variant under way and for the whole run (None: nothing to
    estimate from yet)."""

    elapsed_s: float
    variant_left_s: float | None
    run_left_s: float | None


def estimate(
    elapsed_s: float,
    call_seconds: Sequence[float],
    calls_left: int,
    finished_seconds: Sequence[float],
    finished_calls: Sequence[int],
    variant_later_calls: int = 0,
    run_later_calls: int = 0,
) -> Eta:
    """Time left, from the calls timed so far. The unit of work is one worker process (a variant has
    --bark-processes of them, one by default).

    - The process under way: its calls left (warm-up and rounds not yet run) times the mean of its own calls so far
      (for the first warm-up, nothing of its own: the per-call figure below stands in).
    - Processes not started (``variant_later_calls`` of this variant's, ``run_later_calls`` of the others'): their
      calls times the mean wall seconds per call of the processes already finished — their whole wall time
      (loading, memory call, warm-up, rounds) divided by their calls, so loading is spread over the calls. Before
      any process has finished, the process under way's mean call stands in (loading not counted: an
      underestimate that the first finished process corrects). Nothing fancier: no scaling by dtype or batch.
    """
    if min(calls_left, variant_later_calls, run_later_calls) < 0:
        raise ValueError("calls left cannot be negative")
    own = statistics.fmean(call_seconds) if call_seconds else None
    done_calls = sum(finished_calls)
    per_call = sum(finished_seconds) / done_calls if done_calls > 0 else own

    def cost(calls: int, per: float | None) -> float | None:
        if calls == 0:
            return 0.0
        return None if per is None else per * calls

    here = cost(calls_left, own if own is not None else per_call)
    later = cost(variant_later_calls, per_call)
    variant_left = None if here is None or later is None else here + later
    others = cost(run_later_calls, per_call)
    run_left = None if variant_left is None or others is None else variant_left + others
    return Eta(elapsed_s, variant_left, run_left)


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``1m15s``; ``None`` -> ``?``."""
    if seconds is None:
        return "?"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_eta(eta: Eta) -> str:
    """The progress line's tail: ``elapsed 1m05s, variant ~30s left, run ~4m10s left``."""
    return (
        f"elapsed {format_duration(eta.elapsed_s)}, variant ~{format_duration(eta.variant_left_s)} left, "
        f"run ~{format_duration(eta.run_left_s)} left"
    )


class RunClock:
    """The session's figures for the estimate: when the first variant began, how many worker processes the run
    plans, and the wall seconds and calls of those finished. Mutable, one per session."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._start: float | None = None
        #: Worker processes the run will start (variants collected × --bark-processes); 0: unknown.
        self.planned = 0
        #: Calls (warm-up + rounds) one process makes, for the processes not started.
        self.calls_per_process = 0
        self.finished_seconds: list[float] = []
        self.finished_calls: list[int] = []
        self.dropped = 0

    def now(self) -> float:
        return self._now()

    def start(self) -> None:
        if self._start is None:
            self._start = self._now()

    @property
    def elapsed(self) -> float:
        return 0.0 if self._start is None else self._now() - self._start

    def process_finished(self, seconds: float, calls: int) -> None:
        self.finished_seconds.append(seconds)
        self.finished_calls.append(calls)

    def drop(self, processes: int) -> None:
        """Planned processes that will not run (a skipped or failed variant's)."""
        self.dropped += processes

    def eta(self, call_seconds: Sequence[float], calls_left: int, variant_later_processes: int) -> Eta:
        """The estimate for the process under way; the run's other processes are what is planned and not done."""
        per = self.calls_per_process
        later = max(0, self.planned - self.dropped - len(self.finished_seconds) - 1 - variant_later_processes)
        run_later = later * per if self.planned else 0
        eta = estimate(
            self.elapsed,
            call_seconds,
            calls_left,
            self.finished_seconds,
            self.finished_calls,
            variant_later_processes * per,
            run_later,
        )
        # An unknown plan (benchmark tests not parametrized by --bark-variants) cannot say what the run has left.
        return eta if self.planned else Eta(eta.elapsed_s, eta.variant_left_s, None)
