"""barkbench's pytest plugin, registered with the ``pytest11`` entry point: installing barkbench gives any project
the ``--bark-*`` options and the ``bark_bench`` / ``bark_variant`` fixtures, with no conftest.

The plugin loads in every pytest session of every project of an environment where barkbench is installed, so a
session with no Bark test (no test using ``bark_variant`` or ``bark_bench``) must be exactly what pytest-benchmark
alone gives: the same JSON, terminal output and exit status, and no measurable start-up cost. Hence:

- importing this module imports only what declaring the options needs (``options``); configure reads them
  (``config.BenchOptions``, light too), checks what they alone can say, and registers a ``SessionHandle``;
- the session itself (``session.BarkSession``: the engine, the results, the pytest-benchmark patches) is built
  when a Bark test needs it (parametrizing ``bark_variant``, a fixture);
- every hook that would add something (lines after collection, machine info, the JSON's sweep block, the saves'
  patches and the signal guard, the tables, the gates' exit status) goes through the handle, which forwards it
  to the session only once collection has found a Bark test (``SessionHandle.active``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from barkbench.pytest_plugin import options

if TYPE_CHECKING:
    from barkbench.pytest_plugin.config import BenchOptions
    from barkbench.pytest_plugin.session import BarkBench, BarkSession
    from barkbench.variants import Variant

#: The name the session's handle is registered under (``config.pluginmanager.get_plugin(SESSION_PLUGIN)``).
SESSION_PLUGIN = "barkbench-session"
#: The fixtures that make a test a Bark test.
BARK_FIXTURES = ("bark_variant", "bark_bench")


def is_bark_test(item: pytest.Item) -> bool:
    """Whether ``item`` uses barkbench (its fixtures): a session with no such item is left alone."""
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in BARK_FIXTURES)


class SessionHandle:
    """What configure registers in every session: the options, read once, and the session, built on first use.
    Its hooks do nothing until collection finds a Bark test; then each calls the session's.
    Identity equality and hashing (a plain class): pytest before 9.1 keeps plugins in sets."""

    def __init__(self, config: pytest.Config, bench_options: BenchOptions) -> None:
        self.pytest_config = config
        self.options = bench_options
        #: Collection found a Bark test: the hooks below act.
        self.active = False
        self._session: BarkSession | None = None

    # A method, not a property: pytest 8.1 reads every attribute of a plugin object (getattr), looking for fixtures.
    def session(self) -> BarkSession:
        """The session (its modules, the engine's and the results', imported now, on first use)."""
        if self._session is None:
            from barkbench.pytest_plugin.session import BarkSession

            self._session = BarkSession(self.pytest_config, self.options)
        return self._session

    # tryfirst: before the terminal's own collection_finish asks for the lines below.
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not any(is_bark_test(item) for item in session.items):
            return
        self.active = True
        self.session().activate(session)
        self.session().pytest_collection_finish(session)

    def pytest_report_collectionfinish(self, config: pytest.Config) -> list[str] | None:
        # The machine's and the defaults' notes, once a Bark test is known (the header comes before collection),
        # shown where the header would be: not under -q or --no-header.
        if not self.active or config.getoption("verbose") < 0 or config.getoption("no_header", False):
            return None
        return self.session().pytest_report_header(config)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.active:
            self.session().pytest_sessionfinish(session, exitstatus)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.active:
            self.session().pytest_terminal_summary(terminalreporter)

    def pytest_benchmark_update_machine_info(self, config: pytest.Config, machine_info: dict[str, Any]) -> None:
        if self.active:
            self.session().update_machine_info(machine_info)

    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
        if self.active:
            skipped: dict[str, str] = config.stash.get(_SKIPPED, {})
            self.session().update_json(output_json, skipped)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    from barkbench.pytest_plugin.config import BenchOptions, check_combinations

    bench_options = BenchOptions.read(config)
    options.check_device(bench_options.device)
    # Here, not where a test is parametrized: there the same error would be a collection error's traceback.
    check_combinations(bench_options)
    config.pluginmanager.register(SessionHandle(config, bench_options), SESSION_PLUGIN)


def bark_session(config: pytest.Config) -> BarkSession:
    """This pytest session's ``BarkSession`` (built on first use)."""
    handle = config.pluginmanager.get_plugin(SESSION_PLUGIN)
    assert isinstance(handle, SessionHandle), "barkbench's pytest_configure has not run"
    return handle.session()


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
