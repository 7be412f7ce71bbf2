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

# Hypothesis profiles, picked by HYPOTHESIS_PROFILE. "ci" (the default) keeps the example counts small enough for
# 2 CPU cores — each end-to-end example is a few generate calls — and derandomizes them so a CI failure
# reproduces; "dev" runs ten times more random examples for a longer local search. No deadline: one example is
# seconds of model time, and its duration says nothing about correctness.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", max_examples=5, deadline=None, derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("dev", max_examples=50, deadline=None, print_blob=True)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


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
def bench_pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder holding the repo's bench/ suite, to run benchmark sub-sessions. No conftest: the plugin
    loads through barkbench's ``pytest11`` entry point, as in any project that installs barkbench."""
    bench = pytester.mkdir("bench")
    (bench / "test_bark.py").write_text((REPO / "bench" / "test_bark.py").read_text())
    return pytester
