"""The precision axis: the dtype the weights are loaded in (fp32, fp16, bf16), chosen at load time as in the blog.

Precision takes effect in ``from_pretrained`` (``load_kwargs``), not on a loaded model: casting after loading
would hold both copies at once and count them in the peak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from barkbench.variants import Variant

if TYPE_CHECKING:
    import torch


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a variant's ``dtype`` axis value."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    if variant.dtype == "bf16" and device_type == "cuda" and not _cuda_bf16_native():
        return "bf16 needs a GPU with bfloat16 support (compute capability 8.0+, e.g. A100); use dtype=fp16"
    return None


def load_kwargs(variant: Variant) -> dict[str, Any]:
    """``from_pretrained`` kwargs loading the weights in ``variant``'s dtype."""
    return {_dtype_kwarg(): torch_dtype(variant.dtype)}


def _cuda_bf16_native() -> bool:
    """Native bf16 on the GPU (compute capability 8.0+). Pre-Ampere GPUs emulate it slowly, and torch calls that
    "supported" unless asked otherwise: measuring it as "bf16" would mislead. Read from ``device.probe()`` (a
    child process): this check runs in the pytest process, which must not create a CUDA context."""
    from barkbench.measure import device

    facts = device.probe()
    return bool(facts.kind == "cuda" and facts.devices and facts.devices[0].bf16_native)


def _dtype_kwarg() -> str:
    import transformers
    from packaging.version import Version

    # from_pretrained's ``torch_dtype`` became ``dtype`` in transformers 4.56 (the old name warns in 5.x).
    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
