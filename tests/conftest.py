"""Shared test set-up: offline hub, one tiny-model cache per test session, pytester for sub-sessions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports transformers: a missing model must fail in a second, not after network time-outs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# One cache per test session (workers inherit the environment), unless the caller pins one to reuse builds.
os.environ.setdefault("BARKBENCH_CACHE", tempfile.mkdtemp(prefix="barkbench-test-cache-"))

pytest_plugins = ["pytester"]


def _load_hypothesis_profiles() -> None:
    """Hypothesis profiles, picked by HYPOTHESIS_PROFILE. "ci" (the default) keeps the example counts small enough
    for 2 CPU cores — each end-to-end example is a few generate calls — and derandomizes them so a CI failure
    reproduces; "dev" runs ten times more random examples for a longer local search. No deadline: one example is
    seconds of model time, and its duration says nothing about correctness.

    Optional: a GPU box's python may lack hypothesis (issue 24). Then the files that use it skip themselves
    (``pytest.importorskip``, with the reason) and the rest of the suite runs."""
    try:
        from hypothesis import settings
    except ImportError:
        return
    settings.register_profile("ci", max_examples=5, deadline=None, derandomize=True, print_blob=True)
    settings.register_profile("dev", max_examples=50, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_load_hypothesis_profiles()

REPO = Path(__file__).resolve().parents[1]
#: A benchmark sub-session's quickest settings on the CPU: 8 semantic tokens, one round, no warm-up.
FAST = [
    "--bark-semantic-tokens",
    "8",
    "--bark-rounds",
    "1",
    "--bark-warmup-rounds",
    "0",
    "-p",
    "no:cacheprovider",
    "--bark-device",
    "cpu",
]


def running_stack() -> str:
    """``legacy`` (transformers 4.x, where optimum's BetterTransformer runs) or ``current`` (transformers 5.x)."""
    from importlib import metadata

    from packaging.version import Version

    return "legacy" if Version(metadata.version("transformers")).major < 5 else "current"


# End-to-end tests of the harness's own machinery (signals, schedules, sweeps, error paths) run pytest
# sub-sessions that cost 10-60 s each, almost all of it starting processes and importing torch; what they check
# does not depend on the transformers version. Marked `one_stack("current")` or `one_stack("legacy")`, each runs
# on one stack only — the two halves balance the stacks' times, which `./dev.sh test` runs side by side — so CI
# stays within its time budget. Tests whose figures or code paths differ between the stacks (loading, attention,
# memory, budgets, quality) are not marked and run on both. BARKBENCH_TEST_ALL_STACKS=1 runs every test on
# every stack.
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "one_stack(name): a stack-independent end-to-end test that runs on that stack only "
        "(BARKBENCH_TEST_ALL_STACKS=1 runs it on both)",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("one_stack")
    if marker is None or os.environ.get("BARKBENCH_TEST_ALL_STACKS") == "1":
        return
    wanted = marker.args[0]
    if wanted not in ("current", "legacy"):
        raise pytest.UsageError(f"one_stack({wanted!r}) on {item.nodeid}: name 'current' or 'legacy'")
    if wanted != running_stack():
        pytest.skip(
            f"stack-independent end-to-end test, run on the {wanted} stack only to keep CI within its time; "
            "BARKBENCH_TEST_ALL_STACKS=1 runs it here too"
        )


@pytest.fixture(scope="session")
def tiny_source():
    from barkbench.measure import sources

    source = sources.parse_model_source("tiny")
    sources.resolve(source)  # build once for the session
    return source


@pytest.fixture(scope="session")
def tiny_dir(tiny_source) -> Path:
    from barkbench.measure import sources

    return Path(sources.resolve(tiny_source))


@pytest.fixture()
def bench_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder holding the repo's bench/ suite, to run benchmark sub-sessions. No conftest: the plugin
    loads through barkbench's ``pytest11`` entry point, as in any project that installs barkbench.

    Sub-sessions run on the CPU unless a test names another device on its command line (which comes after
    PYTEST_ADDOPTS, so it wins): their expectations (RSS memory, CPU skip reasons, ``cpu`` in messages) are the
    CPU's, and on a GPU machine ``auto`` would pick CUDA. The CUDA runs are the GPU acceptance's benchmark."""
    # pytester clears PYTEST_ADDOPTS when it starts; set after it, for this test's sub-sessions only.
    monkeypatch.setenv("PYTEST_ADDOPTS", "--bark-device cpu")
    bench = pytester.mkdir("bench")
    (bench / "test_bark.py").write_text((REPO / "bench" / "test_bark.py").read_text())
    return pytester
