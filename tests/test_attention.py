from collections.abc import Iterator
from unittest import mock

import pytest
from transformers import BarkModel
from transformers.models.bark.modeling_bark import BarkSelfAttention

from barkbench import sdpa
from barkbench.measure import optimize, sources
from barkbench.measure.optimize import attention
from barkbench.variants import Variant


@pytest.fixture(autouse=True)
def registration_undone() -> Iterator[None]:
    """The sdpa variant registers barkbench's SDPA for the whole process (Bark's default becomes SDPA); undone after
    each test here, so the other test files load Bark as transformers alone does."""
    before = sdpa.is_registered()
    yield
    if not before:
        sdpa.unregister()


@pytest.fixture()
def tiny_model(tiny_source):
    return sources.load_model(tiny_source, attn_implementation="eager").eval()


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
    # Registered by the variant, Bark follows transformers' convention for a model that supports SDPA: a plain load
    # afterwards in the same process gets SDPA (so the eager variant asks for eager by name: see the next test).
    assert attention.attention_summary(sources.load_model(tiny_source)) == {"sdpa": 6}


@pytest.mark.parametrize("registered", [False, True], ids=["alone", "after-register"])
def test_eager_variant_asks_for_eager_by_name(tiny_source, registered):
    if registered:
        sdpa.register()
    with mock.patch.object(BarkModel, "from_pretrained", wraps=BarkModel.from_pretrained) as spy:
        prepared = optimize.prepare_model(tiny_source, Variant(), "cpu")
    assert spy.call_args.kwargs["attn_implementation"] == "eager"
    assert prepared.attention_impl == "eager"
    assert prepared.attention_modules == {"BarkSelfAttention": 6}
    for sub in (prepared.model.semantic, prepared.model.coarse_acoustics, prepared.model.fine_acoustics):
        assert sub.config._attn_implementation == "eager"
    assert Variant().id == "eager-fp32-bs1"  # the baseline's id (and so its rows) is unchanged


def test_sdpa_and_flash_attention_2_are_chosen_at_load_time():
    assert attention.load_kwargs(Variant(attention="sdpa")) == {"attn_implementation": "sdpa"}
    # FA2 per sub-config: the plain string would reach the codec, which has no FA2 (ValueError at load).
    assert attention.load_kwargs(Variant(attention="flash_attention_2", dtype="fp16")) == {
        "attn_implementation": attention.flash_attention_2_form()
    }
    assert attention.flash_attention_2_form()["codec_config"] == "eager"
    # Eager by name (the default is SDPA once barkbench's SDPA is registered); BetterTransformer starts from eager.
    assert attention.load_kwargs(Variant()) == {"attn_implementation": "eager"}
    assert attention.load_kwargs(Variant(attention="bettertransformer")) == {"attn_implementation": "eager"}


def test_flash_attention_2_reason_names_what_is_missing():
    assert "CUDA GPU" in attention.flash_attention_2_unavailable_reason("cpu")
