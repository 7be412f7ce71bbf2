"""Drift from the fp32 eager reference: teacher-forced KL and top-1 per stage, first differing token, audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from barkbench.measure import optimize, sources
from barkbench.measure import quality as q
from barkbench.measure.workload import Workload, prepare_calls
from barkbench.results import quality as qg
from barkbench.variants import Variant

SR = 24_000
REPO_DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tiny(tiny_source):
    """The reference model, its processor, one call's kwargs and the reference captures (seed 0 and seed 1)."""
    model = optimize.prepare_model(tiny_source, Variant(), "cpu").model
    processor = sources.load_processor(tiny_source)
    calls, _ = prepare_calls(processor, Workload(semantic_max_new_tokens=8), "cpu", random_model=True)
    kwargs = {**calls[0], **Workload(semantic_max_new_tokens=8).call_kwargs()}
    reference = q.capture_call(model, kwargs, seed=0)
    resampled = q.capture_call(model, kwargs, seed=1)
    return model, kwargs, reference, resampled


def _drift(model, kwargs, reference):
    forced = q.capture_call(model, kwargs, seed=0, reference=reference)
    free = q.capture_call(model, kwargs, seed=0)
    return q.drift(reference, forced, free, SR)


def test_the_recorder_sees_every_sampled_stage(tiny):
    _, _, reference, _ = tiny
    assert {s.stage for s in reference.steps} == {"semantic", "coarse", "fine"}
    assert len(reference.tokens("semantic")) == 8
    assert reference.audio.ndim == 1 and reference.audio.size > 0
    assert torch.multinomial.__module__ == "torch"  # restored after the call


def test_the_reference_against_itself_is_exactly_zero(tiny):
    model, kwargs, reference, _ = tiny
    result = _drift(model, kwargs, reference)
    for figures in result.stages.values():
        assert figures.kl_mean == 0.0 and figures.kl_p99 == 0.0 and figures.top1_agreement == 1.0
        assert figures.first_diff_token is None
    assert result.audio_log_mel_db == 0.0


def test_a_perturbed_copy_drifts(tiny, tiny_source):
    _, kwargs, reference, _ = tiny
    perturbed = optimize.prepare_model(tiny_source, Variant(), "cpu").model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in perturbed.semantic.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05 * p.abs().mean())
    result = _drift(perturbed, kwargs, reference)
    assert result.stages["semantic"].kl_mean > 0
    # Teacher forcing keeps the later stages on the reference's tokens: only the semantic model changed.
    assert result.stages["coarse"].kl_mean == 0.0


@pytest.mark.parametrize(("variant", "bound"), [(Variant(dtype="bf16"), 1.0), (Variant(quantization="int8"), 1.0)])
def test_lossy_variants_drift_above_zero_and_below_a_bound(tiny, tiny_source, variant, bound):
    """bf16 and int8 on the tiny model: the teacher-forced KL moves off zero and its mean stays under ``bound``
    nats on every stage (seen here: semantic 0.075 for bf16, 0.68 for int8), top-1 agreement at least 0.8."""
    _, kwargs, reference, _ = tiny
    model = optimize.prepare_model(tiny_source, variant, "cpu").model
    result = _drift(model, kwargs, reference)
    kls = [s.kl_mean for s in result.stages.values()]
    assert max(kls) > 0
    assert all(k < bound for k in kls), result
    assert all(0.8 <= s.top1_agreement <= 1 for s in result.stages.values())


def test_the_noise_floor_is_re_sampling(tiny):
    _, _, reference, resampled = tiny
    floor = q.noise_floor(reference, resampled, SR)
    assert floor["first_diff_token"]["semantic"] is not None
    assert floor["audio_log_mel_db"] > 0 and floor["kl_mean"] == 0.0


def test_teacher_forcing_refuses_another_workload(tiny):
    model, kwargs, reference, _ = tiny
    other = {**kwargs, "semantic_max_new_tokens": 4}
    with pytest.raises(q.QualityError, match="not the same workload|steps"):
        q.capture_call(model, other, seed=0, reference=reference)


def test_log_mel_distance_is_zero_for_the_same_audio_and_grows_with_noise():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert q.log_mel_distance(tone, tone, SR) == 0.0
    slight = q.log_mel_distance(tone, tone + 0.001 * rng.standard_normal(SR), SR)
    heavy = q.log_mel_distance(tone, tone + 0.1 * rng.standard_normal(SR), SR)
    assert 0 < slight < heavy


def test_first_difference():
    assert q.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert q.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert q.first_difference([1, 2], [1, 2, 3]) == 2


def test_a_capture_round_trips_through_a_file(tiny, tmp_path):
    _, _, reference, _ = tiny
    q.save_capture(reference, str(tmp_path / "ref.pt"))
    loaded = q.load_capture(str(tmp_path / "ref.pt"))
    assert loaded.tokens("coarse") == reference.tokens("coarse")
    assert np.array_equal(loaded.audio, reference.audio)


def test_the_session_records_quality_beside_the_floor(bench_pytester, tmp_path):
    out = tmp_path / "out.json"
    result = bench_pytester.runpytest_subprocess(
        "bench", "--bark-semantic-tokens", "8", "-p", "no:cacheprovider", "--bark-device", "cpu",
        "--bark-variants", "baseline", "--bark-rounds", "1", "--bark-warmup-rounds", "0",
        "--bark-isolation", "off", "--bark-quality", f"--benchmark-json={out}", timeout=600,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    # The baseline is the reference: its drift is exactly zero, and the floor (re-sampling) is not.
    result.stdout.fnmatch_lines(["*eager-fp32-bs1: quality: semantic KL 0.00e+00 top1 1.000*re-sampling floor * dB)*"])
    (bench,) = json.loads(out.read_text())["benchmarks"]
    quality = bench["extra_info"]["quality"]
    assert set(quality["stages"]) == {"semantic", "coarse", "fine"} and quality["audio_log_mel_db"] == 0.0
    assert quality["floor"]["audio_log_mel_db"] > 0 and quality["floor"]["first_diff_token"]["semantic"] is not None
    # WER and MOS judge trained checkpoints: the tiny random model's audio is not scored, and says why.
    assert quality["audio"] == quality["floor"]["audio"] == {"skipped": q.RANDOM_AUDIO_SKIP}


# -- quality gates and the report table (no model) ---------------------------------------------------------------

GATES = """
[[gate]]
variants = "*-bf16-*"
stage = "semantic"
top1_agreement_min = 0.95
kl_mean_max = 0.1

[[gate]]
variants = "*int8*"
audio_over_floor_max = 1.5
"""


def _quality(kl: float, top1: float, audio: float, floor: float = 2.0) -> dict:
    stage = {"kl_mean": kl, "kl_p99": kl * 3, "top1_agreement": top1, "first_diff_token": 3, "tokens": 8}
    return {
        "stages": {s: stage for s in ("semantic", "coarse", "fine")},
        "audio_log_mel_db": audio,
        "floor": {"audio_log_mel_db": floor, "first_diff_token": {"semantic": 0}, "kl_mean": 0.0},
    }


def _gates(tmp_path, text=GATES):
    path = tmp_path / "gates.toml"
    path.write_text(text)
    return qg.load_gates(str(path))


def test_quality_gates_pass_and_fail_with_measured_and_allowed(tmp_path):
    gates = _gates(tmp_path)
    infos = [
        {"variant": "eager-bf16-bs1", "status": "ok", "quality": _quality(0.05, 0.97, 1.0)},
        {"variant": "sdpa-bf16-bs1", "status": "ok", "quality": _quality(0.2, 0.90, 1.0)},
        {"variant": "eager-fp32-int8-bs1", "status": "ok", "quality": _quality(0.1, 0.9, 4.0)},
        {"variant": "eager-fp16-bs1", "status": "ok", "quality": _quality(9.0, 0.1, 9.0)},  # no gate matches
    ]
    verdicts = qg.check(infos, gates)
    by = {(v.variant, v.gate.figure): v for v in verdicts}
    assert len(verdicts) == 5
    assert by[("eager-bf16-bs1", "top1_agreement")].ok and by[("eager-bf16-bs1", "kl_mean")].ok
    failed = by[("sdpa-bf16-bs1", "top1_agreement")]
    assert not failed.ok
    assert failed.message == ("sdpa-bf16-bs1: semantic top1_agreement 0.9, allowed >= 0.95 (gate '*-bf16-*'): FAIL")
    audio = by[("eager-fp32-int8-bs1", "audio_over_floor")]
    assert not audio.ok and audio.measured == 2.0


def test_a_gate_on_an_unmeasured_variant_fails(tmp_path):
    (verdict, _) = qg.check([{"variant": "eager-bf16-bs1", "status": "ok"}], _gates(tmp_path))
    assert not verdict.ok and "not measured (run with --bark-quality)" in verdict.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1", "no \\[\\[gate\\]\\] tables"),
        ('[[gate]]\nvariants = "*"\nkl_mean_max = 1', "per stage; add stage"),
        ('[[gate]]\nvariants = "*"\nstage = "codec"\nkl_mean_max = 1', "stage 'codec'"),
        ('[[gate]]\nvariants = "*"\nstage = "fine"\nkl_max = 1', "unknown key\\(s\\) kl_max"),
        ('[[gate]]\nstage = "fine"\nkl_mean_max = 1', "needs variants"),
        ("[[gate", "not valid TOML"),
    ],
)
def test_bad_gate_files_say_what_to_fix(tmp_path, text, message):
    with pytest.raises(qg.QualityGateError, match=message):
        _gates(tmp_path, text)


def test_the_report_shows_quality_columns():
    class Row:
        variant = "eager-bf16-bs1"
        extra_info = {"quality": _quality(0.05, 0.97, 1.0)}

    table = qg.quality_table([Row()])
    assert table is not None and "| `eager-bf16-bs1` | 5.00e-02 |" in table and "| 1.00 | 2.00 |" in table


def test_the_report_shows_wer_and_mos_beside_the_reference_when_scored():
    scores = {"wer": 0.25, "transcript": "x", "mos_p808": 3.1, "mos_sig": 3.0, "mos_bak": 3.5, "mos_ovrl": 2.7}

    class Scored:
        variant = "sdpa-fp32-int8-bs1"
        extra_info = {"quality": {**_quality(0.05, 0.97, 1.0), "audio": scores}}

    Scored.extra_info["quality"]["floor"]["audio"] = {**scores, "wer": 0.125, "mos_p808": 3.4}

    class Unscored:
        variant = "eager-bf16-bs1"
        extra_info = {"quality": {**_quality(0.05, 0.97, 1.0), "audio": {"skipped": q.RANDOM_AUDIO_SKIP}}}

    table = qg.quality_table([Scored(), Unscored()])
    assert table is not None and "WER (ref)" in table and "PocketSphinx" in table
    assert "| 1.00 | 2.00 | 0.25 (0.12) | 3.10 (3.40) |" in table
    assert "| 1.00 | 2.00 | — | — |" in table
    # Without any scored row the columns stay out.
    plain = qg.quality_table([Unscored()])
    assert plain is not None and "WER" not in plain
    line = q.summary_line(Scored.extra_info["quality"])
    assert "WER 0.25 MOS 3.10 (reference WER 0.12 MOS 3.40)" in line


def test_compare_enforces_quality_gates(tmp_path, capsys):
    from barkbench import cli

    data = json.loads((REPO_DATA / "run-cpu.json").read_text())
    for bench in data["benchmarks"]:
        bench["extra_info"]["quality"] = _quality(0.2, 0.5, 1.0)
    new = tmp_path / "new.json"
    new.write_text(json.dumps(data))
    gates = tmp_path / "gates.toml"
    gates.write_text('[[gate]]\nvariants = "*"\nstage = "semantic"\ntop1_agreement_min = 0.9\n')
    base = str(REPO_DATA / "run-cpu.json")
    assert cli.main(["compare", base, str(new), "--quality-gates", str(gates)]) == 1
    assert "semantic top1_agreement 0.5, allowed >= 0.9" in capsys.readouterr().out
    gates.write_text('[[gate]]\nvariants = "*"\nstage = "semantic"\ntop1_agreement_min = 0.4\n')
    assert cli.main(["compare", base, str(new), "--quality-gates", str(gates)]) == 0
