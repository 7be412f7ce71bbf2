"""Quality figures as results hold them (extra_info ``quality``), their report table, and quality gates.

``extra_info["quality"]`` (written by ``--bark-quality``, see ``barkbench.measure.quality``)::

    {"stages": {"semantic": {"kl_mean", "kl_p99", "top1_agreement", "first_diff_token", "tokens"}, ...},
     "audio_log_mel_db": float, "floor": {"audio_log_mel_db", "first_diff_token": {...}, "kl_mean", ...,
                                          "audio": {...the reference's scores}},
     "audio": {"wer", "transcript", "mos_p808", "mos_sig", "mos_bak", "mos_ovrl"} | {"skipped": why} | {"error"}}

Quality gates are a TOML file of allowed drift per variant pattern, like memory budgets::

    [[gate]]
    variants = "*-bf16-*"          # fnmatch pattern on the variant id
    stage = "semantic"             # semantic, coarse, fine (the figures of that stage)
    top1_agreement_min = 0.95
    kl_mean_max = 0.1
    kl_p99_max = 1.0

    [[gate]]
    variants = "*int8*"
    audio_over_floor_max = 1.5     # audio log-mel distance / the re-sampling floor's

Nothing here imports torch.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from barkbench.bark import STAGE_SUBMODELS
from barkbench.results import markdown as md

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The stages whose sampling the gates judge: Bark's transformer stages.
STAGES = tuple(STAGE_SUBMODELS)
#: Gate keys: (figure, "min" or "max"). Stage figures need ``stage``; audio_over_floor is the whole call's.
GATE_KEYS = {
    "kl_mean_max": ("kl_mean", "max"),
    "kl_p99_max": ("kl_p99", "max"),
    "top1_agreement_min": ("top1_agreement", "min"),
    "audio_over_floor_max": ("audio_over_floor", "max"),
}


class QualityGateError(ValueError):
    """A quality gates file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Gate:
    pattern: str
    figure: str
    bound: str  # "min" | "max"
    limit: float
    stage: str | None = None

    def matches(self, variant: str) -> bool:
        return fnmatch.fnmatchcase(variant, self.pattern)


@dataclass(frozen=True)
class Verdict:
    variant: str
    gate: Gate
    measured: float | None
    ok: bool

    @property
    def message(self) -> str:
        where = f"{self.gate.stage} " if self.gate.stage else ""
        sign = ">=" if self.gate.bound == "min" else "<="
        if self.measured is None:
            return f"{self.variant}: {where}{self.gate.figure} not measured (run with --bark-quality): FAIL"
        state = "ok" if self.ok else "FAIL"
        return (
            f"{self.variant}: {where}{self.gate.figure} {self.measured:.4g}, allowed {sign} {self.gate.limit:g} "
            f"(gate {self.gate.pattern!r}): {state}"
        )


def load_gates(path: str) -> tuple[Gate, ...]:
    file = Path(path)
    where = f"quality gates {path}"
    if not file.is_file():
        raise QualityGateError(f"{where}: no such file; give a TOML file of [[gate]] tables")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QualityGateError(f"{where}: not valid TOML ({exc})") from None
    tables = data.get("gate")
    if not isinstance(tables, list) or not tables:
        raise QualityGateError(f"{where}: no [[gate]] tables; see the example in docs/quality.md (Quality gates)")
    gates = []
    for number, table in enumerate(tables, start=1):
        pattern = table.get("variants")
        if not isinstance(pattern, str) or not pattern:
            raise QualityGateError(f'{where}: gate {number} needs variants = "<pattern>" (e.g. "*-bf16-*")')
        stage = table.get("stage")
        if stage is not None and stage not in STAGES:
            raise QualityGateError(f"{where}: gate {number}: stage {stage!r}; use one of {', '.join(STAGES)}")
        unknown = set(table) - {"variants", "stage", *GATE_KEYS}
        if unknown:
            raise QualityGateError(
                f"{where}: gate {number}: unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(GATE_KEYS)}"
            )
        limits = {k: v for k, v in table.items() if k in GATE_KEYS}
        if not limits:
            raise QualityGateError(f"{where}: gate {number} sets no limit; use {', '.join(GATE_KEYS)}")
        for key, value in limits.items():
            figure, bound = GATE_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise QualityGateError(f"{where}: gate {number}: {key} must be a number, got {value!r}")
            if figure != "audio_over_floor" and stage is None:
                raise QualityGateError(f'{where}: gate {number}: {key} is per stage; add stage = "semantic"')
            gates.append(Gate(pattern, figure, bound, float(value), stage if figure != "audio_over_floor" else None))
    return tuple(gates)


def figure(quality: Mapping[str, Any] | None, name: str, stage: str | None) -> float | None:
    """One quality figure of a result (None where not measured)."""
    if not isinstance(quality, Mapping) or "error" in quality:
        return None
    if name == "audio_over_floor":
        audio = quality.get("audio_log_mel_db")
        floor = (quality.get("floor") or {}).get("audio_log_mel_db")
        return float(audio) / float(floor) if audio is not None and floor else None
    value = ((quality.get("stages") or {}).get(stage or "") or {}).get(name)
    return None if value is None else float(value)


def check(extra_infos: Sequence[Mapping[str, Any]], gates: Sequence[Gate]) -> list[Verdict]:
    """Every successful variant against every gate whose pattern matches its id."""
    verdicts = []
    for info in extra_infos:
        if info.get("status", "ok") != "ok":
            continue
        variant = str(info.get("variant"))
        for gate in gates:
            if not gate.matches(variant):
                continue
            value = figure(info.get("quality"), gate.figure, gate.stage)
            ok = value is not None and (value >= gate.limit if gate.bound == "min" else value <= gate.limit)
            verdicts.append(Verdict(variant, gate, value, ok))
    return verdicts


QUALITY_CAPTION = (
    "Drift from the fp32 eager reference (same seed, same workload; the workload's first call). Per stage: KL = "
    "mean KL divergence (nats) of the next-token distribution, reference's tokens teacher-forced through the "
    "variant; top-1 = share of steps with the same most likely token; first diff = first sampled token that "
    "differs when the variant runs free (— = none). Audio = log-mel distance (dB) of the free-running audio to "
    "the reference's; floor = the reference against itself re-sampled with the next seed: drift below the floor "
    "changes the output less than re-sampling does."
)
AUDIO_CAPTION = (
    "WER = word error rate of PocketSphinx's transcript of the free-running audio against the prompt's text "
    "(0 best); MOS = DNSMOS P.808 mean opinion score predicted from the audio alone (1-5, higher better); "
    "in brackets the reference's own (audio extra, trained checkpoints only)."
)


def quality_table(rows: Sequence[Any]) -> str | None:
    """One row per result that recorded quality (``BenchmarkResult``-like: ``variant``, ``extra_info``)."""
    measured = [r for r in rows if isinstance(r.extra_info.get("quality"), Mapping)]
    if not measured:
        return None
    with_scores = any("wer" in (r.extra_info["quality"].get("audio") or {}) for r in measured)
    headers = (
        "Variant",
        *(f"{s} KL" for s in STAGES),
        *(f"{s} top-1" for s in STAGES),
        "first diff s/c/f",
        "audio dB",
        "floor dB",
        *(("WER (ref)", "MOS (ref)") if with_scores else ()),
    )
    cells = []
    for r in measured:
        quality = r.extra_info["quality"]
        if "error" in quality:
            cells.append([f"`{r.variant}`", *([md.MISSING] * (len(headers) - 2)), str(quality["error"])[:60]])
            continue
        stages = quality.get("stages") or {}
        firsts = "/".join(
            "—" if (stages.get(s) or {}).get("first_diff_token") is None else str(stages[s]["first_diff_token"])
            for s in STAGES
        )
        floor = (quality.get("floor") or {}).get("audio_log_mel_db")
        cells.append(
            [
                f"`{r.variant}`",
                *(_kl(figure(quality, "kl_mean", s)) for s in STAGES),
                *(_fixed(figure(quality, "top1_agreement", s)) for s in STAGES),
                firsts,
                _fixed(quality.get("audio_log_mel_db"), 2),
                _fixed(floor, 2),
                *(_scores(quality) if with_scores else ()),
            ]
        )
    caption = f"{QUALITY_CAPTION} {AUDIO_CAPTION}" if with_scores else QUALITY_CAPTION
    return "\n".join([caption, "", md.table(headers, cells)])


def _scores(quality: Mapping[str, Any]) -> tuple[str, str]:
    """The WER and MOS cells: the variant's, the reference's in brackets (— where not scored)."""
    own = quality.get("audio") or {}
    ref = (quality.get("floor") or {}).get("audio") or {}

    def cell(key: str) -> str:
        if key not in own:
            return md.MISSING
        text = f"{float(own[key]):.2f}"
        return f"{text} ({float(ref[key]):.2f})" if key in ref else text

    return cell("wer"), cell("mos_p808")


def _kl(value: float | None) -> str:
    return md.MISSING if value is None else f"{value:.2e}"


def _fixed(value: Any, digits: int = 3) -> str:
    return md.MISSING if value is None else f"{float(value):.{digits}f}"
