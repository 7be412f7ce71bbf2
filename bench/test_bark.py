"""The benchmark matrix: one test per variant (``--bark-variants``), each in a fresh worker process.

The id of each test is the variant's id (e.g. ``sdpa-fp32-bs8``): pytest-benchmark compares runs by it.
"""

import time

import pytest

# barkbench's engine times each round trip to the variant's worker process with the host clock (perf_counter, GC
# off) and replays the durations into pytest-benchmark; this mark records those settings in the JSON's options. The
# worker synchronizes the device before it answers (its own figure, `seconds` per round, is device-synchronized),
# and this process runs no device work: synchronizing here would only create a CUDA context in the wrong process.
pytestmark = pytest.mark.benchmark(timer=time.perf_counter, disable_gc=True)


def test_generate(benchmark, bark_bench, bark_variant):
    bark_bench.run(benchmark, bark_variant)
