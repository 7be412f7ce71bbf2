"""barkbench.sdpa: Bark's SDPA attention equals eager wherever eager is defined, and is a real attn_implementation.

Every comparison is against Bark's eager attention on the same tiny random model (2 layers, 2 heads, hidden 64 in
each sub-model). fp32 tolerance ``atol = 1e-5`` on logits and attention weights, as tests/test_equivalence.py;
measured maximum 4.2e-7 on both stacks (left-padded forward, 90 random batches over the three sub-models; 3.6e-7
for a multi-token query over a cache; attention weights identical, since that call runs eager): the rounding of a
different summation order. Half precision: the bound tests/test_equivalence.py uses, k × eps(dtype) × max |fp32 logits|.

The situations are the ones BetterTransformer's swap got wrong: a left-padded batch (the mask was ignored), several
new tokens over a KV cache (SDPA's is_causal aligns top-left, eager bottom-right), attention weights (it returned
None). Padded query rows see only padding — eager's "fully masked" rows — and are compared too: eager keeps them
finite and so must SDPA.
"""

from __future__ import annotations

import copy
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from packaging.version import Version
from transformers import BarkModel, GenerationMixin, GPT2Config, GPT2LMHeadModel
from transformers.models.bark import modeling_bark

from barkbench import sdpa

pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ATOL = 1e-5
LOSSY_EPS_MULTIPLE = {torch.float16: 5, torch.bfloat16: 4}
CAUSAL = ("semantic", "coarse_acoustics")
STAGES = (*CAUSAL, "fine_acoustics")
EXAMPLES = settings().max_examples
TRANSFORMERS_5 = Version(transformers.__version__).major >= 5
DTYPE_KWARG = "dtype" if TRANSFORMERS_5 else "torch_dtype"
#: The KV-cache argument of Bark's sub-models: transformers 5 renamed past_key_values to cache.
CACHE_KWARG = (
    "cache" if "cache" in inspect.signature(modeling_bark.BarkCausalModel.forward).parameters else "past_key_values"
)


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    """barkbench's SDPA registered for this module's tests only: register() changes the default attention of every
    Bark model loaded afterwards in the process, and the other test files load Bark as transformers alone does."""
    before = sdpa.is_registered()
    sdpa.register()
    yield
    if not before:
        sdpa.unregister()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny matrices: intra-op threads only wait on each other on a shared 2-core runner.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(path: Path, attention: str | None, dtype: torch.dtype = torch.float32, **kwargs: Any) -> BarkModel:
    kwargs[DTYPE_KWARG] = dtype
    if attention is not None:
        kwargs["attn_implementation"] = attention
    return BarkModel.from_pretrained(path, **kwargs).eval()


@pytest.fixture(scope="module")
def eager(tiny_dir: Path) -> BarkModel:
    return load(tiny_dir, "eager")


@pytest.fixture(scope="module")
def fast(tiny_dir: Path) -> BarkModel:
    return load(tiny_dir, "sdpa")


def attention_classes(model: torch.nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, modeling_bark.BarkSelfAttention):
            counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


def left_padded(stage: str, model: BarkModel, pads: list[int], length: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random ids for ``stage`` and a 2-D mask whose sample i starts with ``pads[i]`` padding positions."""
    config = getattr(model, stage).config
    generator = torch.Generator().manual_seed(seed)
    shape = (len(pads), length, config.n_codes_total) if stage == "fine_acoustics" else (len(pads), length)
    ids = torch.randint(0, config.input_vocab_size, shape, generator=generator)
    mask = torch.ones(len(pads), length, dtype=torch.long)
    for row, pad in enumerate(pads):
        mask[row, : min(pad, length)] = 0
    return ids, mask


def run(model: BarkModel, stage: str, ids: torch.Tensor, **kwargs: Any) -> Any:
    sub = getattr(model, stage)
    with torch.inference_mode():
        # The fine model predicts one codebook from the ones before it; 2 is any of them.
        return sub(2, input_ids=ids, **kwargs) if stage == "fine_acoustics" else sub(input_ids=ids, **kwargs)


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.float() - expected.float()).abs().max().item()


# -- the API ------------------------------------------------------------------------------------------------------


def test_attn_implementation_sdpa_builds_sdpa_attention_and_leaves_the_codec_alone(fast, eager, tiny_dir):
    assert attention_classes(fast) == {"BarkSdpaSelfAttention": 6}
    for stage in STAGES:
        assert getattr(fast, stage).config._attn_implementation == "sdpa"
    assert fast.codec_model.config._attn_implementation == "eager"
    # Same weights: the class only changes how scores are computed.
    eager_state = eager.state_dict()
    assert all(torch.equal(eager_state[name], value) for name, value in fast.state_dict().items())
    # Registered, Bark is a model that supports SDPA: a load without attn_implementation gets it (the default
    # transformers gives every such model; compared with GPT-2 in test_default_is_sdpa_like_a_native_model), and
    # eager is asked for by name.
    assert attention_classes(load(tiny_dir, None)) == {"BarkSdpaSelfAttention": 6}
    assert attention_classes(load(tiny_dir, "eager")) == {"BarkSelfAttention": 6}


def test_set_attn_implementation_switches_in_place_both_ways(tiny_dir, eager):
    model = load(tiny_dir, "eager")  # by name: the default is SDPA
    weights = {name: p.data_ptr() for name, p in model.named_parameters()}
    ids, mask = left_padded("semantic", model, [0, 3], 12, seed=1)
    expected = run(eager, "semantic", ids, attention_mask=mask).logits

    model.set_attn_implementation("sdpa")
    assert attention_classes(model) == {"BarkSdpaSelfAttention": 6}
    assert model.semantic.config._attn_implementation == "sdpa"
    torch.testing.assert_close(run(model, "semantic", ids, attention_mask=mask).logits, expected, atol=ATOL, rtol=0)

    model.set_attn_implementation("eager")
    assert attention_classes(model) == {"BarkSelfAttention": 6}
    assert model.semantic.config._attn_implementation == "eager"
    assert torch.equal(run(model, "semantic", ids, attention_mask=mask).logits, expected)

    # Per sub-model, as transformers' dict form; the weights never moved.
    model.set_attn_implementation({"semantic_config": "sdpa"})
    assert attention_classes(model.semantic) == {"BarkSdpaSelfAttention": 2}
    assert attention_classes(model.coarse_acoustics) == {"BarkSelfAttention": 2}
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == weights


def test_switching_to_an_unknown_implementation_is_refused_in_one_line(tiny_dir):
    model = load(tiny_dir, "eager")
    # transformers' own check and wording (Bark does not support flex_attention), as loading with the name gets;
    # compared with a native model in test_unknown_names_fail_in_transformers_check_like_a_native_model.
    with pytest.raises(
        ValueError, match=r"^BarkModel does not support an attention implementation through torch's flex"
    ):
        model.set_attn_implementation("flex_attention")
    assert attention_classes(model) == {"BarkSelfAttention": 6}
    assert model.semantic.config._attn_implementation == "eager"


def test_a_name_transformers_accepts_but_bark_cannot_switch_to_in_place_is_refused(tiny_dir, monkeypatch):
    # flash_attention_2 passes transformers' check only where flash-attn and a GPU are; stand in for that check.
    monkeypatch.setattr(sdpa, "_check_name", lambda model, name: None)
    model = load(tiny_dir, "eager")
    with pytest.raises(ValueError, match=r"^a loaded Bark model switches between eager and sdpa only, not 'flash"):
        model.set_attn_implementation({"semantic_config": "flash_attention_2"})
    assert model.semantic.config._attn_implementation == "eager"
    assert attention_classes(model) == {"BarkSelfAttention": 6}


def test_unregister_makes_bark_eager_only_again(tiny_dir):
    sdpa.unregister()
    try:
        assert not sdpa.is_registered()
        assert attention_classes(load(tiny_dir, None)) == {"BarkSelfAttention": 6}
        with pytest.raises(ValueError, match="does not support an attention implementation through torch.nn.func"):
            load(tiny_dir, "sdpa")
    finally:
        sdpa.register()
    assert attention_classes(load(tiny_dir, None)) == {"BarkSdpaSelfAttention": 6}


@pytest.mark.skipif(TRANSFORMERS_5, reason=f"transformers {transformers.__version__} has no head_mask in Bark")
def test_head_mask_is_refused_in_one_line(fast):
    ids = torch.randint(0, 100, (1, 4))
    head_mask = torch.ones(fast.semantic.config.num_layers, fast.semantic.config.num_heads)
    with pytest.raises(ValueError, match=r"^barkbench's SDPA attention does not support head_mask; load") as refused:
        run(fast, "semantic", ids, head_mask=head_mask)
    assert "\n" not in str(refused.value)


# -- transformers' conventions, against a model that supports SDPA natively ---------------------------------------
# The same calls on a tiny GPT-2 (SDPA in transformers itself: the default when nothing is asked for) and on Bark
# after register(). Where transformers 4.48 behaves differently from 5.x, the native model says what 4.48 does.


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 saved with save_pretrained, loaded like the tiny Bark: nothing is downloaded."""
    path = tmp_path_factory.mktemp("gpt2")
    config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def load_native(path: Path, attention: str | None, **kwargs: Any) -> GPT2LMHeadModel:
    if attention is not None:
        kwargs["attn_implementation"] = attention
    return GPT2LMHeadModel.from_pretrained(path, **kwargs).eval()


def refusal(call: Callable[[], object], *class_names: str) -> tuple[type[BaseException], str]:
    """The type and message ``call`` raises, with the model class names in it replaced by <model>."""
    with pytest.raises(Exception) as raised:
        call()
    message = str(raised.value)
    for name in class_names:
        message = re.sub(rf"\b{name}\b", "<model>", message)
    return type(raised.value), message


def test_default_is_sdpa_like_a_native_model(native_dir, tiny_dir):
    native, bark = load_native(native_dir, None), load(tiny_dir, None)
    assert native.config._attn_implementation == bark.config._attn_implementation == "sdpa"
    for stage in STAGES:
        assert getattr(bark, stage).config._attn_implementation == "sdpa"
    assert attention_classes(bark) == {"BarkSdpaSelfAttention": 6}
    # The codec has no attention and does not support SDPA: transformers falls back to eager for it, as for any
    # model without SDPA when nothing is asked for.
    assert bark.codec_model.config._attn_implementation == "eager"
    # Eager by name, for both.
    native, bark = load_native(native_dir, "eager"), load(tiny_dir, "eager")
    assert native.config._attn_implementation == bark.semantic.config._attn_implementation == "eager"
    assert attention_classes(bark) == {"BarkSelfAttention": 6}


@pytest.mark.parametrize("name", ["foo", "flex_attention"])
def test_unknown_names_fail_in_transformers_check_like_a_native_model(native_dir, tiny_dir, name):
    native_load = refusal(lambda: load_native(native_dir, name), "GPT2LMHeadModel")
    bark_load = refusal(lambda: load(tiny_dir, name), "BarkModel")
    assert bark_load == native_load
    assert native_load[0] is ValueError and "\n" not in native_load[1]
    if name == "foo":
        assert native_load[1].startswith('Specified `attn_implementation="foo"` is not supported.')

    bark = load(tiny_dir, "eager")
    bark_switch = refusal(lambda: bark.set_attn_implementation(name), "BarkModel")
    sub_switch = refusal(lambda: bark.semantic.set_attn_implementation(name), "BarkSemanticModel")
    if TRANSFORMERS_5:
        native = load_native(native_dir, None)
        assert bark_switch == sub_switch == refusal(lambda: native.set_attn_implementation(name), "GPT2LMHeadModel")
    else:
        # transformers 4.48 has no set_attn_implementation: its only check is the one loading runs, so Bark's switch
        # (barkbench's addition on 4.48) refuses a name exactly as loading with it does.
        assert bark_switch == sub_switch == native_load
    assert attention_classes(bark) == {"BarkSelfAttention": 6}


@pytest.mark.skipif(not TRANSFORMERS_5, reason="transformers 4.48 models have no set_attn_implementation")
def test_switching_like_a_native_model(native_dir, tiny_dir):
    native, bark = load_native(native_dir, None), load(tiny_dir, None)
    seen: dict[str, list[str]] = {"native": [], "bark": []}
    for name in ("eager", "sdpa", "eager", "sdpa"):
        native.set_attn_implementation(name)
        bark.set_attn_implementation(name)
        seen["native"].append(native.config._attn_implementation)
        seen["bark"].append(bark.semantic.config._attn_implementation)
        expected = "BarkSdpaSelfAttention" if name == "sdpa" else "BarkSelfAttention"
        assert attention_classes(bark) == {expected: 6}
    assert seen["bark"] == seen["native"] == ["eager", "sdpa", "eager", "sdpa"]


@pytest.mark.skipif(not TRANSFORMERS_5, reason="transformers 4.48 accepts config.output_attentions on SDPA models")
def test_config_output_attentions_is_refused_on_a_non_eager_model_like_a_native_model(native_dir, tiny_dir):
    native, bark = load_native(native_dir, None), load(tiny_dir, None)
    configs = {"native": native.config, "bark": bark.config, "bark.semantic": bark.semantic.config}
    refusals = {
        key: refusal(lambda config=config: setattr(config, "output_attentions", True))
        for key, config in configs.items()
    }
    assert refusals["bark"] == refusals["bark.semantic"] == refusals["native"]
    assert refusals["native"] == (
        ValueError,
        "The `output_attentions` attribute is not supported when using the `attn_implementation` set to sdpa. "
        "Please set it to 'eager' instead.",
    )
    # Accepted once the model is eager, by name at load or by a switch.
    for model in (load_native(native_dir, "eager"), load(tiny_dir, "eager")):
        model.config.output_attentions = True
    bark.set_attn_implementation("eager")
    bark.semantic.config.output_attentions = True
    # Asked for at load with no attn_implementation, it makes transformers pick eager for both.
    asked = load_native(native_dir, None, output_attentions=True), load(tiny_dir, None, output_attentions=True)
    assert [m.config._attn_implementation for m in asked] == ["eager", "eager"]
    assert attention_classes(asked[1]) == {"BarkSelfAttention": 6}
    # Asked for at load with sdpa: the same refusal (inside huggingface_hub's strict-dataclass validation error).
    native_load = refusal(lambda: load_native(native_dir, "sdpa", output_attentions=True))
    assert refusal(lambda: load(tiny_dir, "sdpa", output_attentions=True)) == native_load
    assert refusals["native"][1] in native_load[1]


@pytest.mark.skipif(TRANSFORMERS_5, reason="transformers 5 refuses config.output_attentions on SDPA models")
def test_config_output_attentions_on_4_48_gives_eager_weights_like_a_native_model(native_dir, tiny_dir, eager):
    # transformers 4.48 accepts the flag on an SDPA model; its own SDPA models (GPT2Attention.forward) then run each
    # call the eager way and return real weights. Bark does the same.
    native, bark = load_native(native_dir, None), load(tiny_dir, None)
    native.config.output_attentions = True
    bark.semantic.config.output_attentions = True
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        native_attentions = native(ids).attentions
        bark_out = run(bark, "semantic", ids)
        expected = run(eager, "semantic", ids, output_attentions=True)
    assert native.config._attn_implementation == bark.semantic.config._attn_implementation == "sdpa"
    assert len(native_attentions) == 1 and native_attentions[0] is not None
    assert len(bark_out.attentions) == 2
    for got, want in zip(bark_out.attentions, expected.attentions, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # Loading with output_attentions=True keeps SDPA on 4.48, for both, asked for by name or not.
    for attention in (None, "sdpa"):
        asked = (
            load_native(native_dir, attention, output_attentions=True),
            load(tiny_dir, attention, output_attentions=True),
        )
        assert [m.config._attn_implementation for m in asked] == ["sdpa", "sdpa"]
        assert asked[1].semantic.config._attn_implementation == "sdpa"


# -- exactness: padding, cache, weights ---------------------------------------------------------------------------

PADS = st.lists(st.integers(0, 40), min_size=1, max_size=3).map(lambda pads: [0, *pads])


@pytest.mark.parametrize("stage", STAGES)
@settings(max_examples=2 * EXAMPLES)
@given(pads=PADS, length=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
@example(pads=[0, 5, 40], length=12, seed=0)  # one sample padded past its length: every row fully masked
def test_left_padded_batch_forward_matches_eager(eager, fast, stage, pads, length, seed):
    ids, mask = left_padded(stage, eager, pads, length, seed)
    expected = run(eager, stage, ids, attention_mask=mask).logits
    actual = run(fast, stage, ids, attention_mask=mask).logits
    # Every position, padded ones included: eager keeps fully masked rows finite, so must SDPA.
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("stage", CAUSAL)
@settings(max_examples=EXAMPLES)
@given(pads=PADS, length=st.integers(2, 24), seed=st.integers(0, 2**31 - 1))
def test_left_padded_batch_through_sub_model_generate_matches_eager(eager, fast, stage, pads, length, seed):
    ids, mask = left_padded(stage, eager, pads, length, seed)
    kwargs = {
        "attention_mask": mask,
        "max_new_tokens": 4,
        "do_sample": False,
        "output_scores": True,
        "return_dict_in_generate": True,
        "pad_token_id": 0,
        "eos_token_id": None,
    }

    def generate(model: BarkModel) -> Any:
        with torch.inference_mode():
            # GenerationMixin's own loop (the Bark stages' generate wraps it with their prompts).
            return GenerationMixin.generate(getattr(model, stage), ids, **kwargs)

    expected, actual = generate(eager), generate(fast)
    assert torch.equal(actual.sequences, expected.sequences)
    for got, want in zip(actual.scores, expected.scores, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def cached_logits(model: BarkModel, stage: str, ids: torch.Tensor, split: int) -> torch.Tensor:
    """Logits of ``ids[:, split:]`` computed over a KV cache holding ``ids[:, :split]``: one multi-token query."""
    prefix = run(model, stage, ids[:, :split], use_cache=True)
    cache = getattr(prefix, "cache", None) or prefix.past_key_values
    return run(model, stage, ids[:, split:], use_cache=True, **{CACHE_KWARG: cache}).logits


@pytest.mark.parametrize("stage", CAUSAL)
@settings(max_examples=2 * EXAMPLES)
@given(batch=st.integers(1, 3), length=st.integers(3, 60), data=st.data())
def test_multi_token_query_over_a_cache_matches_the_uncached_sequence(eager, fast, stage, batch, length, data):
    split = data.draw(st.integers(1, length - 2), label="cached prefix")  # leaves >= 2 new tokens
    ids, _ = left_padded(stage, eager, [0] * batch, length, seed=length)
    expected = run(eager, stage, ids).logits[:, split:]
    torch.testing.assert_close(cached_logits(fast, stage, ids, split), expected, atol=ATOL, rtol=0)
    # Eager itself agrees, so the reference is the sequence's, not an artefact of the cache.
    torch.testing.assert_close(cached_logits(eager, stage, ids, split), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("stage", STAGES)
def test_output_attentions_through_forward_gives_eager_weights(eager, fast, stage):
    ids, mask = left_padded(stage, eager, [0, 4], 10, seed=3)
    sdpa_modules = [m for m in getattr(fast, stage).modules() if isinstance(m, sdpa.BarkSdpaSelfAttention)]
    attributes = [{key: id(value) for key, value in vars(m).items()} for m in sdpa_modules]
    expected = run(eager, stage, ids, attention_mask=mask, output_attentions=True)
    actual = run(fast, stage, ids, attention_mask=mask, output_attentions=True)
    assert len(actual.attentions) == len(expected.attentions) == 2
    for got, want in zip(actual.attentions, expected.attentions, strict=True):
        assert got is not None and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(actual.logits, expected.logits, atol=ATOL, rtol=0)
    # Only that call ran eager: the modules are still SDPA and the call left nothing on them (the choice is made
    # per call, from its arguments), so the next call takes the SDPA path.
    assert attention_classes(getattr(fast, stage)) == {"BarkSdpaSelfAttention": 2}
    assert [{key: id(value) for key, value in vars(m).items()} for m in sdpa_modules] == attributes


def test_concurrent_calls_on_one_module_each_take_their_own_path(monkeypatch):
    """Two threads call one module, one asking for attention weights and one not; the weights call is held inside
    its eager path until the other call has finished, so a choice kept on the module would be seen by the other."""
    torch.manual_seed(0)
    reference = attention_module(is_causal=True)  # eager
    module = copy.deepcopy(reference)
    module.__class__ = sdpa.BarkSdpaSelfAttention  # as set_attn_implementation switches one: same weights
    hidden = torch.randn(2, 7, 16)
    with torch.inference_mode():
        expected = reference(hidden, output_attentions=True)
    paths: dict[str, list[str]] = {"weights": [], "plain": []}
    weights_inside, plain_done = threading.Event(), threading.Event()
    eager_attn, sdpa_attention = modeling_bark.BarkSelfAttention._attn, sdpa.sdpa_attention

    def recording_eager(self: Any, *args: Any, **kwargs: Any) -> Any:
        paths[threading.current_thread().name].append("eager")
        if threading.current_thread().name == "weights":
            weights_inside.set()
            assert plain_done.wait(timeout=60)
        return eager_attn(self, *args, **kwargs)

    def recording_sdpa(*args: Any, **kwargs: Any) -> Any:
        paths[threading.current_thread().name].append("sdpa")
        return sdpa_attention(*args, **kwargs)

    monkeypatch.setattr(modeling_bark.BarkSelfAttention, "_attn", recording_eager)
    monkeypatch.setattr(sdpa, "sdpa_attention", recording_sdpa)
    results: dict[str, Any] = {}

    def call(name: str, output_attentions: bool, done: threading.Event | None) -> None:
        try:
            with torch.inference_mode():
                results[name] = module(hidden, output_attentions=output_attentions)
        except BaseException as exc:  # handed to the main thread
            results[name] = exc
        finally:
            if done is not None:
                done.set()

    weights = threading.Thread(target=call, args=("weights", True, None), name="weights", daemon=True)
    plain = threading.Thread(target=call, args=("plain", False, plain_done), name="plain", daemon=True)
    weights.start()
    assert weights_inside.wait(timeout=60)
    plain.start()
    for thread in (plain, weights):
        thread.join(timeout=120)
    assert paths == {"weights": ["eager"], "plain": ["sdpa"]}
    # The last element is the weights on both stacks (4.48 puts the cache in the middle, None without use_cache).
    for name in ("weights", "plain"):
        assert not isinstance(results[name], BaseException), results[name]
        torch.testing.assert_close(results[name][0], expected[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(results["weights"][-1], expected[-1], atol=ATOL, rtol=0)
    assert results["plain"][-1] is None


def test_output_attentions_through_generate(eager, fast):
    ids, mask = left_padded("semantic", eager, [0, 2], 8, seed=4)
    kwargs = {
        "attention_mask": mask,
        "max_new_tokens": 3,
        "do_sample": False,
        "output_attentions": True,
        "return_dict_in_generate": True,
        "pad_token_id": 0,
        "eos_token_id": None,
    }
    with torch.inference_mode():
        expected = GenerationMixin.generate(eager.semantic, ids, **kwargs)
        actual = GenerationMixin.generate(fast.semantic, ids, **kwargs)
    assert torch.equal(actual.sequences, expected.sequences)
    assert len(actual.attentions) == len(expected.attentions) == 3  # one tuple of layers per step
    for step_got, step_want in zip(actual.attentions, expected.attentions, strict=True):
        for got, want in zip(step_got, step_want, strict=True):
            assert got is not None
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


# -- half precision -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def half(request: pytest.FixtureRequest, tiny_dir: Path) -> BarkModel:
    return load(tiny_dir, "sdpa", request.param)


@pytest.mark.parametrize("stage", STAGES)
@settings(max_examples=EXAMPLES)
@given(pads=PADS, length=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_half_precision_left_padded_batch_stays_within_the_bound_of_fp32_eager(eager, half, stage, pads, length, seed):
    dtype = half.semantic.input_embeds_layer.weight.dtype
    ids, mask = left_padded(stage, eager, pads, length, seed)
    reference = run(eager, stage, ids, attention_mask=mask).logits
    logits = run(half, stage, ids, attention_mask=mask).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    bound = LOSSY_EPS_MULTIPLE[dtype] * torch.finfo(dtype).eps * reference.abs().max().item()
    assert max_error(logits, reference) <= bound


# -- the attention function itself --------------------------------------------------------------------------------


def attention_module(is_causal: bool, dropout: float = 0.0) -> modeling_bark.BarkSelfAttention:
    config = transformers.BarkSemanticConfig(
        num_layers=1, num_heads=2, hidden_size=16, block_size=64, bias=False, dropout=dropout
    )
    return modeling_bark.BarkSelfAttention(config, is_causal=is_causal).eval()


@pytest.fixture()
def sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every F.scaled_dot_product_attention call barkbench.sdpa makes."""
    calls: list[dict[str, Any]] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        calls.append({"attn_mask": attn_mask, "is_causal": is_causal, "dropout_p": dropout_p})
        return real(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(sdpa.F, "scaled_dot_product_attention", spy)
    return calls


@pytest.mark.parametrize(
    ("is_causal", "q_len", "k_len", "mask_kind", "expected_call"),
    [
        (True, 9, 9, None, {"attn_mask": None, "is_causal": True}),
        (True, 1, 9, None, {"attn_mask": None, "is_causal": False}),
        (False, 9, 9, None, {"attn_mask": None, "is_causal": False}),
        # A mask that masks nothing is dropped: the fast path survives an all-ones attention_mask.
        (True, 9, 9, "float-zeros", {"attn_mask": None, "is_causal": True}),
        (True, 1, 9, "bool-ones", {"attn_mask": None, "is_causal": False}),
    ],
)
def test_the_fast_path_passes_no_mask(sdpa_calls, is_causal, q_len, k_len, mask_kind, expected_call):
    module = attention_module(is_causal)
    q = torch.randn(2, 2, q_len, 8)
    k, v = torch.randn(2, 2, k_len, 8), torch.randn(2, 2, k_len, 8)
    mask = {
        None: None,
        "float-zeros": torch.zeros(2, 1, 1, k_len),
        "bool-ones": torch.ones(2, 1, q_len, k_len, dtype=torch.bool),
    }
    expected, _ = module._attn(q, k, v, None)
    got = sdpa.sdpa_attention(module, q, k, v, mask[mask_kind])
    assert [{key: call[key] for key in ("attn_mask", "is_causal")} for call in sdpa_calls] == [expected_call]
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_additive_and_boolean_masks_give_eager_including_fully_masked_rows(is_causal, dtype):
    module = attention_module(is_causal)
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 8) * 4 for _ in range(3))  # scores past fp16's absorption (|s| >= 16)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    boolean = keep[:, None, None, :].expand(3, 1, 6, 6)
    # fp32 eager is the reference for every dtype; each dtype gets the mask its model would build (0 / its min).
    expected, _ = module._attn(q, k, v, sdpa.additive_mask(boolean, torch.float32))
    assert torch.isfinite(expected).all()
    for mask in (sdpa.additive_mask(boolean, dtype), boolean):
        got = sdpa.sdpa_attention(module, q.to(dtype), k.to(dtype), v.to(dtype), mask)
        assert torch.isfinite(got).all()
        bound = ATOL if dtype == torch.float32 else 4 * torch.finfo(dtype).eps * expected.abs().max().item()
        assert max_error(got, expected) <= bound


def test_dropout_only_in_training():
    module = attention_module(True, dropout=0.5)
    q, k, v = (torch.randn(1, 2, 7, 8) for _ in range(3))
    eager_out, _ = module._attn(q, k, v)
    torch.testing.assert_close(sdpa.sdpa_attention(module, q, k, v), eager_out, atol=ATOL, rtol=0)
    module.train()
    torch.manual_seed(0)
    assert max_error(sdpa.sdpa_attention(module, q, k, v), eager_out) > 1e-2
