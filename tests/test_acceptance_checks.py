"""The strict acceptance (issue 24 item 5), check by check, on crafted runs: a real H200 row as the template, with
the figures each check is about changed. The real H200 files are checked in tests/test_gpu_paths.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from barkbench.results import acceptance
from barkbench.results.load import load_run
from barkbench.variants import Variant

DATA = Path(__file__).parent / "data"
MB = 1_000_000
TEMPLATE = json.loads((DATA / "h200-random-bark-small.json").read_text())
BASELINE = Variant()
SDPA = Variant(attention="sdpa")
OFFLOAD = Variant(attention="sdpa", offload="cpu")


def row(variant: Variant, source: str = "random:bark-small", **extra: Any) -> dict[str, Any]:
    """The H200 eager-fp32-bs1 row, as ``variant`` of ``source``; ``extra`` overrides extra_info (figures in MB
    for keys ending in ``_mb``)."""
    bench = copy.deepcopy(TEMPLATE["benchmarks"][0])
    info = bench["extra_info"]
    info.update(variant.as_dict(), model_source=source, device="cuda:0" if variant.offload == "cpu" else "cuda")
    for key, value in extra.items():
        if key.endswith("_mb"):
            info[key.removesuffix("_mb") + "_bytes"] = int(value * MB)
        else:
            info[key] = value
    bench["name"] = f"test_generate[{variant.id}]"
    bench["fullname"] = f"bench/test_bark.py::{bench['name']}"
    return bench


def checks(tmp_path: Path, *rows: dict[str, Any]) -> dict[str, acceptance.Check]:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**TEMPLATE, "benchmarks": list(rows)}))
    return {c.what: c for c in acceptance.check_run(load_run(path))}


def failed(found: dict[str, acceptance.Check]) -> dict[str, str]:
    return {what: c.detail for what, c in found.items() if not c.ok}


#: bark-small fp32 on the H200: no-offload peak 1,794.1 MB, model memory 1,681.0 MB (sdpa-fp32-bs1).
TWIN = {"peak_memory_mb": 1794.1, "model_memory_mb": 1681.0}


def offload_row(peak_mb: float, placement: str | None = "checked", **extra: Any) -> dict[str, Any]:
    return row(OFFLOAD, peak_memory_mb=peak_mb, model_memory_mb=0.004, offload_placement=placement, **extra)


# -- every row measured -------------------------------------------------------------------------------------------


def test_a_failed_or_interrupted_row_fails_the_run_with_its_reason(tmp_path):
    broken = row(Variant(dtype="bf16"), status="failed", error="OffloadPlacementError: offload placement: ...")
    stopped = row(Variant(batch_size=8), status="interrupted", error="interrupted by SIGTERM during warm-up 1/1")
    found = checks(tmp_path, row(BASELINE), broken, stopped)
    assert failed(found) == {
        "rows measured": "1 ok, 2 not",
        "`eager-bf16-bs1` measured": "failed: OffloadPlacementError: offload placement: ...",
        "`eager-fp32-bs8` measured": "interrupted: interrupted by SIGTERM during warm-up 1/1",
    }
    assert checks(tmp_path, row(BASELINE))["rows measured"].ok


# -- half precision by measured model memory ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_is_held_to_measured_model_memory(tmp_path, dtype):
    fp32 = row(BASELINE, model_memory_mb=1681.0)
    half = Variant(dtype=dtype)
    what = f"`{half.id}` model memory half of fp32"
    # weights_bytes halves by construction (numel x element size); the allocator's figure is what can fail.
    good = checks(tmp_path, fp32, row(half, model_memory_mb=851.2, weights_bytes=838_244_228))
    assert good[what].ok and good[what].detail == "0.506 x `eager-fp32-bs1` (851.2 vs 1,681.0 MB)"
    stuck = checks(tmp_path, fp32, row(half, model_memory_mb=1681.0, weights_bytes=838_244_228))
    assert not stuck[what].ok and stuck[what].detail.startswith("1.000 x `eager-fp32-bs1`")
    both = checks(tmp_path, fp32, row(half, model_memory_mb=2532.2))  # the fp32 copy alive beside the half one
    assert not both[what].ok


def test_half_precision_never_compares_with_an_offload_int8_or_compiled_row(tmp_path):
    half = row(Variant(dtype="fp16"), model_memory_mb=851.2)
    others = [
        row(Variant(offload="cpu"), model_memory_mb=0.004, peak_memory_mb=850.0, offload_placement="checked"),
        row(Variant(quantization="int8"), model_memory_mb=900.0),
        row(Variant(compile=True, kv_cache="static"), model_memory_mb=1700.0),
    ]
    found = checks(tmp_path, half, *others)
    assert found["half precision compared with fp32"].detail == (
        "no fp32 row without offload, int8 or compile for `eager-fp16-bs1`"
    )
    assert not found["half precision compared with fp32"].ok


# -- offload: placement checked, and the bounds on both sides -------------------------------------------------------


def test_an_offload_row_needs_the_placement_check_recorded(tmp_path):
    what = "`sdpa-fp32-offload-bs1` offload placement checked"
    assert checks(tmp_path, row(SDPA, **TWIN), offload_row(850.0))[what].ok
    missing = checks(tmp_path, row(SDPA, **TWIN), offload_row(850.0, placement=None))[what]
    assert not missing.ok and missing.detail.startswith("not recorded: a run from before the placement check")
    other = checks(tmp_path, row(SDPA, **TWIN), offload_row(850.0, placement="skipped"))[what]
    assert not other.ok and other.detail == "recorded 'skipped'"


BOUNDS = "`sdpa-fp32-offload-bs1` peak within offload's bounds"


def test_a_real_offload_of_bark_small_lies_within_both_bounds(tmp_path):
    # Semantic weights (784.5 MB) and its activations on the device, the rest on the CPU.
    found = checks(tmp_path, row(SDPA, **TWIN), offload_row(850.0))
    assert not failed(found), failed(found)
    assert found[BOUNDS].detail == (
        "850.0 MB in 747.4-1,347.0 MB (semantic 0.468 of `sdpa-fp32-bs1`'s 1,681.0 MB model memory)"
    )


def test_the_half_offloaded_h200_peak_passes_below_the_twin_but_not_the_lower_bound(tmp_path):
    found = checks(tmp_path, row(SDPA, **TWIN), offload_row(536.2))
    assert found["`sdpa-fp32-offload-bs1` peak below `sdpa-fp32-bs1`"].ok  # one side cannot catch it
    assert not found[BOUNDS].ok and "below the largest sub-model alone" in found[BOUNDS].detail


def test_an_offload_that_keeps_the_sub_models_on_the_device_fails_the_upper_bound(tmp_path):
    # Below the twin's peak (the old check passed it), but less than half of what must leave the device left it.
    found = checks(tmp_path, row(SDPA, **TWIN), offload_row(1500.0))
    assert found["`sdpa-fp32-offload-bs1` peak below `sdpa-fp32-bs1`"].ok
    assert not found[BOUNDS].ok and "did not leave the device" in found[BOUNDS].detail


def test_each_architecture_has_its_largest_sub_model_and_an_unknown_one_the_loosest_bounds():
    assert acceptance._largest_sub_model("tiny") == ("codec_model", 0.649, 0.649)
    assert acceptance._largest_sub_model("suno/bark-small") == ("semantic", 0.468, 0.468)
    assert acceptance._largest_sub_model("random:bark") == ("semantic", 0.403, 0.403)
    assert acceptance._largest_sub_model("/models/my-bark") == (
        "largest sub-model (architecture unknown)",
        0.403,
        0.649,
    )


def test_the_twin_of_an_offload_row_is_never_a_compiled_or_int8_row(tmp_path):
    compiled = row(Variant(attention="sdpa", compile=True, kv_cache="static"), peak_memory_mb=900.0)
    found = checks(tmp_path, compiled, offload_row(850.0))
    assert failed(found)["offload compared with a no-offload peak"] == (
        "no no-offload row of the same dtype and batch size for `sdpa-fp32-offload-bs1`"
    )


@pytest.mark.parametrize("arch", sorted(acceptance.LARGEST_SUB_MODEL))
def test_largest_sub_model_and_share_match_a_model_built_from_the_architecture(arch: str) -> None:
    """The offload bounds' constants are counted from transformers' own model (on the meta device, nothing
    allocated): which sub-model is largest, and its share of the parameters and buffers, to 0.1 %."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from barkbench.measure import sources
    from barkbench.measure.optimize import offload

    with torch.device("meta"):
        model = transformers.BarkModel(transformers.BarkConfig(**sources.bark_config_dict(arch)))

    def size(module: Any) -> int:
        return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))

    sizes = {name: size(getattr(model, name)) for name in offload.SUB_MODELS}
    name, share = acceptance.LARGEST_SUB_MODEL[arch]
    assert max(sizes, key=lambda sub: sizes[sub]) == name
    assert sizes[name] / size(model) == pytest.approx(share, abs=0.001)
