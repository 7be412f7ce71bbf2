"""Apply a variant to a model, one module per axis: precision, attention, quantize, offload, compile.

Every axis module says why it cannot run here, without loading anything (``unsupported_reason(variant,
device_type) -> str | None``), and applies itself: to the loaded model (``apply``), or, for the two choices
transformers makes while loading (the dtype, FlashAttention-2), through ``load_kwargs`` for ``from_pretrained``.
``prepare_model`` applies them in the blog's order: dtype at load, ``to(device)``, attention, int8, CPU offload,
``eval``, compile (last, so the graphs see the final attention, weights and device).

A variant this machine cannot run raises ``VariantUnsupported``; its message names what is missing and becomes
the pytest skip reason. Nothing is ever silently replaced by another variant. Importing this package does not
import torch; applying a variant does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from barkbench.measure import sources
from barkbench.measure.optimize import attention, cache, compile, offload, precision, quantize
from barkbench.variants import Variant

#: The order in which the axes' reasons are asked: the first reason found is the skip reason.
AXES = (offload, attention, precision, quantize, cache, compile)


class VariantUnsupported(RuntimeError):
    """This variant cannot run on this machine/stack; the message is the skip reason."""


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    """Why ``variant`` cannot run here (the first axis that says so), or None. Cheap: loads no model."""
    for axis in AXES:
        reason = axis.unsupported_reason(variant, device_type)
        if reason:
            return reason
    return None


@dataclass
class PreparedModel:
    model: Any
    #: Where the inputs go: the device, or the offloaded model's execution device.
    device: Any
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
    """Load ``source`` as ``variant`` asks, in the documented order (see the module docstring)."""
    import torch

    reason = unsupported_reason(variant, device_type)
    if reason:
        raise VariantUnsupported(reason)
    model = sources.load_model(source, **precision.load_kwargs(variant), **attention.load_kwargs(variant))
    device = torch.device(device_type)
    if variant.offload == "none":
        model = model.to(device)
    model, attention_impl = attention.apply(model, variant, bt_via=bt_via)
    quantized = quantize.apply(model, variant)
    device = offload.apply(model, variant, device)
    model.eval()
    compiled = compile.apply(model, variant)
    return PreparedModel(model, device, attention_impl, attention.attention_summary(model), compiled, quantized)
