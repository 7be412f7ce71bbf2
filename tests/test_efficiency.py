"""Bytes per decode step and fine-stage FLOPs from the shapes (``barkbench.bark``), against hand-computed values
(tiny) and against the bark-small architecture built on the meta device (its Linear layers, and torch's FLOP
counter); then each stage's share of the machine's limits (``results.efficiency``)."""

from __future__ import annotations

import collections

import pytest

from barkbench import bark
from barkbench.measure import sources
from barkbench.results import efficiency as eff

TINY = bark.SubModelShape(layers=2, heads=2, hidden=64, input_vocab=129_600, output_vocab=10_048)


def test_tiny_decode_step_bytes_by_hand():
    # Per block: qkv 3·64·64 + out 64·64 + MLP 4·64·64 + 4·64·64 = 12·4096 = 49_152 weights; two blocks; lm_head
    # 64 × 10_048 = 643_072. Linear weights: 98_304 + 643_072 = 741_376.
    assert bark.decode_linear_bytes(TINY, 4) == 741_376 * 4
    # LayerNorms: 2 per block + final = 5 × 64; token and position embedding rows: 2 × 64. 448 values.
    assert bark.decode_step_weight_bytes(TINY, 4, 4) == (741_376 + 448) * 4 == 2_967_296
    # int8: one byte per Linear weight, the rest stays fp32.
    assert bark.decode_step_weight_bytes(TINY, 4, 1) == 741_376 + 448 * 4
    # KV cache: key + value, 2 layers, 64 wide, fp32.
    assert bark.kv_bytes_per_position(TINY, 4) == 2 * 2 * 64 * 4 == 1024
    # 16 forwards (prefill of 257 positions, then one token each): keys 257 + 258 + ... + 272 = 4232.
    assert bark.decode_bytes(TINY, 4, 4, forwards=16, key_positions=4232) == 16 * 2_967_296 + 4232 * 1024


def test_tiny_fine_flops_by_hand():
    # One forward over a 1024-frame window: projections 2·1024·(2·49_152) = 201_326_592; attention scores and
    # weighted sum 2·2·2 layers·1024²·64 = 536_870_912; one codebook head 2·1024·64·1056 = 138_412_032.
    fine = bark.SubModelShape(2, 2, 64, 1056, 1056, n_codes_total=8, n_codes_given=1)
    assert bark.fine_forward_flops(fine, batch=1) == 201_326_592 + 536_870_912 + 138_412_032
    # Six codebooks (3..8) per window; one window up to 1024 frames, then one more per 512.
    assert [bark.fine_forwards(n) for n in (100, 1024, 1025, 1536, 1537)] == [6, 6, 12, 12, 18]
    assert bark.fine_flops(fine, batch=2, frames=1100) == 12 * bark.fine_forward_flops(fine, batch=2)


@pytest.fixture(scope="module")
def meta_bark_small():
    torch = pytest.importorskip("torch")
    from transformers import BarkConfig, BarkModel

    with torch.device("meta"):
        return BarkModel(BarkConfig(**sources.bark_config_dict("bark-small")))


def test_bark_small_decode_matrices_are_the_models_linear_layers(meta_bark_small):
    torch = pytest.importorskip("torch")
    from barkbench.measure.limits import stage_shapes

    shapes = stage_shapes(meta_bark_small)
    for stage, attribute in (("semantic", "semantic"), ("coarse", "coarse_acoustics")):
        module = getattr(meta_bark_small, attribute)
        linear = collections.Counter(tuple(m.weight.shape) for m in module.modules() if isinstance(m, torch.nn.Linear))
        assert linear == collections.Counter(shapes[stage].decode_matrices()), stage
        # transformers 4.x has its own BarkLayerNorm (bias optional), 5.x nn.LayerNorm(bias=False).
        norms = sum(m.weight.numel() for m in module.modules() if type(m).__name__.endswith("LayerNorm"))
        assert norms == (2 * 12 + 1) * 768
        assert (
            bark.decode_step_weight_bytes(shapes[stage], 4, 4)
            == (sum(linear[s] * s[0] * s[1] for s in linear) + norms + 2 * 768) * 4
        )
    # The semantic step of bark-small multiplies by ~93 M weights (371 MB in fp32).
    assert bark.decode_linear_bytes(shapes["semantic"], 1) == 12 * 12 * 768**2 + 768 * 10_048 == 92_651_520


def test_bark_small_fine_flops_match_torchs_flop_counter(meta_bark_small):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from barkbench.measure.limits import stage_shapes

    fine = meta_bark_small.fine_acoustics
    codes = torch.zeros((1, bark.FINE_WINDOW, 8), dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fine.forward(2, codes)  # what BarkFineModel.generate calls, once per codebook and window
    expected = bark.fine_forward_flops(stage_shapes(meta_bark_small)["fine"], batch=1)
    # torch counts the same matmuls (Linear, attention's two batched products, the codebook head).
    assert counter.get_total_flops() == expected


def test_stage_efficiencies_three_levels_and_shares():
    shapes = {"semantic": TINY}
    limits = {"bandwidth_bytes_per_s": 1e10, "matmul_flops_per_s": 1e11, "kernel_step_seconds": {"semantic": 3e-4}}
    stages = {
        "semantic": {"seconds": 0.5, "tokens": 16, "forwards": 16, "key_positions": 4232},
        "codec": {"seconds": 0.5, "tokens": 7680},
    }
    out = eff.stage_efficiencies(stages, shapes, limits, 4, 4, batch=1, latency_s=2.0)
    semantic = out["semantic"]
    work = 16 * 2_967_296 + 4232 * 1024
    assert semantic.work == work
    assert semantic.achieved_per_s == pytest.approx(work / 0.5)
    assert semantic.fraction_of_limit == pytest.approx(work / 0.5 / 1e10)
    assert semantic.measured_step_s == pytest.approx(0.5 / 16)
    assert semantic.bandwidth_floor_s == pytest.approx(work / 16 / 1e10)
    # Kernel floor: the matmuls' measured time plus the rest of the step's bytes at the bandwidth.
    assert semantic.kernel_floor_s == pytest.approx(3e-4 + (work / 16 - 741_376 * 4) / 1e10)
    assert semantic.time_share == 0.25 and out["codec"].time_share == 0.25
    assert out["codec"].fraction_of_limit is None
    assert eff.percent(0.5) == "50 %" and eff.percent(0.0031) == "0.31 %" and eff.percent(None) == ""
    # Past the limit by more than noise and caches explain: flagged as the probe's mismatch, not an efficiency.
    assert eff.percent(1.2) == "120 %"
    assert eff.percent(38.7) == "3870 % ⚠ above the probe's limit"


def test_limit_table_and_step_levels(tmp_path):
    from types import SimpleNamespace

    from barkbench.results import plots

    figures = {
        "semantic": {
            "fraction_of_limit": 0.25,
            "bandwidth_floor_s": 0.007,
            "kernel_floor_s": 0.0185,
            "measured_step_s": 0.025,
            "time_share": 0.2,
        },
        "fine": {"fraction_of_limit": 0.5, "time_share": 0.4},
        "codec": {"time_share": 0.05},
    }
    rows = [
        SimpleNamespace(variant="eager-fp32-bs1", extra_info={"efficiency": figures}),
        SimpleNamespace(variant="old-run-bs1", extra_info={}),
    ]
    table = eff.limit_table(rows)
    assert table is not None and "old-run-bs1" not in table
    assert "| `eager-fp32-bs1` | 25 % | — | 50 % | 5 % | 7 / 18.5 / 25 | — / — / — |" in table
    assert eff.limit_table(rows[1:]) is None
    assert eff.step_levels(figures, "semantic") == (0.007, 0.0185, 0.025)
    assert eff.step_levels(figures, "coarse") is None
    png = plots.step_breakdown("eager-fp32-bs1", {"semantic": (0.007, 0.0185, 0.025)}, tmp_path / "steps.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_int8_kernel_floor_comes_from_a_probe_of_int8_kernels():
    # A probe of int8 kernels (one byte per Linear weight) gives an int8 variant its kernel floor; a float probe
    # (or an entry older than ``linear_weight_bytes``, which timed the activation dtype) does not.
    shapes = {"semantic": TINY}
    stages = {"semantic": {"seconds": 0.5, "tokens": 16, "forwards": 16, "key_positions": 4232}}
    int8_probe = {"bandwidth_bytes_per_s": 1e10, "kernel_step_seconds": {"semantic": 2e-4}, "linear_weight_bytes": 1}
    out = eff.stage_efficiencies(stages, shapes, int8_probe, 4, 1, batch=1, latency_s=2.0)["semantic"]
    step_bytes = (16 * (741_376 + 448 * 4) + 4232 * 1024) / 16
    assert out.bandwidth_floor_s == pytest.approx(step_bytes / 1e10)
    assert out.kernel_floor_s == pytest.approx(2e-4 + (step_bytes - 741_376) / 1e10)
    assert (
        eff.stage_efficiencies(stages, shapes, int8_probe, 4, 4, batch=1, latency_s=2.0)["semantic"].kernel_floor_s
        is None
    )
    old_entry = {k: v for k, v in int8_probe.items() if k != "linear_weight_bytes"}
    assert (
        eff.stage_efficiencies(stages, shapes, old_entry, 4, 1, batch=1, latency_s=2.0)["semantic"].kernel_floor_s
        is None
    )
    assert eff.stage_efficiencies(stages, shapes, old_entry, 4, 4, batch=1, latency_s=2.0)["semantic"].kernel_floor_s
    extra = eff.extra_info(
        stages,
        2.0,
        {**int8_probe, "linear_weights": "int8"},
        {"shapes": {"semantic": vars(TINY)}, "element_bytes": 4, "linear_weight_bytes": 1},
        1,
    )
    assert extra["limits"]["linear_weights"] == "int8" and extra["limits"]["linear_weight_bytes"] == 1


def _levels(floor: float, kernel: float, measured: float) -> dict:
    return {"bandwidth_floor_s": floor, "kernel_floor_s": kernel, "measured_step_s": measured}


def test_bound_by_names_the_largest_part_of_a_step():
    assert eff.bound_by((0.007, 0.0185, 0.025)) == "kernels"  # 7 / 11.5 / 6.5 ms
    assert eff.bound_by((0.007, 0.008, 0.025)) == "around"
    assert eff.bound_by((0.007, 0.008, 0.009)) == "bandwidth"
    assert eff.bound_by(None) == "—"


def test_efficiency_report_ranks_variants_by_latency(tmp_path, capsys, monkeypatch):
    import json
    from pathlib import Path

    from barkbench.cli import main

    data = json.loads((Path(__file__).parent / "data" / "run-cpu.json").read_text())
    figures = {
        # eager-fp32 (2.0 s), sdpa-fp32 (1.46 s), sdpa-bf16 (1.2 s) in the file: the bf16 row ranks first.
        "eager-fp32-bs1": {"semantic": {"fraction_of_limit": 0.25, **_levels(0.007, 0.0185, 0.025)}},
        "sdpa-fp32-bs1": {"semantic": {"fraction_of_limit": 0.3, **_levels(0.007, 0.008, 0.025)}},
        "sdpa-bf16-bs1": {"semantic": {"fraction_of_limit": 0.31, **_levels(0.0035, 0.009, 0.012)}},
    }
    limits_used = {
        "fp32": {"dtype": "fp32", "linear_weights": "fp32", "bandwidth_bytes_per_s": 5.2e10, "measured_at": "T1"},
        "bf16": {"dtype": "bf16", "linear_weights": "bf16", "bandwidth_bytes_per_s": 5.2e10, "measured_at": "T2"},
    }
    for bench in data["benchmarks"]:
        variant = bench["extra_info"].get("variant")
        if variant in figures:
            bench["extra_info"]["efficiency"] = figures[variant]
            bench["extra_info"]["limits"] = limits_used["bf16" if "bf16" in variant else "fp32"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)  # where report.md would go by default
    assert main(["report", "--efficiency", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "`" in line]
    assert [row.split("|")[2].strip() for row in rows] == ["`sdpa-bf16-bs1`", "`sdpa-fp32-bs1`", "`eager-fp32-bs1`"]
    assert rows[0].startswith("| 1 | `sdpa-bf16-bs1` | 1.20 | 1.67× | 31 % |")
    assert rows[2].endswith("| 7 / 18.5 / 25 | — / — / — | kernels | — |")
    assert "| around |" in rows[1]
    assert "- Limits for fp32 (measured T1): bandwidth 52 GB/s, matmul — — `eager-fp32-bs1`, `sdpa-fp32-bs1`" in out
    assert not (tmp_path / "barkbench-report").exists()  # --efficiency writes no files
    # A run without efficiency figures: one line naming the file and what produces them.
    assert main(["report", "--efficiency", str(Path(__file__).parent / "data" / "run-cpu.json")]) == 2
    assert "no variant recorded efficiency figures" in capsys.readouterr().err


def test_doctor_measures_the_shapes_a_benchmarks_worker_reads(meta_bark_small):
    # `barkbench doctor --limits` caches under the key a worker computes from the loaded model: same shapes.
    from barkbench import doctor
    from barkbench.measure.limits import stage_shapes

    assert doctor.architecture_shapes("random:bark-small") == stage_shapes(meta_bark_small)
