"""The offload axis: accelerate's ``enable_cpu_offload`` keeps the sub-models on the CPU and moves each to the
accelerator only while it runs (the blog's memory saver). Without offload the model is placed on the device
right after loading; with it, offload is enabled after the attention swap and quantization, as in the blog.
"""

from __future__ import annotations

from typing import Any

from barkbench.variants import Variant


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    if variant.offload != "cpu":
        return None
    if device_type == "cpu":
        return (
            "offload needs an accelerator: enable_cpu_offload() moves each sub-model to a GPU when it runs, "
            "and this machine has none"
        )
    try:
        import accelerate  # noqa: F401
    except ImportError:
        return "offload needs the accelerate package (pip install accelerate)"
    return None


def apply(model: Any, variant: Variant, device: Any) -> Any:
    """Enable CPU offload when ``variant`` asks; returns the device the model's inputs go to."""
    if variant.offload != "cpu":
        return device
    model.enable_cpu_offload()
    return model.device
