"""The worker transport: typed replies, and the three failure kinds kept apart (oom, error, died) up to the
parent, where a failed variant's ``failure_kind`` comes from."""

from __future__ import annotations

import pytest
import torch

from barkbench.measure.optimize import VariantUnsupported
from barkbench.measure.runner import FAIL_VARIANT_ENV, RunSpec
from barkbench.measure.worker import Failed, VariantFailed, WorkerProcess, classify
from barkbench.measure.workload import Workload
from barkbench.variants import Variant


def test_a_failure_in_the_worker_is_classified_by_kind():
    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")) == Failed(
        "oom", "out of memory: OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"
    )
    # A RuntimeError saying so is an out-of-memory too (older torch, other backends).
    assert classify(RuntimeError("MPS backend out of memory\nmore")).kind == "oom"
    assert classify(ValueError("bad\nsecond line")) == Failed("error", "ValueError: bad")
    assert classify(VariantUnsupported("needs a GPU")) == Failed("unsupported", "needs a GPU")


@pytest.mark.parametrize(("kind", "message"), [("died", "worker process died (killed"), ("error", "RuntimeError")])
def test_the_parent_keeps_the_failure_kind(tiny_source, kind: str, message: str):
    variant = Variant()
    spec = RunSpec(
        source="tiny",
        variant=variant,
        workload=Workload(semantic_max_new_tokens=8),
        device_type="cpu",
        env={FAIL_VARIANT_ENV: f"{variant.id}:{kind}", "OMP_NUM_THREADS": "1"},
    )
    with WorkerProcess(spec) as worker:
        worker.prepare()
        with pytest.raises(VariantFailed) as failed:
            worker.generate()
    assert failed.value.kind == kind and message in str(failed.value)
