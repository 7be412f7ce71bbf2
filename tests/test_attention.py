import pytest
from transformers.models.bark.modeling_bark import BarkSelfAttention

from barkbench.measure import optimize, sources
from barkbench.measure.optimize import attention
from barkbench.variants import Variant


@pytest.fixture()
def tiny_model(tiny_source):
    return sources.load_model(tiny_source).eval()


def test_sdpa_variant_loads_barkbench_sdpa_into_every_bark_attention_and_nothing_else(tiny_source, tiny_model):
    from barkbench.sdpa import BarkSdpaSelfAttention

    prepared = optimize.prepare_model(tiny_source, Variant(attention="sdpa"), "cpu")
    assert prepared.attention_impl == "barkbench-sdpa"
    assert prepared.attention_modules == attention.attention_summary(prepared.model) == {"sdpa": 6}
    eager_modules = dict(tiny_model.named_modules())
    for name, module in prepared.model.named_modules():
        if isinstance(module, BarkSelfAttention):
            # 2 layers in each of the semantic, coarse and fine sub-models; same parameters as eager's.
            assert type(module) is BarkSdpaSelfAttention, name
        else:
            # The codec and the rest are as eager builds them (by name: weight-normed convolutions get a class each).
            assert type(module).__name__ == type(eager_modules[name]).__name__, name
    assert {n: p.shape for n, p in prepared.model.named_parameters()} == {
        n: p.shape for n, p in tiny_model.named_parameters()
    }
    # The variant does not change what a plain load gets afterwards in the same process.
    assert attention.attention_summary(sources.load_model(tiny_source)) == {"BarkSelfAttention": 6}


def test_sdpa_and_flash_attention_2_are_chosen_at_load_time():
    assert attention.load_kwargs(Variant(attention="sdpa")) == {"attn_implementation": "sdpa"}
    # FA2 per sub-config: the plain string would reach the codec, which has no FA2 (ValueError at load).
    assert attention.load_kwargs(Variant(attention="flash_attention_2", dtype="fp16")) == {
        "attn_implementation": attention.flash_attention_2_form()
    }
    assert attention.flash_attention_2_form()["codec_config"] == "eager"
    assert attention.load_kwargs(Variant()) == {}


def test_flash_attention_2_reason_names_what_is_missing():
    assert "CUDA GPU" in attention.flash_attention_2_unavailable_reason("cpu")
