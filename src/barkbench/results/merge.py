"""``barkbench merge``: combine the result files of a sharded sweep (and runs from several nodes) into one
pytest-benchmark JSON file that pytest-benchmark's own ``compare`` and barkbench's ``report``/``compare`` read.

Every file must share the workload (model, device type, semantic tokens, fixed length, rounds, prompts) and the
library versions — a merge of two different experiments would read as one — unless ``--allow-mixed`` is given.
The shards' records of the whole matrix say which shards and variants are missing; they are listed, not guessed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkbench.record import SWEEP_KEY as JSON_KEY
from barkbench.results.load import ResultsError, parse_run

#: machine_info["barkbench"] keys that must agree: results of two library stacks are two experiments.
VERSION_KEYS = ("torch", "transformers", "optimum", "accelerate", "barkbench")


@dataclass(frozen=True)
class Merged:
    """The merged file's content and what the shards' records say is missing from it."""

    data: dict[str, Any]
    #: Shard labels ("2/4") recorded by no input, per matrix fingerprint.
    missing_shards: tuple[str, ...]
    #: Variant ids of the recorded matrix with no successful result (never run, failed or interrupted).
    missing_variants: tuple[str, ...]
    #: Variant ids that ran but failed (a subset of ``missing_variants``).
    failed_variants: tuple[str, ...]
    #: Rows that more than one input holds, and which input's row the merged file keeps.
    duplicates: tuple[Duplicate, ...] = ()

    @property
    def complete(self) -> bool:
        return not (self.missing_shards or self.missing_variants)

    def summary(self) -> list[str]:
        lines = []
        if self.missing_shards:
            lines.append(f"missing shard(s): {', '.join(self.missing_shards)}")
        if self.missing_variants:
            failed = set(self.failed_variants)
            named = [f"{v} (failed)" if v in failed else v for v in self.missing_variants]
            lines.append(f"missing variant(s): {', '.join(named)}")
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} row(s) in several inputs: {'; '.join(map(str, self.duplicates))}")
        return lines


@dataclass(frozen=True)
class Duplicate:
    """A benchmark row more than one input holds (a retried shard, overlapping files): only one is kept."""

    variant: str
    #: The inputs that hold it, in the order given.
    files: tuple[str, ...]
    kept: str
    #: Why that one: the only successful row, or the later file's.
    why: str

    def __str__(self) -> str:
        return f"{self.variant} in {', '.join(self.files)}: kept {self.kept}'s ({self.why})"

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "files": list(self.files), "kept": self.kept, "why": self.why}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file; pass the --benchmark-json files of the shards") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not a readable JSON file ({' '.join(str(exc).split())})") from None
    parse_run(data, path)  # the pytest-benchmark shape, with its one-line errors
    assert isinstance(data, dict)
    return data


def _versions(data: Mapping[str, Any]) -> dict[str, Any]:
    ours = data.get("machine_info", {}).get("barkbench")
    ours = ours if isinstance(ours, Mapping) else {}
    return {key: ours.get(key) for key in VERSION_KEYS}


def _workload(data: Mapping[str, Any]) -> dict[str, Any] | None:
    record = data.get(JSON_KEY)
    return dict(record["workload"]) if isinstance(record, Mapping) and "workload" in record else None


def _differ(name: str, values: Mapping[Path, Any]) -> str | None:
    distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
    if len(distinct) <= 1:
        return None
    first, *_ = values
    other = next(
        p for p, v in values.items() if json.dumps(v, sort_keys=True) != json.dumps(values[first], sort_keys=True)
    )
    a, b = values[first], values[other]
    keys = sorted(k for k in {*a, *b} if a.get(k) != b.get(k)) if isinstance(a, dict) and isinstance(b, dict) else []
    detail = "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys) or f"{a!r} vs {b!r}"
    return f"{first} and {other} have different {name} ({detail})"


def merge(paths: Sequence[Path], allow_mixed: bool = False) -> Merged:
    """Merge the files; raise ``ResultsError`` (one line) on mixed workloads or versions unless ``allow_mixed``."""
    if not paths:
        raise ResultsError("no input files; pass the shards' --benchmark-json files")
    files = {Path(p): _read(Path(p)) for p in paths}
    if not allow_mixed:
        for name, values in (
            ("workloads", {p: _workload(d) for p, d in files.items()}),
            ("library versions", {p: _versions(d) for p, d in files.items()}),
        ):
            problem = _differ(name, values)
            if problem:
                raise ResultsError(f"{problem}; merge runs of one experiment, or pass --allow-mixed to merge anyway")
    first = next(iter(files.values()))
    machine_info = json.loads(json.dumps(first.get("machine_info", {})))
    nodes = list(dict.fromkeys(str(d.get("machine_info", {}).get("node")) for d in files.values()))
    if len(nodes) > 1:
        # One file describes one machine kind; the nodes that ran its shards are kept in the name.
        machine_info["node"] = "+".join(nodes)
    benchmarks, duplicates = _rows(files)
    records = [d[JSON_KEY] for d in files.values() if isinstance(d.get(JSON_KEY), Mapping)]
    missing_shards: list[str] = []
    matrix: list[str] = []
    for fp in dict.fromkeys(r["matrix_fingerprint"] for r in records):
        of_fp = [r for r in records if r["matrix_fingerprint"] == fp]
        count = int(str(of_fp[0]["shard"]).split("/")[1])
        have = {str(r["shard"]) for r in of_fp}
        missing_shards += [f"{k}/{count}" for k in range(1, count + 1) if f"{k}/{count}" not in have]
        matrix += [v for v in of_fp[0]["matrix"] if v not in matrix]
    ok = {_variant(b) for b in benchmarks.values() if not _failed(b)}
    failed = {_variant(b) for b in benchmarks.values() if _failed(b)}
    # A variant its shard skipped (unsupported on that machine or stack) is accounted for, not missing.
    skipped = {v: str(why) for r in records for v, why in (r.get("skipped") or {}).items() if v not in ok}
    missing = [v for v in matrix if v not in ok and v not in skipped]
    out = {key: value for key, value in first.items() if key not in ("benchmarks", "machine_info", JSON_KEY)}
    out["machine_info"] = machine_info
    # In the matrix's order, as one unsharded run would have written them (reports list rows in file order).
    position = {variant: i for i, variant in enumerate(matrix)}
    ordered = sorted(benchmarks.values(), key=lambda b: position.get(_variant(b), len(position)))
    out["benchmarks"] = ordered
    out[JSON_KEY] = {
        "shard": "merged",
        "merged_from": [str(p) for p in files],
        "matrix_fingerprint": records[0]["matrix_fingerprint"] if records else None,
        "matrix": matrix,
        "variants": [v for v in matrix if v in ok],
        "workload": records[0]["workload"] if records else None,
        "skipped": skipped,
        "missing_shards": missing_shards,
        "missing_variants": missing,
        "duplicates": [d.as_dict() for d in duplicates],
    }
    failed_missing = tuple(v for v in missing if v in failed)
    return Merged(out, tuple(missing_shards), tuple(missing), failed_missing, duplicates)


def _rows(files: Mapping[Path, Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], tuple[Duplicate, ...]]:
    """One row per benchmark (by fullname) and the rows several inputs hold. A variant measured twice (a retried
    shard): the successful result wins, else the later file's; either way the merge says which it kept."""
    benchmarks: dict[str, dict[str, Any]] = {}
    holders: dict[str, list[str]] = {}
    kept: dict[str, str] = {}
    for path, data in files.items():
        for bench in data["benchmarks"]:
            key = bench["fullname"]
            previous = benchmarks.get(key)
            holders.setdefault(key, []).append(str(path))
            if previous is None or _failed(previous) or not _failed(bench):
                benchmarks[key] = bench
                kept[key] = str(path)
    duplicates = tuple(
        Duplicate(
            _variant(benchmarks[key]),
            tuple(dict.fromkeys(held)),
            kept[key],
            "the later row" if kept[key] == held[-1] else "the successful row; the later one failed",
        )
        for key, held in holders.items()
        if len(held) > 1
    )
    return benchmarks, duplicates


def _failed(bench: Mapping[str, Any]) -> bool:
    extra = bench.get("extra_info") or {}
    return bool(extra.get("status") not in (None, "ok") or not bench.get("stats"))


def _variant(bench: Mapping[str, Any]) -> str:
    extra = bench.get("extra_info") or {}
    return str(extra.get("variant") or bench.get("param") or bench["fullname"])


def check_output(output: Path) -> None:
    """Refuse an output the merged file cannot replace, before anything is read or written (``ResultsError``)."""
    if output.is_dir():
        raise ResultsError(f"-o {output}: is a directory; give a file path, e.g. {output / 'merged.json'}")


def write(merged: Merged, output: Path) -> None:
    """Written atomically: a reader never sees half a file, and a failed write leaves no temporary file behind."""
    check_output(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(merged.data, handle, indent=4)
        os.replace(tmp, output)
    except BaseException:
        # A full disk, a folder that appeared under the name, an interrupt: the temporary file is nobody's.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
