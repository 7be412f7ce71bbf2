"""The static KV-cache axis: parsing and ids, the reason it is refused on transformers 4.x, the kwargs that reach
Bark's sub-model generate, and compile's CUDA-graph mode chosen only for a static cache on CUDA."""

from __future__ import annotations

import pytest

from barkbench.measure.optimize import cache, compile
from barkbench.variants import PRESETS, Variant, VariantError, parse_variants

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
CURRENT = int(transformers.__version__.split(".")[0]) >= 5


def test_axis_parses_and_names_the_variant():
    (static,) = parse_variants("kv_cache=static")
    assert static == PRESETS["static-cache"] and static.id == "eager-fp32-static-bs1"
    assert PRESETS["static-cache+compile"].id == "eager-fp32-static-compile-bs1"
    assert Variant.from_dict(static.as_dict()) == static
    # Results written before the axis existed read as the dynamic cache, and the baseline stays dynamic.
    old = {k: v for k, v in Variant().as_dict().items() if k != "kv_cache"}
    assert Variant.from_dict(old).kv_cache == "dynamic" and Variant().is_baseline and not static.is_baseline
    with pytest.raises(VariantError, match="unknown kv_cache 'paged'; choose one of dynamic, static"):
        parse_variants("kv_cache=paged")


def test_kwargs_reach_both_decode_stages():
    assert cache.generate_kwargs(Variant()) == {}
    assert cache.generate_kwargs(Variant(kv_cache="static")) == {
        "semantic_cache_implementation": "static",
        "coarse_cache_implementation": "static",
    }


def test_refused_where_bark_only_takes_the_legacy_tuple_cache():
    reason = cache.unsupported_reason(Variant(kv_cache="static"), "cpu")
    if CURRENT:
        assert reason is None
    else:
        assert reason is not None and f"transformers {transformers.__version__}" in reason
        assert "ignores cache_implementation='static'" in reason
    assert cache.unsupported_reason(Variant(), "cpu") is None


def test_reduce_overhead_only_for_a_static_cache_on_cuda():
    static = Variant(kv_cache="static", compile=True)
    assert compile.compile_kwargs(static, "cuda") == {"mode": "reduce-overhead"}
    assert compile.compile_kwargs(static, "cpu") == {}
    assert compile.compile_kwargs(Variant(compile=True), "cuda") == {}


@pytest.mark.skipif(not CURRENT, reason="Bark takes a StaticCache from transformers 5 on (4.x ignores it)")
def test_sub_models_run_with_a_static_cache_and_the_same_audio():
    from barkbench.measure import sources
    from barkbench.measure.stages import fixed_length_kwargs

    source = sources.parse_model_source("tiny")
    model, processor = sources.load_model(source), sources.load_processor(source)
    inputs = processor("Let's try generating speech, with Bark", return_tensors="pt")
    seen: list[str] = []

    def record(module, args, kwargs):
        seen.append(type(kwargs.get("cache", kwargs.get("past_key_values"))).__name__)

    hooks = [
        getattr(model, name).register_forward_pre_hook(record, with_kwargs=True)
        for name in ("semantic", "coarse_acoustics")
    ]
    audio = {}
    for variant in (Variant(), Variant(kv_cache="static")):
        seen.clear()
        torch.manual_seed(0)
        with torch.inference_mode():
            audio[variant.kv_cache] = model.generate(
                **inputs, do_sample=True, **fixed_length_kwargs(16), **cache.generate_kwargs(variant)
            )
        expected = "StaticCache" if variant.kv_cache == "static" else "DynamicCache"
        assert set(seen[1:]) == {expected}, (variant.kv_cache, set(seen))
    for hook in hooks:
        hook.remove()
    assert torch.equal(audio["dynamic"], audio["static"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: reduce-overhead captures CUDA graphs")
def test_static_cache_compiles_with_cuda_graphs_on_cuda():
    from barkbench.measure import sources

    model = sources.load_model(sources.parse_model_source("tiny")).to("cuda")
    compiled = compile.apply(model, Variant(kv_cache="static", compile=True))
    assert compiled == compile.COMPILED_SUBMODELS
