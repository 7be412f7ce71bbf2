"""``barkbench report`` and the results loader, on the hand-made runs in tests/data/.

tests/data/run-cpu.json (machine ci-cpu-01, model ``tiny``, cpu):
    bs1: eager-fp32 (baseline) 2.00 s ± 0.05, 800 MB | sdpa-fp32 1.46 s, 760 MB | sdpa-bf16 1.20 s, 480 MB
         | eager-fp32-offload 3.10 s, 350 MB    (throughput = 1 / latency, audio 5.12 s per call)
    bs8: eager-fp32 (baseline) 9.60 s, 2,400 MB | sdpa-fp32 7.20 s, 2,136 MB | sdpa-bf16 failed
         (throughput = 8 / latency, audio 40.96 s per call)
tests/data/run-gpu.json (machine gpu-runner-01, H100, ``suno/bark-small``, cuda):
    bs1 (no eager-fp32 row): bettertransformer-fp16 4.0 s, 1,200 MB | sdpa-fp16 3.0 s, 1,080 MB
         | bettertransformer-fp16-offload 4.6 s, 540 MB, device "cuda:0" as an offloaded BarkModel reports it
         (audio 5.0 s per call)
    bs8: eager-fp32 6.0 s, 2,000 MB | sdpa-fp16 3.6 s, 1,500 MB    (audio 40 s per call)
    plus one benchmark without barkbench extra_info (ignored with a note).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from barkbench.cli import main
from barkbench.results import markdown as md
from barkbench.results.load import ResultsError, load_run
from barkbench.results.plots import pareto_front
from barkbench.results.report import build_report, group_results, relabel_machines, write_report

pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

Capsys = pytest.CaptureFixture[str]
DATA = Path(__file__).parent / "data"
CPU_RUN = DATA / "run-cpu.json"
GPU_RUN = DATA / "run-gpu.json"


@pytest.fixture(scope="module")
def markdown() -> str:
    return build_report([load_run(CPU_RUN), load_run(GPU_RUN)], output_dir=None).markdown


# -- loading ------------------------------------------------------------------------------------------------


def test_load_run_reads_barkbench_fields() -> None:
    run = load_run(CPU_RUN)
    assert run.machine == "ci-cpu-01 (Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz)"
    assert run.software["torch"] == "2.13.0+cpu"
    assert run.commit == "3f1c2b7a9d"
    assert run.datetime == "2026-11-20T10:12:34.567890+00:00"
    assert [b.variant for b in run.benchmarks] == [
        "eager-fp32-bs1",
        "sdpa-fp32-bs1",
        "sdpa-bf16-bs1",
        "eager-fp32-offload-bs1",
        "eager-fp32-bs8",
        "sdpa-fp32-bs8",
        "sdpa-bf16-bs8",
    ]
    sdpa = run.by_fullname()["bench/test_bark.py::test_generate[sdpa-fp32-bs1]"]
    assert sdpa.name == "test_generate[sdpa-fp32-bs1]"
    assert sdpa.axes == ("sdpa", "fp32", "none")
    assert sdpa.series == "sdpa-fp32"
    assert (sdpa.batch_size, sdpa.model_source, sdpa.device) == (1, "tiny", "cpu")
    assert sdpa.latency is not None
    latency = sdpa.latency
    assert (latency.mean, latency.stddev, latency.min, latency.max) == (1.46, 0.03, 1.43, 1.49)
    assert sdpa.latency.rounds == 3
    assert sdpa.peak_memory_bytes == 760_000_000
    assert sdpa.peak_memory_mb == 760.0
    assert sdpa.throughput_samples_per_s == pytest.approx(1 / 1.46)
    assert sdpa.audio_seconds_per_wall_second == pytest.approx(5.12 / 1.46)
    assert sdpa.attention_impl == "barkbench-sdpa"
    assert sdpa.memory_method == "cpu_peak_rss"
    assert not sdpa.failed and not sdpa.is_reference_baseline
    assert run.benchmarks[0].is_reference_baseline
    assert run.benchmarks[3].series == "eager-fp32-offload"


def test_single_round_shows_no_spread(tmp_path: Path) -> None:
    # One round: pytest-benchmark writes stddev 0, which is "not measured", not "perfectly steady".
    data = json.loads(CPU_RUN.read_text())
    data["benchmarks"][1]["stats"].update(rounds=1, stddev=0.0, data=[1.46])
    path = tmp_path / "one-round.json"
    path.write_text(json.dumps(data))
    assert load_run(path).benchmarks[1].absolute_row()[1] == "1.46"


def test_failed_benchmark_is_kept_without_numbers() -> None:
    failed = load_run(CPU_RUN).benchmarks[-1]
    assert failed.variant == "sdpa-bf16-bs8"
    assert failed.failed
    assert failed.error == "worker exited with code -9 (killed: out of memory?)"
    # Its stats block has no mean: no latency, and no figures at all.
    assert failed.latency is None
    assert failed.peak_memory_bytes is None and failed.throughput_samples_per_s is None


def test_foreign_benchmarks_are_ignored_with_a_note() -> None:
    run = load_run(GPU_RUN)
    assert len(run.benchmarks) == 5
    assert run.ignored == ("tests/test_misc.py::test_tokenizer_speed",)
    assert run.notes() == [
        "run-gpu.json: ignored 1 benchmark(s) without barkbench extra_info: `tests/test_misc.py::test_tokenizer_speed`"
    ]
    assert run.machine == "gpu-runner-01 (NVIDIA H100 80GB HBM3)"  # the GPU, not the host CPU


def test_autosaved_file_name_loads_the_same(tmp_path: Path) -> None:
    # pytest-benchmark's autosave writes the same schema as .benchmarks/<machine>/NNNN_<commit>_<date>.json
    saved = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit" / "0001_3f1c2b7_20261120_101234.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(CPU_RUN.read_text())
    assert load_run(saved).benchmarks == load_run(CPU_RUN).benchmarks


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "not a pytest-benchmark result file (no 'benchmarks' list)"),
        ('{"benchmarks": []}', "not a pytest-benchmark result file (no 'machine_info' object)"),
        ('{"machine_info": {}, "benchmarks": [{"name": "x"}]}', "benchmarks[0] has no 'fullname'"),
    ],
)
def test_unusable_file_is_one_line_error_naming_file_and_fix(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError) as info:
        load_run(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "--benchmark-json" in message  # the fix
    assert "\n" not in message


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="is a directory"):
        load_run(tmp_path)


def test_malformed_barkbench_extra_info_names_the_benchmark(tmp_path: Path) -> None:
    data = json.loads(CPU_RUN.read_text())
    data["benchmarks"][1]["extra_info"]["batch_size"] = "eight"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"test_generate\[sdpa-fp32-bs1\].*malformed barkbench extra_info"):
        load_run(path)


# -- tables -------------------------------------------------------------------------------------------------


def test_absolute_table_cpu_bs1(markdown: str) -> None:
    # latency "mean ± stddev" (3 significant digits, the stddev to the same decimals); memory = bytes / 1e6;
    # throughput = 1 / latency: 1/2 = 0.500, 1/1.46 = 0.68493 -> 0.685, 1/1.2 = 0.8333 -> 0.833,
    # 1/3.1 = 0.32258 -> 0.323; audio s per wall s = 5.12 / latency: 2.56, 3.5068 -> 3.51, 4.2667 -> 4.27,
    # 1.6516 -> 1.65.
    assert "| `eager-fp32-bs1` | 2.00 ± 0.05 | 800 | 0.500 | 2.56 |" in markdown
    assert "| `sdpa-fp32-bs1` | 1.46 ± 0.03 | 760 | 0.685 | 3.51 |" in markdown
    assert "| `sdpa-bf16-bs1` | 1.20 ± 0.04 | 480 | 0.833 | 4.27 |" in markdown
    assert "| `eager-fp32-offload-bs1` | 3.10 ± 0.10 | 350 | 0.323 | 1.65 |" in markdown


def test_relative_table_cpu_bs1(markdown: str) -> None:
    # vs eager-fp32-bs1 (2.00 s, 800 MB, 0.5 samples/s):
    # sdpa-fp32: latency (1.46-2)/2 = -27 %; memory (760-800)/800 = -5 %;
    #            throughput (0.68493-0.5)/0.5 = +36.99 -> +37 %; speed-up 2/1.46 = 1.3699 -> 1.37x
    # sdpa-bf16: latency -0.8/2 = -40 %; memory -320/800 = -40 %; throughput +66.67 -> +67 %; 2/1.2 = 1.67x
    # offload:   latency +1.1/2 = +55 %; memory -450/800 = -56.25 -> -56 %; throughput (0.32258-0.5)/0.5
    #            = -35.48 -> -35 %; 2/3.1 = 0.645 -> 0.65x
    assert "| `eager-fp32-bs1` (baseline) | ±0 % | ±0 % | ±0 % | 1.00× |" in markdown
    assert "| `sdpa-fp32-bs1` | −27 % | −5 % | +37 % | 1.37× |" in markdown
    assert "| `sdpa-bf16-bs1` | −40 % | −40 % | +67 % | 1.67× |" in markdown
    assert "| `eager-fp32-offload-bs1` | +55 % | −56 % | −35 % | 0.65× |" in markdown
    assert "Relative to the baseline `eager-fp32-bs1` (eager attention, fp32, no offload)." in markdown


def test_tables_cpu_bs8_with_failed_variant(markdown: str) -> None:
    # throughput 8/9.6 = 0.8333 -> 0.833, 8/7.2 = 1.111 -> 1.11; audio 40.96/9.6 = 4.267, 40.96/7.2 = 5.689.
    assert "| `eager-fp32-bs8` | 9.60 ± 0.20 | 2,400 | 0.833 | 4.27 |" in markdown
    assert "| `sdpa-fp32-bs8` | 7.20 ± 0.15 | 2,136 | 1.11 | 5.69 |" in markdown
    # latency (7.2-9.6)/9.6 = -25 %; memory (2136-2400)/2400 = -11 %; throughput 1.111/0.8333 - 1 = +33.3 %.
    assert "| `sdpa-fp32-bs8` | −25 % | −11 % | +33 % | 1.33× |" in markdown
    # The failed variant keeps its row in the absolute table, is listed with its error, and is not compared.
    assert "| `sdpa-bf16-bs8` | failed | — | — | — |" in markdown
    assert "- `sdpa-bf16-bs8`: worker exited with code -9 (killed: out of memory?)" in markdown
    assert "| `sdpa-bf16-bs8` | −" not in markdown


def test_baseline_falls_back_to_first_row_and_says_so(markdown: str) -> None:
    # GPU bs1 has no eager/fp32/no-offload row: the first row (bettertransformer-fp16-bs1: 4.0 s, 1,200 MB,
    # 0.25 samples/s) is the baseline.
    # sdpa-fp16: latency -1/4 = -25 %; memory -120/1200 = -10 %; throughput (1/3 - 1/4)/(1/4) = +33 %; 1.33x
    # offload:   latency +0.6/4 = +15 %; memory -660/1200 = -55 %; throughput (1/4.6)/(1/4) - 1 = -13.04 %;
    #            4/4.6 = 0.8696 -> 0.87x
    assert (
        "No eager/fp32/no-offload variant ran at this batch size, so the baseline is the first row, "
        "`bettertransformer-fp16-bs1`."
    ) in markdown
    assert "| `bettertransformer-fp16-bs1` (baseline) | ±0 % | ±0 % | ±0 % | 1.00× |" in markdown
    assert "| `sdpa-fp16-bs1` | −25 % | −10 % | +33 % | 1.33× |" in markdown
    assert "| `bettertransformer-fp16-offload-bs1` | +15 % | −55 % | −13 % | 0.87× |" in markdown
    # GPU bs8 has the reference row: sdpa-fp16 -2.4/6 = -40 %, -500/2000 = -25 %, 6/3.6 - 1 = +66.7 %.
    assert "| `sdpa-fp16-bs8` | −40 % | −25 % | +67 % | 1.67× |" in markdown
    # audio rate 40/3.6 = 11.11 -> 11.1 (3 significant digits, like throughput 8/3.6 = 2.22).
    assert "| `sdpa-fp16-bs8` | 3.60 ± 0.07 | 1,500 | 2.22 | 11.1 |" in markdown


def test_report_groups_by_machine_model_device_and_batch(markdown: str) -> None:
    groups = group_results(relabel_machines([load_run(CPU_RUN), load_run(GPU_RUN)])[0])
    assert [(g.machine.split(" ")[0], g.model_source, g.device, g.batch_size) for g in groups] == [
        ("ci-cpu-01", "tiny", "cpu", 1),
        ("ci-cpu-01", "tiny", "cpu", 8),
        ("gpu-runner-01", "suno/bark-small", "cuda", 1),
        ("gpu-runner-01", "suno/bark-small", "cuda", 8),
    ]
    assert "## ci-cpu-01 (Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz)" in markdown
    assert "## gpu-runner-01 (NVIDIA H100 80GB HBM3)" in markdown
    assert "### `suno/bark-small` on cuda (NVIDIA H100 80GB HBM3), batch size 8" in markdown
    assert "`tests/test_misc.py::test_tokenizer_speed`" in markdown.split("## Notes")[1]


def test_offload_rows_recorded_as_cuda_0_group_with_their_cuda_baseline() -> None:
    # BarkModel.device after enable_cpu_offload() is the hook's "cuda:0"; the other rows say "cuda".
    rows = {r.variant: r for r in load_run(GPU_RUN).benchmarks}
    offload = rows["bettertransformer-fp16-offload-bs1"]
    assert (offload.device, offload.device_index) == ("cuda", 0)
    assert (rows["sdpa-fp16-bs1"].device, rows["sdpa-fp16-bs1"].device_index) == ("cuda", None)
    [group] = [g for g in group_results(load_run(GPU_RUN).benchmarks) if g.batch_size == 1]
    assert {r.variant for r in group.results} == {
        "bettertransformer-fp16-bs1",
        "sdpa-fp16-bs1",
        "bettertransformer-fp16-offload-bs1",
    }


def test_two_runs_from_one_machine_stay_apart() -> None:
    runs = [load_run(CPU_RUN), load_run(CPU_RUN)]
    groups = group_results(relabel_machines(runs)[0])
    assert len(groups) == 4
    assert all(len(g.results) == len({r.variant for r in g.results}) for g in groups)
    assert groups[0].machine.endswith("run 1 (run-cpu.json)")
    assert groups[2].machine.endswith("run 2 (run-cpu.json)")


def test_run_without_barkbench_benchmarks_is_an_error(tmp_path: Path) -> None:
    data = json.loads(GPU_RUN.read_text())
    data["benchmarks"] = [b for b in data["benchmarks"] if not b["extra_info"]]
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="no barkbench benchmarks"):
        build_report([load_run(path)], output_dir=None)


# -- plots --------------------------------------------------------------------------------------------------


def test_write_report_writes_markdown_and_readable_plots(tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = write_report([load_run(CPU_RUN), load_run(GPU_RUN)], out)
    assert (out / "report.md").read_text(encoding="utf-8") == report.markdown
    pngs = sorted(p.name for p in out.glob("*.png"))
    # One throughput plot per (machine, model, device); one latency-memory plot per group.
    assert pngs == [
        "latency-memory-ci-cpu-01-tiny-cpu-bs1.png",
        "latency-memory-ci-cpu-01-tiny-cpu-bs8.png",
        "latency-memory-gpu-runner-01-suno-bark-small-cuda-bs1.png",
        "latency-memory-gpu-runner-01-suno-bark-small-cuda-bs8.png",
        "throughput-ci-cpu-01-tiny-cpu.png",
        "throughput-gpu-runner-01-suno-bark-small-cuda.png",
    ]
    for name in pngs:
        path = out / name
        assert path.stat().st_size > 1024
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 1 and image.shape[1] > 1
        assert f"]({name})" in report.markdown  # linked from report.md, relative to it


@pytest.mark.parametrize(
    ("points", "front"),
    [
        # The CPU bs1 group (latency s, memory MB): sdpa-bf16 beats eager-fp32 and sdpa-fp32 on both axes;
        # offload is slower but the leanest, so it stays on the front.
        ([(2.0, 800), (1.46, 760), (1.2, 480), (3.1, 350)], [2, 3]),
        ([(1.0, 1.0)], [0]),
        ([(1.0, 2.0), (1.0, 2.0)], [0, 1]),  # ties dominate nothing
        ([(1.0, 2.0), (1.0, 3.0)], [0]),
        ([], []),
    ],
)
def test_pareto_front(points: list[tuple[float, float]], front: list[int]) -> None:
    assert pareto_front(points) == front


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=12))
def test_pareto_front_properties(points: list[tuple[int, int]]) -> None:
    front = pareto_front(points)

    def dominates(a: tuple[int, int], b: tuple[int, int]) -> bool:
        return a[0] <= b[0] and a[1] <= b[1] and a != b

    assert all(not dominates(points[j], points[i]) for i in front for j in range(len(points)))
    rest = set(range(len(points))) - set(front)
    assert all(any(dominates(points[f], points[i]) for f in front) for i in rest)


# -- formatting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "decimals", "text"),
    [
        (-0.27, 0, "−27 %"),
        (0.3699, 0, "+37 %"),
        (0.0, 0, "±0 %"),
        (-0.004, 0, "±0 %"),
        (0.06, 1, "+6.0 %"),
        (None, 0, "—"),
    ],
)
def test_format_percent(change: float | None, decimals: int, text: str) -> None:
    assert md.format_percent(change, decimals) == text


# -- command line -------------------------------------------------------------------------------------------


def test_cli_report_prints_markdown_and_writes_files(tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "out"
    assert main(["report", str(CPU_RUN), str(GPU_RUN), "--output-dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == (out / "report.md").read_text(encoding="utf-8")
    assert captured.out.startswith("# Bark benchmark report")
    assert len(list(out.glob("*.png"))) == 6


def test_cli_report_no_plots(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["report", str(CPU_RUN), "--output-dir", str(tmp_path), "--no-plots"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    assert ".png" not in capsys.readouterr().out


def test_cli_report_missing_file_is_exit_2_one_line(tmp_path: Path, capsys: Capsys) -> None:
    missing = tmp_path / "nope.json"
    assert main(["report", str(missing), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"barkbench: error: {missing}: no such file;")
    assert err.count("\n") == 1


def test_cli_without_command_is_exit_2(capsys: Capsys) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("barkbench: error: choose a command: report, compare, export-github")


# -- intervals and unstable rows -----------------------------------------------------------------------------------


def test_latency_interval_of_three_rounds_is_their_range() -> None:
    # Rounds [1.95, 2.00, 2.05]: a resample made only of 1.95 has probability 1/27 = 3.7 % > 2.5 %, so the
    # percentile interval of the mean runs from the smallest to the largest round: 2.00 ± 0.05.
    eager = load_run(CPU_RUN).benchmarks[0]
    interval = eager.latency_interval
    assert eager.round_seconds == (1.95, 2.0, 2.05)
    assert interval is not None and (interval.low, interval.high) == pytest.approx((1.95, 2.05))
    assert eager.absolute_row()[1] == "2.00 ± 0.05"


def test_speedup_interval_matches_scipy(markdown: str) -> None:
    from scipy import stats as scipy_stats

    # scipy 1.15 renamed bootstrap's random_state to rng; the oldest scipy barkbench supports (1.10) has only that.
    seed_argument = "rng" if "rng" in inspect.signature(scipy_stats.bootstrap).parameters else "random_state"

    from barkbench import stats

    base, sdpa = (1.95, 2.0, 2.05), (1.43, 1.46, 1.49)
    reference = scipy_stats.bootstrap(
        (np.array(base), np.array(sdpa)),
        lambda a, b, axis: a.mean(axis=axis) / b.mean(axis=axis),
        vectorized=True,
        method="percentile",
        **{seed_argument: np.random.default_rng(stats.SEED)},
    ).confidence_interval
    cell = f"{reference.low:.2f}–{reference.high:.2f}×"
    assert "| `sdpa-fp32-bs1` | −27 % | −5 % | +37 % | 1.37× | " + cell + " |" in markdown
    # The baseline against itself has no interval to show.
    assert "| `eager-fp32-bs1` (baseline) | ±0 % | ±0 % | ±0 % | 1.00× | — |" in markdown


def test_rows_without_stored_rounds_show_the_mean_alone(tmp_path: Path) -> None:
    data = json.loads(CPU_RUN.read_text())
    for bench in data["benchmarks"]:
        if bench.get("stats"):
            bench["stats"].pop("data", None)  # an autosave written without --benchmark-save-data
    path = tmp_path / "no-data.json"
    path.write_text(json.dumps(data))
    run = load_run(path)
    assert run.benchmarks[0].absolute_row()[1] == "2.00"
    assert run.benchmarks[1].relative_row(run.benchmarks[0])[-1] == md.MISSING


def test_an_adaptive_row_that_missed_its_precision_says_so_in_the_row(tmp_path: Path) -> None:
    data = json.loads(CPU_RUN.read_text())
    data["benchmarks"][1]["extra_info"].update(
        target_precision=0.02, precision_met=False, precision_reason="max rounds reached", precision_half_width=0.05
    )
    data["benchmarks"][0]["extra_info"].update(
        target_precision=0.02, precision_met=True, precision_reason="target met", precision_half_width=0.01
    )
    path = tmp_path / "adaptive.json"
    path.write_text(json.dumps(data))
    text = build_report([load_run(path)], output_dir=None).markdown
    assert "| `sdpa-fp32-bs1` ⚠ precision not met |" in text
    assert "| `eager-fp32-bs1` |" in text and "`eager-fp32-bs1` ⚠" not in text


def test_unstable_rows_are_marked_with_their_reasons(tmp_path: Path) -> None:
    from barkbench.stats import CpuUsage, check_noise

    data = json.loads(CPU_RUN.read_text())
    noisy = check_noise([1.43, 1.46, 1.49], CpuUsage(4.4, 3.0, 4.4, 2))
    steady = check_noise([1.95, 2.0, 2.05], CpuUsage(6.0, 0.1, 6.0, 2))
    data["benchmarks"][1]["extra_info"]["noise"] = noisy.as_dict()
    data["benchmarks"][0]["extra_info"]["noise"] = steady.as_dict()
    path = tmp_path / "noisy.json"
    path.write_text(json.dumps(data))
    text = build_report([load_run(path)], output_dir=None).markdown
    assert "| `sdpa-fp32-bs1` ⚠ unstable | 1.46 ± 0.03 |" in text
    assert "| `eager-fp32-bs1` | 2.00 ± 0.05 |" in text  # checked and stable: no mark
    # 3.0 CPU seconds of others over 4.4 s x 2 CPUs = 34 %.
    assert "- `sdpa-fp32-bs1`: other processes used 34 % of the machine's CPU time (limit 10 %)" in text


def test_real_time_factor_has_one_definition() -> None:
    """The record's figure where it was written; the same formula (``record.real_time_factor_of``) for files from
    before the field existed, so report and record never disagree."""
    from barkbench import record
    from barkbench.results.report import real_time_factor

    recorded = load_run(DATA / "main-2026-12-06-default.json").benchmarks
    assert all(r.record.real_time_factor is not None for r in recorded)
    for r in recorded:
        assert real_time_factor(r) == r.record.real_time_factor
        assert real_time_factor(r) == pytest.approx(record.real_time_factor_of(r.latency_mean, r.audio_seconds))
    older = [r for r in load_run(CPU_RUN).benchmarks if r.audio_seconds]
    assert older and all(r.record.real_time_factor is None for r in older)
    for r in older:
        assert real_time_factor(r) == pytest.approx(r.latency_mean / r.audio_seconds)
    assert record.real_time_factor_of(None, 2.0) is None and record.real_time_factor_of(1.0, 0.0) is None
