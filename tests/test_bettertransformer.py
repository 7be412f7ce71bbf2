"""optimum's BetterTransformer: what it does on the legacy stack, and how it is refused on the current one.

On the legacy stack (transformers 4.48 + optimum 1.23-1.27) these tests show that BetterTransformer changes
nothing but speed in fp32 (same tokens, same audio as eager, same seed), that barkbench's own ``sdpa`` produces
what BetterTransformer produces (which is what makes ``sdpa`` a faithful stand-in on the current stack), and
that both ways of applying it — ``BetterTransformer.transform`` and the blog's ``model.to_bettertransformer()``
— run and say which one ran. On the current stack they check that asking for it is refused with the versions
needed and a pointer to ``sdpa``. ``tests/test_equivalence.py`` covers ``sdpa`` against eager on any stack.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import transformers

from barkbench.measure import optimize, sources
from barkbench.measure.optimize import attention
from barkbench.measure.workload import Workload, prepare_inputs, text_token_counts
from barkbench.variants import PRESETS, Variant

try:
    attention.optimum_bettertransformer()
    MISSING: str | None = None
except attention.AttentionUnavailable as exc:
    MISSING = str(exc)

legacy_only = pytest.mark.skipif(
    MISSING is not None, reason=f"needs optimum's BetterTransformer (the legacy stack): {MISSING}"
)
current_only = pytest.mark.skipif(
    MISSING is None,
    reason=f"optimum's BetterTransformer is installed (transformers {transformers.__version__}, the legacy "
    "stack), so the current stack's refusal cannot be observed here",
)

#: Semantic tokens per call: enough for every stage to run its sampling loop, small enough to stay fast.
TOKENS = 8
STAGES = ("semantic", "coarse_acoustics", "fine_acoustics")
BT_LAYER = "BarkAttentionLayerBetterTransformer"
#: sdpa vs BetterTransformer audio: both call F.scaled_dot_product_attention with the same arguments, so the
#: result has been bit-identical; the tolerance only leaves room for a different kernel's summation order.
SDPA_AUDIO_ATOL = 1e-6


@dataclass
class Generation:
    tokens: dict[str, torch.Tensor]
    audio: torch.Tensor
    lengths: list[int]


def generate_recorded(model: torch.nn.Module, processor: object, batch_size: int) -> Generation:
    """The harness's seeded call (``Workload``), keeping each stage's generated tokens as well as the audio."""
    tokens: dict[str, torch.Tensor] = {}
    for stage in STAGES:
        sub = getattr(model, stage)

        def recording(*args, _original=sub.generate, _stage=stage, **kwargs):
            out = _original(*args, **kwargs)
            # The coarse stage returns (tokens, lengths) when output lengths are asked for.
            tokens[_stage] = (out[0] if isinstance(out, tuple) else out).clone()
            return out

        sub.generate = recording  # an instance attribute: BarkModel.generate calls self.<stage>.generate
    try:
        workload = Workload(batch_size=batch_size, semantic_max_new_tokens=TOKENS)
        inputs, _ = prepare_inputs(processor, workload, torch.device("cpu"))
        transformers.set_seed(workload.seed)
        with torch.inference_mode():
            audio, lengths = model.generate(**inputs, **workload.call_kwargs(), return_output_lengths=True)
    finally:
        for stage in STAGES:
            del getattr(model, stage).generate
    return Generation(tokens, audio, [int(n) for n in lengths])


def assert_same_tokens(a: Generation, b: Generation) -> None:
    assert a.tokens.keys() == set(STAGES) == b.tokens.keys()
    for stage in STAGES:
        assert torch.equal(a.tokens[stage], b.tokens[stage]), stage
    assert a.lengths == b.lengths


class Runs:
    """Models prepared through the harness (``optimize.prepare_model``) and their generations, made once per
    module: loading and generating dominate these tests' time."""

    def __init__(self, source: sources.ModelSource) -> None:
        self.source = source
        self.processor = sources.load_processor(source)
        self._models: dict[tuple[str, str], optimize.PreparedModel] = {}
        self._generations: dict[tuple[str, str, int], Generation] = {}

    def prepared(self, attention_name: str, via: str = "transform") -> optimize.PreparedModel:
        key = (attention_name, via)
        if key not in self._models:
            self._models[key] = optimize.prepare_model(self.source, Variant(attention=attention_name), "cpu", via)
        return self._models[key]

    def generation(self, attention_name: str, batch_size: int = 1, via: str = "transform") -> Generation:
        key = (attention_name, via, batch_size)
        if key not in self._generations:
            model = self.prepared(attention_name, via).model
            self._generations[key] = generate_recorded(model, self.processor, batch_size)
        return self._generations[key]


@pytest.fixture(scope="module")
def runs(tiny_source: sources.ModelSource) -> Runs:
    if MISSING is not None:
        pytest.skip(f"needs optimum's BetterTransformer (the legacy stack): {MISSING}")
    return Runs(tiny_source)


# --- the legacy stack: optimum's BetterTransformer itself ------------------------------------------------------


@legacy_only
def test_transform_swaps_every_bark_attention_in_place_and_leaves_the_codec_alone(tiny_source):
    from transformers.models.bark.modeling_bark import BarkSelfAttention

    # Eager by name: optimum refuses a model whose config says sdpa, which a plain load gives once an earlier test in
    # this process has registered barkbench's SDPA (transformers' default for a model that supports it).
    model = sources.load_model(tiny_source, attn_implementation="eager").eval()
    originals = {name: m for name, m in model.named_modules() if type(m) is BarkSelfAttention}
    assert len(originals) == 6  # 2 layers in each of the semantic, coarse and fine sub-models
    codec_before = {name: (type(m), m) for name, m in model.codec_model.named_modules()}
    codec_params = {name: p.data_ptr() for name, p in model.codec_model.named_parameters()}

    transformed, impl = attention.apply_bettertransformer(model, via="transform")

    assert impl == "optimum-bettertransformer"
    # keep_original_model=False: the model is converted in place, not copied (no second set of weights).
    assert transformed is model
    modules = dict(model.named_modules())
    for name, original in originals.items():
        layer = modules[name]
        assert type(layer).__name__ == BT_LAYER, name
        # The projections are the original modules: same weights, only the score computation changes.
        assert layer.att_proj is original.att_proj and layer.out_proj is original.out_proj
        assert type(layer)._attn.__name__ == "bark_wrapped_scaled_dot_product"
    assert not [name for name, m in model.named_modules() if type(m) is BarkSelfAttention]
    assert attention.attention_summary(model) == {BT_LAYER: 6}
    codec_after = {name: (type(m), m) for name, m in model.codec_model.named_modules()}
    assert codec_after.keys() == codec_before.keys()
    assert all(
        codec_after[n][0] is codec_before[n][0] and codec_after[n][1] is codec_before[n][1] for n in codec_before
    )
    assert {name: p.data_ptr() for name, p in model.codec_model.named_parameters()} == codec_params


@legacy_only
@pytest.mark.parametrize("batch_size", [1, 2])
def test_bettertransformer_equals_eager_in_fp32(runs: Runs, batch_size: int):
    if batch_size > 1:
        # Prompts of different lengths, so the batch carries padding (which BetterTransformer's SDPA ignores).
        counts = text_token_counts(runs.processor, Workload(batch_size=batch_size).batch_prompts())
        assert len(set(counts)) == batch_size
    eager = runs.generation("eager", batch_size)
    bt = runs.generation("bettertransformer", batch_size)
    assert runs.prepared("bettertransformer").attention_impl == "optimum-bettertransformer"
    assert runs.prepared("eager").attention_modules == {"BarkSelfAttention": 6}
    assert eager.audio.shape[0] == batch_size and min(eager.lengths) > 0
    assert_same_tokens(eager, bt)
    assert torch.equal(eager.audio, bt.audio)


@legacy_only
@pytest.mark.parametrize("batch_size", [1, 2])
def test_barkbench_sdpa_equals_optimum_bettertransformer(runs: Runs, batch_size: int):
    sdpa = runs.generation("sdpa", batch_size)
    bt = runs.generation("bettertransformer", batch_size)
    assert runs.prepared("sdpa").attention_modules == {"sdpa": 6}
    assert_same_tokens(sdpa, bt)
    torch.testing.assert_close(sdpa.audio, bt.audio, atol=SDPA_AUDIO_ATOL, rtol=0)


@legacy_only
def test_to_bettertransformer_path_runs_and_reports_itself(runs: Runs):
    prepared = runs.prepared("bettertransformer", via="to_bettertransformer")
    assert prepared.attention_impl == "optimum-to_bettertransformer"
    assert prepared.attention_modules == {BT_LAYER: 6}
    # Both paths are the same conversion: the blog's method gives what BetterTransformer.transform gives.
    blog = runs.generation("bettertransformer", via="to_bettertransformer")
    transform = runs.generation("bettertransformer")
    assert_same_tokens(blog, transform)
    assert torch.equal(blog.audio, transform.audio)


@legacy_only
def test_bench_json_says_which_bettertransformer_path_ran(bench_pytester: pytest.Pytester):
    out = bench_pytester.path / "run.json"
    result = bench_pytester.runpytest_subprocess(
        "bench",
        "--bark-variants",
        "bettertransformer",
        "--bark-bt-via",
        "to_bettertransformer",
        "--bark-semantic-tokens",
        str(TOKENS),
        "--bark-rounds",
        "1",
        "--bark-warmup-rounds",
        "0",
        "-p",
        "no:cacheprovider",
        f"--benchmark-json={out}",
        timeout=600,
    )
    result.assert_outcomes(passed=1)
    (bench,) = json.loads(out.read_text())["benchmarks"]
    info = bench["extra_info"]
    assert info["variant"] == "bettertransformer-fp32-bs1" and info["status"] == "ok"
    assert info["attention_impl"] == "optimum-to_bettertransformer"


# --- the current stack: an explicit refusal ----------------------------------------------------------------------


@current_only
def test_bettertransformer_refusal_names_the_versions_and_points_to_sdpa(tiny_source):
    reason = optimize.unsupported_reason(PRESETS["bettertransformer"], "cpu")
    assert reason is not None
    assert "optimum>=1.23,<1.28 with transformers<4.49" in reason
    assert f"transformers {transformers.__version__}" in reason
    assert "constraints/legacy.txt" in reason and "attention=sdpa" in reason
    # The model-level calls refuse with the same words before touching anything.
    with pytest.raises(optimize.VariantUnsupported) as refused:
        optimize.prepare_model(tiny_source, PRESETS["bettertransformer"], "cpu")
    assert str(refused.value) == reason
    for via in ("transform", "to_bettertransformer"):
        with pytest.raises(attention.AttentionUnavailable, match="attention=sdpa"):
            attention.apply_bettertransformer(torch.nn.Linear(2, 2), via=via)


@current_only
def test_bench_skips_bettertransformer_with_the_reason(bench_pytester: pytest.Pytester):
    result = bench_pytester.runpytest_subprocess(
        "bench",
        "--bark-variants",
        "bettertransformer,bs8",
        "--bark-bt-via",
        "to_bettertransformer",
        "-p",
        "no:cacheprovider",
        "-rs",
        timeout=300,
    )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*SKIPPED*bettertransformer needs optimum>=1.23,<1.28 with transformers<4.49*use attention=sdpa*"]
    )


# --- both stacks: the version check itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transformers_version", "optimum_version", "found"),
    [
        ("5.24.0", None, "transformers 5.24.0 and no optimum"),
        ("4.49.0", "1.24.0", "transformers 4.49.0 and optimum 1.24.0"),
        ("4.49.0.dev0", "1.27.0", "transformers 4.49.0.dev0 and optimum 1.27.0"),
        ("4.48.3", "2.1.0", "transformers 4.48.3 and optimum 2.1.0"),
        ("4.48.3", "1.22.0", "transformers 4.48.3 and optimum 1.22.0"),
        ("4.48.3", None, "transformers 4.48.3 and no optimum"),
    ],
)
def test_version_check_refuses_before_importing_optimum(
    monkeypatch: pytest.MonkeyPatch, transformers_version: str, optimum_version: str | None, found: str
):
    from importlib import metadata

    real_version: Callable[[str], str] = metadata.version

    def version(name: str) -> str:
        if name != "optimum":
            return real_version(name)
        if optimum_version is None:
            raise metadata.PackageNotFoundError(name)
        return optimum_version

    # sys.modules' entry, not this module's import: transformers 5 swaps its lazy module object in
    # sys.modules once a model is built in the process, and the version check reads the current entry.
    monkeypatch.setattr(sys.modules["transformers"], "__version__", transformers_version)
    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(attention.AttentionUnavailable) as refused:
        attention.optimum_bettertransformer()
    message = str(refused.value)
    assert f"found {found};" in message
    assert attention.BT_REQUIREMENT in message and "attention=sdpa" in message
