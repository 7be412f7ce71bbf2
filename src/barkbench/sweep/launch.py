"""``barkbench sweep``: one pytest process per shard, submitted through submitit (a Slurm job array on a cluster,
its local executor on a workstation), then the shards' JSON files merged.

Scheduling is submitit's; this module only decides what each job runs and where its result goes. On a local
machine with GPUs each shard gets one GPU of its own (submitit sets ``CUDA_VISIBLE_DEVICES`` per job) and at most
one shard runs per GPU; on a CPU machine the shards run one at a time (two benchmarks sharing cores would time
each other). A shard whose file already holds every one of its variants is not run again, so re-running a sweep
after a failure retries only the shards with missing or failed variants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkbench.results import merge as merge_mod
from barkbench.results.load import ResultsError
from barkbench.sweep.shards import JSON_KEY

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class ShardJob:
    """What one submitit job runs: ``python -m pytest ARGS --bark-shard K/N --benchmark-json FILE`` in ``cwd``.
    Pickled by submitit and called in its job process; returns pytest's exit status."""

    index: int
    count: int
    pytest_args: tuple[str, ...]
    json_path: str
    cwd: str

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            *self.pytest_args,
            f"--bark-shard={self.label}",
            f"--benchmark-json={self.json_path}",
        ]

    def __call__(self) -> int:
        # The job's stdout/stderr are submitit's log files: pytest's output lands there, named in the report.
        print(" ".join(self.command()), flush=True)
        return subprocess.run(self.command(), cwd=self.cwd, check=False).returncode


@dataclass(frozen=True)
class ShardOutcome:
    """How one shard's job ended; ``log`` is submitit's stdout file of the job (pytest's output)."""

    label: str
    state: str  # ok | failures (pytest exit 1: some variant failed) | failed | skipped (already complete)
    json_path: str
    log: str | None = None
    detail: str = ""

    def line(self) -> str:
        where = f"; log: {self.log}" if self.log else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"shard {self.label}: {self.state}{detail}{where}"


@dataclass(frozen=True)
class SweepResult:
    outcomes: tuple[ShardOutcome, ...]
    merged: merge_mod.Merged | None
    output: Path

    @property
    def ok(self) -> bool:
        return (
            self.merged is not None
            and self.merged.complete
            and all(o.state in ("ok", "skipped") for o in self.outcomes)
        )


@dataclass
class _Slot:
    """Where a local job may run: a GPU index, or None for the CPU (one job at a time)."""

    gpu: int | None
    job: Any = None
    shard: ShardJob | None = None


def visible_gpus() -> list[int]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else what ``nvidia-smi -L`` lists; no
    torch import and no CUDA context here."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(x) for x in env.split(",") if x.strip().isdigit()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [i for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def shard_complete(path: Path) -> bool:
    """True when ``path`` holds a successful result for every variant its shard record names, or the shard
    skipped it (unsupported there: running it again would skip it again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    record = data.get(JSON_KEY) if isinstance(data, dict) else None
    if not isinstance(record, dict):
        return False
    ok = {
        (b.get("extra_info") or {}).get("variant")
        for b in data.get("benchmarks", [])
        if (b.get("extra_info") or {}).get("status") == "ok" and b.get("stats")
    }
    return set(record.get("variants", [])) <= ok | set(record.get("skipped") or {})


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ResultsError("barkbench sweep needs submitit; install it with `pip install 'barkbench[sweep]'`") from None
    return submitit


def _written(path: Path) -> bool:
    """Whether the shard's pytest saved its JSON file. A shard that saved nothing may still leave an empty file:
    pytest-benchmark 5.1 and 5.2 open --benchmark-json for writing while parsing the options (argparse.FileType),
    before anything runs."""
    return path.is_file() and path.stat().st_size > 0


def _outcome(shard: ShardJob, job: Any) -> ShardOutcome:
    log = str(job.paths.stdout)
    try:
        rc = job.result()
    except Exception as exc:  # submitit raises FailedJobError / UncompletedJobError (timeout, killed)
        reason = " ".join(str(exc).split())[:200]
        return ShardOutcome(shard.label, "failed", shard.json_path, log, reason)
    if not _written(Path(shard.json_path)):
        return ShardOutcome(shard.label, "failed", shard.json_path, log, f"pytest exited {rc} without a JSON file")
    if rc == 0:
        return ShardOutcome(shard.label, "ok", shard.json_path, log)
    return ShardOutcome(shard.label, "failures", shard.json_path, log, f"pytest exited {rc}")


def sweep(
    pytest_args: Sequence[str],
    shards: int,
    out_dir: Path,
    executor: str = "local",
    output: Path | None = None,
    slurm_partition: str | None = None,
    gpus_per_task: int = 1,
    timeout_min: int = 120,
    poll_s: float = 5.0,
    gpus: Sequence[int] | None = None,
    progress: Callable[[str], None] = lambda line: print(f"barkbench: {line}", file=sys.stderr, flush=True),
    slurm_parameters: dict[str, Any] | None = None,
) -> SweepResult:
    """Run the shards, wait, merge what exists into ``output`` (default ``out_dir/merged.json``)."""
    submitit = _import_submitit()
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    output = output or out_dir / "merged.json"
    jobs = [
        ShardJob(k, shards, tuple(pytest_args), str(out_dir / f"shard-{k}-of-{shards}.json"), os.getcwd())
        for k in range(1, shards + 1)
    ]
    outcomes: dict[str, ShardOutcome] = {}
    todo: list[ShardJob] = []
    for job in jobs:
        if shard_complete(Path(job.json_path)):
            outcomes[job.label] = ShardOutcome(job.label, "skipped", job.json_path, detail="already complete")
        else:
            todo.append(job)
    if outcomes:
        progress(f"{len(outcomes)} shard(s) already complete, {len(todo)} to run")
    logs = out_dir / "logs"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=logs / "%A_%a", cluster="slurm")
        params: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": gpus_per_task, "tasks_per_node": 1}
        if slurm_partition:
            params["slurm_partition"] = slurm_partition
        ex.update_parameters(name="barkbench-sweep", **params, **(slurm_parameters or {}))
        submitted = list(zip(todo, ex.map_array(_run_shard, todo), strict=True)) if todo else []
        _wait(submitted, progress, poll_s)
        for shard, job in submitted:
            outcomes[shard.label] = _outcome(shard, job)
    elif executor == "local":
        devices = list(visible_gpus() if gpus is None else gpus)
        slots = [_Slot(g) for g in devices] or [_Slot(None)]
        pending = list(todo)
        finished = 0
        while pending or any(s.job is not None for s in slots):
            for slot in slots:
                if slot.job is not None and slot.job.done():
                    assert slot.shard is not None
                    outcome = _outcome(slot.shard, slot.job)
                    outcomes[slot.shard.label] = outcome
                    finished += 1
                    progress(f"{outcome.line()} [{finished}/{len(todo)} done]")
                    slot.job = slot.shard = None
                if slot.job is None and pending:
                    shard = pending.pop(0)
                    ex = submitit.LocalExecutor(folder=logs)
                    if slot.gpu is None:
                        ex.update_parameters(timeout_min=timeout_min, gpus_per_node=0)
                    else:
                        ex.update_parameters(timeout_min=timeout_min, gpus_per_node=1, visible_gpus=(slot.gpu,))
                    slot.job, slot.shard = ex.submit(shard), shard
                    where = "CPU" if slot.gpu is None else f"GPU {slot.gpu}"
                    progress(f"shard {shard.label} started on {where}; log: {slot.job.paths.stdout}")
            time.sleep(poll_s)
    else:
        raise ResultsError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    ordered = tuple(outcomes[j.label] for j in jobs)
    files = [Path(j.json_path) for j in jobs if _written(Path(j.json_path))]
    merged = merge_mod.merge(files) if files else None
    if merged is not None:
        merge_mod.write(merged, output)
    return SweepResult(ordered, merged, output)


def _run_shard(job: ShardJob) -> int:
    return job()


def _wait(submitted: Sequence[tuple[ShardJob, Any]], progress: Callable[[str], None], poll_s: float) -> None:
    reported: set[str] = set()
    while len(reported) < len(submitted):
        for shard, job in submitted:
            if shard.label not in reported and job.done():
                reported.add(shard.label)
                progress(f"shard {shard.label} ended ({job.state}) [{len(reported)}/{len(submitted)} done]")
        if len(reported) < len(submitted):
            time.sleep(poll_s)
