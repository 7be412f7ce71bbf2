"""The summary a benchmark session prints at its end (issue 25): by default one compact table per group — latency
with its interval, peak memory, throughput, speed-up with its interval, RTF, a flag column — and the legend once at
the end; the per-stage, limit, quality tables and the processes' notes behind ``--bark-tables``; ``full`` prints
every table of ``barkbench report``, whose own output is unchanged (tests/test_report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from barkbench.results.efficiency import LIMIT_CAPTION
from barkbench.results.load import Run, load_run
from barkbench.results.report import DEFAULT_TABLES, parse_tables, terminal_summary, terminal_tables

DATA = Path(__file__).parent / "data"
CPU_RUN = DATA / "run-cpu.json"
#: Two CUDA groups with per-stage and limit figures; batch 8 has no eager/fp32 row and an interrupted one.
H200_RUN = DATA / "h200-tiny.json"
#: One CPU group measured in 2 interleaved processes, with quality figures.
PROCESSES_RUN = DATA / "main-2026-12-06-p2.json"

HEADERS = ["Variant", "Latency (s)", "Peak memory (MB)", "Throughput (samples/s)", "Speed-up", "RTF", "Flags"]
LEGEND = "**Legend:**"
#: What only the full tables (or an added one) print.
FULL_ONLY = (
    "Latency mean ± 95 % CI (s)",
    "Relative to the baseline",
    "Per stage",
    "How close to the limit",
    "Drift from the fp32 eager reference",
    "Processes and precision",
)


def tables(text: str) -> list[list[str]]:
    """Each Markdown table of ``text`` as its lines (header, alignment row, rows)."""
    found: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                found.append([])
            found[-1].append(line)
        previous = line
    return found


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split(" | ")]


def rows_by_variant(table: list[str]) -> dict[str, list[str]]:
    return {cells(line)[0].strip("`"): cells(line) for line in table[2:]}


def edited(tmp_path: Path, source: Path, edit: dict[str, dict]) -> Run:
    """``source`` with ``edit[variant]`` merged into that variant's extra_info."""
    data = json.loads(source.read_text())
    for bench in data["benchmarks"]:
        bench["extra_info"].update(edit.get(bench["extra_info"]["variant"], {}))
    path = tmp_path / source.name
    path.write_text(json.dumps(data))
    return load_run(path)


# -- the default summary's shape ---------------------------------------------------------------------------------


def test_default_summary_is_one_compact_table_per_group_and_the_legend_once_at_the_end() -> None:
    text = terminal_summary(load_run(CPU_RUN))
    lines = text.splitlines()
    headings = [line for line in lines if line.startswith("### ")]
    assert headings == [
        "### `tiny` on cpu (Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz), batch size 1 (256 semantic tokens)",
        "### `tiny` on cpu (Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz), batch size 8 (256 semantic tokens)",
    ]
    found = tables(text)
    assert len(found) == len(headings)  # one table per group, nothing else
    for table in found:
        assert cells(table[0]) == HEADERS
        # Aligned: every line of a table as wide as its header, so it reads as is in a terminal.
        assert {len(line) for line in table} == {len(table[0])}
    # One row per variant, the baseline first, then the order they ran in; a failed row keeps its place.
    bs1, bs8 = (rows_by_variant(table) for table in found)
    assert list(bs1) == ["eager-fp32-bs1", "sdpa-fp32-bs1", "sdpa-bf16-bs1", "eager-fp32-offload-bs1"]
    assert list(bs8) == ["eager-fp32-bs8", "sdpa-fp32-bs8", "sdpa-bf16-bs8"]
    # The report's own cells: latency ± its interval's half-width, MB, samples/s; speed-up with its interval.
    assert bs1["eager-fp32-bs1"] == ["`eager-fp32-bs1`", "2.00 ± 0.05", "800", "0.500", "baseline", "0.391", ""]
    assert bs1["sdpa-fp32-bs1"] == ["`sdpa-fp32-bs1`", "1.46 ± 0.03", "760", "0.685", "1.37× (1.33–1.41)", "0.285", ""]
    assert bs8["sdpa-bf16-bs8"] == ["`sdpa-bf16-bs8`", "—", "—", "—", "—", "—", "failed"]
    assert "- `sdpa-bf16-bs8` failed: worker exited with code -9 (killed: out of memory?)" in text
    # The legend: once, after the last table, one line per column and per flag shown (here: failed).
    assert text.count(LEGEND) == 1
    legend = text[text.index(LEGEND) :]
    assert lines.index(found[-1][-1]) < lines.index(LEGEND)
    assert [line.partition(":")[0] for line in legend.splitlines()[2:]] == [
        "- Latency (s)",
        "- Peak memory (MB)",
        "- Throughput (samples/s)",
        "- Speed-up",
        "- RTF",
        "- failed",
        "- More",
    ]
    for absent in FULL_ONLY:
        assert absent not in text, absent


def test_the_flag_column_marks_each_condition_and_the_legend_names_only_those_shown(tmp_path: Path) -> None:
    from barkbench.stats import CpuUsage, check_noise

    noisy = check_noise([1.43, 1.46, 1.49], CpuUsage(4.4, 3.0, 4.4, 2))
    run = edited(
        tmp_path,
        CPU_RUN,
        {
            "sdpa-fp32-bs1": {"precision_met": False, "target_precision": 0.02, "precision_reason": "max rounds"},
            "sdpa-bf16-bs1": {"noise": noisy.as_dict()},
            "eager-fp32-offload-bs1": {
                "efficiency": {"semantic": {"fraction_of_limit": 0.2}, "fine": {"fraction_of_limit": 2.0}}
            },
            "sdpa-fp32-bs8": {"quality": {"audio_log_mel_db": 5.0, "floor": {"audio_log_mel_db": 2.0}}},
            "eager-fp32-bs8": {"quality": {"error": "the reference failed"}},
        },
    )
    text = terminal_summary(run)
    bs1, bs8 = (rows_by_variant(table) for table in tables(text))
    flags = {variant: row[-1] for rows in (bs1, bs8) for variant, row in rows.items()}
    assert flags == {
        "eager-fp32-bs1": "",
        "sdpa-fp32-bs1": "⚠ precision not met",
        "sdpa-bf16-bs1": "⚠ unstable",
        "eager-fp32-offload-bs1": "⚠ above the probe's limit (fine)",
        "eager-fp32-bs8": "⚠ quality not measured",
        "sdpa-fp32-bs8": "⚠ drift above floor",
        "sdpa-bf16-bs8": "failed",
    }
    # Why a row is unstable: under its group's table, not in the legend.
    reason = "- `sdpa-bf16-bs1`: other processes used 34 % of the machine's CPU time (limit 10 %)"
    assert text.index(reason) < text.index("batch size 8")
    legend = text[text.index(LEGEND) :]
    shown = [line.partition(":")[0] for line in legend.splitlines() if line.startswith(("- ⚠", "- failed", "- inter"))]
    assert shown == [
        "- ⚠ unstable",
        "- ⚠ precision not met",
        "- ⚠ above the probe's limit",
        "- ⚠ drift above floor",
        "- ⚠ quality not measured",
        "- failed",
    ]


def test_an_interrupted_row_and_a_baseline_that_is_not_eager_fp32() -> None:
    text = terminal_summary(load_run(H200_RUN))
    bs1, bs8 = (rows_by_variant(table) for table in tables(text))
    assert len(bs1) == 6 and bs1["eager-fp32-bs1"][4] == "baseline"
    assert bs1["sdpa-fp32-offload-bs1"][-1] == "⚠ unstable"
    assert bs8["sdpa-fp32-bs8"][4] == "baseline"
    assert bs8["sdpa-fp16-bs8"][1:] == ["—"] * 5 + ["interrupted"]
    assert "Speed-up is relative to `sdpa-fp32-bs8`: no eager/fp32/no-offload variant ran at this batch size." in text
    assert "- interrupted: stopped by an interrupt" in text[text.index(LEGEND) :]


# -- the option ---------------------------------------------------------------------------------------------------


def test_added_tables_come_under_each_groups_table_with_their_captions_once_in_the_legend() -> None:
    run = load_run(H200_RUN)
    text = terminal_summary(run, parse_tables("stages,limits"))
    assert [cells(t[0]) for t in tables(text)].count(HEADERS) == 2  # still one compact table per group
    legend = text.index(LEGEND)
    for title, caption in (
        ("**Per stage:**", "Per stage (mean over the rounds)"),
        ("**How close to the limit:**", LIMIT_CAPTION),
    ):
        assert text.count(title) == 2, title  # under each group's table
        assert text.count(caption) == 1 and text.index(caption) > legend, caption  # explained once, at the end
    second_group = text.index("batch size 8")
    assert text.index("**Per stage:**") < second_group < text.rindex("**Per stage:**")
    assert "Drift from" not in text and "Relative to the baseline" not in text

    notes = terminal_summary(load_run(PROCESSES_RUN), parse_tables("quality,processes"))
    assert "**Drift from the fp32 eager reference:**" in notes
    assert "**Processes and precision:**" in notes and "- `eager-fp32-bs1`: 2 processes (interleaved" in notes
    assert "**Per stage:**" not in notes and notes.count(LEGEND) == 1


@pytest.mark.parametrize("data", [CPU_RUN, H200_RUN, PROCESSES_RUN])
def test_full_prints_the_reports_tables_as_before(data: Path) -> None:
    run = load_run(data)
    text = terminal_summary(run, parse_tables("full"))
    assert text == terminal_tables(run)
    assert "Relative to the baseline" in text and "| Variant | Latency mean ± 95 % CI (s) |" in text
    assert LEGEND not in text and "| Flags" not in text


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("compact", ("compact",)),
        ("stages,limits", ("compact", "stages", "limits")),
        (" quality , compact ", ("compact", "quality")),
        ("processes,stages,stages", ("compact", "processes", "stages")),
        ("full", ("full",)),
        ("compact,full", ("full",)),
    ],
)
def test_parse_tables(value: str, parsed: tuple[str, ...]) -> None:
    assert parse_tables(value) == parsed


@pytest.mark.parametrize("value", ["", ",", "nope", "compact,stage"])
def test_parse_tables_refuses_other_names_in_one_line(value: str) -> None:
    with pytest.raises(ValueError, match="--bark-tables") as info:
        parse_tables(value)
    expected = "compact (the default), full, or compact plus any of stages, limits, quality, processes, memory"
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_the_option_is_read_once_into_the_session_options(pytester: pytest.Pytester) -> None:
    from barkbench.pytest_plugin.config import BenchOptions
    from barkbench.pytest_plugin.plugin import bark_session

    assert BenchOptions().tables == DEFAULT_TABLES  # a literal there: the options must not import reporting
    assert bark_session(pytester.parseconfigure()).options.tables == DEFAULT_TABLES == ("compact",)
    config = pytester.parseconfigure("--bark-tables", "limits,quality")
    assert bark_session(config).options.tables == ("compact", "limits", "quality")
    with pytest.raises(pytest.UsageError, match="argument --bark-tables: --bark-tables 'stage'"):
        pytester.parseconfig("--bark-tables=stage")


# -- end to end ---------------------------------------------------------------------------------------------------


@pytest.mark.one_stack("current")
def test_a_tiny_session_prints_the_compact_summary(bench_pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model's ops are too small for intra-op threads
    result = bench_pytester.runpytest_subprocess(
        "bench",
        "-p",
        "no:cacheprovider",
        "--bark-device",
        "cpu",
        "--bark-semantic-tokens",
        "8",
        "--bark-rounds",
        "2",
        "--bark-variants",
        "baseline;sdpa",
        timeout=600,
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*barkbench results*",
            "### `tiny` on cpu *, batch size 1 (8 semantic tokens*",
            "| Variant *|*Latency (s) | Peak memory (MB) | Throughput (samples/s) |*Speed-up |*RTF | Flags *|",
            "| `eager-fp32-bs1` *|* ± * |* |* |*baseline |* |*|",
            "| `sdpa-fp32-bs1` *|* ± * |* |* |*× (*–*) |* |*|",
            LEGEND,
        ]
    )
    summary = result.stdout.str().partition("barkbench results")[2]
    (table,) = tables(summary)
    assert cells(table[0]) == HEADERS and len(table) == 4  # header, alignment, one row per variant
    assert summary.count(LEGEND) == 1
    for absent in FULL_ONLY:
        assert absent not in summary, absent


def test_memory_table_shows_every_kind_of_gpu_memory_and_why_one_is_missing(tmp_path: Path) -> None:
    run = edited(
        tmp_path,
        H200_RUN,
        {
            "eager-fp32-bs1": {
                "peak_memory_reserved_bytes": 260_000_000,
                "device_process_memory_bytes": 812_000_000,
                "host_peak_rss_bytes": 1_900_000_000,
                "gpu_memory_notes": [],
            },
            "sdpa-fp32-offload-bs1": {
                "peak_memory_reserved_bytes": 190_000_000,
                "host_peak_rss_bytes": 2_400_000_000,
                "gpu_memory_notes": ["device process memory: nvidia-ml-py is not installed"],
            },
        },
    )
    assert "Every kind of memory" not in terminal_summary(run)  # not by default
    text = terminal_summary(run, parse_tables("memory"))
    (memory,) = [t for t in tables(text) if cells(t[0])[0] == "Variant" and "reserved MB" in cells(t[0])]
    rows = rows_by_variant(memory)
    assert set(rows) == {"eager-fp32-bs1", "sdpa-fp32-offload-bs1"}  # only the rows that recorded one
    assert rows["eager-fp32-bs1"][1:] == ["215", "260", "812", "1,900", ""]
    assert rows["sdpa-fp32-offload-bs1"][1:] == [
        "165",
        "190",
        "—",
        "2,400",
        "device process memory: nvidia-ml-py is not installed",
    ]
    assert text.count("**Every kind of memory:**") == 1  # under the bs1 group only
    assert text.index("**Every kind of memory:**") < text.index("batch size 8")
    caption = "Every kind of memory (accelerator rows"
    assert text.count(caption) == 1 and text.index(caption) > text.index(LEGEND)  # explained once, at the end
    assert "Every kind of memory" in terminal_tables(run)  # the report's tables show it too


def test_memory_table_is_absent_without_gpu_memory_figures() -> None:
    for data in (CPU_RUN, H200_RUN, PROCESSES_RUN):
        assert "Every kind of memory" not in terminal_summary(load_run(data), parse_tables("memory"))
