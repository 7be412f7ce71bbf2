"""barkbench.measure.noise: CPU-time accounting (whose CPU seconds are whose) and the machine facts it reads.

The accounting tests burn a fixed amount of CPU *time* (not wall time) in a known process, so they hold on a
busy machine too: other processes can only add to the "others" figure, never take from it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from barkbench.measure import noise
from barkbench.measure.noise import CpuSampler, MachineFacts

SPIN = "import time\nstart = time.process_time()\nwhile time.process_time() - start < {seconds}:\n    pass\n"
#: The kernel counts CPU time in clock ticks (10 ms); allow a few of them.
TICKS = 0.05


def test_another_process_cpu_time_counts_as_others() -> None:
    with CpuSampler() as sampler:
        subprocess.run([sys.executable, "-c", SPIN.format(seconds=0.5)], check=True)
    usage = sampler.usage
    assert usage is not None
    assert usage.other_cpu_seconds >= 0.5 - TICKS
    # This process only waited for the child.
    assert usage.own_cpu_seconds < usage.other_cpu_seconds
    assert usage.cpu_count == noise.cpu_count() and usage.wall_seconds > 0


def test_our_own_cpu_time_counts_as_ours() -> None:
    with CpuSampler() as sampler:
        start = time.process_time()
        while time.process_time() - start < 0.3:
            pass
    assert sampler.usage is not None
    assert sampler.usage.own_cpu_seconds >= 0.3 - TICKS


def test_a_given_worker_pid_counts_as_ours() -> None:
    code = SPIN.format(seconds=0.4) + "print('spun', flush=True)\ntime.sleep(30)\n"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        with CpuSampler([child.pid]) as sampler:
            # The child says when it has spun its 0.4 CPU seconds (then sleeps, alive, so its time stays
            # readable). Not polled from /proc: its tick-rounded utime+stime can stay just under 0.4 until the
            # process exits, which made a wall-clock deadline here fail once in CI.
            assert child.stdout is not None and child.stdout.readline() == "spun\n"
    finally:
        child.kill()
        child.wait()
    assert sampler.usage is not None
    assert sampler.usage.own_cpu_seconds >= 0.3


def test_a_pid_that_exits_during_the_block_gives_no_usage() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    with CpuSampler([child.pid]) as sampler:
        child.wait()
    assert sampler.usage is None


def test_turbo_and_governor_are_read_where_linux_exposes_them(tmp_path: Path) -> None:
    (tmp_path / "intel_pstate").mkdir()
    (tmp_path / "intel_pstate" / "no_turbo").write_text("1\n")
    (tmp_path / "cpu0" / "cpufreq").mkdir(parents=True)
    (tmp_path / "cpu0" / "cpufreq" / "scaling_governor").write_text("performance\n")
    facts = noise.machine_facts(tmp_path)
    assert facts.turbo is False and facts.scaling_governor == "performance"
    (tmp_path / "intel_pstate" / "no_turbo").unlink()
    (tmp_path / "cpufreq").mkdir()
    (tmp_path / "cpufreq" / "boost").write_text("1\n")
    assert noise.turbo_enabled(tmp_path) is True


def test_absent_frequency_policy_is_none(tmp_path: Path) -> None:
    facts = noise.machine_facts(tmp_path)
    assert facts.turbo is None and facts.scaling_governor is None
    assert facts.cpu_count >= 1 and facts.usable_cpu_count >= 1
    assert set(facts.as_dict()) >= {"cpu_model", "load_average_at_start", "turbo"}


def facts(load: float | None, cpus: int = 2) -> MachineFacts:
    return MachineFacts(
        cpu_model="x",
        cpu_count=cpus,
        usable_cpu_count=cpus,
        physical_cores=cpus,
        frequency_mhz=None,
        frequency_max_mhz=None,
        scaling_governor=None,
        turbo=None,
        load_average_at_start=load,
    )


def test_busy_warning_only_when_load_exceeds_the_cpus() -> None:
    assert facts(2.5).busy_warning() == (
        "the machine is busy: load average 2.5 above its 2 CPUs at start; "
        "timings will be noisy (rows are checked and marked)"
    )
    assert facts(2.0).busy_warning() is None
    assert facts(None).busy_warning() is None


def test_session_header_warns_when_the_machine_is_busy_at_start() -> None:
    from barkbench.pytest_plugin.config import BenchOptions
    from barkbench.pytest_plugin.session import BarkSession
    from barkbench.variants import Variant

    # --bark-variants given, so the header needs no device probe; no pytest config is read.
    session = BarkSession(None, BenchOptions(variants=((Variant(),),)))  # type: ignore[arg-type]
    session._machine_facts = facts(5.0)
    assert session.pytest_report_header(None) == [  # type: ignore[arg-type]
        "barkbench: WARNING: the machine is busy: load average 5.0 above its 2 CPUs at start; timings will be "
        "noisy (rows are checked and marked)"
    ]
    session._machine_facts = facts(1.0)
    assert session.pytest_report_header(None) is None  # type: ignore[arg-type]
