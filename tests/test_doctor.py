"""``barkbench doctor`` on this (CPU) machine, and the CPU capability facts that shape the default run."""

from __future__ import annotations

import json

import pytest

from barkbench import doctor
from barkbench.cli import main
from barkbench.measure import device, optimize
from barkbench.variants import PRESETS, Variant, default_variants

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def report() -> dict:
    return doctor.facts("cpu")


def test_json_reports_the_machine_and_every_preset(report: dict, capsys: Capsys) -> None:
    assert main(["doctor", "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["device"] == "cpu" and printed["torch"] == report["torch"]
    assert {p["preset"] for p in printed["presets"]} == set(PRESETS)
    assert {"transformers", "accelerate", "optimum", "flash-attn", "triton", "soundfile"} <= set(printed["packages"])
    assert {"native_bf16", "native_fp16", "amx", "torch_threads"} <= set(printed["cpu"])
    assert printed["torch_build"] == "CPU" or printed["torch_build"].startswith("CUDA ")


def test_skip_reasons_come_from_the_benchmarks_own_function(monkeypatch: pytest.MonkeyPatch) -> None:
    # Doctor calls optimize.unsupported_reason itself (not a copy): replacing it changes what doctor says.
    def reason(variant: Variant, device_type: str) -> str | None:
        return f"sentinel {variant.id} on {device_type}" if variant.batch_size == 8 else None

    monkeypatch.setattr(optimize, "unsupported_reason", reason)
    presets = {p["preset"]: p for p in doctor.facts("cpu")["presets"]}
    assert presets["bs8"]["skip_reason"] == "sentinel bettertransformer-fp32-bs8 on cpu" and not presets["bs8"]["runs"]
    assert presets["baseline"]["runs"] and presets["baseline"]["skip_reason"] is None


def test_text_names_the_offload_skip_reason_and_exits_0(capsys: Capsys) -> None:
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "presets on cpu" in out
    assert "eager-fp32-offload-bs1" in out and "offload needs an accelerator" in out
    assert "eager-fp32-bs1" in out.split("presets on cpu")[1]


def test_an_emulating_cpu_leaves_half_precision_out_of_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    report = doctor.facts("cpu")
    assert report["default_run_note"] and "no native bf16/fp16" in report["default_run_note"]
    by_id = {p["variant"]: p for p in report["presets"]}
    assert by_id["eager-bf16-bs1"]["runs"] and not by_id["eager-bf16-bs1"]["in_default_run"]
    assert {v.dtype for v in default_variants("cpu", cpu_half_native=False)} == {"fp32"}
    assert "fp16" in {v.dtype for v in default_variants("cpu", cpu_half_native=True)}
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16", "amx_bf16"}))
    assert doctor.facts("cpu")["default_run_note"] is None


EMULATING_CPU = """
from barkbench.measure import device

device.cpu_flags = lambda: frozenset({"avx2", "fma"})  # an AVX2-only CPU, whatever this machine is
"""


def test_the_session_header_says_so_and_asking_by_name_still_runs(bench_pytester: pytest.Pytester) -> None:
    (bench_pytester.path / "conftest.py").write_text(EMULATING_CPU)
    result = bench_pytester.runpytest_subprocess("bench", "--bark-device", "cpu", "--collect-only", timeout=120)
    result.stdout.fnmatch_lines(["barkbench: this CPU has no native bf16/fp16 instructions*"])
    ids = [line.strip() for line in result.stdout.lines if "test_generate[" in line]
    assert any("eager-fp32-bs1" in i for i in ids) and any("sdpa-fp32-bs1" in i for i in ids)
    assert not [i for i in ids if "fp16" in i or "bf16" in i], ids
    named = bench_pytester.runpytest_subprocess(
        "bench", "--bark-device", "cpu", "--bark-variants", "bf16", "--collect-only", "-q", timeout=120
    )
    named.stdout.fnmatch_lines(["*test_generate?eager-bf16-bs1?*"])
