"""``barkbench overhead``: what the harness costs over a bare ``model.generate`` loop, with its interval.

Two kinds of fresh process, run interleaved (bare 1, harness 1, bare 2, harness 2, ... — ``schedule.plan``), so
drift of the machine falls on both alike:

- bare: a plain ``python`` process that loads the model, builds the inputs, and times ``model.generate`` in a loop
  with ``perf_counter`` (the seed set untimed before each call, ``torch.inference_mode``), nothing else;
- harness: a barkbench worker process (``WorkerProcess``: the variant's loader, the memory call, the trackers,
  the pipe) measured by the engine that measures every benchmark session's variant (``engine.run``: each round
  timed in this process around the round trip, seed untimed, garbage collector off, ``perf_counter``).

Both run the baseline variant (eager, fp32, batch 1) on the same workload and device. On CUDA (``--device cuda``)
the bare loop synchronizes once per call, after ``generate`` and before its clock stops (the previous call's
synchronize left nothing queued at the start), and the harness side is a CUDA worker, so the harness's cost on a GPU
(its CUDA events, allocator and NVML readings, the pipe) is a measured figure. The overhead is mean(harness) /
mean(bare) − 1; its 95 % interval is a percentile bootstrap over the per-process means of each side
(``stats.ratio_interval(..., over="processes")``): process-to-process variance is what a single pair of processes
cannot separate from the harness. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from barkbench import stats as bstats
from barkbench.measure import schedule

#: The bare loop, run with ``python -c``: the same model files, inputs and generate kwargs as the worker uses.
BARE_LOOP = """
import json, sys, time
args = json.loads(sys.argv[1])
import torch
if args["threads"]:
    torch.set_num_threads(args["threads"])
from transformers import set_seed
from barkbench.measure import sources, stages, workload
source = sources.parse_model_source(args["model"])
device = args["device"]
model = sources.load_model(source).eval().to(device)
load = workload.Workload(semantic_max_new_tokens=args["tokens"])
inputs, _ = workload.prepare_inputs(sources.load_processor(source), load, device)
# CUDA: the one host sync per call, so the clock stops when the call's kernels are done; CPU: nothing to wait for.
finish = torch.cuda.synchronize if device == "cuda" else (lambda: None)
kwargs = {**inputs, **load.call_kwargs(), "return_output_lengths": True}
if args["fixed_length"]:
    kwargs.update(stages.fixed_length_kwargs(args["tokens"]))
times = []
for _ in range(args["warmup"] + args["rounds"]):
    set_seed(load.seed)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(**kwargs)
    finish()
    times.append(time.perf_counter() - start)
print("BARE_TIMES=" + json.dumps(times[args["warmup"]:]))
"""


@dataclass(frozen=True)
class OverheadResult:
    """Per-process round timings of each side, and the overhead with its interval (None below 2 processes)."""

    bare: tuple[tuple[float, ...], ...]
    harness: tuple[tuple[float, ...], ...]
    #: The order the processes ran in, e.g. ("bare", "harness", "bare", ...).
    order: tuple[str, ...]
    overhead: float
    interval: bstats.Interval | None
    #: ``--paired``: each process ran both sides, pair by pair (``bare[i][j]`` and ``harness[i][j]`` one right after
    #: the other; ``order`` is then one process's sequence of calls).
    paired: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "paired in each worker process (ABBA)" if self.paired else "interleaved fresh processes",
            "bare_rounds_s": [list(p) for p in self.bare],
            "harness_rounds_s": [list(p) for p in self.harness],
            "bare_process_means_s": [statistics.fmean(p) for p in self.bare],
            "harness_process_means_s": [statistics.fmean(p) for p in self.harness],
            "order": list(self.order),
            **({"median_pair_overhead": self.median_pair_overhead()} if self.paired else {}),
            "overhead": self.overhead,
            "overhead_interval": None
            if self.interval is None
            else {"low": self.interval.low - 1, "high": self.interval.high - 1, "method": self.interval.describe()},
        }

    def median_pair_overhead(self) -> float:
        """The median over pairs of harness / bare − 1: beside the ratio of means, a figure one slow call cannot
        move (paired results only)."""
        pairs = zip(
            (s for p in self.harness for s in p), (s for p in self.bare for s in p), strict=True
        )  # the same count per process on both sides: paired_overhead_of's input
        return statistics.median(h / b for h, b in pairs) - 1

    def summary(self) -> str:
        share = f"{self.overhead * 100:+.2f} %"
        if self.interval is None:
            return f"harness overhead {share} (no interval from fewer than 2 processes per side)"
        low, high = (self.interval.low - 1) * 100, (self.interval.high - 1) * 100
        return f"harness overhead {share}, 95 % interval {low:+.2f} % to {high:+.2f} % ({self.interval.describe()})"


def overhead_of(bare: list[list[float]], harness: list[list[float]], order: list[str]) -> OverheadResult:
    """The overhead from each side's per-process round timings (pure: tested on crafted figures)."""
    bare_means = [statistics.fmean(p) for p in bare]
    harness_means = [statistics.fmean(p) for p in harness]
    ratio = statistics.fmean(harness_means) / statistics.fmean(bare_means)
    interval = bstats.ratio_interval(harness_means, bare_means, over="processes")
    return OverheadResult(
        bare=tuple(tuple(p) for p in bare),
        harness=tuple(tuple(p) for p in harness),
        order=tuple(order),
        overhead=ratio - 1,
        interval=interval,
    )


def paired_overhead_of(bare: list[list[float]], harness: list[list[float]], order: list[str]) -> OverheadResult:
    """The overhead from pairs measured in the same processes (pure): ``bare[i][j]`` and ``harness[i][j]`` ran one
    right after the other in process ``i``; the interval resamples whole pairs."""
    flat_bare = [s for p in bare for s in p]
    flat_harness = [s for p in harness for s in p]
    interval = bstats.paired_ratio_interval(flat_harness, flat_bare)
    return OverheadResult(
        bare=tuple(tuple(p) for p in bare),
        harness=tuple(tuple(p) for p in harness),
        order=tuple(order),
        overhead=statistics.fmean(flat_harness) / statistics.fmean(flat_bare) - 1,
        interval=interval,
        paired=True,
    )


def pair_order(rounds: int) -> list[str]:
    """ABBA: harness first in even pairs, bare first in odd ones, so a trend within a process (warming caches, a
    clock speeding up) falls on both sides alike."""
    return [side for r in range(rounds) for side in (("harness", "bare") if r % 2 == 0 else ("bare", "harness"))]


def bare_loop_times(
    model: str,
    tokens: int,
    warmup: int,
    rounds: int,
    threads: int | None,
    fixed: bool,
    env: dict[str, str] | None = None,
    device: str = "cpu",
) -> list[float]:
    """One fresh ``python`` process running ``BARE_LOOP`` on ``device``: the timed rounds' seconds. ``env`` adds to
    the environment (a worker's, so both see the same settings)."""
    args = {
        "model": model,
        "tokens": tokens,
        "warmup": warmup,
        "rounds": rounds,
        "threads": threads,
        "fixed_length": fixed,
        "device": device,
    }
    environ = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", BARE_LOOP, json.dumps(args)], capture_output=True, text=True, env=environ, timeout=3600
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the bare loop failed (exit {done.returncode}): {tail[0]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("BARE_TIMES="))
    return [float(x) for x in json.loads(line.split("=", 1)[1])]


def _harness_process(
    model: str, tokens: int, warmup: int, rounds: int, threads: int | None, fixed: bool, device: str = "cpu"
) -> list[float]:
    """One barkbench worker process measured by the engine, as a benchmark session measures a variant: its timed
    rounds' seconds."""
    from barkbench.measure import engine

    spec = _baseline_spec(model, tokens, threads, fixed, device)
    (measured,) = engine.run(engine.Plan(specs=(spec,), warmup_rounds=warmup, rounds=rounds)).values()
    if measured.interruption is not None:
        raise measured.interruption.exception
    if not measured.complete:
        why = measured.failure.message if measured.failure else measured.unsupported
        raise RuntimeError(f"the harness process failed: {why}")
    return measured.round_seconds


def _baseline_spec(model: str, tokens: int, threads: int | None, fixed: bool, device: str) -> Any:
    """The worker spec both kinds of harness side run: the baseline variant (eager, fp32, batch 1)."""
    from barkbench.measure import sources
    from barkbench.measure.runner import RunSpec
    from barkbench.measure.workload import Workload
    from barkbench.variants import Variant

    return RunSpec(
        source=sources.parse_model_source(model),
        variant=Variant(),
        workload=Workload(semantic_max_new_tokens=tokens),
        device_type=device,
        env={"TRANSFORMERS_VERBOSITY": "error"},
        fixed_length=fixed,
        threads=threads,
    )


def measure(
    model: str,
    processes: int,
    rounds: int,
    warmup: int = 1,
    tokens: int = 64,
    threads: int | None = None,
    fixed_length: bool = True,
    log: Any = None,
    device: str = "cpu",
) -> OverheadResult:
    """Run ``processes`` bare and ``processes`` harness processes, interleaved, on ``device`` ("cpu" or "cuda";
    this process makes no device call: both sides are child processes). ``measure_paired`` takes the same
    arguments."""
    bare: list[list[float]] = []
    harness: list[list[float]] = []
    order: list[str] = []
    for slot in schedule.plan(["bare", "harness"], processes, interleave=True):
        run = bare_loop_times if slot.variant == "bare" else _harness_process
        times = run(model, tokens, warmup, rounds, threads, fixed_length, device=device)
        (bare if slot.variant == "bare" else harness).append(times)
        order.append(slot.variant)
        if log is not None:
            log(f"{slot.variant} process {slot.process + 1}/{processes}: mean {statistics.fmean(times):.4f} s")
    return overhead_of(bare, harness, order)


def measure_paired(
    model: str,
    processes: int,
    rounds: int,
    warmup: int = 1,
    tokens: int = 64,
    threads: int | None = None,
    fixed_length: bool = True,
    log: Any = None,
    device: str = "cpu",
) -> OverheadResult:
    """``--paired``: ``processes`` barkbench worker processes one after another; in each, after ``warmup`` calls of
    each kind, ``rounds`` pairs in ``pair_order``: a harness round timed by the engine's ``timed_round`` (the round
    trip, as every session times its rounds) and a bare call timed in the worker (``VariantRunner.bare_generate``:
    no tracker, no pipe). Both sides share the process, its allocator and its warm state, so process-to-process
    differences, which dwarf 1 % on a shared machine, cancel."""
    bare: list[list[float]] = []
    harness: list[list[float]] = []
    order = pair_order(rounds)
    for process in range(processes):
        b, h = _paired_process(model, tokens, warmup, order, threads, fixed_length, device)
        bare.append(b)
        harness.append(h)
        if log is not None:
            log(
                f"process {process + 1}/{processes}: bare mean {statistics.fmean(b):.4f} s, "
                f"harness mean {statistics.fmean(h):.4f} s"
            )
    return paired_overhead_of(bare, harness, order)


def _paired_process(
    model: str, tokens: int, warmup: int, order: list[str], threads: int | None, fixed: bool, device: str
) -> tuple[list[float], list[float]]:
    """One worker process's (bare seconds, harness seconds), pair by pair."""
    from barkbench.measure import engine
    from barkbench.measure.worker import start_runner

    runner = start_runner(_baseline_spec(model, tokens, threads, fixed, device), isolated=True)
    progress = engine.SilentProgress()

    def bare() -> float:
        runner.prepare()  # the seed, untimed, as before a harness round
        return runner.bare_generate()

    sides = {"bare": bare, "harness": lambda: engine.timed_round(runner, progress)[0]}
    try:
        for _ in range(warmup):
            sides["harness"]()
            sides["bare"]()
        times: dict[str, list[float]] = {"bare": [], "harness": []}
        for side in order:
            times[side].append(sides[side]())
        return times["bare"], times["harness"]
    finally:
        runner.close()
