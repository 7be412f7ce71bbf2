"""``barkbench report``: blog-style Markdown tables and PNG plots from one or more result files.

Results are grouped by machine, model source, device and batch size, because only rows sharing all four are
comparable. Each group gets an absolute table and a table relative to its baseline row, in the style of the
Hugging Face "Optimizing Bark" blog post.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkbench import record
from barkbench.results import efficiency, plots, quality, schema
from barkbench.results import markdown as md
from barkbench.results.load import BenchmarkResult, ResultsError, Run
from barkbench.results.schema import BYTES_PER_MB

REPORT_NAME = "report.md"

_INTRO = (
    "Latency is the mean wall time of one `generate()` call over the measured rounds, ± the half-width of its "
    "95 % confidence interval (percentile bootstrap over the rounds, or over the process means for a row measured "
    "in several processes with --bark-processes; the wider side when it is lopsided; from 2 values up). Peak "
    "memory is the maximum over the rounds (CUDA: `max_memory_allocated`; CPU: peak RSS of the worker "
    "process); 1 MB = 10⁶ bytes. Throughput is batch size / mean latency. Audio s / wall s is seconds of audio "
    "generated per second of compute: above 1 is faster than real time."
)


@dataclass(frozen=True)
class Group:
    """The rows that are comparable with each other: same machine, model source, device and batch size."""

    machine: str
    model_source: str
    device: str
    batch_size: int
    results: tuple[BenchmarkResult, ...]
    #: ``schema.workload_label`` of every row: rows of different workloads are never in one group.
    workload: str = ""

    @property
    def succeeded(self) -> list[BenchmarkResult]:
        return [r for r in self.results if not r.failed]

    @property
    def failed(self) -> list[BenchmarkResult]:
        return [r for r in self.results if r.failed]

    @property
    def baseline(self) -> BenchmarkResult | None:
        """eager/fp32/no offload if it ran and succeeded, else the first successful row (the caption says)."""
        ok = self.succeeded
        return next((r for r in ok if r.is_reference_baseline), ok[0] if ok else None)

    @property
    def title(self) -> str:
        names = sorted({r.device_name for r in self.results if r.device_name})
        device = f"{self.device} ({', '.join(names)})" if names else self.device
        workload = f" ({self.workload})" if self.workload else ""
        return f"`{self.model_source}` on {device}, batch size {self.batch_size}{workload}"

    def to_markdown(self, plot_file: str | None = None) -> str:
        parts = [
            f"### {self.title}",
            "",
            md.table(BenchmarkResult.ABSOLUTE_HEADERS, [r.absolute_row() for r in self.results]),
        ]
        unstable = unstable_notes(self.results)
        if unstable:
            parts += ["", unstable]
        spread = process_notes(self.results)
        if spread:
            parts += ["", spread]
        baseline = self.baseline
        if baseline is not None:
            # The baseline first, as in the blog's tables; the others keep the order they ran in.
            ordered = [baseline, *(r for r in self.succeeded if r is not baseline)]
            parts += [
                "",
                self.caption(baseline),
                "",
                md.table(BenchmarkResult.RELATIVE_HEADERS, [r.relative_row(baseline) for r in ordered]),
            ]
        else:
            parts += ["", "_No variant succeeded in this group, so there is nothing to compare._"]
        stage_part = stage_table(self.succeeded)
        if stage_part:
            parts += ["", stage_part]
        segment_part = segment_table(self.succeeded)
        if segment_part:
            parts += ["", segment_part]
        quality_part = quality.quality_table(self.succeeded)
        if quality_part:
            parts += ["", quality_part]
        limit_part = efficiency.limit_table(self.succeeded)
        if limit_part:
            parts += ["", limit_part]
        memory_part = memory_table(self.succeeded)
        if memory_part:
            parts += ["", memory_part]
        if any(r.offload != "none" for r in self.succeeded):
            parts += [
                "",
                "_Offload rows: model memory is what stays on the device after loading, near 0 because the weights "
                "wait on the CPU until each sub-model runs; their peak is the figure that shows the saving._",
            ]
        if self.failed:
            parts += ["", "**Failed:**", ""]
            parts += [f"- `{r.variant}`: {r.error or 'no error message recorded'}" for r in self.failed]
        if plot_file:
            parts += ["", f"![Latency vs peak memory, {self.title.replace('`', '')}]({plot_file})"]
        return "\n".join(parts)

    def caption(self, baseline: BenchmarkResult) -> str:
        if baseline.is_reference_baseline:
            which = f"Relative to the baseline `{baseline.variant}` (eager attention, fp32, no offload)."
        else:
            which = (
                f"No eager/fp32/no-offload variant ran at this batch size, so the baseline is the first "
                f"row, `{baseline.variant}`."
            )
        return (
            f"{which} Negative latency and memory changes are improvements; so is positive throughput. "
            f"Speed-up is baseline latency / variant latency; its 95 % interval resamples both rows' rounds "
            f"(their process means where both ran in several processes; percentile bootstrap)."
        )


def unstable_notes(results: Sequence[BenchmarkResult]) -> str | None:
    """Why the rows marked unstable are: pyperf-style checks on the rounds and the machine's load meanwhile."""
    lines = [
        f"- `{r.variant}`: {r.noise.summary}" for r in results if not r.failed and r.noise is not None and r.unstable
    ]
    if not lines:
        return None
    title = f"**{BenchmarkResult.UNSTABLE_MARK}** (figures less trustworthy than their interval says):"
    return "\n".join([title, "", *lines])


def process_notes(results: Sequence[BenchmarkResult]) -> str | None:
    """Rows measured in several worker processes (--bark-processes) or with adaptive rounds: the spread within
    and between processes (each process's own warm-up and rounds), and whether the target precision held."""
    lines = []
    for r in results:
        info = r.record
        means = info.process_means_s or ()
        parts = []
        if len(means) > 1:
            order = "interleaved with the other variants" if info.interleave else "one after another"
            counts = "/".join(str(n) for n in info.process_rounds or ())
            parts.append(
                f"{len(means)} processes ({order}; rounds {counts}), process means "
                + " / ".join(md.significant(m) for m in means)
                + f" s; spread within a process {_fraction(info.within_process_cv)}, between "
                f"processes {_fraction(info.between_process_cv)} (standard deviation / mean)"
            )
            peaks = [md.thousands(p / BYTES_PER_MB) for p in info.process_peak_memory_bytes or ()]
            if len(set(peaks)) > 1:
                parts.append(f"peak memory {' / '.join(peaks)} MB by process (the table shows the largest)")
        if info.precision_reason:
            verdict = "met" if info.precision_met else "not met"
            width = info.precision_half_width
            target = info.target_precision
            parts.append(
                f"target precision ±{_fraction(target)} {verdict} after {r.latency.rounds if r.latency else '?'}"
                f" rounds ({info.precision_reason}; 95 % t-interval ±{_fraction(width)})"
            )
        if parts and not r.failed:
            lines.append(f"- `{r.variant}`: " + "; ".join(parts))
    if not lines:
        return None
    return "\n".join(["**Processes and precision:**", "", *lines])


def _fraction(value: Any) -> str:
    """0.0123 -> ``1.2 %`` (unsigned); None -> the missing mark."""
    return md.MISSING if not isinstance(value, (int, float)) else f"{value * 100:.1f} %"


def terminal_tables(run: Run) -> str:
    """Every table of one run as ``barkbench report`` renders its groups (no plots): what a session prints at its
    end with ``--bark-tables full``."""
    results, _ = relabel_machines([run])
    return "\n\n".join(group.to_markdown() for group in group_results(results))


# -- the session's summary: one compact table per group, the legend once -----------------------------------------

#: ``--bark-tables``: what a session prints at its end. ``compact``: one table per group and the legend once;
#: each of the others adds one of the report's tables (or notes) under each group's table, their captions once in
#: the legend; ``full``: every table of ``barkbench report`` per group (``terminal_tables``).
TABLE_CHOICES = ("compact", "stages", "limits", "quality", "processes", "memory", "full")
DEFAULT_TABLES: tuple[str, ...] = ("compact",)

COMPACT_HEADERS = ("Variant", "Latency (s)", "Peak memory (MB)", "Throughput (samples/s)", "Speed-up", "RTF", "Flags")
#: The flag of a row whose audio drifted from the fp32 eager reference more than re-sampling the reference does.
DRIFT_MARK = "⚠ drift above floor"
#: The flag of a row whose --bark-quality measurement failed.
QUALITY_ERROR_MARK = "⚠ quality not measured"

_LEGEND_COLUMNS = (
    "Latency (s): mean of one generate() call ± the half-width of its 95 % confidence interval",
    "Peak memory (MB): largest over the rounds (CUDA: max_memory_allocated; CPU: peak RSS); 1 MB = 10⁶ bytes",
    "Throughput (samples/s): batch size / latency",
    "Speed-up: the baseline's latency / the row's (95 % interval); the baseline is eager fp32 without offload",
    "RTF: real-time factor, latency / seconds of audio generated; below 1 is faster than real time",
)
#: What each flag means, in the legend (only the flags the summary shows).
_LEGEND_FLAGS = {
    BenchmarkResult.UNSTABLE_MARK: "noisy rounds or a busy machine (the reasons: under the table)",
    BenchmarkResult.IMPRECISE_MARK: "adaptive rounds stopped at a cap before --bark-target-precision",
    efficiency.ABOVE_LIMIT_MARK: f"a stage beyond {efficiency.ABOVE_LIMIT:g}× the limit the probe measured: not the "
    "probe's kernel (--bark-tables limits)",
    DRIFT_MARK: "audio further from the fp32 eager reference than re-sampling it (--bark-tables quality)",
    QUALITY_ERROR_MARK: "the --bark-quality measurement failed (--bark-tables quality says why)",
    "failed": "no figures (the error: under the table)",
    "interrupted": "stopped by an interrupt: no figures kept",
}


def parse_tables(value: str) -> tuple[str, ...]:
    """``--bark-tables``'s value, comma-separated: ``("full",)``, or ``compact`` then the others named
    (``stages,limits`` means ``compact,stages,limits``); ValueError, in one line, for anything else."""
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in TABLE_CHOICES]
    if not names or unknown:
        raise ValueError(
            f"--bark-tables {value!r}: use compact (the default), full, or compact plus any of "
            f"{', '.join(TABLE_CHOICES[1:-1])}, comma-separated (e.g. compact,stages,limits)"
        )
    return ("full",) if "full" in names else ("compact", *(name for name in names if name != "compact"))


def terminal_summary(run: Run, tables: Sequence[str] = DEFAULT_TABLES) -> str:
    """What a benchmark session prints at its end: per group one compact table (``compact_table``) with the tables
    ``tables`` adds under it, then the legend once; ``full`` prints ``barkbench report``'s tables instead."""
    if "full" in tables:
        return terminal_tables(run)
    results, _ = relabel_machines([run])
    groups = group_results(results)
    captions: dict[str, None] = {}
    parts = []
    for group in groups:
        part = [f"### {group.title}", "", compact_table(group)]
        notes = compact_notes(group)
        if notes:
            part += ["", notes]
        for extra in _extra_tables(group, tables):
            caption, table = _split_caption(extra)
            if caption:
                # Titled by the caption's first words ("Per stage", "How close to the limit"); the caption: once.
                captions[caption] = None
                table = f"**{caption.partition(' (')[0]}:**\n\n{table}"
            part += ["", table]
        parts.append("\n".join(part))
    parts.append(legend([r for g in groups for r in g.results], tuple(captions)))
    return "\n\n".join(parts)


def compact_table(group: Group) -> str:
    """The group's one table (``COMPACT_HEADERS``): the baseline first, then every row in the order it ran, failed
    rows included; the cells are the report's own (``absolute_row``, ``relative_row``)."""
    baseline = group.baseline
    rows = [r for r in group.results if r is not baseline]
    if baseline is not None:
        rows.insert(0, baseline)
    numeric = range(1, len(COMPACT_HEADERS) - 1)  # the flags read left to right
    return md.table(COMPACT_HEADERS, [_compact_row(r, baseline) for r in rows], numeric, aligned=True)


def _compact_row(r: BenchmarkResult, baseline: BenchmarkResult | None) -> list[str]:
    flags = " ".join(mark + (f" ({detail})" if detail else "") for mark, detail in row_flags(r))
    if r.failed:
        return [f"`{r.variant}`", *([md.MISSING] * (len(COMPACT_HEADERS) - 2)), flags]
    absolute = dict(zip(BenchmarkResult.ABSOLUTE_HEADERS, r.absolute_row(), strict=True))
    if baseline is None or r is baseline:
        speedup = "baseline" if r is baseline else md.MISSING
    else:
        relative = dict(zip(BenchmarkResult.RELATIVE_HEADERS, r.relative_row(baseline), strict=True))
        interval = relative["Speed-up 95 % CI"]
        speedup = relative["Speed-up"] + ("" if interval == md.MISSING else f" ({interval.removesuffix('×')})")
    return [
        f"`{r.variant}`",
        absolute["Latency mean ± 95 % CI (s)"],
        absolute["Peak memory (MB)"],
        absolute["Throughput (samples/s)"],
        speedup,
        md.significant(real_time_factor(r)),
        flags,
    ]


def row_flags(r: BenchmarkResult) -> list[tuple[str, str]]:
    """The flags of a row, as (mark, detail) (marks: ``_LEGEND_FLAGS``' keys; detail: "" or, for a stage above the
    probe's limit, the stages): failed or interrupted, noise, precision not met, above the limit, quality drift."""
    if r.failed:
        return [(r.status, "")]
    flags = [(BenchmarkResult.UNSTABLE_MARK, "")] if r.unstable else []
    if r.record.precision_met is False:
        flags.append((BenchmarkResult.IMPRECISE_MARK, ""))
    above = [
        stage
        for _, figures in efficiency.limit_rows([r])
        for stage, values in figures.items()
        if isinstance(share := (values or {}).get("fraction_of_limit"), (int, float)) and share > efficiency.ABOVE_LIMIT
    ]
    if above:
        flags.append((efficiency.ABOVE_LIMIT_MARK, ", ".join(above)))
    measured = r.extra_info.get("quality")
    if isinstance(measured, Mapping) and "error" in measured:
        flags.append((QUALITY_ERROR_MARK, ""))
    elif (over := quality.figure(measured, "audio_over_floor", None)) is not None and over > 1:
        flags.append((DRIFT_MARK, ""))
    return flags


def compact_notes(group: Group) -> str | None:
    """Under a compact table, only where needed: a baseline that is not eager/fp32/no offload, why rows are
    unstable, why rows failed."""
    lines = []
    baseline = group.baseline
    if baseline is not None and not baseline.is_reference_baseline:
        lines.append(
            f"Speed-up is relative to `{baseline.variant}`: no eager/fp32/no-offload variant ran at this batch size."
        )
    unstable = unstable_notes(group.results)
    if unstable:
        lines.append(unstable)
    if group.failed:
        failed = [f"- `{r.variant}` {r.status}: {r.error or 'no error message recorded'}" for r in group.failed]
        lines.append("\n".join(["**Failed:**", "", *failed]))
    return "\n\n".join(lines) or None


def _extra_tables(group: Group, tables: Sequence[str]) -> list[str]:
    """The report's tables ``tables`` asks for under a group's compact table, each with its caption first."""
    ok = group.succeeded
    made = {
        "stages": (stage_table(ok), segment_table(ok)),
        "quality": (quality.quality_table(ok),),
        "limits": (efficiency.limit_table(ok),),
        "processes": (process_notes(ok),),
        "memory": (memory_table(ok),),
    }
    return [text for name in tables for text in made.get(name, ()) if text]


def _split_caption(text: str) -> tuple[str, str]:
    """(caption, table) of a report table rendered as its caption paragraph, a blank line and the table; notes
    (no caption, e.g. ``process_notes``) come back whole as the table."""
    caption, _, table = text.partition("\n\n")
    if caption.startswith("|") or caption.startswith("**") or not table.startswith("|"):
        return "", text
    return caption, table


def legend(results: Sequence[BenchmarkResult], captions: Sequence[str] = ()) -> str:
    """The summary's legend, once: each column, the flags ``results`` show, the added tables' captions, and where
    the other tables are."""
    shown = {mark for r in results for mark, _ in row_flags(r)}
    flags = [f"- {mark}: {meaning}" for mark, meaning in _LEGEND_FLAGS.items() if mark in shown]
    lines = ["**Legend:**", "", *(f"- {column}" for column in _LEGEND_COLUMNS), *flags]
    lines += [f"- {caption}" for caption in captions]
    lines.append(
        f"- More: --bark-tables compact plus any of {', '.join(TABLE_CHOICES[1:-1])} adds those tables; "
        "--bark-tables full prints every table of `barkbench report`"
    )
    return "\n".join(lines)


def real_time_factor(r: BenchmarkResult) -> float | None:
    """The recorded ``real_time_factor`` (below 1 is faster than real time); for a record written before the
    field existed, the same definition applied to its stats block; None when a figure is missing."""
    if r.record.real_time_factor is not None:
        return r.record.real_time_factor
    return record.real_time_factor_of(r.latency_mean, r.audio_seconds)


_STAGE_CAPTION = (
    "Per stage (mean over the rounds): seconds of semantic, coarse, fine generation and codec decode; tokens "
    "per second of the semantic and coarse stages (each stage's tokens over its own time, so runs of "
    "different lengths compare); peak memory during each stage in MB; real-time factor = latency / audio "
    "seconds (below 1 is faster than real time)."
)


def stage_table(results: Sequence[BenchmarkResult]) -> str | None:
    """The per-stage breakdown of the rows that recorded one (``extra_info["stages"]``), else None."""
    rows = [r for r in results if r.stages]
    if not rows:
        return None
    names = [stage[0] for stage in rows[0].stages]
    headers = (
        "Variant",
        *(f"{n} s" for n in names),
        "semantic tok/s",
        "coarse tok/s",
        "peak MB " + " / ".join(names),
        "RTF",
    )
    cells = []
    for r in rows:
        by_name = {name: (seconds, peak, tokens) for name, seconds, peak, tokens in r.stages}

        def rate(
            name: str, by_name: dict[str, tuple[float | None, int | None, float | None]] = by_name
        ) -> float | None:
            seconds, _, tokens = by_name.get(name, (None, None, None))
            return tokens / seconds if seconds and tokens is not None else None

        peaks = " / ".join(md.thousands(_mb(by_name.get(n, (None, None, None))[1])) for n in names)
        rtf = real_time_factor(r)
        cells.append(
            [
                f"`{r.variant}`",
                *(md.significant(by_name.get(n, (None,))[0]) for n in names),
                md.significant(rate("semantic")),
                md.significant(rate("coarse")),
                peaks,
                md.significant(rtf),
            ]
        )
    return "\n".join([_STAGE_CAPTION, "", md.table(headers, cells)])


_SEGMENT_CAPTION = (
    "Long-form (`--bark-long-form`): the text split into pieces generated one after another; per piece the mean "
    "seconds over the measured rounds (`extra_info.segment_seconds`), in order. Latency is the whole text; "
    "between pieces = latency minus the pieces' sum."
)


def segment_table(results: Sequence[BenchmarkResult]) -> str | None:
    """Per-piece seconds of the long-form rows (``extra_info["segment_seconds"]``), else None."""
    rows = [r for r in results if r.record.segment_seconds]
    if not rows:
        return None
    headers = ("Variant", "pieces", "latency s", "pieces' sum s", "between pieces s", "slowest piece s", "per piece s")
    cells = []
    for r in rows:
        pieces = list(r.record.segment_seconds or ())
        total = sum(pieces)
        between = r.latency_mean - total if r.latency_mean is not None else None
        cells.append(
            [
                f"`{r.variant}`",
                str(len(pieces)),
                md.significant(r.latency_mean),
                md.significant(total),
                md.significant(between),
                f"{md.significant(max(pieces))} (piece {pieces.index(max(pieces)) + 1})",
                ", ".join(md.significant(v) for v in pieces),
            ]
        )
    return "\n".join([_SEGMENT_CAPTION, "", md.table(headers, cells)])


_MEMORY_CAPTION = (
    "Every kind of memory (accelerator rows; MB, the highest of a call over the rounds): allocated = the "
    "allocator's peak (the Peak memory column), reserved = its pool's peak, cached blocks included; device view = "
    "what NVML counts for the worker after a call, its CUDA context included; host peak RSS = the worker's peak "
    "resident set on the host, where offload keeps the sub-models that are not running."
)


def memory_table(results: Sequence[BenchmarkResult]) -> str | None:
    """The accelerator rows' memory seen every way (``record.FIELDS``' ``device_memory`` group), with the reason a
    figure is missing; None when no row recorded one (CPU rows, files from before the fields existed)."""
    rows = [r for r in results if _has_device_memory(r)]
    if not rows:
        return None
    headers = ("Variant", "allocated MB", "reserved MB", "device view MB", "host peak RSS MB", "missing because")
    cells = [
        [
            f"`{r.variant}`",
            md.thousands(_mb(r.peak_memory_bytes)),
            md.thousands(_mb(r.record.peak_memory_reserved_bytes)),
            md.thousands(_mb(r.record.device_process_memory_bytes)),
            md.thousands(_mb(r.record.host_peak_rss_bytes)),
            "; ".join(r.record.gpu_memory_notes or ()),
        ]
        for r in rows
    ]
    return "\n".join([_MEMORY_CAPTION, "", md.table(headers, cells)])


def _has_device_memory(r: BenchmarkResult) -> bool:
    figures = (r.record.peak_memory_reserved_bytes, r.record.device_process_memory_bytes, r.record.host_peak_rss_bytes)
    return any(value is not None for value in figures) or bool(r.record.gpu_memory_notes)


def _mb(value: int | None) -> float | None:
    return None if value is None else value / BYTES_PER_MB


@dataclass(frozen=True)
class Report:
    markdown: str
    files: tuple[Path, ...]


def relabel_machines(runs: Sequence[Run]) -> tuple[list[BenchmarkResult], dict[str, str]]:
    """All runs' results, and a short file-name-friendly name per machine label.

    Two runs from the same machine get "run N (file)" added to the label, so their rows never mix in a group.
    """
    counts = Counter(run.machine for run in runs)
    results: list[BenchmarkResult] = []
    short: dict[str, str] = {}
    for index, run in enumerate(runs, start=1):
        node = str(run.machine_info.get("node") or "machine")
        label, name = run.machine, node
        if counts[run.machine] > 1:
            label, name = f"{run.machine}, run {index} ({run.path.name})", f"{node}-run{index}"
        short[label] = name
        results.extend(dataclasses.replace(r, machine=label) for r in run.benchmarks)
    return results, short


def group_results(results: Sequence[BenchmarkResult]) -> list[Group]:
    """Groups in first-seen machine/model/device order, batch sizes ascending within each, one group per workload
    (``schema.workload_key``): a relative table never compares rows that measured different things."""
    keys: dict[tuple[str, str, str], dict[tuple[int, Any], list[BenchmarkResult]]] = {}
    for r in results:
        by_batch = keys.setdefault((r.machine, r.model_source, r.device), {})
        by_batch.setdefault((r.batch_size, schema.workload_key(r.record)), []).append(r)
    return [
        Group(machine, model, device, batch, tuple(rows), schema.workload_label(rows[0].record))
        for (machine, model, device), by_batch in keys.items()
        for (batch, _), rows in sorted(by_batch.items(), key=lambda item: item[0][0])
    ]


def runs_table(runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        sw = run.software
        rows.append(
            [
                f"`{run.path.name}`",
                run.machine,
                str(sw.get("device") or md.MISSING),
                "; ".join(dict.fromkeys(schema.workload_label(r.record) for r in run.benchmarks)) or md.MISSING,
                str(sw.get("torch") or md.MISSING),
                str(sw.get("transformers") or md.MISSING),
                f"`{run.commit}`",
                run.datetime or md.MISSING,
            ]
        )
    return md.table(
        ("Run", "Machine", "Device", "Workload", "torch", "transformers", "Commit", "Date"), rows, numeric=()
    )


def build_report(runs: Sequence[Run], output_dir: Path | None) -> Report:
    """The Markdown text, and the PNGs written into ``output_dir`` (none when it is None)."""
    results, short = relabel_machines(runs)
    groups = group_results(results)
    if not groups:
        names = ", ".join(str(run.path) for run in runs)
        raise ResultsError(
            f"{names}: no barkbench benchmarks in the file(s); "
            f"run `pytest bench/ --benchmark-json=FILE` to produce some"
        )
    namer = _FileNamer()
    files: list[Path] = []
    lines = ["# Bark benchmark report", "", _INTRO, "", "## Runs", "", runs_table(runs)]
    machine = section = None
    for group in groups:
        if group.machine != machine:
            machine, section = group.machine, None
            lines += ["", f"## {machine}"]
        if (group.model_source, group.device) != section:
            section = (group.model_source, group.device)
            lines += ["", f"Model `{group.model_source}` on {group.device}."]
            if output_dir is not None:
                same = [
                    r for g in groups if (g.machine, g.model_source, g.device) == (machine, *section) for r in g.results
                ]
                path = output_dir / namer(f"throughput-{short[machine]}-{group.model_source}-{group.device}")
                plots.throughput_vs_batch(
                    same, f"Throughput vs batch size: {group.model_source}, {group.device}\n{machine}", path
                )
                files.append(path)
                alt = f"Throughput vs batch size, {group.model_source} on {group.device}"
                lines += ["", f"![{alt}]({path.name})"]
        plot_file = None
        if output_dir is not None and group.succeeded:
            path = output_dir / namer(
                f"latency-memory-{short[machine]}-{group.model_source}-{group.device}-bs{group.batch_size}"
            )
            title = (
                f"Latency vs peak memory: {group.model_source}, {group.device}, "
                f"batch size {group.batch_size}\n{machine}"
            )
            plots.latency_vs_memory(group.succeeded, title, path)
            files.append(path)
            plot_file = path.name
        lines += ["", group.to_markdown(plot_file)]
        if output_dir is not None:
            # Where each variant's decode step goes: bandwidth floor, kernel floor, measured (efficiency.py).
            for variant, figures in efficiency.limit_rows(group.succeeded):
                levels = {s: v for s in efficiency.DECODE_STAGES if (v := efficiency.step_levels(figures, s))}
                if levels:
                    path = output_dir / namer(f"steps-{short[machine]}-{group.model_source}-{group.device}-{variant}")
                    files.append(plots.step_breakdown(variant, levels, path))
                    lines += ["", f"![Decode step breakdown, {variant}]({path.name})"]
    notes = [note for run in runs for note in run.notes()]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return Report(markdown="\n".join(lines) + "\n", files=tuple(files))


def write_report(runs: Sequence[Run], output_dir: Path, plots_enabled: bool = True) -> Report:
    output_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(runs, output_dir if plots_enabled else None)
    path = output_dir / REPORT_NAME
    path.write_text(report.markdown, encoding="utf-8")
    return Report(markdown=report.markdown, files=(path, *report.files))


class _FileNamer:
    """Readable, file-system-safe PNG names, made unique when two slugs collide."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, text: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:120] or "plot"
        self.seen[slug] += 1
        suffix = f"-{self.seen[slug]}" if self.seen[slug] > 1 else ""
        return f"{slug}{suffix}.png"


def efficiency_report(runs: Sequence[Run]) -> str:
    """``--efficiency``: the ranked "How close to the limit" table of every group (``efficiency.limit_ranking``)."""
    results, _ = relabel_machines(runs)
    parts = []
    for group in group_results(results):
        table = efficiency.limit_ranking(group.succeeded)
        if table:
            parts += [f"### {group.title}", "", f"Machine: {group.machine}.", "", table, ""]
    if not parts:
        names = ", ".join(str(run.path) for run in runs)
        raise ResultsError(
            f"{names}: no variant recorded efficiency figures (extra_info['efficiency']); they need the per-stage "
            "figures and the machine-limits probe: run `pytest bench/` with this barkbench and report that file"
        )
    return "\n".join(parts)
