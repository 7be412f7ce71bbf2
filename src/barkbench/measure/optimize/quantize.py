"""The quantization axis: dynamic int8 (or fp16) weights of the ``nn.Linear`` layers (CPU).

``torch.ao.quantization.quantize_dynamic`` replaces every ``nn.Linear`` with a dynamically quantized one (int8
weights, activations quantized per call; or, with ``dtype=torch.float16``, fp16 weights multiplied in fp32), CPU
kernels only (fbgemm/x86/onednn/qnnpack; fp16 weights: fbgemm/x86).

Both take fp32 activations only: the kernels (``quantized::linear_dynamic``, ``linear_dynamic_fp16``) raise
``RuntimeError: expected scalar type Float but found BFloat16`` for a bf16 input (``... found Half`` for fp16), so
int8 or fp16 weights with bf16 activations is refused (``ACTIVATIONS_REFUSED``) rather than emulated by casts.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from barkbench.variants import Variant

if TYPE_CHECKING:
    import torch

_QUANTIZED_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")
#: The engines with the fp16-weight kernel (``linear_dynamic_fp16`` is fbgemm's; x86 dispatches to it).
_FP16_WEIGHT_ENGINES = ("x86", "fbgemm")
#: What torch's dynamic quantized Linear raises for activations of each non-fp32 dtype (torch 2.13, both stacks).
ACTIVATIONS_REFUSED = {
    "bf16": "RuntimeError: expected scalar type Float but found BFloat16",
    "fp16": "RuntimeError: expected scalar type Float but found Half",
}


def dynamic_unavailable_reason(
    device_type: str, dtype: str, offload: str = "none", weights: str = "int8"
) -> str | None:
    """Why dynamic quantization with ``weights`` (int8 or fp16) cannot run for this variant here, or None."""
    import torch

    kind = "int8" if weights == "int8" else f"{weights}-weight"
    if device_type != "cpu":
        return (
            f"dynamic {kind} quantization (torch.ao quantize_dynamic) has CPU kernels only; this run is on "
            f"{device_type}: run it with --bark-device cpu"
        )
    if dtype != "fp32":
        return (
            f"torch's dynamic quantized Linear takes fp32 activations only: with {dtype} activations it raises "
            f"'{ACTIVATIONS_REFUSED.get(dtype, 'expected scalar type Float')}'; use dtype=fp32 with "
            "quantization=int8 or fp16 (the weights are quantized, the activations stay fp32)"
        )
    if offload != "none":
        return f"dynamic {kind} quantization runs on CPU; offload moves sub-models to an accelerator: use offload=none"
    with warnings.catch_warnings():
        # First access imports torch.ao.quantization, which warns about its own deprecation (see below).
        warnings.simplefilter("ignore", DeprecationWarning)
        available = hasattr(torch, "ao") and hasattr(torch.ao.quantization, "quantize_dynamic")
    if not available:
        return f"this torch ({torch.__version__}) has no torch.ao.quantization.quantize_dynamic"
    engines = [e for e in torch.backends.quantized.supported_engines if e in _QUANTIZED_ENGINES]
    if not engines:
        return (
            f"this torch build has no quantized CPU engine (supported: "
            f"{torch.backends.quantized.supported_engines}); dynamic int8 needs fbgemm, x86, onednn or qnnpack"
        )
    return None


def apply_dynamic_int8(model: torch.nn.Module) -> int:
    """Quantize every ``nn.Linear`` of ``model`` in place (int8 weights, dynamic activations); returns how many.

    In place, so the fp32 copy is not kept alive next to the quantized one (it would count in peak memory).
    """
    return apply_dynamic(model, "int8")


def apply_dynamic(model: torch.nn.Module, weights: str) -> int:
    """Quantize every ``nn.Linear`` of ``model`` in place with ``weights`` ``"int8"`` (``torch.qint8``) or
    ``"fp16"`` (``torch.float16``: fp16 weights, fp32 arithmetic); returns how many layers became quantized."""
    import torch

    weight_dtype = {"int8": torch.qint8, "fp16": torch.float16}[weights]
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it is deprecated in favour of torchao (and imports modules that use
        # the deprecated torch.jit.script_method); it still works in torch 2.13, and torchao is a heavy extra
        # dependency for one variant.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=weight_dtype, inplace=True)
    return sum(1 for m in model.modules() if isinstance(m, DynamicLinear))


# -- the axis: why it cannot run here, and applying it --------------------------------------------------------


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    if variant.quantization == "none":
        return None
    reason = dynamic_unavailable_reason(device_type, variant.dtype, variant.offload, variant.quantization)
    if reason or variant.quantization != "fp16":
        return reason
    import torch

    supported = torch.backends.quantized.supported_engines
    if not any(e in supported for e in _FP16_WEIGHT_ENGINES):
        return (
            f"fp16 weights (quantize_dynamic dtype=torch.float16) need the fbgemm or x86 quantized engine, and this "
            f"torch build has {supported}; use quantization=int8"
        )
    return None


def apply(model: torch.nn.Module, variant: Variant) -> int:
    """Quantize when ``variant`` asks; returns how many Linear layers became int8 or fp16 (``quantized_linear``)."""
    return 0 if variant.quantization == "none" else apply_dynamic(model, variant.quantization)
