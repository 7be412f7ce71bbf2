"""A lower bound on the memory a batch needs, from the architecture alone (no model loaded, no torch).

Counted: the weights of the three GPT-style sub-models' blocks (``bark.matmul_weights``: 12 x layers x hidden^2
parameters each) and, per sample, their key/value caches over Bark's 1024-position window plus the generated
audio. Not counted: logits, activations, the codec and the allocator's slack, so the real peak is higher; a batch
above what the machine has is refused, one above what is free now is warned about.
"""

from __future__ import annotations

from dataclasses import dataclass

from barkbench.bark import HUB_ARCHITECTURES, architecture_shapes, audio_samples, kv_window_bytes, matmul_weights
from barkbench.measure.sources import ModelSource

#: Bytes of one generated audio sample (the codec decodes to fp32).
AUDIO_SAMPLE_BYTES = 4


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
    """The weights of every sub-model's blocks, and per sample their KV caches over the window and the audio that
    ``semantic_tokens`` semantic tokens become."""
    shapes = architecture_shapes(arch).values()
    weights = sum(matmul_weights(shape) for shape in shapes) * element_bytes
    kv_cache = sum(kv_window_bytes(shape, element_bytes) for shape in shapes)
    audio = audio_samples(semantic_tokens) * AUDIO_SAMPLE_BYTES
    return MemoryEstimate(weights, kv_cache + audio)
