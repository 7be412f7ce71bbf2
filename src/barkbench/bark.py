"""What barkbench knows about the Bark model, in one place: the architectures, the stages and their sub-models, the
windows, the rates, the shapes and the bytes and FLOPs they imply.

Plain values and arithmetic (standard library only): the measuring side (``measure/``), the reporting side
(``results/``) and ``barkbench doctor`` all read them from here. Where a fact comes from is said beside it:
transformers' Bark configs (``BarkSubModelConfig``, ``Bark*GenerationConfig`` defaults, both stacks), the original
checkpoints' ``config.json`` (suno/bark-small, suno/bark), ``EncodecConfig()`` (the 24 kHz codec) and suno's
``bark/generation.py``. ``tests/test_bark_facts.py`` checks them against transformers' own classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

# -- architectures ------------------------------------------------------------------------------------------------


class Architecture(NamedTuple):
    """(layers, heads, hidden size) of every transformer sub-model of one architecture (the three share them).

    A tuple: the random models' cache folders hash it as ``[layers, heads, hidden]``."""

    layers: int
    heads: int
    hidden: int


#: The architectures barkbench builds or recognizes. bark-small and bark: the original checkpoints' config.json;
#: bark-small is also ``BarkSemanticConfig()``'s default.
ARCHITECTURES: dict[str, Architecture] = {
    # Small enough that one generate of 256 semantic tokens takes ~2 s on 2 CPU cores.
    "tiny": Architecture(2, 2, 64),
    "bark-small": Architecture(12, 12, 768),
    "bark": Architecture(24, 16, 1024),
}

#: Hub ids of the published checkpoints, mapped to the architectures they have.
HUB_ARCHITECTURES = {"suno/bark-small": "bark-small", "suno/bark": "bark"}

#: Parameter counts of the full BarkModel (sub-models + EnCodec 24 kHz), checked by the tests.
EXPECTED_PARAMETERS = {"bark-small": 404_400_000, "bark": 1_100_000_000}


@dataclass(frozen=True)
class Vocab:
    """A sub-model's input and output vocabulary sizes (``input_vocab_size``, ``output_vocab_size``)."""

    input: int
    output: int


#: Vocabularies of both original checkpoints (config.json). Semantic: text ids offset by 10_048 in, semantic tokens
#: out; coarse: semantic ids + 2 codebooks × 1024 in and out; fine: 1024 codes + 32 special ids.
VOCABS: dict[str, Vocab] = {
    "semantic": Vocab(129_600, 10_048),
    "coarse": Vocab(12_096, 12_096),
    "fine": Vocab(1_056, 1_056),
}

#: Positions of every sub-model (``BarkSubModelConfig.block_size``, both checkpoints).
BLOCK_SIZE = 1024
#: The fine sub-model embeds all 8 codebooks and is given the first one (``n_codes_total``, ``n_codes_given``).
FINE_CODES_TOTAL = 8
FINE_CODES_GIVEN = 1

# -- stages -------------------------------------------------------------------------------------------------------

#: The stages in the order ``BarkModel.generate`` runs them.
STAGES = ("semantic", "coarse", "fine", "codec")
#: The autoregressive stages: one token per forward pass, a KV cache, memory-bound.
DECODE_STAGES = ("semantic", "coarse")


@dataclass(frozen=True)
class SubModel:
    """A transformer stage's sub-model: the ``BarkModel`` attribute and the ``BarkConfig`` key of its config."""

    attribute: str
    config_key: str


#: The sub-model of each transformer stage (transformers' ``BarkModel`` and ``BarkConfig``).
STAGE_SUBMODELS: dict[str, SubModel] = {
    "semantic": SubModel("semantic", "semantic_config"),
    "coarse": SubModel("coarse_acoustics", "coarse_acoustics_config"),
    "fine": SubModel("fine_acoustics", "fine_acoustics_config"),
}
#: The transformer sub-models' ``BarkModel`` attributes and ``BarkConfig`` keys, in stage order.
SUB_MODEL_ATTRIBUTES = tuple(sub.attribute for sub in STAGE_SUBMODELS.values())
SUB_MODEL_CONFIG_KEYS = tuple(sub.config_key for sub in STAGE_SUBMODELS.values())
#: The codec (EnCodec): its ``BarkModel`` attribute and ``BarkConfig`` key.
CODEC = SubModel("codec_model", "codec_config")


@dataclass(frozen=True)
class StageCall:
    """What ``BarkModel.generate`` calls for one stage: ``method`` of the attribute ``owner`` ("": the model)."""

    owner: str
    method: str


#: Every stage's call, in ``STAGES`` order: each sub-model's ``generate``, then ``BarkModel.codec_decode``.
STAGE_CALLS: dict[str, StageCall] = {
    **{stage: StageCall(sub.attribute, "generate") for stage, sub in STAGE_SUBMODELS.items()},
    "codec": StageCall("", "codec_decode"),
}

# -- windows ------------------------------------------------------------------------------------------------------

#: Text tokens of one prompt: ``BarkProcessor`` pads to ``max_length=256`` (``max_input_semantic_length``).
MAX_TEXT_TOKENS = 256
#: The semantic model's positions: the 256 text tokens, one separator (the infer token), then the new tokens.
SEMANTIC_WINDOW = BLOCK_SIZE
MAX_SEMANTIC_TOKENS = SEMANTIC_WINDOW - MAX_TEXT_TOKENS - 1
#: The semantic stage's own cap on new tokens (``BarkSemanticGenerationConfig.max_new_tokens``); random weights
#: almost never emit EOS, so an unpinned run reaches it.
SEMANTIC_MAX_NEW_TOKENS = 768
#: The fine stage's windows (``BarkFineGenerationConfig``: ``max_fine_input_length``, ``max_fine_history_length``):
#: it pads to 1024 frames and advances by 512.
FINE_WINDOW = 1024
FINE_HISTORY = 512

# -- tokens and rates ---------------------------------------------------------------------------------------------

#: Semantic tokens are below 10_000 (``semantic_vocab_size``); 10_000 is the pad and end-of-speech id.
SEMANTIC_VOCAB = 10_000
SEMANTIC_PAD_TOKEN = 10_000
#: Entries of each codec codebook (``BarkGenerationConfig.codebook_size``, ``EncodecConfig.codebook_size``).
CODEBOOK_SIZE = 1024
#: Semantic tokens per second of audio (``semantic_rate_hz``; suno's ``SEMANTIC_RATE_HZ``).
SEMANTIC_RATE_HZ = 49.9
#: Codec frames per second (``coarse_rate_hz``) and the codebooks the coarse stage predicts per frame.
COARSE_RATE_HZ = 75
COARSE_CODEBOOKS = 2
#: Codebooks per frame after the fine stage (``n_fine_codebooks``): it predicts codebooks 3 to 8.
FINE_CODEBOOKS = 8
#: The codec's audio (``EncodecConfig()``, ``BarkGenerationConfig.sample_rate``): 24 kHz, and a hop of
#: prod(upsampling_ratios) = 8·5·4·2 samples per frame (24_000 / 320 = 75 frames per second).
SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 320


def audio_samples(semantic_tokens: float) -> int:
    """Audio samples that ``semantic_tokens`` semantic tokens stand for (at ``SEMANTIC_RATE_HZ``), rounded down."""
    return int(semantic_tokens / SEMANTIC_RATE_HZ * SAMPLE_RATE)


# -- shapes -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubModelShape:
    """The shape of one Bark transformer sub-model (``BarkSubModelConfig`` fields), with ``bias=False`` as in both
    original checkpoints (LayerNorms have a weight only)."""

    layers: int
    heads: int
    hidden: int
    input_vocab: int
    output_vocab: int
    block_size: int = BLOCK_SIZE
    #: Fine model only: codebooks embedded (``n_codes_total``) and given (``n_codes_given``).
    n_codes_total: int = 1
    n_codes_given: int = 1

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SubModelShape:
        """From a sub-model config's ``to_dict()`` (or the plain dict ``sub_model_config`` gives)."""
        return cls(
            layers=int(config["num_layers"]),
            heads=int(config["num_heads"]),
            hidden=int(config["hidden_size"]),
            input_vocab=int(config["input_vocab_size"]),
            output_vocab=int(config["output_vocab_size"]),
            block_size=int(config.get("block_size", BLOCK_SIZE)),
            n_codes_total=int(config.get("n_codes_total", 1) or 1),
            n_codes_given=int(config.get("n_codes_given", 1) or 1),
        )

    @property
    def block_matmul_weights(self) -> int:
        """Weights of one block's four Linear layers: qkv (3h×h), out (h×h), MLP in (4h×h) and out (h×4h)."""
        return 12 * self.hidden * self.hidden

    def decode_matrices(self) -> tuple[tuple[int, int], ...]:
        """(out_features, in_features) of every matrix one decode step multiplies a vector by, in order."""
        h = self.hidden
        block = ((3 * h, h), (h, h), (4 * h, h), (h, 4 * h))
        return block * self.layers + ((self.output_vocab, h),)


def sub_model_config(arch: str, stage: str) -> dict[str, Any]:
    """The ``BarkSubModelConfig`` keyword arguments of one transformer stage of ``arch``, original vocabularies,
    block size, no dropout and no biases included (as both checkpoints have)."""
    layers, heads, hidden = ARCHITECTURES[arch]
    config: dict[str, Any] = {
        "block_size": BLOCK_SIZE,
        "input_vocab_size": VOCABS[stage].input,
        "output_vocab_size": VOCABS[stage].output,
        "num_layers": layers,
        "num_heads": heads,
        "hidden_size": hidden,
        "dropout": 0.0,
        "bias": False,
    }
    if stage == "fine":
        config.update(n_codes_total=FINE_CODES_TOTAL, n_codes_given=FINE_CODES_GIVEN)
    return config


def sub_model_configs(arch: str) -> dict[str, dict[str, Any]]:
    """The three sub-model configs of ``arch`` by ``BarkConfig`` key (``BarkConfig(**...)`` adds the codec's)."""
    return {sub.config_key: sub_model_config(arch, stage) for stage, sub in STAGE_SUBMODELS.items()}


def architecture_shapes(arch: str) -> dict[str, SubModelShape]:
    """The sub-models' shapes of ``arch`` by stage: what a model built from ``sub_model_configs`` has."""
    return {stage: SubModelShape.from_config(sub_model_config(arch, stage)) for stage in STAGE_SUBMODELS}


# -- bytes and FLOPs ----------------------------------------------------------------------------------------------


def matmul_weights(shape: SubModelShape) -> int:
    """Weights of a sub-model's blocks' Linear layers (heads and embeddings left out): 12·layers·hidden²."""
    return shape.layers * shape.block_matmul_weights


def decode_linear_bytes(shape: SubModelShape, linear_weight_bytes: float) -> float:
    """Bytes of the Linear weights one decode step multiplies by (``decode_matrices``), as stored."""
    return sum(rows * cols for rows, cols in shape.decode_matrices()) * linear_weight_bytes


def decode_step_weight_bytes(shape: SubModelShape, element_bytes: int, linear_weight_bytes: float) -> float:
    """Bytes of weights one decode step of a causal sub-model reads, as stored.

    The Linear layers (lm_head included: ``quantize_dynamic`` replaces it too) at ``linear_weight_bytes`` per
    weight (1 for int8), the LayerNorm weights (two per block and the final one) and the two embedding rows the
    step looks up (token and position) at ``element_bytes``.
    """
    other = ((2 * shape.layers + 1) * shape.hidden + 2 * shape.hidden) * element_bytes
    return decode_linear_bytes(shape, linear_weight_bytes) + other


def kv_bytes_per_position(shape: SubModelShape, element_bytes: int) -> int:
    """KV-cache bytes one sample's key position holds (key and value, every layer)."""
    return 2 * shape.layers * shape.hidden * element_bytes


def kv_window_bytes(shape: SubModelShape, element_bytes: int) -> int:
    """KV-cache bytes of one sample over the sub-model's whole window (``block_size`` positions)."""
    return kv_bytes_per_position(shape, element_bytes) * shape.block_size


def decode_bytes(
    shape: SubModelShape, element_bytes: int, linear_weight_bytes: float, forwards: int, key_positions: int
) -> float:
    """Bytes a decode stage must read: the weights once per forward pass, plus the cache over every key position
    the forwards attended to (``key_positions``: summed over forwards and the batch)."""
    return forwards * decode_step_weight_bytes(shape, element_bytes, linear_weight_bytes) + (
        key_positions * kv_bytes_per_position(shape, element_bytes)
    )


def fine_forwards(frames: int) -> int:
    """Forward passes of the fine stage for ``frames`` coarse frames (no fine history; Bark's own loop): one per
    predicted codebook in every window of ``FINE_WINDOW`` frames, windows advancing by ``FINE_HISTORY``."""
    loops = max(0, math.ceil((frames - FINE_WINDOW) / FINE_HISTORY)) + 1
    return loops * (FINE_CODEBOOKS - COARSE_CODEBOOKS)


def fine_forward_flops(shape: SubModelShape, batch: int, sequence: int = FINE_WINDOW) -> int:
    """FLOPs (2 per multiply-add) of one fine forward over ``sequence`` frames: the blocks' projections, attention
    scores and weighted sum (non-causal: every frame attends to every frame) and one codebook's output head."""
    h = shape.hidden
    tokens = batch * sequence
    projections = 2 * tokens * matmul_weights(shape)
    attention = 2 * 2 * batch * shape.layers * sequence * sequence * h
    head = 2 * tokens * h * shape.output_vocab
    return projections + attention + head


def fine_flops(shape: SubModelShape, batch: int, frames: int) -> int:
    """FLOPs of one fine stage call over ``frames`` coarse frames per sample."""
    return fine_forwards(frames) * fine_forward_flops(shape, batch)


def fine_frames(tokens: float, batch: int) -> int:
    """Coarse frames per sample of a fine stage that predicted ``tokens`` codebook entries over the batch (the
    stage tracker's count: codebooks 3 to 8 of every frame)."""
    return round(tokens / (batch * (FINE_CODEBOOKS - COARSE_CODEBOOKS)))


def fine_gemm_shape(shape: SubModelShape, batch: int = 1) -> tuple[int, int, int]:
    """(m, k, n) of the fine stage's dominant matrix product: its MLP input projection over a whole window."""
    return batch * FINE_WINDOW, shape.hidden, 4 * shape.hidden
