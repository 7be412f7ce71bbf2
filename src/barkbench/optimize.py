"""Apply a variant to a model: dtype at load time, attention, device placement, int8, CPU offload, compile.

A variant this machine cannot run raises ``VariantUnsupported``; its message names what is missing and
becomes the pytest skip reason. Nothing is ever silently replaced by another variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from barkbench import attention, modern, sources
from barkbench.variants import Variant

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class VariantUnsupported(RuntimeError):
    """This variant cannot run on this machine/stack; the message is the skip reason."""


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    """Why ``variant`` cannot run here, or None. Cheap: loads no model."""
    if variant.offload == "cpu":
        if device_type == "cpu":
            return (
                "offload needs an accelerator: enable_cpu_offload() moves each sub-model to a GPU when it runs, "
                "and this machine has none"
            )
        try:
            import accelerate  # noqa: F401
        except ImportError:
            return "offload needs the accelerate package (pip install accelerate)"
    if variant.attention == "flash_attention_2":
        reason = attention.flash_attention_2_unavailable_reason(device_type)
        if reason:
            return reason
        if variant.dtype == "fp32":
            return "flash_attention_2 runs in fp16 or bf16 only; use dtype=fp16 or dtype=bf16"
    if variant.attention == "bettertransformer":
        try:
            attention.optimum_bettertransformer()
        except attention.AttentionUnavailable as exc:
            return str(exc)
    if variant.dtype == "bf16" and device_type == "cuda" and not _cuda_bf16_native():
        return "bf16 needs a GPU with bfloat16 support (compute capability 8.0+, e.g. A100); use dtype=fp16"
    if variant.quantization == "int8":
        reason = modern.int8_unavailable_reason(device_type, variant.dtype, variant.offload)
        if reason:
            return reason
    if variant.compile:
        reason = modern.compile_unavailable_reason(device_type)
        if reason:
            return reason
    return None


def _cuda_bf16_native() -> bool:
    # Without including_emulation=False, torch reports bf16 as supported on pre-Ampere GPUs, where it is
    # emulated and slow: measuring that as "bf16" would mislead.
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation and checks compute capability itself
        return bool(torch.cuda.is_bf16_supported())


def _dtype_kwarg() -> str:
    import transformers
    from packaging.version import Version

    # from_pretrained's ``torch_dtype`` became ``dtype`` in transformers 4.56 (the old name warns in 5.x).
    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


@dataclass
class PreparedModel:
    model: Any
    device: torch.device
    attention_impl: str
    #: Bark attention modules per implementation after the variant was applied (see attention_summary).
    attention_modules: dict[str, int]
    #: Sub-models whose forward goes through torch.compile (compile variants).
    compiled: tuple[str, ...] = ()
    #: nn.Linear layers replaced by dynamically quantized int8 ones (int8 variants).
    quantized_linear: int = 0


def prepare_model(
    source: sources.ModelSource, variant: Variant, device_type: str, bt_via: str = "transform"
) -> PreparedModel:
    """Load ``source`` as ``variant`` asks, in the blog's order: dtype at load, to(device), attention, offload."""
    reason = unsupported_reason(variant, device_type)
    if reason:
        raise VariantUnsupported(reason)
    kwargs: dict[str, Any] = {_dtype_kwarg(): TORCH_DTYPES[variant.dtype]}
    if variant.attention == "flash_attention_2":
        kwargs["attn_implementation"] = "flash_attention_2"
    model = sources.load_model(source, **kwargs)
    device = torch.device(device_type)
    if variant.offload == "none":
        model = model.to(device)
    attention_impl = variant.attention
    if variant.attention == "sdpa":
        attention.apply_sdpa(model)
        attention_impl = "barkbench-sdpa"
    elif variant.attention == "bettertransformer":
        model, attention_impl = attention.apply_bettertransformer(model, via=bt_via)
    quantized = modern.apply_dynamic_int8(model) if variant.quantization == "int8" else 0
    if variant.offload == "cpu":
        model.enable_cpu_offload()
        device = model.device
    model.eval()
    # Last, so the compiled graphs see the final attention, weights and device.
    compiled = tuple(modern.compile_submodels(model)) if variant.compile else ()
    return PreparedModel(model, device, attention_impl, attention.attention_summary(model), compiled, quantized)
