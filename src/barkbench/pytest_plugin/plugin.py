"""barkbench's pytest plugin, registered with the ``pytest11`` entry point: installing barkbench gives any project
the ``--bark-*`` options and the ``bark_bench`` / ``bark_variant`` fixtures, with no conftest.

The hooks here only delegate: options are declared and parsed in ``options`` and read once into ``config``, the
session's state and its end-of-session work live in ``session.BarkSession``, pytest-benchmark patches in
``benchmark_patches``.
"""

from __future__ import annotations

from typing import Any

import pytest

from barkbench.pytest_plugin import options
from barkbench.pytest_plugin.config import BenchOptions
from barkbench.pytest_plugin.session import BarkBench, BarkSession
from barkbench.sweep import shards as shards_mod
from barkbench.variants import Variant

#: The name the session object is registered under (``config.pluginmanager.get_plugin(SESSION_PLUGIN)``).
SESSION_PLUGIN = "barkbench-session"


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    bench_options = BenchOptions.read(config)
    options.check_device(bench_options.device)
    config.pluginmanager.register(BarkSession(config, bench_options), SESSION_PLUGIN)


def bark_session(config: pytest.Config) -> BarkSession:
    """This pytest session's ``BarkSession``."""
    session = config.pluginmanager.get_plugin(SESSION_PLUGIN)
    assert isinstance(session, BarkSession), "barkbench's pytest_configure has not run"
    return session


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bark_variant" in metafunc.fixturenames:
        # Parametrized by id (a plain string: pytest-benchmark stores params in its JSON), resolved to the
        # Variant by the fixture below.
        ids = [v.id for v in bark_session(metafunc.config).config.variants]
        metafunc.parametrize("bark_variant", ids, ids=ids, indirect=True)


@pytest.fixture()
def bark_variant(request: pytest.FixtureRequest) -> Variant:
    """The variant this test instance runs (one test per ``--bark-variants`` entry, id = the variant's id)."""
    by_id = {v.id: v for v in bark_session(request.config).config.variants}
    return by_id[request.param]


@pytest.fixture(scope="session")
def bark_bench(request: pytest.FixtureRequest) -> BarkBench:
    """``bark_bench.run(benchmark, bark_variant)`` measures one variant and records its figures."""
    return bark_session(request.config).bench()


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from barkbench.measure import device

    machine_info["barkbench"] = device.machine_info(bark_session(config).config.device_type)
    # CPU model, frequency policy and the load at the session's start: what makes two runs' timings differ.
    machine_info["barkbench"]["cpu"] = bark_session(config).machine_facts.as_dict()


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    # The shard, the whole matrix's fingerprint and the workload: what `barkbench merge` checks and completes.
    session = bark_session(config)
    if session._config is None:
        return  # no barkbench variant in this session (someone else's benchmarks): nothing to record
    record = session.config.sweep_record()
    # Skipped variants (unsupported here) are accounted for: a merge does not call them missing.
    skipped: dict[str, str] = config.stash.get(_SKIPPED, {})
    record["skipped"] = dict(skipped)
    output_json[shards_mod.JSON_KEY] = record


#: variant id -> skip reason, for the variants this session skipped.
_SKIPPED = pytest.StashKey[dict[str, str]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    variant = callspec.params.get("bark_variant") if callspec is not None else None
    if report.skipped and isinstance(variant, str):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        item.config.stash.setdefault(_SKIPPED, {})[variant] = str(reason).removeprefix("Skipped: ")
