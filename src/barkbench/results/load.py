"""Load pytest-benchmark JSON written by the barkbench plugin into small frozen dataclasses.

Both kinds of file pytest-benchmark writes share one schema: the autosaved
``.benchmarks/<machine>/NNNN_*.json`` and ``--benchmark-json FILE``. The barkbench figures (memory,
throughput, audio rate, the variant's axes) live in each benchmark's ``extra_info``, which pytest-benchmark
itself never shows or compares; this module is what the ``barkbench`` commands read them through.

Each benchmark's ``extra_info`` is read through ``barkbench.record.Record`` (every key's single definition), which
migrates records written by older versions and refuses newer ones. Nothing here imports torch or the plugin, so
reading results stays fast and works on a machine that only holds the JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from barkbench import stats as bstats
from barkbench.record import NewerFormatError, Record, format_of, read_float, read_str
from barkbench.results import markdown as md
from barkbench.results.schema import BYTES_PER_MB, IDENTITY_KEYS, is_baseline

_FIX = "pass a file written by `pytest bench/ --benchmark-json=FILE` or autosaved as .benchmarks/*/NNNN_*.json"
_BATCH_IN_ID = re.compile(r"-bs\d+$")


class ResultsError(Exception):
    """A results file is missing or unusable. The message is one line: the file, what is wrong, the fix."""


@dataclass(frozen=True)
class LatencyStats:
    """The seconds-per-``generate`` figures pytest-benchmark computed over the measured rounds."""

    mean: float
    median: float | None
    stddev: float | None
    min: float | None
    max: float | None
    rounds: int

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> LatencyStats | None:
        """None when there is no mean: a failed benchmark may carry a stats block without numbers."""
        mean = read_float(stats.get("mean"))
        if mean is None:
            return None
        return cls(
            mean=mean,
            median=read_float(stats.get("median")),
            stddev=read_float(stats.get("stddev")),
            min=read_float(stats.get("min")),
            max=read_float(stats.get("max")),
            rounds=int(stats.get("rounds") or 0),
        )


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmarked variant: identity, axes and the figures, plus how it renders in the report tables."""

    fullname: str
    name: str
    variant: str
    attention: str
    dtype: str
    offload: str
    batch_size: int
    model_source: str
    #: The device kind ("cuda", "cpu"): what the report groups by. Files that recorded "cuda:0" (offload rows
    #: carry the offload hook's device) read as their kind, with the index in ``device_index``.
    device: str
    device_name: str | None
    machine: str
    status: str = "ok"
    error: str | None = None
    attention_impl: str | None = None
    latency: LatencyStats | None = None
    semantic_max_new_tokens: int | None = None
    #: Everything the benchmark's extra_info records, read (and migrated) through its definition.
    record: Record = Record()
    #: The per-round seconds pytest-benchmark stored (``stats.data``); empty when the file has none.
    round_seconds: tuple[float, ...] = ()
    #: The benchmark's extra_info as recorded (what ``barkbench budgets`` checks).
    extra_info: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: Whether this is the baseline row (``schema.is_baseline``), decided from its record when loaded.
    is_reference_baseline: bool = False
    device_index: int | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], machine: str) -> BenchmarkResult:
        """Build from one entry of the file's ``benchmarks`` list; ValueError/TypeError if malformed,
        ``NewerFormatError`` if its record is of a newer format than this barkbench reads."""
        extra = raw["extra_info"]
        stats = raw.get("stats") or {}
        if not isinstance(stats, Mapping):
            raise TypeError("'stats' is not an object")
        rec = Record.from_extra_info(extra)
        return cls(
            fullname=str(raw["fullname"]),
            name=str(raw.get("name") or raw["fullname"]),
            variant=_required(rec.variant, "variant"),
            attention=_required(rec.attention, "attention"),
            dtype=_required(rec.dtype, "dtype"),
            offload=_required(rec.offload, "offload"),
            batch_size=_required(rec.batch_size, "batch_size"),
            model_source=rec.model_source or "unknown",
            device=(rec.device or "unknown").partition(":")[0],
            device_index=rec.device_index,
            device_name=rec.device_name,
            machine=machine,
            status=rec.status or "ok",
            error=rec.error,
            attention_impl=rec.attention_impl,
            latency=LatencyStats.from_stats(stats),
            semantic_max_new_tokens=rec.semantic_max_new_tokens,
            record=rec,
            round_seconds=_rounds(stats.get("data")),
            is_reference_baseline=is_baseline(rec),
            extra_info=dict(extra),
        )

    # -- derived values -------------------------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """No usable figures: the variant failed, or an interrupt stopped it (its partial rounds are not kept)."""
        return self.status in ("failed", "interrupted")

    @property
    def axes(self) -> tuple[str, str, str]:
        """(attention, dtype, offload): the variant without its batch size."""
        return (self.attention, self.dtype, self.offload)

    @property
    def series(self) -> str:
        """The variant id without ``-bsN``: one line per series in the throughput-vs-batch plot."""
        stripped = _BATCH_IN_ID.sub("", self.variant)
        if stripped != self.variant:
            return stripped
        # An id in some other format: rebuild a label from the axes rather than guess at its layout.
        return "-".join(a for a in (self.attention, self.dtype, self.offload) if a != "none")

    @property
    def peak_memory_bytes(self) -> int | None:
        return self.record.peak_memory_bytes

    @property
    def peak_memory_bytes_mean(self) -> int | None:
        return self.record.peak_memory_bytes_mean

    @property
    def memory_method(self) -> str | None:
        return self.record.memory_method

    @property
    def model_memory_bytes(self) -> int | None:
        return self.record.model_memory_bytes

    @property
    def throughput_samples_per_s(self) -> float | None:
        return self.record.throughput_samples_per_s

    @property
    def audio_seconds(self) -> float | None:
        return self.record.audio_seconds

    @property
    def audio_seconds_per_wall_second(self) -> float | None:
        return self.record.audio_seconds_per_wall_second

    @property
    def stages(self) -> tuple[tuple[str, float | None, int | None, float | None], ...]:
        """The recorded stages as (stage, seconds, peak_memory_bytes, tokens) rows."""
        return tuple(
            (name, s.seconds, s.peak_memory_bytes, s.tokens) for name, s in self.record.stage_figures().items()
        )

    @property
    def latency_mean(self) -> float | None:
        return self.latency.mean if self.latency else None

    @property
    def latency_spread(self) -> float | None:
        """The stddev, or None from a single round: pytest-benchmark reports 0 there, which would read as
        perfectly steady timing rather than "not measured"."""
        if self.latency is None or self.latency.rounds < 2:
            return None
        return self.latency.stddev

    @property
    def peak_memory_mb(self) -> float | None:
        return None if self.peak_memory_bytes is None else self.peak_memory_bytes / BYTES_PER_MB

    # -- rendering ------------------------------------------------------------------------------------------

    @property
    def timings(self) -> bstats.Timings:
        """The rounds and, for a row measured in several processes (``--bark-processes``), each process's mean:
        what ``stats.samples`` picks this row's statistics from."""
        return bstats.Timings(self.round_seconds, self.record.process_means_s or ())

    @property
    def latency_interval(self) -> bstats.Interval | None:
        """The mean latency's 95 % interval over this row's ``stats.samples`` (None below 2 of them)."""
        (sample,) = bstats.samples(self.timings)
        return bstats.mean_interval(sample.values, over=sample.over) if len(sample.values) >= 2 else None

    @property
    def noise(self) -> bstats.NoiseCheck | None:
        """The stability checks recorded for the rounds (None in files written before they were)."""
        return bstats.NoiseCheck.from_dict(self.record.noise) if self.record.noise else None

    @property
    def unstable(self) -> bool:
        return self.noise is not None and self.noise.unstable

    def speedup_interval(self, baseline: BenchmarkResult) -> bstats.Interval | None:
        """Baseline latency / this latency with its 95 % interval over both rows' ``stats.samples`` (process
        means where both ran in several processes, else rounds on both sides)."""
        if baseline is self:
            return None
        theirs, mine = bstats.samples(baseline.timings, self.timings)
        if len(mine.values) < 2 or len(theirs.values) < 2:
            return None
        return bstats.ratio_interval(theirs.values, mine.values, over=mine.over)

    # -- rendering ------------------------------------------------------------------------------------------

    ABSOLUTE_HEADERS = (
        "Variant",
        "Latency mean ± 95 % CI (s)",
        "Peak memory (MB)",
        "Throughput (samples/s)",
        "Audio s / wall s",
    )
    RELATIVE_HEADERS = ("Variant", "Latency", "Peak memory", "Throughput", "Speed-up", "Speed-up 95 % CI")
    #: Appended to the variant cell of a row whose rounds failed the noise checks (the reasons follow the table).
    UNSTABLE_MARK = "⚠ unstable"
    #: Appended to the variant cell of an adaptive-rounds row that hit a cap before its target precision.
    IMPRECISE_MARK = "⚠ precision not met"

    @property
    def label(self) -> str:
        marks = [self.UNSTABLE_MARK] if self.unstable else []
        if self.record.precision_met is False:
            marks.append(self.IMPRECISE_MARK)
        return " ".join([f"`{self.variant}`", *marks])

    def absolute_row(self) -> list[str]:
        """Cells for the absolute table; a failed variant keeps its row so the reader sees it was tried."""
        if self.failed:
            return [f"`{self.variant}`", self.status, md.MISSING, md.MISSING, md.MISSING]
        interval = self.latency_interval
        return [
            self.label,
            # Without stored rounds (an autosave without --benchmark-save-data) the mean stands alone.
            md.mean_pm_stddev(self.latency_mean, interval.half_width if interval else None),
            md.thousands(self.peak_memory_mb),
            md.significant(self.throughput_samples_per_s),
            md.significant(self.audio_seconds_per_wall_second),
        ]

    def relative_row(self, baseline: BenchmarkResult) -> list[str]:
        """Cells for the table relative to ``baseline``: lower latency/memory and higher throughput win."""
        label = self.label + (" (baseline)" if self is baseline else "")
        base_latency, latency = baseline.latency_mean, self.latency_mean
        speedup = base_latency / latency if base_latency and latency else None
        interval = self.speedup_interval(baseline)
        return [
            label,
            md.format_percent(md.relative_change(latency, base_latency)),
            md.format_percent(md.relative_change(self.peak_memory_bytes, baseline.peak_memory_bytes)),
            md.format_percent(md.relative_change(self.throughput_samples_per_s, baseline.throughput_samples_per_s)),
            md.MISSING if speedup is None else f"{speedup:.2f}×",
            md.MISSING if interval is None else f"{interval.low:.2f}–{interval.high:.2f}×",
        ]


@dataclass(frozen=True)
class Run:
    """One results file: where it came from, what ran it, and its barkbench benchmarks."""

    path: Path
    machine_info: Mapping[str, Any]
    commit_info: Mapping[str, Any]
    datetime: str | None
    version: str | None
    benchmarks: tuple[BenchmarkResult, ...]
    #: fullnames of benchmarks in the file without barkbench extra_info (someone else's tests).
    ignored: tuple[str, ...] = ()

    @property
    def machine(self) -> str:
        return machine_label(self.machine_info)

    @property
    def software(self) -> Mapping[str, Any]:
        """What the barkbench plugin added to machine_info: library versions, device, GPU."""
        info = self.machine_info.get("barkbench")
        return info if isinstance(info, Mapping) else {}

    @property
    def commit(self) -> str:
        commit = str(self.commit_info.get("id") or "unknown")
        short = commit[:10] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit
        return short + (" (dirty)" if self.commit_info.get("dirty") else "")

    def by_fullname(self) -> dict[str, BenchmarkResult]:
        return {b.fullname: b for b in self.benchmarks}

    def notes(self) -> list[str]:
        if not self.ignored:
            return []
        names = ", ".join(f"`{n}`" for n in self.ignored)
        return [f"{self.path.name}: ignored {len(self.ignored)} benchmark(s) without barkbench extra_info: {names}"]


def machine_label(machine_info: Mapping[str, Any]) -> str:
    """``node (hardware)``: the GPU when there is one, else the CPU brand, so two machines never merge."""
    node = str(machine_info.get("node") or "unknown host")
    ours = machine_info.get("barkbench")
    ours = ours if isinstance(ours, Mapping) else {}
    cpu = machine_info.get("cpu")
    cpu_brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    hardware = ours.get("gpu_name") or cpu_brand or machine_info.get("processor") or machine_info.get("machine")
    return f"{node} ({hardware})" if hardware else node


def load_run(path: str | Path) -> Run:
    """Read one pytest-benchmark JSON file; raise ResultsError (one line, with the fix) if it is unusable."""
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path}: is a directory; {_FIX}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file; {_FIX}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({_one_line(exc)}); {_FIX}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); {_FIX}") from None
    return parse_run(data, path)


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    return [load_run(p) for p in paths]


def parse_run(data: Any, path: Path) -> Run:
    """Validate the pytest-benchmark shape and keep the benchmarks whose extra_info is barkbench's."""
    if not isinstance(data, Mapping) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark result file (no 'benchmarks' list); {_FIX}")
    machine_info = data.get("machine_info")
    if not isinstance(machine_info, Mapping):
        raise ResultsError(f"{path}: not a pytest-benchmark result file (no 'machine_info' object); {_FIX}")
    _check_format(data, path)
    commit_info = data.get("commit_info")
    machine = machine_label(machine_info)
    results: list[BenchmarkResult] = []
    ignored: list[str] = []
    for index, raw in enumerate(data["benchmarks"]):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("fullname"), str):
            raise ResultsError(f"{path}: benchmarks[{index}] has no 'fullname'; {_FIX}")
        extra = raw.get("extra_info")
        if not isinstance(extra, Mapping) or any(extra.get(key) is None for key in IDENTITY_KEYS):
            ignored.append(raw["fullname"])
            continue
        try:
            results.append(BenchmarkResult.from_json(raw, machine))
        except NewerFormatError as exc:
            raise ResultsError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsError(
                f"{path}: benchmark {raw['fullname']!r} has malformed barkbench extra_info "
                f"({_one_line(exc)}); re-run it with the current barkbench plugin"
            ) from None
    return Run(
        path=path,
        machine_info=machine_info,
        commit_info=commit_info if isinstance(commit_info, Mapping) else {},
        datetime=read_str(data.get("datetime")),
        version=read_str(data.get("version")),
        benchmarks=tuple(results),
        ignored=tuple(ignored),
    )


def _rounds(data: Any) -> tuple[float, ...]:
    """Per-round seconds; a file with a null or non-finite round keeps none (no interval beats a wrong one)."""
    if not isinstance(data, list):
        return ()
    values = [read_float(x) for x in data]
    return () if any(v is None for v in values) else tuple(v for v in values if v is not None)


_V = TypeVar("_V")


def _required(value: _V | None, key: str) -> _V:
    """An identity field every barkbench record has (``parse_run`` checked the raw keys): KeyError if absent."""
    if value is None:
        raise KeyError(key)
    return value


def _check_format(data: Mapping[str, Any], path: Path) -> None:
    """A file-level format, where the file records one: a newer one stops here, in one line."""
    try:
        format_of(data)
    except NewerFormatError as exc:
        raise ResultsError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ResultsError(f"{path}: {exc}; {_FIX}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
