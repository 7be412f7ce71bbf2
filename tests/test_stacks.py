"""The two library stacks are declared consistently, the running one is one of them, and ``dev.sh``/``.ci/run``
set them up and test them as the README says (re-install on change, both stacks run, any failure fails)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from conftest import running_stack  # tests/conftest.py: the marker below needs it too
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from barkbench.measure.optimize import attention

REPO = Path(__file__).resolve().parents[1]
STACKS = ("current", "legacy")


def constraints(stack: str) -> dict[str, Requirement]:
    lines = (REPO / "constraints" / f"{stack}.txt").read_text().splitlines()
    reqs = [Requirement(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]
    return {canonicalize_name(r.name): r for r in reqs}


def project() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+ (tomllib)")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def extra(stack: str) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in project()["optional-dependencies"][stack]]
    return {canonicalize_name(r.name): r for r in reqs}


@pytest.mark.parametrize("stack", STACKS)
def test_constraint_pins_satisfy_the_project_and_its_extra(stack: str):
    base = {canonicalize_name(r.name): r for r in map(Requirement, project()["dependencies"])}
    pinned = {name: req for name, req in constraints(stack).items() if str(req.specifier).startswith("==")}
    for name, req in pinned.items():
        version = str(req.specifier).removeprefix("==")
        for declared in (base.get(name), extra(stack).get(name)):
            if declared is not None:
                assert declared.specifier.contains(version, prereleases=True), (stack, str(req), str(declared))
    # Every library the extra names is constrained for this stack.
    assert set(extra(stack)) <= set(constraints(stack))


def test_legacy_pins_the_last_transformers_optimum_pair_with_bettertransformer():
    legacy = constraints("legacy")
    assert str(legacy["transformers"].specifier) == "==4.48.3"
    optimum = Version(str(legacy["optimum"].specifier).removeprefix("=="))
    # What the pin promises is what the runtime check accepts, and the extra says the same.
    assert optimum in legacy["optimum"].specifier
    assert extra("legacy")["optimum"].specifier == extra("legacy")["optimum"].specifier & ",".join(attention.BT_OPTIMUM)
    assert str(extra("legacy")["transformers"].specifier) == f"<{attention.BT_TRANSFORMERS_BELOW},>=4.48"
    assert "optimum" not in constraints("current") and "optimum" not in extra("current")


def test_the_running_environment_is_one_of_the_declared_stacks():
    stack = running_stack()
    for name, req in constraints(stack).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is constrained for the {stack} stack but not installed; run ./dev.sh test")
        assert req.specifier.contains(installed, prereleases=True), f"{stack} stack: {name} {installed} vs {req}"
    has_bt = True
    try:
        attention.optimum_bettertransformer()
    except attention.AttentionUnavailable:
        has_bt = False
    assert has_bt == (stack == "legacy")


# --- dev.sh and .ci/run, driven with stand-in environments ----------------------------------------------------

# A stand-in for <venv>/bin/python: logs its arguments, answers the version probe, and exits with the status
# the test chose for that stack's pytest. Nothing is installed and no test runs for real.
FAKE_PYTHON = """#!/usr/bin/env bash
venv=$(basename "$(dirname "$(dirname "$0")")")
echo "$venv $*" >>"$FAKE_LOG"
case "$1 $2" in
  "-c "*) echo "transformers fake" ;;
  "-m pip") [[ ${FAKE_PIP_FAILS:-} == "$venv" && " $* " == *" -e "* ]] && exit 7 ;;
  "-m pytest")
    echo "$venv pytest-start threads=${OMP_NUM_THREADS:-unset}" >>"$FAKE_LOG"
    sleep "${FAKE_PYTEST_SECONDS:-0}"
    echo "$venv pytest-end" >>"$FAKE_LOG"
    exit "$(cat "$FAKE_STATUS_DIR/$venv" 2>/dev/null || echo 0)" ;;
esac
exit 0
"""


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("dev.sh needs bash, which this machine lacks")
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(REPO / "dev.sh", root / "dev.sh")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "constraints", root / "constraints")
    (root / ".ci").mkdir()
    shutil.copy2(REPO / ".ci" / "run", root / ".ci" / "run")
    for venv in (".venv", ".venv-legacy"):
        # lint-imports too: the stand-in logs "<venv> <arguments>" for any tool of the environment.
        for tool in ("python", "lint-imports"):
            fake = root / venv / "bin" / tool
            fake.parent.mkdir(parents=True, exist_ok=True)
            fake.write_text(FAKE_PYTHON)
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "status").mkdir()
    return root


def run(
    checkout: Path, *command: str, fail: dict[str, int] | None = None, env: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    status_dir = checkout.parent / "status"
    for venv in (".venv", ".venv-legacy"):
        (status_dir / venv).write_text(str((fail or {}).get(venv, 0)))
    log = checkout.parent / "log.txt"
    log.write_text("")
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_STATUS_DIR": str(status_dir), "CI": "true", **(env or {})}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run(
        command, cwd=checkout, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    return done.returncode, log.read_text().splitlines()


def installs(log: list[str], venv: str) -> list[str]:
    return [line for line in log if line.startswith(f"{venv} -m pip install -q -c")]


def test_dev_sh_installs_once_and_again_when_the_declarations_change(checkout: Path):
    code, log = run(checkout, "./dev.sh", "test-legacy", "-q")
    assert code == 0
    expected = ".venv-legacy -m pip install -q -c constraints/legacy.txt -e .[legacy,test]"
    assert installs(log, ".venv-legacy") == [expected]
    assert ".venv-legacy -m pytest tests/ -q" in log
    assert (checkout / ".venv-legacy" / ".barkbench-installed").exists()

    code, log = run(checkout, "./dev.sh", "test-legacy")
    assert code == 0 and installs(log, ".venv-legacy") == [] and ".venv-legacy -m pytest tests/" in log

    with open(checkout / "constraints" / "legacy.txt", "a") as constraints_file:
        constraints_file.write("numpy<3\n")
    code, log = run(checkout, "./dev.sh", "test-legacy")
    assert code == 0 and len(installs(log, ".venv-legacy")) == 1
    # The current stack's environment is a separate one, untouched by the legacy stack's changes.
    assert not [line for line in log if line.startswith(".venv ")]


@pytest.mark.parametrize("failing", [".venv", ".venv-legacy"])
def test_ci_runs_both_stacks_and_fails_when_either_fails(checkout: Path, failing: str):
    code, log = run(checkout, "./.ci/run")
    assert code == 0
    # Side by side, so in either order.
    pytest_runs = sorted(line.split()[0] for line in log if " -m pytest tests/" in line)
    assert pytest_runs == [".venv", ".venv-legacy"]
    assert len(installs(log, ".venv")) == len(installs(log, ".venv-legacy")) == 1
    # The static checks run once, on the current stack's environment, before the tests.
    lint = [
        ".venv -m ruff check src tests bench",
        ".venv -m ruff format --check src tests bench",
        ".venv -m mypy src",
        ".venv --no-logo",  # lint-imports: the import contracts
    ]
    assert [line for line in log if " -m ruff " in line or " -m mypy " in line or "--no-logo" in line] == lint
    assert log.index(lint[-1]) < log.index(".venv -m pytest tests/ -q -rs --durations=15")

    code, log = run(checkout, "./.ci/run", fail={failing: 3})
    assert code == 3
    # The other stack still ran, so one CI run reports every failure.
    assert sorted(line.split()[0] for line in log if " -m pytest tests/" in line) == [".venv", ".venv-legacy"]


def _pytest_events(log: list[str]) -> list[str]:
    return [" ".join(line.split()[:2]) for line in log if " pytest-" in line]


def test_the_two_stacks_run_side_by_side_with_one_thread_each(checkout: Path):
    code, log = run(checkout, "./dev.sh", "test", "-q", env={"FAKE_PYTEST_SECONDS": "1"})
    assert code == 0
    events = _pytest_events(log)
    # Both started before either ended: they overlapped.
    assert sorted(events[:2]) == [".venv pytest-start", ".venv-legacy pytest-start"], events
    assert {line.split()[-1] for line in log if " pytest-start " in line} == {"threads=1"}


def test_bark_test_jobs_1_runs_the_stacks_one_after_the_other_with_the_default_threads(checkout: Path):
    code, log = run(checkout, "./dev.sh", "test", "-q", env={"BARKBENCH_TEST_JOBS": "1"}, fail={".venv": 2})
    assert code == 2
    assert _pytest_events(log) == [
        ".venv pytest-start",
        ".venv pytest-end",
        ".venv-legacy pytest-start",
        ".venv-legacy pytest-end",
    ]
    assert {line.split()[-1] for line in log if " pytest-start " in line} == {"threads=unset"}


def test_a_failed_install_beside_the_other_fails_the_run_before_any_test(checkout: Path):
    code, log = run(checkout, "./dev.sh", "test", "-q", env={"FAKE_PIP_FAILS": ".venv-legacy"})
    assert code != 0
    assert not [line for line in log if " -m pytest " in line]


# -- one_stack: stack-independent end-to-end tests run on one stack (tests/conftest.py) ---------------------------

ONE_STACK_TESTS = """
import pytest

@pytest.mark.one_stack("current")
def test_on_current():
    pass

@pytest.mark.one_stack("legacy")
def test_on_legacy():
    pass

def test_everywhere():
    pass
"""


def test_a_one_stack_test_runs_on_its_stack_and_is_skipped_with_the_reason_on_the_other(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_marked=ONE_STACK_TESTS)
    monkeypatch.delenv("BARKBENCH_TEST_ALL_STACKS", raising=False)
    result = pytester.runpytest("-v", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=1)
    here = running_stack()
    other = "legacy" if here == "current" else "current"
    result.stdout.fnmatch_lines([f"*test_on_{here} PASSED*"])
    result.stdout.fnmatch_lines([f"*test_on_{other} SKIPPED*"])
    result.stdout.fnmatch_lines([f"*stack-independent end-to-end test, run on the {other} stack only*"])

    monkeypatch.setenv("BARKBENCH_TEST_ALL_STACKS", "1")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_a_one_stack_marker_must_name_a_stack(pytester: pytest.Pytester):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_bad='import pytest\n\n@pytest.mark.one_stack("main")\ndef test_x():\n    pass\n')
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*one_stack('main')*name 'current' or 'legacy'*"])
