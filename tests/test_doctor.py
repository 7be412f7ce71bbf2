"""``barkbench doctor`` on this (CPU) machine, and the CPU capability facts that shape the default run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from barkbench import bark, doctor
from barkbench.cli import main
from barkbench.measure import device, limits, optimize
from barkbench.variants import PRESETS, Variant, default_variants

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def report() -> dict:
    return doctor.facts("cpu")


def test_json_reports_the_machine_and_every_preset(
    report: dict, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BARKBENCH_CACHE", str(tmp_path))
    (tmp_path / limits.CACHE_FILE).write_text(json.dumps({"entries": crafted_entries(report)}))
    assert main(["doctor", "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # The cached limits, read from the file (doctor measures nothing by default), marked by stack.
    cached = printed["limits"]
    assert cached["cache_file"] == str(tmp_path / limits.CACHE_FILE)
    by_weights = {e["linear_weights"]: e for e in cached["entries"]}
    assert by_weights["fp32"]["bandwidth_bytes_per_s"] == 1.2e10 and by_weights["fp32"]["current"]
    assert by_weights["fp32"]["architecture"] == "bark-small" and "shapes" not in by_weights["fp32"]
    assert by_weights["int8"]["kernel_step_seconds"] == {"semantic": 0.012, "coarse": 0.013}
    assert not by_weights["int8"]["current"]  # measured with another torch
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


@pytest.mark.one_stack("current")
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


SMALL = {"layers": 12, "heads": 12, "hidden": 768, "input_vocab": 10048, "output_vocab": 10048}


def crafted_entries(report: dict) -> dict:
    """Two cache entries as the probe writes them: fp32 with this stack, int8 weights with another torch."""
    versions = {"torch": report["torch"], "transformers": report["packages"]["transformers"]}
    base = {
        "device": "cpu",
        "device_name": "x86_64",
        "cpu_model": "Crafted CPU 9000",
        "dtype": "fp32",
        "threads": 2,
        "batch": 1,
        "shapes": {"semantic": SMALL, "coarse": SMALL},
        "measured_at": "2026-11-26T01:00:00+00:00",
    }
    return {
        "a": {
            **base,
            "linear_weights": "fp32",
            "copy_bytes_per_s": 1.1e10,
            "gemv_bytes_per_s": 1.2e10,
            "bandwidth_bytes_per_s": 1.2e10,
            "matmul_flops_per_s": 2.5e11,
            "kernel_step_seconds": {"semantic": 0.0185, "coarse": 0.019},
            "versions": versions,
        },
        "b": {
            **base,
            "linear_weights": "int8",
            "copy_bytes_per_s": 1.1e10,
            "gemv_bytes_per_s": 7.7e9,
            "bandwidth_bytes_per_s": 1.1e10,
            "matmul_flops_per_s": 4e11,
            "kernel_step_seconds": {"semantic": 0.012, "coarse": 0.013},
            "versions": {**versions, "torch": "0.0-older"},
        },
    }


def test_text_shows_the_cached_limits(report: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BARKBENCH_CACHE", str(tmp_path))
    assert doctor.limits_lines(doctor.limits_facts(report["torch"], None))[1:] == [
        "  none cached yet: a benchmark's worker measures them on its first run, or use --limits"
    ]
    (tmp_path / limits.CACHE_FILE).write_text(json.dumps({"entries": crafted_entries(report)}))
    text = "\n".join(doctor.limits_lines(doctor.limits_facts(report["torch"], report["packages"]["transformers"])))
    assert "cpu (Crafted CPU 9000) fp32, bark-small, batch 1, 2 threads, measured 2026-11-26T01:00:00+00:00" in text
    assert "bandwidth 12 GB/s (copy 11 GB/s, GEMV 12 GB/s), fine matmul 250 GFLOP/s" in text
    assert "one decode step's matmuls: coarse 19 ms, semantic 18.5 ms" in text
    assert "fp32, int8 Linear weights, bark-small" in text and "with torch 0.0-older" in text
    assert text.count("(another stack than this one)") == 1


def test_limits_flag_measures_each_variants_kernels_and_stores_them(
    report: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Capsys
) -> None:
    monkeypatch.setenv("BARKBENCH_CACHE", str(tmp_path))
    calls: list[tuple] = []

    def measure(device_type: str, dtype: str, shapes: dict, batch: int = 1, **kwargs: object) -> dict:
        calls.append((device_type, dtype, kwargs.get("weights"), shapes["semantic"].hidden, batch))
        weights = kwargs.get("weights") or dtype
        return {"device": device_type, "dtype": dtype, "linear_weights": weights, "bandwidth_bytes_per_s": 1e10}

    monkeypatch.setattr(limits, "measure", measure)
    spec = "baseline;sdpa;int8;offload;attention=sdpa,batch=2"
    assert main(["doctor", "--device", "cpu", "--limits", spec, "--limits-model", "tiny"]) == 0
    # One probe per dtype, weights and batch (sdpa shares the baseline's); offload is skipped with its reason.
    tiny = bark.ARCHITECTURES["tiny"].hidden
    assert calls == [("cpu", "fp32", None, tiny, 1), ("cpu", "fp32", "int8", tiny, 1), ("cpu", "fp32", None, tiny, 2)]
    out = capsys.readouterr().out
    assert "eager-fp32-offload-bs1: not measured: offload needs an accelerator" in out
    assert out.count("bandwidth 10 GB/s") == 3 and "fp32, int8 Linear weights, tiny" in out
    # Stored where the benchmarks read them; measured again (not read) on a second --limits.
    assert len(limits.cached_entries(tmp_path / limits.CACHE_FILE)) == 3
    assert main(["doctor", "--device", "cpu", "--limits", "--limits-model", "tiny"]) == 0 and len(calls) == 4


def test_limits_flag_rejects_what_it_cannot_measure(capsys: Capsys) -> None:
    assert main(["doctor", "--limits", "nope"]) == 2
    assert "--limits: unknown variant 'nope'" in capsys.readouterr().err
    assert main(["doctor", "--limits", "--limits-model", "suno/bark"]) == 2
    assert "--limits-model 'suno/bark' is not an architecture doctor knows" in capsys.readouterr().err


def test_text_tells_entries_of_two_batch_sizes_apart(
    report: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The probe keys its entries by batch too (each batch's GEMV is its own shape): without the batch, two entries
    # of one dtype and architecture read as the same line with different figures.
    monkeypatch.setenv("BARKBENCH_CACHE", str(tmp_path))
    entries = crafted_entries(report)
    entries["c"] = {**entries["a"], "batch": 8, "gemv_bytes_per_s": 9.9e10}
    (tmp_path / limits.CACHE_FILE).write_text(json.dumps({"entries": entries}))
    lines = doctor.limits_lines(doctor.limits_facts(report["torch"], report["packages"]["transformers"]))
    fp32 = [line for line in lines if "fp32, bark-small" in line]
    assert [line.split(", ")[2] for line in fp32] == ["batch 1", "batch 8"], lines
