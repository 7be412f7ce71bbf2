import pytest
import torch
from transformers.models.bark.modeling_bark import BarkSelfAttention

from barkbench.measure import sources
from barkbench.measure.optimize import attention


@pytest.fixture()
def tiny_model(tiny_source):
    return sources.load_model(tiny_source).eval()


def test_sdpa_swap_reaches_every_attention_and_nothing_else(tiny_model):
    attentions = [m for m in tiny_model.modules() if isinstance(m, BarkSelfAttention)]
    # 2 layers in each of the semantic, coarse and fine sub-models.
    assert len(attentions) == 6
    before = {name: type(m) for name, m in tiny_model.named_modules()}
    untouched = {name: m.forward for name, m in tiny_model.named_modules()}

    assert attention.apply_sdpa(tiny_model) == 6

    for name, module in tiny_model.named_modules():
        assert type(module) is before[name]  # no module replaced, weights stay where they were
        if isinstance(module, BarkSelfAttention):
            assert getattr(module, attention.MARK) == "sdpa"
            assert module._attn.__func__ is attention._sdpa_attn
        else:
            assert not hasattr(module, attention.MARK), name
            assert "_attn" not in vars(module), name
            assert module.forward == untouched[name]
    assert attention.attention_summary(tiny_model) == {"sdpa": 6}


def test_sdpa_matches_eager_scores_causal_and_cached():
    torch.manual_seed(0)
    from transformers import BarkSemanticConfig

    config = BarkSemanticConfig(num_layers=1, num_heads=2, hidden_size=16, block_size=64, bias=False)
    eager = BarkSelfAttention(config, is_causal=True).eval()
    q, k, v = (torch.randn(2, 2, 10, 8) for _ in range(3))
    expected, _ = eager._attn(q, k, v)
    attention.apply_sdpa(eager)
    got, weights = eager._attn(q, k, v)
    assert weights is None
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # One-token query against a cache: attends to every key, like the eager mask's last row.
    q1 = q[:, :, -1:]
    attention.apply_sdpa(eager)
    fresh = BarkSelfAttention(config, is_causal=True).eval()
    torch.testing.assert_close(eager._attn(q1, k, v)[0], fresh._attn(q1, k, v)[0], atol=1e-6, rtol=1e-5)


def test_sdpa_refuses_a_model_without_bark_attention():
    with pytest.raises(attention.AttentionUnavailable, match="no BarkSelfAttention"):
        attention.apply_sdpa(torch.nn.Linear(2, 2))


def test_flash_attention_2_reason_names_what_is_missing():
    assert "CUDA GPU" in attention.flash_attention_2_unavailable_reason("cpu")
