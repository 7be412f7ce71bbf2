"""Lossless variants are lossless, lossy ones stay close, and a batch is its samples run one by one.

Tolerances, measured on the tiny model (CPU, torch 2.13) and chosen to fail on a real bug, not on rounding:

- Fused attention (sdpa, bettertransformer) vs eager in fp32, sub-model logits: ``atol = 1e-5``. Measured max
  difference 4.2e-7 (fp32 rounding of a different summation order) on logits of scale ~0.16 std / ~1 max; a wrong
  causal mask or scale moves them by ~1e-1.
- Same comparison, ``generate`` with the same seed: semantic, coarse and fine tokens ``torch.equal``. Sampling
  draws the same uniforms, and a 1e-7 change in a probability flips a draw with probability ~1e-7 per token.
  Audio: ``atol = 1e-6`` — the codec is not touched by any attention variant and decodes identical codes, so only
  nondeterministic accelerator kernels could make a difference.
- fp16 / bf16 vs fp32 logits: max |difference| <= k × eps(dtype) × max |fp32 logits|, with k = 5 for fp16
  (eps 9.8e-4; measured 1.1e-3 relative) and k = 4 for bf16 (eps 7.8e-3; measured 8.4e-3 relative). A dtype
  path that silently stays fp32 is caught by the dtype assertions, one that overflows or casts wrongly by the bound.
- Batch vs single runs (greedy decoding, as transformers' own Bark batching test): tokens ``torch.equal`` per
  sample, audio within transformers' ``atol = 2e-3`` (measured: identical).

A freshly built EnCodec has all-zero codebooks (EncodecEuclideanCodebook initializes its ``embed`` buffer to
zeros) and would decode every token sequence to the same audio; ``sources`` gives the random models seeded
codebooks, and ``test_the_audio_comparison_depends_on_the_tokens`` guards that the audio checks mean something.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
from transformers import set_seed

from barkbench.measure import device as device_mod
from barkbench.measure import sources
from barkbench.measure.optimize import VariantUnsupported, prepare_model, unsupported_reason
from barkbench.measure.optimize.precision import torch_dtype
from barkbench.measure.workload import MAX_TEXT_TOKENS, PROMPTS, Workload, prepare_inputs
from barkbench.variants import Variant

pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Short runs: equivalence does not depend on length, and every example is several generate calls.
SEMANTIC_TOKENS = 8
LOGITS_ATOL = 1e-5
AUDIO_ATOL = 1e-6
#: transformers' tests/models/bark test_generate_batching tolerance.
BATCH_AUDIO_ATOL = 2e-3
LOSSY_EPS_MULTIPLE = {"fp16": 5, "bf16": 4}
FUSED = ("sdpa", "bettertransformer", "flash_attention_2")
#: BarkModel's sub-model attributes → the name of their output in ``Generation``.
STAGES = {"semantic": "semantic", "coarse_acoustics": "coarse", "fine_acoustics": "fine"}

#: Words the tiny model's vocabulary knows (it was built from the blog's prompts), so prompts tokenize to ids.
WORDS = sorted({word for prompt in PROMPTS for word in prompt.split()})
_words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)
_medium = st.lists(st.sampled_from(WORDS), min_size=5, max_size=40)
# Every word is at least one token, most two or three: past Bark's 256-token window, which truncates.
_long = st.lists(st.sampled_from(WORDS), min_size=200, max_size=320)
#: Padding-heavy short prompts, ordinary ones, and ones at/over the 256-token limit.
PROMPT = st.one_of(_words, _medium, _long).map(" ".join)
BATCH = st.lists(PROMPT, min_size=1, max_size=4)
SEED = st.integers(min_value=0, max_value=2**32 - 1)
LONG_PROMPT = " ".join(WORDS * 20)

#: The profile's example count (tests/conftest.py); cheap forward-only tests run more examples than that.
EXAMPLES = settings().max_examples


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # The tiny model's ops are too small to gain from intra-op threads; on a busy 2-core runner the threads only
    # wait on each other (measured: one generate 2.1 s with 2 threads, 0.3 s with 1). Equivalence compares
    # variants under the same setting, so the count does not matter to the assertions.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def device_type(pytestconfig: pytest.Config) -> str:
    chosen = pytestconfig.getoption("bark_device", "auto")
    return device_mod.device_type() if chosen in (None, "auto") else chosen


@dataclass(frozen=True)
class Loaded:
    variant: Variant
    model: torch.nn.Module

    def __repr__(self) -> str:
        # Hypothesis prints every argument of a failing example; the variant says it all.
        return f"<{self.variant.id} tiny model>"


@pytest.fixture(scope="module")
def load(tiny_source: sources.ModelSource, device_type: str) -> Callable[[Variant], Loaded]:
    """Load each variant of the tiny model once for the module; skip (with the reason) what cannot run here."""
    cache: dict[Variant, Loaded] = {}

    def get(variant: Variant) -> Loaded:
        reason = unsupported_reason(variant, device_type)
        if reason:
            pytest.skip(f"{variant.id}: {reason}")
        if variant not in cache:
            try:
                model = prepare_model(tiny_source, variant, device_type).model
            except VariantUnsupported as exc:
                pytest.skip(f"{variant.id}: {exc}")
            cache[variant] = Loaded(variant, model)
        return cache[variant]

    return get


@pytest.fixture(scope="module")
def processor(tiny_source: sources.ModelSource):
    return sources.load_processor(tiny_source)


@pytest.fixture(scope="module")
def eager(load):
    return load(Variant())


@pytest.fixture(scope="module", params=FUSED)
def fused(request: pytest.FixtureRequest, load):
    return load(Variant(attention=request.param))


@dataclass
class Generation:
    semantic: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    audio: torch.Tensor
    lengths: list[int]


@contextlib.contextmanager
def capture_stages(model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record what each sub-model's ``generate`` returns during ``BarkModel.generate``, changing nothing: the
    wrapper is an instance attribute that calls the class method and is removed afterwards."""
    captured: dict[str, torch.Tensor] = {}
    for stage in STAGES:
        sub = getattr(model, stage)
        original = sub.generate

        def observe(*args, _original=original, _stage=stage, **kwargs):
            out = _original(*args, **kwargs)
            # The coarse stage returns (codes, lengths) when output lengths are asked for.
            captured[STAGES[_stage]] = out[0] if isinstance(out, tuple) else out
            return out

        sub.generate = observe
    try:
        yield captured
    finally:
        for stage in STAGES:
            vars(getattr(model, stage)).pop("generate", None)


def run_generate(loaded: Loaded, processor, prompts: list[str], seed: int, **overrides) -> Generation:
    model = loaded.model
    device = next(model.parameters()).device
    # The harness's own input path (padding and truncation to Bark's 256-token window included).
    workload = Workload(batch_size=len(prompts), prompts=tuple(prompts), semantic_max_new_tokens=SEMANTIC_TOKENS)
    inputs, _ = prepare_inputs(processor, workload, device)
    kwargs = {**workload.call_kwargs(), **overrides}
    set_seed(seed)
    with torch.inference_mode(), capture_stages(model) as stages:
        audio, lengths = model.generate(**inputs, **kwargs, return_output_lengths=True)
    return Generation(
        stages["semantic"].cpu(),
        stages["coarse"].cpu(),
        stages["fine"].cpu(),
        audio.float().cpu(),
        [int(n) for n in lengths],
    )


def assert_same_tokens(actual: Generation, expected: Generation) -> None:
    for stage in ("semantic", "coarse", "fine"):
        a, e = getattr(actual, stage), getattr(expected, stage)
        assert a.shape == e.shape, stage
        mismatched = int((a != e).sum())
        assert mismatched == 0, f"{stage}: {mismatched} of {e.numel()} tokens differ"


# -- generate: fused attention == eager --------------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(prompts=BATCH, seed=SEED)
@example(prompts=["wow", LONG_PROMPT, PROMPTS[0]], seed=0)  # padding-heavy, truncated and ordinary in one batch
def test_fused_attention_generates_what_eager_generates(eager, fused, processor, prompts, seed):
    expected = run_generate(eager, processor, prompts, seed)
    actual = run_generate(fused, processor, prompts, seed)
    assert actual.lengths == expected.lengths
    assert_same_tokens(actual, expected)
    torch.testing.assert_close(actual.audio, expected.audio, atol=AUDIO_ATOL, rtol=0)


def test_the_long_example_reaches_the_256_token_window(processor):
    # The @example above is only the limit case if its prompt really is longer than Bark's text window.
    assert len(processor.tokenizer(LONG_PROMPT, add_special_tokens=False)["input_ids"]) > MAX_TEXT_TOKENS
    inputs, warnings = prepare_inputs(processor, Workload(batch_size=2, prompts=("wow", LONG_PROMPT)), "cpu")
    assert inputs["input_ids"].shape == (2, MAX_TEXT_TOKENS)
    assert len(warnings) == 1 and "prompt 1 has" in warnings[0]


def test_the_audio_comparison_depends_on_the_tokens(eager, processor):
    # Guards the random models' codebooks (sources._fill_codebooks): different tokens must give different
    # audio, or equal audio would prove nothing.
    a = run_generate(eager, processor, [PROMPTS[0]], seed=0)
    b = run_generate(eager, processor, [PROMPTS[0]], seed=1)
    assert not torch.equal(a.semantic, b.semantic)
    assert (a.audio - b.audio).abs().max() > 100 * AUDIO_ATOL


# -- forward logits of each sub-model ----------------------------------------------------------------------------


def sub_model_logits(loaded: Loaded, stage: str, ids: torch.Tensor, codebook: int) -> torch.Tensor:
    sub = getattr(loaded.model, stage)
    ids = ids.to(next(sub.parameters()).device)
    with torch.inference_mode():
        # The fine model predicts one codebook from the ones before it: its first argument names which.
        out = sub(codebook, input_ids=ids) if stage == "fine_acoustics" else sub(input_ids=ids)
    return out.logits


def random_ids(loaded: Loaded, stage: str, batch: int, length: int, seed: int) -> torch.Tensor:
    config = getattr(loaded.model, stage).config
    shape = (batch, length, config.n_codes_total) if stage == "fine_acoustics" else (batch, length)
    return torch.randint(0, config.input_vocab_size, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("stage", STAGES)
@settings(max_examples=5 * EXAMPLES)
@given(
    batch=st.integers(1, 4),
    length=st.integers(1, 300),
    codebook=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_fused_attention_logits_match_eager(eager, fused, stage, batch, length, codebook, seed):
    ids = random_ids(eager, stage, batch, length, seed)
    expected = sub_model_logits(eager, stage, ids, codebook)
    actual = sub_model_logits(fused, stage, ids, codebook)
    torch.testing.assert_close(actual, expected, atol=LOGITS_ATOL, rtol=0)


# -- lossy dtypes stay within a stated bound of fp32 -------------------------------------------------------------

LOSSY = [Variant(dtype="fp16"), Variant(dtype="bf16"), Variant(attention="flash_attention_2", dtype="fp16")]


@pytest.mark.parametrize("variant", LOSSY, ids=[v.id for v in LOSSY])
@pytest.mark.parametrize("stage", STAGES)
@settings(max_examples=2 * EXAMPLES)
@given(batch=st.integers(1, 4), length=st.integers(1, 300), codebook=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_half_precision_logits_stay_within_the_bound_of_fp32(
    load, eager, variant, stage, batch, length, codebook, seed
):
    lossy = load(variant)
    dtype = torch_dtype(variant.dtype)
    sub = getattr(lossy.model, stage)
    # The dtype path really ran: every floating parameter of the sub-model is in the variant's dtype.
    assert {p.dtype for p in sub.parameters() if p.is_floating_point()} == {dtype}
    ids = random_ids(eager, stage, batch, length, seed)
    reference = sub_model_logits(eager, stage, ids, codebook).float()
    logits = sub_model_logits(lossy, stage, ids, codebook)
    assert logits.dtype == dtype
    assert torch.isfinite(logits).all()
    bound = LOSSY_EPS_MULTIPLE[variant.dtype] * torch.finfo(dtype).eps * reference.abs().max().item()
    worst = (logits.float() - reference).abs().max().item()
    assert worst <= bound, f"{variant.id} {stage}: max |logits - fp32| = {worst:.3g} > bound {bound:.3g}"


# -- a batch is its samples run one by one -----------------------------------------------------------------------

#: Greedy at every stage, as transformers' own batching test: sampling draws from one RNG stream for the whole
#: batch, so a sampled batch cannot reproduce its samples' single runs (see the last test).
GREEDY = {"do_sample": False, "coarse_temperature": None, "fine_temperature": None}


@settings(max_examples=max(1, EXAMPLES // 2))
@given(prompts=st.lists(PROMPT, min_size=2, max_size=4, unique=True))
@example(prompts=["wow", PROMPTS[0], LONG_PROMPT])
def test_each_sample_of_a_batch_matches_its_single_run(eager, processor, prompts):
    batch = run_generate(eager, processor, prompts, seed=0, **GREEDY)
    for i, prompt in enumerate(prompts):
        single = run_generate(eager, processor, [prompt], seed=0, **GREEDY)
        assert batch.lengths[i] == single.lengths[0], f"sample {i}: output length differs"
        assert torch.equal(batch.semantic[i], single.semantic[0]), f"sample {i}: semantic tokens differ"
        coarse_len = single.coarse.shape[-1]
        assert torch.equal(batch.coarse[i, :coarse_len], single.coarse[0]), f"sample {i}: coarse tokens differ"
        fine_len = single.fine.shape[-1]
        assert torch.equal(batch.fine[i, :, :fine_len], single.fine[0]), f"sample {i}: fine tokens differ"
        torch.testing.assert_close(
            batch.audio[i, : batch.lengths[i]], single.audio[0, : single.lengths[0]], atol=BATCH_AUDIO_ATOL, rtol=0
        )


def test_a_sampled_batch_is_not_its_single_runs(eager, processor):
    """Where and why Bark's batching differs: with do_sample (the blog's settings) every stage samples all rows
    of the batch from one RNG stream, so from the first sampled semantic token on, sample i of a batch is not
    what the same prompt gives alone with the same seed. Benchmarks compare batch sizes by speed, never by
    output; this test fails the day Bark starts drawing per-sample."""
    prompts = [PROMPTS[0], PROMPTS[1]]
    batch = run_generate(eager, processor, prompts, seed=0)
    single = run_generate(eager, processor, [prompts[1]], seed=0)
    assert not torch.equal(batch.semantic[1], single.semantic[0])
