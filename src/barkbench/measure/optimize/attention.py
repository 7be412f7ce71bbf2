"""The attention axis: eager, barkbench's SDPA, optimum's BetterTransformer, FlashAttention-2.

transformers never shipped SDPA for Bark and removed ``to_bettertransformer()`` in v5; optimum 2 removed
BetterTransformer. ``sdpa`` is :mod:`barkbench.sdpa`: Bark's attention through ``F.scaled_dot_product_attention``,
loaded as ``attn_implementation="sdpa"`` on any transformers version, exact against eager for every mask, cache
and output option, and on Bark's own ``generate`` path the same kernel calls BetterTransformer makes — so the
current stack can still measure the blog's headline optimization.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from barkbench.bark import CODEC, SUB_MODEL_CONFIG_KEYS
from barkbench.variants import Variant

if TYPE_CHECKING:
    import torch

#: The stack optimum's BetterTransformer needs. 1.27 is the last optimum with ``optimum.bettertransformer``
#: (2.x removed it) and it refuses transformers >= 4.49 at import; 1.23-1.27 all handle Bark the same way.
BT_OPTIMUM = (">=1.23", "<1.28")
BT_TRANSFORMERS_BELOW = "4.49"
BT_REQUIREMENT = (
    f"optimum{','.join(BT_OPTIMUM)} with transformers<{BT_TRANSFORMERS_BELOW} "
    "(the legacy stack: pip install -c constraints/legacy.txt -e '.[legacy]', or ./dev.sh test)"
)


class AttentionUnavailable(RuntimeError):
    """The requested attention cannot run with the installed libraries; the message says what is missing."""


def optimum_bettertransformer() -> Any:
    """optimum's BetterTransformer class, or AttentionUnavailable naming the versions needed."""
    from importlib import metadata

    import transformers
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    # Versions are checked before importing: optimum 1.25+ raises at import on transformers >= 4.49 and older
    # releases import but break later, so the reason should name versions, not an import traceback.
    try:
        optimum_version: str | None = metadata.version("optimum")
    except metadata.PackageNotFoundError:
        optimum_version = None
    found = [f"transformers {transformers.__version__}"]
    found.append(f"optimum {optimum_version}" if optimum_version else "no optimum")
    ok = Version(transformers.__version__).release < Version(BT_TRANSFORMERS_BELOW).release and (
        optimum_version is not None and Version(optimum_version) in SpecifierSet(",".join(BT_OPTIMUM))
    )
    advice = "use attention=sdpa, barkbench's equivalent SDPA swap, which runs on any transformers"
    if not ok:
        raise AttentionUnavailable(f"bettertransformer needs {BT_REQUIREMENT}; found {' and '.join(found)}; {advice}")
    try:
        from optimum.bettertransformer import BetterTransformer
    except ImportError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AttentionUnavailable(
            f"bettertransformer: importing optimum.bettertransformer failed with {' and '.join(found)} ({first}); "
            f"{advice}"
        ) from None
    return BetterTransformer


def apply_bettertransformer(model: Any, via: str = "transform") -> tuple[Any, str]:
    """optimum's BetterTransformer, through ``BetterTransformer.transform`` or the blog's
    ``model.to_bettertransformer()``; returns the transformed model and which path ran."""
    better_transformer = optimum_bettertransformer()
    if via == "to_bettertransformer":
        if not hasattr(model, "to_bettertransformer"):
            raise AttentionUnavailable(
                "model.to_bettertransformer() was removed in transformers 5; use via='transform' or sdpa"
            )
        return model.to_bettertransformer(), "optimum-to_bettertransformer"
    if via != "transform":
        raise ValueError(f"unknown BetterTransformer path {via!r}; use 'transform' or 'to_bettertransformer'")
    return better_transformer.transform(model, keep_original_model=False), "optimum-bettertransformer"


def flash_attention_2_unavailable_reason(device_type: str) -> str | None:
    """Why FA2 cannot run here, or None when it can."""
    if device_type != "cuda":
        return "flash_attention_2 needs a CUDA GPU; this machine has none"
    import importlib.util

    # Found, not imported: importing flash_attn loads its CUDA extension, and this runs in the pytest process.
    if importlib.util.find_spec("flash_attn") is None:
        return "flash_attention_2 needs the flash-attn package (pip install flash-attn)"
    return None


def attention_summary(model: torch.nn.Module) -> dict[str, int]:
    """How many Bark attention modules run each implementation — the tests' view of a swap."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if not name or not type(module).__name__.startswith("Bark") or "Attention" not in type(module).__name__:
            continue
        kind = "sdpa" if type(module).__name__ == "BarkSdpaSelfAttention" else type(module).__name__
        counts[kind] = counts.get(kind, 0) + 1
    return counts


# -- the axis: why it cannot run here, and applying it --------------------------------------------------------


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    """Why ``variant``'s attention cannot run on ``device_type`` here, or None. Loads no model."""
    if variant.attention == "flash_attention_2":
        reason = flash_attention_2_unavailable_reason(device_type)
        if reason:
            return reason
        if variant.dtype == "fp32":
            return "flash_attention_2 runs in fp16 or bf16 only; use dtype=fp16 or dtype=bf16"
    if variant.attention == "bettertransformer":
        try:
            optimum_bettertransformer()
        except AttentionUnavailable as exc:
            return str(exc)
    return None


def load_kwargs(variant: Variant) -> dict[str, Any]:
    """``from_pretrained`` kwargs: every variant names the attention Bark is built with.

    Eager is asked for by name, never left to the default: after ``barkbench.sdpa.register()`` (in this process,
    by an sdpa variant or by anyone) Bark follows transformers' convention that a model supporting SDPA gets it when
    ``attn_implementation`` is not given, so an unnamed load would measure SDPA under the eager id. BetterTransformer
    starts from eager modules too (optimum refuses a model whose config says sdpa, and replaces modules by the class
    name ``BarkSelfAttention``).
    """
    if variant.attention == "sdpa":
        from barkbench import sdpa  # imports torch: only when a model is about to be loaded

        sdpa.register()
        return {"attn_implementation": sdpa.NAME}
    if variant.attention == "flash_attention_2":
        return {"attn_implementation": flash_attention_2_form()}
    return {"attn_implementation": "eager"}


#: BarkConfig's transformer sub-configs (FlashAttention-2 capable) and its codec (EnCodec: no FA2 in transformers).
FA2_SUB_CONFIGS = SUB_MODEL_CONFIG_KEYS
CODEC_SUB_CONFIG = CODEC.config_key


def flash_attention_2_form() -> dict[str, str]:
    """``attn_implementation`` asking for FA2 in Bark's three transformers and eager attention in the codec.

    The plain string ``"flash_attention_2"`` is copied into every sub-config, the codec's included, and
    ``EncodecModel`` has no FA2: transformers 5.x raises ``ValueError`` at load. The per-sub-config dict is the
    documented form for composite models and works on 4.46+ and 5.x alike.
    """
    return {**dict.fromkeys(FA2_SUB_CONFIGS, "flash_attention_2"), CODEC_SUB_CONFIG: "eager"}


def apply(model: Any, variant: Variant, bt_via: str = "transform") -> tuple[Any, str]:
    """Swap the loaded model's attention as ``variant`` asks; returns the model and the implementation that runs
    (``attention_impl`` in the results)."""
    if variant.attention == "sdpa":
        return model, "barkbench-sdpa"  # built by from_pretrained (load_kwargs)
    if variant.attention == "bettertransformer":
        return apply_bettertransformer(model, via=bt_via)
    return model, variant.attention
