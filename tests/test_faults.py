"""Faults and interrupts lose nothing: real signals to real processes, each run bounded in time.

A benchmark sub-session of the repo's ``bench/`` suite runs as its own process (``subprocess.Popen``); the test
reads its progress lines, finds its worker process, and sends real signals — SIGINT, SIGTERM, SIGKILL, SIGSTOP —
to either. Tiny model, 8 semantic tokens, one intra-op thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

FAST = ["--bark-semantic-tokens", "8", "--bark-warmup-rounds", "0", "-p", "no:cacheprovider", "-q"]
#: Upper bound on any one sub-session here: a hang fails the test instead of the CI job.
DEADLINE_S = 240


class Session:
    """A running benchmark sub-session whose output lines are read as they come."""

    def __init__(self, folder: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "bench", *FAST, *args],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if text in line:
                return
        self.kill()
        pytest.fail(f"never saw {text!r}; output:\n{self.output}")

    def worker(self) -> psutil.Process:
        """The variant's worker: the spawned child (not multiprocessing's resource tracker)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    if any("spawn_main" in part for part in child.cmdline()):
                        return child
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"no worker process; output:\n{self.output}")

    def finish(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the session did not end within {timeout} s; output:\n{self.output}")

    def kill(self) -> None:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            child.kill()
        self.proc.kill()

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture()
def sessions(bench_pytester: pytest.Pytester) -> Iterator[list[Session]]:
    started: list[Session] = []
    yield started
    for session in started:
        if session.proc.poll() is None:
            session.kill()


def start(sessions: list[Session], folder: Path, *args: str) -> Session:
    session = Session(folder, *args)
    sessions.append(session)
    return session


def gone(process: psutil.Process, timeout: float = 10) -> bool:
    """Whether the process has ended (a zombie left for its parent to reap counts as ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def by_variant(path: Path) -> dict[str, dict]:
    return {b["params"]["bark_variant"]: b for b in json.loads(path.read_text())["benchmarks"]}


# -- interrupts: the worker stops at once, finished variants are saved, the interrupted one is marked ------------


@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGINT, marks=pytest.mark.one_stack("legacy")),
        pytest.param(signal.SIGTERM, marks=pytest.mark.one_stack("current")),
    ],
)
def test_an_interrupt_mid_variant_saves_the_finished_ones_and_marks_the_interrupted(
    bench_pytester: pytest.Pytester, sessions: list[Session], signum: signal.Signals
):
    folder = bench_pytester.path
    out = folder / "run.json"
    session = start(
        sessions,
        folder,
        "--bark-variants",
        "baseline;sdpa;batch=2",
        "--bark-rounds",
        "2",
        f"--benchmark-json={out}",
        "--benchmark-autosave",
        f"--benchmark-storage=file://{folder / 'store'}",
    )
    # SIGINT in a later round (a round already measured: never saved as a 1-round result), SIGTERM in the first.
    later = signum == signal.SIGINT
    session.wait_for(f"sdpa-fp32-bs1: round {2 if later else 1}/2")
    worker = session.worker()
    # Stopped mid-round, the worker cannot finish on its own: only an immediate kill ends it.
    worker.send_signal(signal.SIGSTOP)
    os.kill(session.proc.pid, signum)
    assert session.finish(60) == pytest.ExitCode.INTERRUPTED, session.output
    assert gone(worker), "the worker outlived the interrupted session"

    results = by_variant(out)
    assert set(results) == {"eager-fp32-bs1", "sdpa-fp32-bs1"}, "nothing runs after the interrupt"
    assert results["eager-fp32-bs1"]["stats"]["rounds"] == 2
    assert results["eager-fp32-bs1"]["extra_info"]["status"] == "ok"
    interrupted = results["sdpa-fp32-bs1"]
    assert interrupted["stats"] is None and interrupted["extra_info"]["status"] == "interrupted"
    assert signum.name in interrupted["extra_info"]["error"]
    if later:
        assert "during round 2/2; 1 measured round(s) finished, none kept" in interrupted["extra_info"]["error"]
    # The autosave holds only finished variants, and pytest-benchmark's own reader takes it.
    (autosave,) = (folder / "store").rglob("*.json")
    assert [b["params"]["bark_variant"] for b in json.loads(autosave.read_text())["benchmarks"]] == ["eager-fp32-bs1"]
    compare = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(autosave)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compare.returncode == 0, compare.stderr
    report = subprocess.run(
        [sys.executable, "-m", "barkbench", "report", str(out)], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    assert "interrupted" in report.stdout
    # One line says what was saved where; no traceback from pytest-benchmark's save.
    (line,) = [x for x in session.lines if x.startswith("barkbench: ")]
    assert f"{signum.name}: stopped during sdpa-fp32-bs1" in line and str(out) in line and str(autosave) in line
    assert "min() arg" not in session.output and "Traceback" not in session.output
    # barkbench recorded the interrupted variant: pytest-benchmark does not call its fixture unused.
    assert "Benchmark fixture was not used at all" not in session.output


@pytest.mark.one_stack("legacy")
def test_ctrl_c_while_the_worker_loads_ends_the_session(bench_pytester: pytest.Pytester, sessions: list[Session]):
    # The worker is stopped before it can answer its load: pytest must still end, and quickly.
    folder = bench_pytester.path
    out = folder / "run.json"
    session = start(sessions, folder, "--bark-variants", "baseline", f"--benchmark-json={out}")
    worker = session.worker()
    worker.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    os.kill(session.proc.pid, signal.SIGINT)
    # A second Ctrl-C right after the first: the session still ends, and the file is whole.
    time.sleep(0.2)
    if session.proc.poll() is None:
        os.kill(session.proc.pid, signal.SIGINT)
    assert session.finish(60) == pytest.ExitCode.INTERRUPTED, session.output
    assert gone(worker)
    (entry,) = json.loads(out.read_text())["benchmarks"]
    assert entry["extra_info"]["status"] == "interrupted" and "loading the model" in entry["extra_info"]["error"]


@pytest.mark.one_stack("current")
def test_the_worker_dies_with_a_killed_session(bench_pytester: pytest.Pytester, sessions: list[Session]):
    # SIGKILL runs no clean-up in pytest: only the kernel (parent-death signal) can end the worker.
    folder = bench_pytester.path
    session = start(sessions, folder, "--bark-variants", "baseline", "--bark-rounds", "50")
    session.wait_for("eager-fp32-bs1: round 1/50")
    worker = session.worker()
    os.kill(session.proc.pid, signal.SIGKILL)
    assert session.finish(30) == -signal.SIGKILL
    assert gone(worker), "the worker was left running as an orphan"


@pytest.mark.one_stack("legacy")
def test_a_worker_stopped_while_loading_is_killed_at_the_load_timeout(
    bench_pytester: pytest.Pytester, sessions: list[Session], monkeypatch: pytest.MonkeyPatch
):
    # The worker stops itself before it loads anything (the testing hook), as one hung in its load would: the load
    # has its own limit (--bark-load-timeout), named in the failure; the round limit does not bound it.
    from barkbench.measure.worker import STOP_AT_LOAD_ENV

    monkeypatch.setenv(STOP_AT_LOAD_ENV, "eager-fp32-bs1")
    folder = bench_pytester.path
    out = folder / "run.json"
    args = ("--bark-variants", "baseline", "--bark-load-timeout", "5", "--bark-round-timeout", "600")
    session = start(sessions, folder, *args, f"--benchmark-json={out}")
    worker = session.worker()
    assert session.finish() == pytest.ExitCode.TESTS_FAILED, session.output
    assert gone(worker), "the stopped worker outlived its load timeout"
    (entry,) = json.loads(out.read_text())["benchmarks"]
    error = entry["extra_info"]["error"]
    assert entry["extra_info"]["failure_kind"] == "timeout", error
    assert "worker did not load its model within 5 s (--bark-load-timeout); it was killed" in error
    assert "Traceback" not in session.output


def _model_builder(session: Session) -> psutil.Process:
    """The child process ``sources.prebuild`` starts to build a random model (below the session's worker)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and session.proc.poll() is None:
        for child in psutil.Process(session.proc.pid).children(recursive=True):
            try:
                if any("ensure_random_model" in part for part in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    session.kill()
    pytest.fail(f"no model builder process; output:\n{session.output}")


@pytest.mark.one_stack("current")
def test_the_model_builder_dies_with_an_interrupted_session(
    bench_pytester: pytest.Pytester, sessions: list[Session], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    # An empty cache: the first variant's worker builds the model in a child process of its own. Stopped, the
    # builder cannot finish on its own (as a 2 GB bark-small build takes seconds more): only its parent's death
    # may end it, when Ctrl-C kills the worker. (SIGKILL, which the parent-death signal sends, ends a stopped one.)
    monkeypatch.setenv("BARKBENCH_CACHE", str(tmp_path / "empty-cache"))
    folder = bench_pytester.path
    session = start(sessions, folder, "--bark-variants", "baseline")
    builder = _model_builder(session)
    try:
        builder.send_signal(signal.SIGSTOP)
        os.kill(session.proc.pid, signal.SIGINT)
        assert session.finish(60) == pytest.ExitCode.INTERRUPTED, session.output
        assert gone(builder), "the model builder outlived the interrupted session"
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            builder.kill()


# -- a hung worker times out, a killed worker is reported as it died; the run goes on ---------------------------


@pytest.mark.one_stack("current")
def test_a_hung_worker_times_out_and_a_killed_one_is_named_by_its_signal(
    bench_pytester: pytest.Pytester, sessions: list[Session]
):
    folder = bench_pytester.path
    out = folder / "run.json"
    session = start(
        sessions,
        folder,
        "--bark-variants",
        "baseline;sdpa;batch=2",
        "--bark-rounds",
        "2",
        "--bark-round-timeout",
        "8",
        f"--benchmark-json={out}",
    )
    session.wait_for("eager-fp32-bs1: round 1/2")
    session.worker().send_signal(signal.SIGSTOP)  # hung: never answers
    session.wait_for("sdpa-fp32-bs1: round 1/2")
    session.worker().send_signal(signal.SIGKILL)  # dead: as the kernel's OOM killer would end it
    assert session.finish() == pytest.ExitCode.TESTS_FAILED, session.output
    results = by_variant(out)
    hung, killed, after = (results[v] for v in ("eager-fp32-bs1", "sdpa-fp32-bs1", "eager-fp32-bs2"))
    assert hung["extra_info"]["failure_kind"] == "timeout"
    assert "within 8 s (--bark-round-timeout)" in hung["extra_info"]["error"]
    assert killed["extra_info"]["failure_kind"] == "died"
    # The kernel's out-of-memory kill count of the cgroup the worker shares with this test, where readable, clears
    # the OOM killer (a SIGKILL sent by this test does not raise it); where not, the SIGKILL stays a possibility
    # with where to check.
    from barkbench.measure.oom_kills import oom_kill_count

    counted = oom_kill_count()
    assert (
        f"killed by SIGKILL (not the out-of-memory killer: {counted.path} shows no new oom_kill)"
        if counted is not None
        else "killed by SIGKILL (the kernel's out-of-memory killer sends this; dmesg says whether it did)"
    ) in killed["extra_info"]["error"], killed["extra_info"]["error"]
    assert "out of memory?" not in session.output
    log = Path(killed["extra_info"]["error"].rpartition("its log: ")[2])
    assert log.is_file()
    assert after["extra_info"]["status"] == "ok" and after["stats"]["rounds"] == 2
    assert "Traceback" not in session.output


def test_a_second_interrupt_while_saving_waits_and_a_third_quits():
    # Real signals to a real process: SIGTERM interrupts where the session is; while the results are saved a
    # second signal is noted and waits; a third quits at once without saving (exit status 128 + SIGINT).
    code = """
import os, signal
from barkbench.pytest_plugin.signals import SaveGuard

guard = SaveGuard()
guard.install()
try:
    os.kill(os.getpid(), signal.SIGTERM)
except KeyboardInterrupt as exc:
    print(type(exc).__name__, flush=True)
guard.saving = True
os.kill(os.getpid(), signal.SIGINT)
print("still saving", guard.count, flush=True)
os.kill(os.getpid(), signal.SIGINT)
print("not reached", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGINT, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["Terminated", "still saving 2"], done.stdout + done.stderr
    assert "SIGINT again: saving what finished first; once more quits without saving" in done.stderr


def test_a_dead_workers_cause_is_reported_as_the_system_gives_it():
    from barkbench.measure.worker import describe_exit

    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"
    assert describe_exit(3) == "exit code 3"
    # SIGKILL is what the OOM killer sends, but so does anyone else: a possibility with where to check, no verdict.
    assert describe_exit(-signal.SIGKILL).startswith("killed by SIGKILL (") and "dmesg" in describe_exit(-9)
    assert "out of memory?" not in describe_exit(-signal.SIGKILL)


def test_the_default_round_timeout_is_generous_and_follows_the_slowest_call():
    from barkbench.measure.worker import LOAD_TIMEOUT_S, WorkerProcess

    # The timeout logic alone, on a worker object that never started a process.
    worker = WorkerProcess.__new__(WorkerProcess)
    worker._round_timeout_s, worker._slowest_s = None, None
    assert worker.round_timeout() == LOAD_TIMEOUT_S  # nothing measured yet: the load's limit
    worker._slowest_s = 2.0
    assert worker.round_timeout() == 300.0  # never under the floor
    worker._slowest_s = 90.0
    assert worker.round_timeout() == 900.0  # 10 x the slowest call (the warm-up's, first)
    worker._round_timeout_s = 8.0
    assert worker.round_timeout() == 8.0  # --bark-round-timeout wins


# -- checked once at start, one line with the fix, before any model loads ------------------------------------------


def _json_opened_while_parsing() -> bool:
    """pytest-benchmark before 5.3 opens --benchmark-json for writing while it parses the options."""
    from importlib.metadata import version

    return tuple(int(p) for p in version("pytest-benchmark").split(".")[:2]) < (5, 3)


def _not_a_folder(tmp_path: Path) -> Path:
    # A path below a regular file cannot be created, even by root (permissions would not stop root).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "sub"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--benchmark-json={bad}/run.json", "--benchmark-json {bad}/run.json: cannot write there"),
        ("--bark-wav-dir={bad}", "--bark-wav-dir {bad}: cannot write there"),
        ("--bark-semantic-tokens=768", "does not fit Bark's 1024-position window"),
    ],
)
def test_bad_paths_and_limits_fail_at_start_in_one_line(
    bench_pytester: pytest.Pytester, tmp_path: Path, option: str, message: str
):
    bad = _not_a_folder(tmp_path)
    if option.startswith("--benchmark-json") and _json_opened_while_parsing():
        # pytest-benchmark 5.1/5.2 open the file while parsing options (argparse.FileType): its own one-line error.
        message = "argument --benchmark-json: can't open '{bad}/run.json'"
    result = bench_pytester.runpytest_subprocess("bench", *FAST, option.format(bad=bad), timeout=120)
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, 4)
    text = result.stdout.str() + result.stderr.str()
    assert message.format(bad=bad) in text
    assert "Traceback" not in text and "[barkbench]" not in text, "nothing may run before the check"


def test_a_batch_beyond_the_machines_memory_is_refused_at_start(bench_pytester: pytest.Pytester):
    from barkbench.measure import estimate

    per_sample = estimate.estimate("tiny", 8).per_sample_bytes
    batch = psutil.virtual_memory().total // per_sample + 1  # the lower bound alone exceeds the machine
    result = bench_pytester.runpytest_subprocess(
        "bench", *FAST, "--bark-device", "cpu", "--bark-variants", f"baseline;batch={batch}", timeout=120
    )
    text = result.stdout.str() + result.stderr.str()
    assert f"eager-fp32-bs{batch}: batch {batch} needs at least" in text and "use a smaller batch" in text
    assert "Traceback" not in text and "[barkbench]" not in text, "nothing may run before the check"


def test_a_batch_beyond_the_free_memory_is_warned_about_at_start(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from types import SimpleNamespace

    from barkbench.pytest_plugin.plugin import bark_session

    # A machine with plenty of memory, almost none of it free now: warn (the run may go on), do not refuse.
    machine = SimpleNamespace(total=10**15, available=10**6)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: machine)
    config = pytester.parseconfigure("--bark-device", "cpu", "--bark-variants", "baseline;batch=4")
    bark_session(config)._check_batch_memory()
    out = capsys.readouterr().out
    assert "barkbench: WARNING: eager-fp32-bs4: batch 4 needs at least" in out
    assert "0.0 GB is free now: the worker may be killed" in out


def test_an_unwritable_cache_names_the_setting(bench_pytester: pytest.Pytester, tmp_path: Path, monkeypatch):
    bad = _not_a_folder(tmp_path)
    monkeypatch.setenv("BARKBENCH_CACHE", str(bad))
    result = bench_pytester.runpytest_subprocess("bench", *FAST, timeout=120)
    text = result.stdout.str() + result.stderr.str()
    assert f"BARKBENCH_CACHE={bad}: cannot write there" in text and "set BARKBENCH_CACHE to a writable folder" in text
    assert "Traceback" not in text and ".lock" not in text


# -- runs of different workloads, models or devices are never compared as one ----------------------------------

DATA = Path(__file__).parent / "data" / "run-cpu.json"


def _variant_of(data: dict, key: str, value: object) -> dict:
    changed = json.loads(json.dumps(data))
    for bench in changed["benchmarks"]:
        bench["extra_info"][key] = value
    return changed


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("semantic_max_new_tokens", 64, "semantic_max_new_tokens 256 vs 64"),
        ("model_source", "random:bark-small", "model_source tiny vs random:bark-small"),
        ("device", "cuda:0", "device cpu vs cuda"),
    ],
)
def test_compare_refuses_runs_that_measured_different_things(tmp_path, capsys, key, value, shown):
    from barkbench import cli

    base, new = tmp_path / "base.json", tmp_path / "new.json"
    data = json.loads(DATA.read_text())
    base.write_text(json.dumps(data))
    new.write_text(json.dumps(_variant_of(data, key, value)))
    assert cli.main(["compare", str(base), str(new), "--fail-on", "memory:10%"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and shown in err and "--allow-mixed" in err
    # Asked for, the comparison runs (and gates as usual).
    assert cli.main(["compare", str(base), str(new), "--allow-mixed"]) == 0


def test_report_keeps_workloads_apart_and_names_them(tmp_path, capsys):
    from barkbench import cli
    from barkbench.results.load import load_runs
    from barkbench.results.report import group_results

    data = json.loads(DATA.read_text())
    mixed = json.loads(json.dumps(data))
    for bench in mixed["benchmarks"][: len(mixed["benchmarks"]) // 2]:
        bench["extra_info"]["semantic_max_new_tokens"] = 64
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(mixed))
    (run,) = load_runs([path])
    for group in group_results(run.benchmarks):
        tokens = {r.extra_info["semantic_max_new_tokens"] for r in group.results}
        assert len(tokens) == 1, f"one table mixes workloads: {group.title}"
        assert f"{tokens.pop()} semantic tokens" in group.title
    assert cli.main(["report", str(path), "--output-dir", str(tmp_path / "report"), "--no-plots"]) in (0, None)
    text = "\n".join(p.read_text() for p in (tmp_path / "report").rglob("*.md"))
    assert "Workload" in text  # the runs table names each run's workload
    assert "64 semantic tokens" in text and "256 semantic tokens" in text


# -- a budgets file that matches nothing fails the gate -----------------------------------------------------------


def test_a_budgets_file_matching_nothing_fails_listing_patterns_and_variants(tmp_path, capsys):
    from barkbench import cli

    budgets = tmp_path / "budgets.toml"
    budgets.write_text('["tiny"."cuda"."sdpa-*"]\npeak_memory_ratio = 1.5\nwhy = "typo: this run is on cpu"\n')
    assert cli.main(["budgets", str(DATA), "--budgets", str(budgets)]) == 1
    out = capsys.readouterr().out
    assert 'patterns ["tiny"."cuda"."sdpa-*"]' in out and "measured tiny cpu eager-fp32-bs1" in out
