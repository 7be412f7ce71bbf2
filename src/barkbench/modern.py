"""Variants beyond the blog: ``torch.compile`` of the sub-models and dynamic int8 quantization.

Both are applied to an already loaded (and attention-swapped) model by ``optimize.prepare_model``; each has an
``*_unavailable_reason`` that says, without loading anything, why it cannot run here (the skip reason).

- ``compile``: the three transformer sub-models' ``forward`` go through ``torch.compile`` (inductor).
  ``BarkModel.generate`` itself stays eager: it is Python control flow (sliding windows, per-codebook loops)
  around those forwards, and it is the forwards that run once per token. The first call compiles (and
  recompiles once per new shape: prefill vs. one-token steps, each fine codebook); ``compile_seconds`` in the
  results is that first call's excess over the steady state.
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` replaces every ``nn.Linear`` with a dynamically
  quantized one (int8 weights, activations quantized per call), CPU kernels only (fbgemm/x86/onednn/qnnpack).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from typing import Any

import torch

#: The BarkModel attributes compiled by the ``compile`` variant: the three autoregressive/non-causal
#: transformers that run per token or per codebook. The EnCodec decoder runs once per call.
COMPILED_SUBMODELS = ("semantic", "coarse_acoustics", "fine_acoustics")

#: Marks a compiled sub-model (the tests and the results read it).
COMPILED_MARK = "_barkbench_compiled"

#: Dynamo's per-function recompile budget. The semantic and coarse models share one forward code object
#: (transformers' deprecation wrapper), each needs a prefill graph and a dynamic one-token graph, and the fine
#: model specializes on the codebook index (6 graphs): the default budget of 8 is too tight, and past it
#: dynamo silently runs the rest eagerly.
RECOMPILE_LIMIT = 32

_QUANTIZED_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")


def compile_unavailable_reason(device_type: str) -> str | None:
    """Why ``torch.compile`` (inductor) cannot run on ``device_type`` here, or None."""
    if not hasattr(torch, "compile"):
        return f"compile needs torch.compile (torch >= 2.0); found torch {torch.__version__}"
    if device_type == "cpu":
        compiler = os.environ.get("CXX") or next(
            (c for c in ("g++", "c++", "clang++") if shutil.which(c)), None
        )
        if not compiler:
            return "compile on CPU needs a C++ compiler for inductor (g++ or clang++ on PATH, or $CXX)"
        return None
    if device_type in ("cuda", "xpu") and importlib.util.find_spec("triton") is None:
        return f"compile on {device_type} needs the triton package for inductor's GPU kernels"
    if device_type not in ("cpu", "cuda", "xpu"):
        return f"compile with inductor is not supported on {device_type}; use compile=false"
    return None


def compile_submodels(model: Any, names: tuple[str, ...] = COMPILED_SUBMODELS, **compile_kwargs: Any) -> list[str]:
    """Wrap each sub-model's ``forward`` in ``torch.compile`` (lazy: nothing compiles until the first call)."""
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


def int8_unavailable_reason(device_type: str, dtype: str, offload: str = "none") -> str | None:
    """Why dynamic int8 quantization cannot run for this variant here, or None."""
    if device_type != "cpu":
        return (
            f"dynamic int8 quantization (torch.ao quantize_dynamic) has CPU kernels only; this run is on "
            f"{device_type}: run it with --bark-device cpu"
        )
    if dtype != "fp32":
        return f"dynamic int8 quantizes fp32 Linear layers; use dtype=fp32 with quantization=int8, not {dtype}"
    if offload != "none":
        return "dynamic int8 runs on CPU; offload moves sub-models to an accelerator: use offload=none"
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
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it is deprecated in favour of torchao (and imports modules that use
        # the deprecated torch.jit.script_method); it still works in torch 2.13, and torchao is a heavy extra
        # dependency for one variant.
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return sum(1 for m in model.modules() if isinstance(m, DynamicLinear))
