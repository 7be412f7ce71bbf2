"""The CPU memory figure reads the same in fresh processes, whatever ran before (README: Memory on CPU)."""

from __future__ import annotations

import pytest

from barkbench.measure.runner import RunSpec
from barkbench.measure.sources import parse_model_source
from barkbench.measure.worker import WorkerProcess
from barkbench.measure.workload import Workload
from barkbench.variants import Variant

#: Fresh processes doing the same work measured within 0.3 % of each other (README); the issue's goal is 2 %.
SAME_WORK = 0.02


def _figures() -> tuple[int, int]:
    spec = RunSpec(
        source=parse_model_source("tiny"),
        variant=Variant(),
        workload=Workload(semantic_max_new_tokens=8),
        device_type="cpu",
        env={"TRANSFORMERS_VERBOSITY": "error"},
    )
    with WorkerProcess(spec) as worker:
        worker.prepare()
        peak = worker.generate().peak_memory_bytes
        return worker.info.model_memory_bytes, peak


def test_the_first_variant_of_an_empty_cache_measures_like_the_next(tmp_path, monkeypatch):
    # The first worker finds no tiny model and has it built (in another process, since a worker that built its
    # own model read 7 % lower: the build's leftovers moved into its baseline); the second finds it built.
    monkeypatch.setenv("BARKBENCH_CACHE", str(tmp_path / "empty-cache"))
    first_model, first_peak = _figures()
    second_model, second_peak = _figures()
    assert first_model == pytest.approx(second_model, rel=SAME_WORK)
    assert first_peak == pytest.approx(second_peak, rel=SAME_WORK)
