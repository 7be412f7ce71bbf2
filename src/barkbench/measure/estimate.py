"""A lower bound on the memory a batch needs, from the architecture alone (no model loaded, no torch).

Counted: the weights of the three GPT-style sub-models (12 x layers x hidden^2 parameters each) and, per sample,
their key/value caches over Bark's 1024-position window plus the generated audio. Not counted: logits,
activations, the codec and the allocator's slack, so the real peak is higher; a batch above what the machine
has is refused, one above what is free now is warned about.
"""

from __future__ import annotations

from dataclasses import dataclass

from barkbench.measure.sources import ARCHITECTURES, ModelSource
from barkbench.measure.workload import SEMANTIC_WINDOW

#: Hub ids of the published checkpoints, mapped to the architectures they share.
HUB_ARCHITECTURES = {"suno/bark-small": "bark-small", "suno/bark": "bark"}
#: Bark's sub-models that cache keys and values (semantic, coarse) or hold a full window (fine).
SUB_MODELS = 3
SAMPLE_RATE = 24_000
#: Semantic tokens per second of audio (Bark's semantic rate).
SEMANTIC_RATE_HZ = 49.9


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    per_sample_bytes: int

    def total(self, batch_size: int) -> int:
        return self.weights_bytes + batch_size * self.per_sample_bytes


def architecture(source: ModelSource | None) -> str | None:
    """The architecture name of a source, where it is known without loading (None: a folder or another hub id)."""
    if source is None:
        return "tiny"
    if source.kind == "random":
        return source.arch
    if source.kind == "hub":
        return HUB_ARCHITECTURES.get(source.spec)
    return None


def estimate(arch: str, semantic_tokens: int, element_bytes: int = 4) -> MemoryEstimate:
    layers, _heads, hidden = ARCHITECTURES[arch]
    weights = SUB_MODELS * 12 * layers * hidden * hidden * element_bytes
    kv_cache = SUB_MODELS * 2 * layers * hidden * SEMANTIC_WINDOW * element_bytes
    audio = int(semantic_tokens / SEMANTIC_RATE_HZ * SAMPLE_RATE) * 4
    return MemoryEstimate(weights, kv_cache + audio)
