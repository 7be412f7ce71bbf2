"""The CPU combination study's axis values: fp16 weights (dynamic, fp32 activations), int8 with a static KV cache,
and what torch refuses (int8 or fp16 weights with bf16/fp16 activations), with the error it raises."""

from __future__ import annotations

import types
import warnings

import pytest

from barkbench.measure import limits, optimize, sources
from barkbench.measure.optimize import quantize
from barkbench.variants import GROUPS, PRESETS, Variant, parse_variants

torch = pytest.importorskip("torch")


def test_fp16_weights_parse_and_name_the_variant():
    assert parse_variants("attention=sdpa,quant=fp16w") == [Variant(attention="sdpa", quantization="fp16")]
    assert parse_variants("quantization=fp16-weights") == [PRESETS["fp16-weights"]]
    assert PRESETS["sdpa+fp16-weights"].id == "sdpa-fp32-fp16w-bs1"
    assert PRESETS["sdpa+int8+static-cache"].id == "sdpa-fp32-int8-static-bs1"
    assert [v.id for v in GROUPS["cpu-combinations"]] == [
        "eager-fp32-bs1",
        "sdpa-fp32-bs1",
        "sdpa-bf16-bs1",
        "sdpa-fp32-int8-bs1",
        "sdpa-fp32-fp16w-bs1",
        "sdpa-fp32-int8-static-bs1",
    ]
    assert Variant.from_dict(PRESETS["sdpa+fp16-weights"].as_dict()) == PRESETS["sdpa+fp16-weights"]


def _quantized_linear(weights: str):
    layers = torch.nn.Sequential(torch.nn.Linear(8, 4, bias=False))
    quantize.apply_dynamic(layers, weights)
    return layers


@pytest.mark.parametrize("weights", ["int8", "fp16"])
@pytest.mark.parametrize("activations", ["bf16", "fp16"])
def test_quantized_weights_with_half_activations_are_refused_with_torchs_error(weights, activations):
    variant = Variant(dtype=activations, quantization=weights)
    reason = optimize.unsupported_reason(variant, "cpu")
    assert reason is not None and "fp32 activations only" in reason and "use dtype=fp32" in reason
    message = quantize.ACTIVATIONS_REFUSED[activations]
    assert message in reason
    # The message quoted is the one this torch raises.
    layer = _quantized_linear(weights)
    x = torch.ones(1, 8, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[activations])
    with pytest.raises(RuntimeError, match=message.split(": ", 1)[1]):
        layer(x)


def test_fp16_weights_need_the_cpu_and_fbgemm(monkeypatch):
    on_cuda = optimize.unsupported_reason(PRESETS["fp16-weights"], "cuda")
    # Named as what it is (the first GPU run's doctor called it "dynamic int8 quantization").
    assert "dynamic fp16-weight quantization" in on_cuda and "CPU kernels only" in on_cuda and "int8" not in on_cuda
    assert "dynamic int8 quantization" in optimize.unsupported_reason(PRESETS["int8"], "cuda")
    if quantize.dynamic_unavailable_reason("cpu", "fp32") is None:
        assert optimize.unsupported_reason(PRESETS["sdpa+fp16-weights"], "cpu") is None
    # An ARM build has qnnpack only: int8 runs there, fp16 weights do not.
    monkeypatch.setattr(torch.backends, "quantized", types.SimpleNamespace(supported_engines=["qnnpack"]))
    assert optimize.unsupported_reason(PRESETS["int8"], "cpu") is None
    reason = optimize.unsupported_reason(PRESETS["fp16-weights"], "cpu")
    assert reason and "fbgemm or x86" in reason and "['qnnpack']" in reason


def test_fp16_weights_run_bark_and_count_two_bytes_per_weight(tiny_source, monkeypatch):
    if reason := optimize.unsupported_reason(PRESETS["fp16-weights"], "cpu"):
        pytest.skip(reason)
    model = sources.load_model(tiny_source).eval()
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.inference_mode():
        reference = model.semantic(input_ids=ids).logits
    linear = sum(1 for m in model.modules() if type(m) is torch.nn.Linear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert quantize.apply(model, PRESETS["fp16-weights"]) == linear
    assert not [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert limits.quantized_weights(model) == "fp16"
    with torch.inference_mode():
        logits = model.semantic(input_ids=ids).logits
    # fp16 weights, fp32 arithmetic: the logits move by the weights' rounding only (random weights ~0.02).
    assert torch.allclose(logits, reference, rtol=1e-2, atol=1e-3)
    asked = []

    def probe(*args, **kwargs):
        asked.append(kwargs.get("weights"))
        return {"bandwidth_bytes_per_s": 1e10}

    monkeypatch.setattr(limits, "probe", probe)
    inputs = limits.for_model(model, "cpu", "fp32", 1, quantized_linear=linear)["efficiency_inputs"]
    assert asked == ["fp16"] and inputs["linear_weight_bytes"] == 2 and inputs["element_bytes"] == 4
