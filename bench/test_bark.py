"""The benchmark matrix: one test per variant (``--bark-variants``), each in a fresh worker process.

The id of each test is the variant's id (e.g. ``sdpa-fp32-bs8``): pytest-benchmark compares runs by it.
"""

import pytest

from barkbench.measure.device import synchronized_perf_counter

# The timer syncs the accelerator before each clock read, so queued kernels are counted where they belong.
pytestmark = pytest.mark.benchmark(timer=synchronized_perf_counter, disable_gc=True)


def test_generate(benchmark, bark_bench, bark_variant):
    bark_bench.run(benchmark, bark_variant)
