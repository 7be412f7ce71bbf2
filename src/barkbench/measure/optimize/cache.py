"""The KV-cache axis: a static (preallocated) KV cache for the semantic and coarse stages.

``BarkModel.generate`` routes ``semantic_*`` and ``coarse_*`` kwargs to those sub-models' ``generate``, which pass
what they do not know on to ``GenerationMixin.generate``: ``semantic_cache_implementation="static"`` reaches it
as ``cache_implementation="static"``. Seen here (tiny model, CPU, seed 0, sampling, 48 semantic tokens):

- transformers 5.24: the sub-models run with a ``StaticCache`` and the audio is ``torch.equal`` to the dynamic
  cache's; one step's logits differ from the dynamic cache's by up to ~1e-2 (a longer, masked key axis sums in
  another order), so a long sampled run may diverge.
- transformers 4.48: Bark's sub-models only take the legacy tuple cache; ``generate`` warns "This model does not
  support `Cache` instances, it only supports the legacy cache format (tuple of tuples). `cache_implementation`
  (set to static) will be ignored." and runs the dynamic path: the variant would measure the baseline under
  another name, so it is refused there.

A static cache fixes the decode step's shapes, which is what lets ``torch.compile(mode="reduce-overhead")`` capture
CUDA graphs of the step (``compile.apply``).

Its length is a device tensor (transformers 5.25: ``StaticLayer.get_seq_length`` returns ``cumulative_length``,
updated in place by ``add_``), so ``int(cache.get_seq_length())`` is a host sync. barkbench's per-forward hook keeps
it unread (``stages._Deferred``: read once after the call); transformers' own ``BarkCausalModel.forward`` still
passes it to ``torch.arange`` for the position ids, which reads it on the host — that sync is the library's.
"""

from __future__ import annotations

from typing import Any

from barkbench.variants import Variant

#: The transformers release line whose Bark sub-models take a ``Cache`` object (4.48 keeps tuples).
STATIC_CACHE_TRANSFORMERS = "5"


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    if variant.kv_cache != "static":
        return None
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__).major < int(STATIC_CACHE_TRANSFORMERS):
        return (
            f"kv_cache=static needs transformers >= {STATIC_CACHE_TRANSFORMERS} (Bark's sub-models take a Cache "
            f"there); transformers {transformers.__version__} only supports Bark's legacy tuple cache and ignores "
            "cache_implementation='static' with a warning"
        )
    return None


def generate_kwargs(variant: Variant) -> dict[str, Any]:
    """``BarkModel.generate`` kwargs of the variant's KV cache (none for the default dynamic cache)."""
    if variant.kv_cache != "static":
        return {}
    return {"semantic_cache_implementation": "static", "coarse_cache_implementation": "static"}
