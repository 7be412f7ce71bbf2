"""Memory budgets: what each variant may use, relative to the baseline of the same run or in absolute MB.

The budgets live in a TOML file (the packaged ``budgets.toml`` by default) keyed by model source, device kind and
variant id, each an fnmatch pattern; every matching table applies. A ratio compares a variant with the baseline
(``eager-fp32`` without offload, same batch size) measured in the same run, so machine and library differences
cancel out; an ``_mb`` key is an absolute cap.

Checks read the figures the benchmark plugin stores in ``extra_info`` (``peak_memory_bytes``,
``model_memory_bytes``, ``weights_bytes``). ``check`` returns one ``Verdict`` per (variant, limit), each with a
one-line message giving the measured and allowed figures in MB and as a ratio. Nothing here imports torch.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from barkbench.record import Record
from barkbench.results.schema import BYTES_PER_MB, MODEL_MEMORY, PEAK_MEMORY, WEIGHTS, baseline_of
from barkbench.variants import Variant, VariantError

#: Budget metric name → the extra_info key holding its figure in bytes (the schema's descriptors).
METRICS = {metric.name: metric.key for metric in (PEAK_MEMORY, MODEL_MEMORY, WEIGHTS)}
#: Metrics a batch size does not change (measured before any input exists).
BATCH_FREE_METRICS = ("weights", "model_memory")
#: What ``--bark-budgets`` takes to mean the packaged file.
DEFAULT_NAME = "default"

_KINDS = ("ratio", "mb")
_ALLOWED_KEYS = {f"{metric}_{kind}" for metric in METRICS for kind in _KINDS} | {"why"}


class BudgetError(ValueError):
    """A budgets file that cannot be used; the message is one line naming the file, the table and the fix."""


def default_path() -> Path:
    """The budgets file shipped with barkbench."""
    return Path(__file__).with_name("budgets.toml")


@dataclass(frozen=True)
class Limit:
    """One check: ``metric`` of the matching variants ≤ ``value`` (× baseline for ``kind == "ratio"``, MB for
    ``kind == "mb"``)."""

    source: str
    device: str
    variant: str
    metric: str
    kind: str
    value: float
    why: str = ""
    #: The file the limit came from, named in every message about it.
    origin: str = ""

    @property
    def table(self) -> str:
        return f'["{self.source}"."{self.device}"."{self.variant}"]'

    def matches(self, source: str, device: str, variant_id: str) -> bool:
        return (
            fnmatch.fnmatchcase(source, self.source)
            and fnmatch.fnmatchcase(device, self.device)
            and fnmatch.fnmatchcase(variant_id, self.variant)
        )


@dataclass(frozen=True)
class Budgets:
    path: Path
    limits: tuple[Limit, ...]

    def applicable(self, source: str, device: str, variant_id: str) -> list[Limit]:
        return [limit for limit in self.limits if limit.matches(source, device, variant_id)]


def load_budgets(path: str | Path | None = None) -> Budgets:
    """Read and validate a budgets file; ``None`` or ``"default"`` is the packaged one."""
    resolved = default_path() if path is None or str(path) == DEFAULT_NAME else Path(path).expanduser()
    fix = "see the packaged budgets.toml for the format"
    try:
        data = tomllib.loads(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BudgetError(f"budgets file {resolved} does not exist; pass an existing TOML file or 'default'") from None
    except IsADirectoryError:
        raise BudgetError(f"budgets file {resolved} is a directory; pass a TOML file or 'default'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetError(f"budgets file {resolved} cannot be read ({exc}); {fix}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"budgets file {resolved} is not valid TOML ({exc}); {fix}") from None
    return Budgets(resolved, tuple(_parse(data, resolved, fix)))


def _parse(data: Mapping[str, Any], path: Path, fix: str) -> Iterable[Limit]:
    def fail(where: str, what: str) -> BudgetError:
        return BudgetError(f"budgets file {path}: {where} {what}; {fix}")

    for source, devices in data.items():
        if not isinstance(devices, Mapping):
            raise fail(f'["{source}"]', "must be a table keyed by device kind")
        for device, variants in devices.items():
            if not isinstance(variants, Mapping):
                raise fail(f'["{source}"."{device}"]', "must be a table keyed by variant id")
            for variant, limits in variants.items():
                where = f'["{source}"."{device}"."{variant}"]'
                if not isinstance(limits, Mapping):
                    raise fail(
                        where,
                        "is not a table; limits go in a table keyed by source, device kind and "
                        'variant id, e.g. ["*".cuda."*-offload-bs1"] peak_memory_ratio = 0.45',
                    )
                unknown = sorted(set(limits) - _ALLOWED_KEYS)
                if unknown:
                    allowed = ", ".join(sorted(_ALLOWED_KEYS))
                    raise fail(where, f"has unknown key(s) {', '.join(unknown)}; use {allowed}")
                why = limits.get("why", "")
                if not isinstance(why, str):
                    raise fail(where, "why must be a string")
                found = False
                for metric in METRICS:
                    for kind in _KINDS:
                        value = limits.get(f"{metric}_{kind}")
                        if value is None:
                            continue
                        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                            raise fail(where, f"{metric}_{kind} must be a positive number, got {value!r}")
                        found = True
                        yield Limit(source, device, variant, metric, kind, float(value), why, path.name)
                if not found:
                    raise fail(where, "has no limit; give e.g. peak_memory_ratio = 0.45 or peak_memory_mb = 2000")


@dataclass(frozen=True)
class Measurement:
    """The figures of one variant of one run, as the benchmark JSON's extra_info holds them."""

    source: str
    device: str
    variant: Variant
    figures: Mapping[str, int]

    @property
    def label(self) -> str:
        return f"{self.source} {self.device} {self.variant.id}"

    @classmethod
    def from_extra_info(cls, extra: Mapping[str, Any]) -> Measurement | None:
        """None for a variant that failed or was never measured: it has nothing to hold to a budget."""
        if extra.get("status", "ok") != "ok":
            return None
        try:
            variant = Variant.from_dict(extra)
        except (KeyError, TypeError, ValueError, VariantError):
            return None
        # "device" is the torch device the worker used ("cuda:0"); budgets are keyed by its kind.
        device = str(extra.get("device") or "unknown").split(":")[0]
        read = Record.from_extra_info(extra)
        figures = {metric: int(value) for metric, key in METRICS.items() if (value := getattr(read, key)) is not None}
        return cls(str(extra.get("model_source") or "unknown"), device, variant, figures)


@dataclass(frozen=True)
class Verdict:
    """One limit applied to one measurement. ``status``: ok, exceeded, no-baseline, no-figure."""

    limit: Limit
    measurement: Measurement
    status: str
    measured_bytes: int | None = None
    allowed_bytes: int | None = None
    baseline_bytes: int | None = None
    #: The baseline variant the ratio was taken against (same batch size, or any for batch-free metrics).
    baseline_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def ratio(self) -> float | None:
        if self.measured_bytes is None or not self.baseline_bytes:
            return None
        return self.measured_bytes / self.baseline_bytes

    @property
    def message(self) -> str:
        limit, m = self.limit, self.measurement
        where = f"{m.label} {limit.metric}"
        rule = f"<= {limit.value:.3f} x baseline" if limit.kind == "ratio" else f"<= {limit.value:.1f} MB"
        source = f"[{limit.table} in {limit.origin or 'budgets'}]"
        if self.status == "no-figure":
            return f"budget not checked: {where} {rule}: the run recorded no {METRICS[limit.metric]} {source}"
        if self.status == "no-baseline":
            batch = m.variant.batch_size
            add = "baseline" if batch == 1 else f"batch={batch}"
            return (
                f"budget not checked: {where} {rule} needs the baseline {_baseline_id(m.variant)} measured in the "
                f"same run; add it (--bark-variants '{add}') {source}"
            )
        assert self.measured_bytes is not None and self.allowed_bytes is not None
        word = "ok" if self.ok else "BUDGET EXCEEDED"
        relation = "<=" if self.ok else ">"
        text = f"{word}: {where} {_mb(self.measured_bytes)} {relation} allowed {_mb(self.allowed_bytes)}"
        if self.baseline_bytes:
            text += (
                f" (ratio {self.ratio:.3f} vs allowed {self.allowed_bytes / self.baseline_bytes:.3f} x baseline "
                f"{self.baseline_id or _baseline_id(m.variant)} {_mb(self.baseline_bytes)})"
            )
        return f"{text} {source}"


def _mb(value: int) -> str:
    return f"{value / BYTES_PER_MB:.1f} MB"


def _baseline_id(variant: Variant) -> str:
    return baseline_of(variant).id


def check(measurements: Iterable[Measurement], budgets: Budgets) -> list[Verdict]:
    """Every applicable limit of ``budgets`` against every measurement, baselines taken from the same list."""
    measured = list(measurements)
    baselines = {(m.source, m.device, m.variant.batch_size): m for m in measured if m.variant.is_baseline}
    # Weights and the loaded model do not depend on the batch size: any baseline of the run will do for them
    # (the smallest batch first), so e.g. the blog's batch-8 rows are checked against its batch-1 baseline.
    any_batch: dict[tuple[str, str], Measurement] = {}
    for m in sorted((m for m in measured if m.variant.is_baseline), key=lambda m: m.variant.batch_size):
        any_batch.setdefault((m.source, m.device), m)
    verdicts: list[Verdict] = []
    for m in measured:
        for limit in budgets.applicable(m.source, m.device, m.variant.id):
            value = m.figures.get(limit.metric)
            if value is None:
                verdicts.append(Verdict(limit, m, "no-figure"))
                continue
            if limit.kind == "mb":
                allowed = int(limit.value * BYTES_PER_MB)
                verdicts.append(Verdict(limit, m, "ok" if value <= allowed else "exceeded", value, allowed))
                continue
            baseline = baselines.get((m.source, m.device, m.variant.batch_size))
            if baseline is None and limit.metric in BATCH_FREE_METRICS:
                baseline = any_batch.get((m.source, m.device))
            base_value = baseline.figures.get(limit.metric) if baseline else None
            if baseline is None or not base_value:
                verdicts.append(Verdict(limit, m, "no-baseline", value))
                continue
            allowed = int(limit.value * base_value)
            status = "ok" if value <= allowed else "exceeded"
            verdicts.append(Verdict(limit, m, status, value, allowed, base_value, baseline.variant.id))
    return verdicts


def check_extra_infos(extra_infos: Iterable[Mapping[str, Any]], budgets: Budgets) -> list[Verdict]:
    """``check`` on the extra_info dicts of a run (failed variants are left out: they have no figures)."""
    found = (Measurement.from_extra_info(extra) for extra in extra_infos)
    return check([m for m in found if m is not None], budgets)


def nothing_matched(extra_infos: Iterable[Mapping[str, Any]], budgets: Budgets) -> str:
    """The gate's failure when no budget applied to any measured variant (a pattern typo would otherwise pass
    every run unchecked): the patterns and the measured variants, side by side."""
    found = [m for m in (Measurement.from_extra_info(extra) for extra in extra_infos) if m is not None]
    patterns = ", ".join(sorted({limit.table for limit in budgets.limits})) or "none"
    measured = ", ".join(dict.fromkeys(m.label for m in found)) or "none"
    return (
        f"no budget in {budgets.path} matches a measured variant, so nothing was checked: patterns {patterns} "
        f"(source.device.variant, shell-style wildcards); measured {measured}"
    )


def failures(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """Verdicts that must fail an enforcing run: exceeded, or not checkable for want of the baseline/figure."""
    return [v for v in verdicts if not v.ok]
