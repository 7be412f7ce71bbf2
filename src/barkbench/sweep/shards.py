"""Deterministic, cost-balanced shards of a variant matrix (``--bark-shard K/N``).

pytest-benchmark switches itself off under pytest-xdist, so the unit of parallelism is a whole pytest process with
its own device: each process runs one shard. The partition depends only on the matrix and N, never on the machine,
so every machine computes the same shards, and each variant is in exactly one of them. Values only: no torch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from barkbench.record import SWEEP_KEY
from barkbench.variants import Variant

#: Relative cost of one call by dtype. Half precision is faster on accelerators; CPUs without native half
#: precision emulate it (slower), so the factor is a compromise — the balance only needs the order of magnitude.
DTYPE_FACTOR: Mapping[str, float] = {"fp32": 1.0, "fp16": 0.8, "bf16": 0.8}
#: Offload moves every sub-model's weights host→device on each call; compile pays its compilation once per run.
OFFLOAD_FACTOR = 1.5
COMPILE_FACTOR = 2.0
INT8_FACTOR = 0.8

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ValueError):
    """A ``--bark-shard`` value that is not K/N with 1 <= K <= N; the message says how to fix it."""


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (1-based) of ``count`` shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ShardError(f"shard {self.index}/{self.count}: K must be between 1 and N; e.g. --bark-shard 1/4")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, matrix: Sequence[Variant]) -> list[Variant]:
        """This shard's variants, in the matrix's order."""
        return partition(matrix, self.count)[self.index - 1]


def parse_shard(value: str) -> Shard:
    match = _SPEC.match(value)
    if not match:
        raise ShardError(f"--bark-shard must be K/N (e.g. 2/4), got {value!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def cost(variant: Variant) -> float:
    """Estimated relative cost of measuring ``variant``: batch size × dtype, offload, compile and int8 factors.

    The model factor multiplies every variant of a run alike (one model per run), so it does not change the
    partition and is left out."""
    factor = variant.batch_size * DTYPE_FACTOR.get(variant.dtype, 1.0)
    if variant.offload == "cpu":
        factor *= OFFLOAD_FACTOR
    if variant.compile:
        factor *= COMPILE_FACTOR
    if variant.quantization == "int8":
        factor *= INT8_FACTOR
    return factor


def partition(matrix: Sequence[Variant], count: int) -> list[list[Variant]]:
    """``count`` shards covering ``matrix`` exactly once, balanced by ``cost``: the longest-processing-time
    greedy rule (costliest first, each to the least loaded shard; ties broken by id and shard index), so the
    result depends only on the variants and ``count``. Each shard keeps the matrix's order."""
    if count < 1:
        raise ShardError(f"the number of shards must be >= 1, got {count}")
    loads = [0.0] * count
    owner: dict[str, int] = {}
    for variant in sorted(matrix, key=lambda v: (-cost(v), v.id)):
        if variant.id in owner:
            continue
        target = min(range(count), key=lambda i: (loads[i], i))
        owner[variant.id] = target
        loads[target] += cost(variant)
    shards: list[list[Variant]] = [[] for _ in range(count)]
    seen: set[str] = set()
    for variant in matrix:
        if variant.id not in seen:
            seen.add(variant.id)
            shards[owner[variant.id]].append(variant)
    return shards


def fingerprint(matrix: Sequence[Variant]) -> str:
    """Identifies the whole matrix (the set of variant ids), whatever the order it was given in."""
    ids = "\n".join(sorted({v.id for v in matrix}))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


#: The top-level key of a result file that records the shard (``record.SWEEP_KEY``).
JSON_KEY = SWEEP_KEY


def sweep_record(matrix: Sequence[Variant], shard: Shard | None, workload: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's JSON records so that a merge can tell what is missing: the shard, the full matrix (ids and
    fingerprint), this shard's variants, and the workload every shard must share."""
    selected = shard.select(matrix) if shard else list(matrix)
    return {
        "shard": (shard or Shard(1, 1)).label,
        "matrix_fingerprint": fingerprint(matrix),
        "matrix": [v.id for v in matrix],
        "variants": [v.id for v in selected],
        "workload": dict(workload),
    }
