"""Bark's facts (``barkbench.bark``) against transformers' own classes on the running stack: the sub-model and
generation configs' defaults, the codec's config, the processor's padding, and a model built from the
architectures (on the meta device) — so a wrong number in ``bark.py`` fails here, not in a figure."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest

from barkbench import bark
from barkbench.measure import sources

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
generation = pytest.importorskip("transformers.models.bark.generation_configuration_bark")


def test_bark_module_imports_the_standard_library_only():
    tree = ast.parse(Path(bark.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    roots = {name.split(".")[0] for name in imported}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots


def test_sub_model_configs_match_transformers_defaults():
    semantic, fine = transformers.BarkSemanticConfig(), transformers.BarkFineConfig()
    assert semantic.block_size == bark.BLOCK_SIZE == bark.SEMANTIC_WINDOW
    # The default sub-model config is bark-small's architecture, with the semantic model's output vocabulary.
    assert (semantic.num_layers, semantic.num_heads, semantic.hidden_size) == bark.ARCHITECTURES["bark-small"]
    assert semantic.output_vocab_size == bark.VOCABS["semantic"].output
    assert (fine.n_codes_total, fine.n_codes_given) == (bark.FINE_CODES_TOTAL, bark.FINE_CODES_GIVEN)


def test_generation_facts_match_the_generation_configs():
    semantic = generation.BarkSemanticGenerationConfig()
    coarse = generation.BarkCoarseGenerationConfig()
    fine = generation.BarkFineGenerationConfig()
    whole = generation.BarkGenerationConfig()
    assert semantic.semantic_rate_hz == bark.SEMANTIC_RATE_HZ
    assert semantic.max_new_tokens == bark.SEMANTIC_MAX_NEW_TOKENS
    assert semantic.max_input_semantic_length == bark.MAX_TEXT_TOKENS
    assert semantic.semantic_vocab_size == bark.SEMANTIC_VOCAB
    assert semantic.semantic_pad_token == semantic.eos_token_id == bark.SEMANTIC_PAD_TOKEN
    assert (coarse.coarse_rate_hz, coarse.n_coarse_codebooks) == (bark.COARSE_RATE_HZ, bark.COARSE_CODEBOOKS)
    assert fine.n_fine_codebooks == bark.FINE_CODEBOOKS
    assert (fine.max_fine_input_length, fine.max_fine_history_length) == (bark.FINE_WINDOW, bark.FINE_HISTORY)
    assert (whole.sample_rate, whole.codebook_size) == (bark.SAMPLE_RATE, bark.CODEBOOK_SIZE)


def test_vocabularies_hold_the_ids_generate_feeds_them():
    semantic = generation.BarkSemanticGenerationConfig()
    coarse = generation.BarkCoarseGenerationConfig()
    vocabs = bark.VOCABS
    # Text ids are offset past the semantic tokens; the pad and infer ids sit at the top of the input vocabulary.
    assert semantic.text_encoding_offset == vocabs["semantic"].output
    assert max(semantic.text_pad_token, semantic.semantic_infer_token) < vocabs["semantic"].input
    # Coarse: semantic ids, then one block of codebook entries per coarse codebook.
    assert vocabs["coarse"].input == vocabs["semantic"].output + bark.COARSE_CODEBOOKS * bark.CODEBOOK_SIZE
    assert max(coarse.coarse_semantic_pad_token, coarse.coarse_infer_token) < vocabs["coarse"].input
    assert vocabs["fine"].input >= bark.CODEBOOK_SIZE


def test_codec_rates_match_encodec():
    codec = transformers.EncodecConfig()
    assert codec.sampling_rate == bark.SAMPLE_RATE
    assert math.prod(codec.upsampling_ratios) == bark.SAMPLES_PER_FRAME
    assert bark.SAMPLE_RATE / bark.SAMPLES_PER_FRAME == codec.frame_rate == bark.COARSE_RATE_HZ
    assert codec.codebook_size == bark.CODEBOOK_SIZE
    # One second of semantic tokens is one second of audio.
    assert bark.audio_samples(bark.SEMANTIC_RATE_HZ) == bark.SAMPLE_RATE


def test_windows_add_up():
    assert bark.MAX_SEMANTIC_TOKENS == bark.SEMANTIC_WINDOW - bark.MAX_TEXT_TOKENS - 1 == 767
    assert bark.FINE_WINDOW == 2 * bark.FINE_HISTORY
    assert tuple(bark.STAGE_CALLS) == bark.STAGES
    assert set(bark.DECODE_STAGES) < set(bark.STAGE_SUBMODELS) < set(bark.STAGES)
    assert set(bark.HUB_ARCHITECTURES.values()) == set(bark.EXPECTED_PARAMETERS) < set(bark.ARCHITECTURES)


def test_the_processor_pads_text_to_the_text_window(tmp_path):
    processor = sources.build_processor(tmp_path)
    assert tuple(processor(["hello"])["input_ids"].shape) == (1, bark.MAX_TEXT_TOKENS)


@pytest.mark.parametrize("arch", sorted(bark.ARCHITECTURES))
def test_a_model_built_from_the_architecture_has_its_shapes(arch):
    with torch.device("meta"):
        model = transformers.BarkModel(transformers.BarkConfig(**sources.bark_config_dict(arch)))
    shapes = bark.architecture_shapes(arch)
    for stage, sub in bark.STAGE_SUBMODELS.items():
        sub_model = getattr(model, sub.attribute)
        assert bark.SubModelShape.from_config(sub_model.config.to_dict()) == shapes[stage], stage
        assert sub_model.config.to_dict() == getattr(model.config, sub.config_key).to_dict(), stage
        blocks = [m for m in sub_model.layers.modules() if isinstance(m, torch.nn.Linear)]
        assert sum(m.weight.numel() for m in blocks) == bark.matmul_weights(shapes[stage]), stage
    for stage, call in bark.STAGE_CALLS.items():
        owner = getattr(model, call.owner) if call.owner else model
        assert callable(getattr(owner, call.method)), stage
    codec = getattr(model, bark.CODEC.attribute)
    assert type(codec.config) is type(getattr(model.config, bark.CODEC.config_key)) is transformers.EncodecConfig
