"""Variants beyond the blog: bf16, flash_attention_2, torch.compile, dynamic int8 — axes, skip reasons, and
that they really run Bark (tiny model, CPU)."""

from __future__ import annotations

import pytest
import torch

from barkbench.measure import optimize, sources
from barkbench.measure.optimize import compile as compile_axis
from barkbench.measure.optimize import quantize
from barkbench.measure.runner import RunSpec, VariantRunner
from barkbench.measure.workload import Workload
from barkbench.variants import (
    ATTENTIONS,
    DTYPES,
    GROUPS,
    OFFLOADS,
    PRESETS,
    QUANTIZATIONS,
    Variant,
    VariantError,
    parse_variants,
)

pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TOKENS = 8

# torch.ao's quantized modules use the deprecated torch.jit.script_method when first imported (torch 2.13).
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

# -- the axes ----------------------------------------------------------------------------------------------------


def test_new_axes_leave_every_existing_id_unchanged():
    # The ids pytest-benchmark compares runs by: a result saved before these axes existed still matches.
    expected = {
        "baseline": "eager-fp32-bs1",
        "bettertransformer": "bettertransformer-fp32-bs1",
        "offload+bettertransformer+fp16": "bettertransformer-fp16-offload-bs1",
        "bs8+offload+fp16": "bettertransformer-fp16-offload-bs8",
        "sdpa+bf16": "sdpa-bf16-bs1",
    }
    assert {name: PRESETS[name].id for name in expected} == expected


def test_compile_and_int8_appear_in_the_id_only_when_set():
    assert Variant(compile=True).id == "eager-fp32-compile-bs1"
    assert Variant(quantization="int8").id == "eager-fp32-int8-bs1"
    assert Variant(attention="sdpa", quantization="int8", compile=True, batch_size=8).id == (
        "sdpa-fp32-int8-compile-bs8"
    )
    assert not Variant(compile=True).is_baseline and not Variant(quantization="int8").is_baseline


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("compile=true", Variant(compile=True)),
        ("attention=sdpa,dtype=bf16,compile=yes", Variant(attention="sdpa", dtype="bf16", compile=True)),
        ("quant=int8", Variant(quantization="int8")),
        ("quantization=qint8,attention=sdpa", Variant(attention="sdpa", quantization="int8")),
        ("compile=off", Variant()),
    ],
)
def test_ad_hoc_specs_reach_the_new_axes(spec, expected):
    assert parse_variants(spec) == [expected]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("compile=maybe", "compile must be true or false"), ("quant=int4", "unknown quantization 'int4'")],
)
def test_bad_values_of_the_new_axes_say_how_to_fix_them(spec, message):
    with pytest.raises(VariantError, match=message):
        parse_variants(spec)


def test_modern_group_and_presets():
    ids = [v.id for v in GROUPS["modern"]]
    assert ids == [
        "eager-bf16-bs1",
        "sdpa-bf16-bs1",
        "flash_attention_2-bf16-bs1",
        "eager-fp32-compile-bs1",
        "sdpa-bf16-compile-bs1",
        "eager-fp32-int8-bs1",
        "sdpa-fp32-int8-bs1",
    ]
    # The blog's groups stay the blog's: no modern variant leaks into them.
    for name in ("blog", "blog-sdpa", "blog-bs1", "blog-bs8"):
        assert all(not v.compile and v.quantization == "none" for v in GROUPS[name]), name


variants = st.builds(
    Variant,
    attention=st.sampled_from(ATTENTIONS),
    dtype=st.sampled_from(DTYPES),
    offload=st.sampled_from(OFFLOADS),
    batch_size=st.integers(1, 64),
    quantization=st.sampled_from(QUANTIZATIONS),
    compile=st.booleans(),
)


@given(variants, variants)
def test_ids_identify_variants_and_survive_the_json_round_trip(a, b):
    assert Variant.from_dict(a.as_dict()) == a
    assert (a.id == b.id) == (a == b)
    assert a.id.endswith(f"-bs{a.batch_size}")  # reports strip this suffix to find a series


def test_results_written_before_the_new_axes_still_load():
    old = {"attention": "sdpa", "dtype": "bf16", "offload": "none", "batch_size": 8}
    assert Variant.from_dict(old) == Variant(attention="sdpa", dtype="bf16", batch_size=8)


# -- skip reasons ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "device", "reason"),
    [
        (Variant(quantization="int8"), "cuda", "CPU kernels only"),
        (Variant(quantization="int8", dtype="bf16"), "cpu", "use dtype=fp32"),
        (Variant(attention="flash_attention_2", dtype="bf16"), "cpu", "needs a CUDA GPU"),
        (Variant(attention="flash_attention_2"), "cuda", None),  # fp32 or missing flash-attn: checked below
    ],
)
def test_unsupported_variants_say_why(variant, device, reason):
    got = optimize.unsupported_reason(variant, device)
    if reason is None:
        assert got is not None and ("fp16 or bf16" in got or "flash-attn" in got)
    else:
        assert got is not None and reason in got, got


def test_supported_modern_variants_on_cpu_have_no_reason():
    for name in ("bf16", "sdpa+bf16", "int8", "sdpa+int8", "compile", "sdpa+bf16+compile"):
        assert optimize.unsupported_reason(PRESETS[name], "cpu") is None, name


def test_compile_without_a_cpp_compiler_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compile_axis.shutil, "which", lambda name: None)
    reason = optimize.unsupported_reason(Variant(compile=True), "cpu")
    assert reason is not None and "C++ compiler" in reason


def test_bf16_on_a_gpu_without_bf16_is_skipped(monkeypatch):
    from barkbench.measure import device

    turing = device.AcceleratorFacts("cuda", (device.DeviceFacts(0, "Tesla T4", capability="7.5", bf16_native=False),))
    monkeypatch.setattr(device, "probe", lambda: turing)
    reason = optimize.unsupported_reason(Variant(dtype="bf16"), "cuda")
    assert reason is not None and "bfloat16" in reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: FA2 and bf16 run only there")
def test_fa2_on_this_gpu_is_either_runnable_or_names_what_is_missing():
    reason = optimize.unsupported_reason(PRESETS["flash_attention_2+bf16"], "cuda")
    assert reason is None or "flash-attn" in reason or "bfloat16" in reason


# -- they run Bark -----------------------------------------------------------------------------------------------


def _runner(tiny_source, variant: Variant) -> VariantRunner:
    spec = RunSpec(
        source=tiny_source,
        variant=variant,
        workload=Workload(semantic_max_new_tokens=TOKENS),
        device_type="cpu",
        fixed_length=True,
    )
    return VariantRunner(spec)


def test_bf16_runs_bark_in_bf16(tiny_source):
    runner = _runner(tiny_source, Variant(attention="sdpa", dtype="bf16"))
    try:
        assert runner.model.semantic.lm_head.weight.dtype == torch.bfloat16
        runner.prepare()
        result = runner.generate()
    finally:
        runner.close()
    assert result.stages["semantic"]["tokens"] == TOKENS and result.audio_seconds > 0


def test_int8_quantizes_every_linear_layer_and_generates(tiny_source):
    runner = _runner(tiny_source, Variant(quantization="int8"))
    try:
        model = runner.model
        plain = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
        assert plain == [] and runner.info.quantized_linear > 0
        assert runner.info.quantized_linear == sum(
            isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules()
        )
        # In place: the runner holds only the quantized model, and its weights are int8.
        assert model.semantic.lm_head.weight().dtype == torch.qint8
        runner.prepare()
        result = runner.generate()
    finally:
        runner.close()
    assert result.stages["semantic"]["tokens"] == TOKENS
    assert min(result.output_lengths) > 0


def test_int8_counts_fewer_weight_bytes_than_fp32(tiny_source):
    model = sources.load_model(tiny_source)
    linear_fp32 = sum(m.weight.numel() * 4 for m in model.modules() if type(m) is torch.nn.Linear)
    quantized = quantize.apply_dynamic_int8(model)
    assert quantized == sum(1 for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))
    linear_int8 = sum(
        m.weight().numel() for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
    )
    assert linear_int8 * 4 == linear_fp32


def test_compile_compiles_the_sub_models_before_the_rounds(tiny_source):
    """The compiling first call happens at load and is timed there; the rounds after it compile nothing."""
    from torch._dynamo.utils import counters

    runner = _runner(tiny_source, Variant(attention="sdpa", compile=True))
    try:
        assert runner.info.compiled == compile_axis.COMPILED_SUBMODELS
        assert runner.info.first_call_seconds is not None and runner.info.first_call_seconds > 0
        for name in compile_axis.COMPILED_SUBMODELS:
            assert getattr(getattr(runner.model, name), compile_axis.COMPILED_MARK) is True
        graphs = counters["stats"]["unique_graphs"]
        assert graphs > 0
        runner.prepare()
        result = runner.generate()
        assert counters["stats"]["unique_graphs"] == graphs, "a measured round recompiled"
    finally:
        runner.close()
    assert result.stages["semantic"]["tokens"] == TOKENS and min(result.output_lengths) > 0


def test_prepared_model_of_a_blog_variant_reports_nothing_modern(tiny_source):
    prepared = optimize.prepare_model(tiny_source, Variant(attention="sdpa"), "cpu")
    assert (prepared.compiled, prepared.quantized_linear) == ((), 0)
    names = compile_axis.COMPILED_SUBMODELS
    assert not any(hasattr(getattr(prepared.model, n), compile_axis.COMPILED_MARK) for n in names)


def test_reports_never_take_an_int8_or_compiled_run_for_the_baseline():
    from barkbench.results.load import BenchmarkResult

    def result(variant: Variant) -> BenchmarkResult:
        return BenchmarkResult.from_json({"fullname": variant.id, "extra_info": variant.as_dict(), "stats": {}}, "m")

    assert result(Variant(batch_size=8)).is_reference_baseline
    assert not result(Variant(quantization="int8")).is_reference_baseline
    assert not result(Variant(compile=True)).is_reference_baseline
