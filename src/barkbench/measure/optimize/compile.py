"""The compile axis: the three transformer sub-models' ``forward`` go through ``torch.compile`` (inductor).

``BarkModel.generate`` itself stays eager: it is Python control flow (sliding windows, per-codebook loops) around
those forwards, and it is the forwards that run once per token. The first call compiles (and recompiles once per
new shape: prefill vs. one-token steps, each fine codebook); ``compile_seconds`` in the results is that first
call's excess over the steady state. Applied last, so the compiled graphs see the final attention, weights and
device.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
from typing import Any

from barkbench.bark import SUB_MODEL_ATTRIBUTES
from barkbench.variants import Variant

#: The BarkModel attributes compiled by the ``compile`` variant: the three autoregressive/non-causal
#: transformers that run per token or per codebook. The EnCodec decoder runs once per call.
COMPILED_SUBMODELS = SUB_MODEL_ATTRIBUTES

#: Marks a compiled sub-model (the tests and the results read it).
COMPILED_MARK = "_barkbench_compiled"

#: Dynamo's per-function recompile budget. The semantic and coarse models share one forward code object
#: (transformers' deprecation wrapper), each needs a prefill graph and a dynamic one-token graph, and the fine
#: model specializes on the codebook index (6 graphs): the default budget of 8 is too tight, and past it
#: dynamo silently runs the rest eagerly.
RECOMPILE_LIMIT = 32


def compile_unavailable_reason(device_type: str) -> str | None:
    """Why ``torch.compile`` (inductor) cannot run on ``device_type`` here, or None."""
    import torch

    if not hasattr(torch, "compile"):
        return f"compile needs torch.compile (torch >= 2.0); found torch {torch.__version__}"
    if device_type == "cpu":
        compiler = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
        if not compiler:
            return "compile on CPU needs a C++ compiler for inductor (g++ or clang++ on PATH, or $CXX)"
        return None
    if device_type in ("cuda", "xpu"):
        if importlib.util.find_spec("triton") is None:
            return f"compile on {device_type} needs the triton package for inductor's GPU kernels"
        # triton builds a small C launcher per kernel at run time: it needs a C compiler and Python's headers.
        cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
        if not cc:
            return f"compile on {device_type} needs a C compiler for triton's kernel launchers (gcc on PATH, or $CC)"
        include = sysconfig.get_paths().get("include")
        if not include or not os.path.exists(os.path.join(include, "Python.h")):
            return (
                f"compile on {device_type} needs Python's C headers for triton's kernel launchers (Python.h not in "
                f"{include}; e.g. apt-get install python3-dev)"
            )
    if device_type not in ("cpu", "cuda", "xpu"):
        return f"compile with inductor is not supported on {device_type}; use compile=false"
    return None


def compile_submodels(model: Any, names: tuple[str, ...] = COMPILED_SUBMODELS, **compile_kwargs: Any) -> list[str]:
    """Wrap each sub-model's ``forward`` in ``torch.compile`` (lazy: nothing compiles until the first call)."""
    import torch

    dynamo_config = torch._dynamo.config
    # recompile_limit is the current name; cache_size_limit the one before torch 2.6.
    for option in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, option):
            setattr(dynamo_config, option, max(getattr(dynamo_config, option), RECOMPILE_LIMIT))
            break
    compiled = []
    for name in names:
        module = getattr(model, name)
        module.forward = torch.compile(module.forward, **compile_kwargs)
        setattr(module, COMPILED_MARK, True)
        compiled.append(name)
    return compiled


# -- the axis: why it cannot run here, and applying it --------------------------------------------------------


def unsupported_reason(variant: Variant, device_type: str) -> str | None:
    return compile_unavailable_reason(device_type) if variant.compile else None


def apply(model: Any, variant: Variant) -> tuple[str, ...]:
    """Compile the sub-models when ``variant`` asks; returns which ones (``compiled`` in the results)."""
    if not variant.compile:
        return ()
    return tuple(compile_submodels(model, **compile_kwargs(variant, model.device.type)))


def compile_kwargs(variant: Variant, device_type: str) -> dict[str, Any]:
    """``torch.compile`` options: with a static KV cache on CUDA, ``mode="reduce-overhead"`` — the decode step's
    shapes no longer grow with the context, so CUDA graphs of it can be captured once and replayed without the
    per-kernel launch cost. Elsewhere inductor's default mode (CUDA graphs exist on CUDA only)."""
    if variant.kv_cache == "static" and device_type == "cuda":
        return {"mode": "reduce-overhead"}
    return {}
