"""The machine's limits, measured: copy bandwidth, the decode steps' matrix-vector rate and the fine stage's
matrix-matrix rate, per device and dtype — what ``barkbench.results.efficiency`` holds each stage against.

- **copy bandwidth**: ``dst.copy_(src)`` over buffers much larger than any cache (``COPY_BYTES``), read + write
  bytes counted, as STREAM's copy does.
- **kernel floor**: one decode step's matmuls alone (``F.linear`` of a ``batch``-row activation with every
  matrix of the step, ``bark.SubModelShape.decode_matrices``), in a loop, no ``generate``; the bytes those weights
  hold over that time is the GEMV rate.
- **matmul rate**: the fine stage's dominant product (``bark.fine_gemm_shape``) in the dtype, timed the way
  the stage's ``nn.Linear`` runs it: ``F.linear`` with an (out, in) weight. The same product as ``torch.mm`` with
  a (k, n) matrix takes another kernel path: in bf16 on an AVX2-only CPU it ran 20× slower (0.73 vs 15 GFLOP/s,
  one thread), and the fine stage then showed 3870 % of its "limit".

A variant whose ``nn.Linear`` layers are dynamically quantized (``weights="int8"``, ``"fp16"``: int8 or fp16
weights, fp32 activations) multiplies with other kernels: its kernel floor and matmul rate are timed with
torch.ao's dynamic quantized ``Linear`` over the same shapes (``quantized::linear_dynamic`` and
``linear_dynamic_fp16``), and its GEMV rate counts the bytes those weights hold (1 or 2 per weight).

Every figure is the best (shortest time) of ``REPEATS`` runs after one warm-up: on a shared machine the best
run is the one least disturbed, and it is what repeats between two probes. On an accelerator the device is
synchronized before each clock read (``device.synchronize``). The bandwidth the stages are held to is the
larger of the copy and the GEMV rates: where a stage's weights fit in a cache (a tiny model), the GEMV reads
faster than DRAM copies, and a floor above the kernels' own time would be no floor.

The results are cached in ``<cache folder>/machine-limits.json`` (``limits_cache``) under a key made of the
machine, the device, the dtype, the threads, the library versions and the shapes (each entry keeps its versions
and date), so a probe runs once per machine and stack; ``remeasure=True`` (``--bark-remeasure-limits``) measures
again.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from barkbench.bark import DECODE_STAGES, STAGE_SUBMODELS, SubModelShape, fine_gemm_shape
from barkbench.measure import device as device_mod
from barkbench.measure.limits_cache import CACHE_FILE as CACHE_FILE
from barkbench.measure.limits_cache import cache_path, read_entries, write_entries
from barkbench.measure.limits_cache import cached_entries as cached_entries
from barkbench.measure.sources import cache_lock

#: Bytes of each copy buffer: CPU last-level caches are tens of MB, an H100's L2 50 MB.
COPY_BYTES = {"cpu": 256 * 2**20, "accelerator": 1024 * 2**20}
REPEATS = 5
#: Time one figure may take (beyond its warm-up) before the repetitions stop early.
BUDGET_S = 1.0
GEMM_TARGET_S = 0.1
MIN_GEMM_ROWS = 32
#: The probe's figures from two calls agree within this factor (best of REPEATS each): loose enough for a
#: shared 2-core machine where another process can take a core for a whole repetition, tight enough to catch a
#: unit slip (a factor of 2 in bytes, 1000 in time).
REPEATABILITY_FACTOR = 3.0


def _versions() -> dict[str, str | None]:
    versions = device_mod.library_versions()
    return {name: versions.get(name) for name in ("torch", "transformers")}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


#: Raised when the probe measures differently, so entries cached by an older probe are measured again
#: (2: the matmul rate through ``F.linear``, as ``nn.Linear`` runs it).
PROBE_METHOD = 2

#: Bytes per weight of each dynamically quantized ``Linear`` kind (``weights``).
QUANTIZED_WEIGHT_BYTES = {"int8": 1, "fp16": 2}


def cache_key(
    device_type: str,
    dtype: str,
    shapes: Mapping[str, SubModelShape],
    batch: int,
    threads: int,
    device_name: str,
    weights: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The cache key and what it is made of (stored with the entry, so a reader sees why two entries differ)."""
    parts: dict[str, Any] = {
        "node": platform.node(),
        "cpu": _cpu_model(),
        "device": device_type,
        "device_name": device_name,
        "dtype": dtype,
        "threads": threads,
        "batch": batch,
        "versions": _versions(),
        "shapes": {name: vars(shape) for name, shape in sorted(shapes.items())},
        "method": PROBE_METHOD,
    }
    if weights is not None:
        # Only when set: the float entries keep the keys they were cached under.
        parts["weights"] = weights
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16], parts


def _best_seconds(run: Callable[[], object], repeats: int, device_type: str, budget_s: float = BUDGET_S) -> float:
    """Shortest of up to ``repeats`` timed runs after one warm-up (first-touch page faults, kernel selection);
    stops early, after two timed runs at least, once ``budget_s`` is spent, so a slow kernel keeps the probe short."""
    run()
    best = float("inf")
    spent = 0.0
    for done in range(repeats):
        device_mod.synchronize(device_type)  # named: a CPU probe never queries CUDA (issue 24 item 2)
        start = time.perf_counter()
        run()
        device_mod.synchronize(device_type)
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if done >= 1 and spent > budget_s:
            break
    return best


def _gemm_rows(run_once: Callable[[int], float], rows: int) -> int:
    """Rows of the fine stage's product to time: all of them unless one product takes longer than
    ``GEMM_TARGET_S`` (bf16 without native support runs 100× slower than fp32 on some CPUs), then fewer — the rate
    of a product this wide barely depends on its row count once it has a few dozen."""
    seconds = run_once(rows)
    if seconds <= GEMM_TARGET_S:
        return rows
    return max(MIN_GEMM_ROWS, int(rows * GEMM_TARGET_S / seconds))


def _copy_seconds(elements: int, dtype: Any, dev: Any, repeats: int) -> float:
    """Best time of one ``dst.copy_(src)`` of ``elements``; the buffers are freed on return."""
    import torch

    src = torch.full((elements,), 0.5, dtype=dtype, device=dev)
    dst = torch.empty_like(src)
    return _best_seconds(functools.partial(dst.copy_, src), repeats, src.device.type)


def _gemm_rate(
    shape: tuple[int, int, int], dtype: Any, dev: Any, repeats: int, weights: str | None = None
) -> tuple[float, list[int]]:
    """FLOP/s of ``(m, k) @ (k, n)`` and the shape timed (fewer rows where one product is slow: ``_gemm_rows``);
    with ``weights``, the product of a dynamic quantized ``Linear``. The buffers are freed on return."""
    import torch

    m, k, n = shape
    product: Callable[[torch.Tensor], object]
    if weights is None:
        # (out, in) = (n, k), as nn.Linear stores it: the stage's own kernel path (see the module's docstring).
        product = functools.partial(
            torch.nn.functional.linear, weight=torch.full((n, k), 0.01, dtype=dtype, device=dev)
        )
    else:
        product = _quantized_linears([(n, k)], weights)[0]

    def once(rows: int) -> float:
        a = torch.full((rows, k), 0.5, dtype=dtype, device=dev)
        device_mod.synchronize(a.device.type)
        start = time.perf_counter()
        product(a)
        device_mod.synchronize(a.device.type)
        return time.perf_counter() - start

    m = _gemm_rows(once, m)
    a = torch.full((m, k), 0.5, dtype=dtype, device=dev)
    seconds = _best_seconds(functools.partial(product, a), repeats, a.device.type)
    return 2 * m * k * n / seconds, [m, k, n]


def _quantized_linears(matrices: Sequence[tuple[int, int]], weights: str) -> list[Any]:
    """Dynamic quantized ``Linear`` modules (CPU) of the given (out, in) shapes, made the way the variant's are:
    ``quantize.apply_dynamic`` over plain ``nn.Linear`` layers."""
    import torch

    from barkbench.measure.optimize import quantize

    layers = torch.nn.ModuleList()
    for rows, cols in matrices:
        layer = torch.nn.Linear(cols, rows, bias=False)
        torch.nn.init.constant_(layer.weight, 0.01)
        layers.append(layer)
    quantize.apply_dynamic(layers, weights)
    return list(layers)


def measure(
    device_type: str,
    dtype: str,
    shapes: Mapping[str, SubModelShape],
    batch: int = 1,
    repeats: int = REPEATS,
    weights: str | None = None,
) -> dict[str, Any]:
    """Measure the limits now (no cache). ``shapes``: the sub-models by stage (``semantic``, ``coarse``,
    ``fine``); missing ones are not measured. ``weights``: ``"int8"`` or ``"fp16"`` to time the decode and fine
    products with dynamic quantized ``Linear`` kernels (CPU, fp32 activations), None for plain ones in ``dtype``."""
    import torch
    import torch.nn.functional as F

    from barkbench.measure.optimize.precision import torch_dtype

    if weights is not None and weights not in QUANTIZED_WEIGHT_BYTES:
        raise ValueError(f"unknown quantized weights {weights!r}; choose one of {', '.join(QUANTIZED_WEIGHT_BYTES)}")
    if weights is not None and (device_type != "cpu" or dtype != "fp32"):
        raise ValueError(
            f"dynamic quantized Linear kernels run on CPU with fp32 activations, not {device_type} {dtype}"
        )
    dt = torch_dtype(dtype)
    dev = torch.device(device_type)
    element = torch.empty((), dtype=dt).element_size()
    weight_bytes = QUANTIZED_WEIGHT_BYTES[weights] if weights else element
    out: dict[str, Any] = {
        "device": device_type,
        "dtype": dtype,
        "repeats": repeats,
        "linear_weights": weights or dtype,
        "linear_weight_bytes": weight_bytes,
    }
    with torch.inference_mode():
        size = COPY_BYTES["cpu" if device_type == "cpu" else "accelerator"]
        out["copy_bytes_per_s"] = 2 * size / _copy_seconds(size // element, dt, dev, repeats)

        kernel: dict[str, float] = {}
        gemv_rates = []
        for stage in DECODE_STAGES:
            if stage not in shapes:
                continue
            shape_list = shapes[stage].decode_matrices()
            x = torch.full((batch, shapes[stage].hidden), 0.5, dtype=dt, device=dev)
            wide = torch.full((batch, 4 * shapes[stage].hidden), 0.5, dtype=dt, device=dev)
            products: list[Callable[[torch.Tensor], object]]
            if weights is None:
                products = [
                    functools.partial(F.linear, weight=torch.full(m, 0.01, dtype=dt, device=dev)) for m in shape_list
                ]
            else:
                products = _quantized_linears(shape_list, weights)
            inputs = [x if cols == x.shape[1] else wide for _, cols in shape_list]

            def step(products: list[Callable[[torch.Tensor], object]] = products, inputs: list[Any] = inputs) -> None:
                for product, activation in zip(products, inputs, strict=True):
                    product(activation)

            seconds = _best_seconds(step, repeats, x.device.type)
            kernel[stage] = seconds
            gemv_rates.append(sum(rows * cols for rows, cols in shape_list) * weight_bytes / seconds)
            del products, inputs, x, wide, step  # the next stage's weights should not sit beside these
        out["kernel_step_seconds"] = kernel
        out["gemv_bytes_per_s"] = max(gemv_rates) if gemv_rates else None
        out["bandwidth_bytes_per_s"] = max([out["copy_bytes_per_s"], *gemv_rates])

        if "fine" in shapes:
            rate, shape = _gemm_rate(fine_gemm_shape(shapes["fine"], batch), dt, dev, repeats, weights)
            out["matmul_flops_per_s"] = rate
            out["matmul_shape"] = shape
    if device_type != "cpu":
        # The caching allocator would keep the probe's buffers (2 GiB and the weights' copies) reserved for
        # the rest of the worker's life: hand them back before the variant's rounds.
        empty_cache = getattr(getattr(torch, device_type, None), "empty_cache", None)
        if empty_cache is not None:
            empty_cache()
    return out


def probe(
    device_type: str,
    dtype: str,
    shapes: Mapping[str, SubModelShape],
    batch: int = 1,
    remeasure: bool = False,
    path: Path | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """The limits for this machine, device, dtype, quantized weights and shapes: from the cache file when an entry
    with the same key exists (``"cached": True``), else measured and stored. The entry carries its versions and
    date."""
    import torch

    path = path or cache_path()
    name = device_mod.device_name(device_type)
    key, parts = cache_key(device_type, dtype, shapes, batch, int(torch.get_num_threads()), name, weights)
    with cache_lock(path):
        entries = read_entries(path)
        if not remeasure and key in entries:
            return {**entries[key], "cached": True}
        entry = {
            **measure(device_type, dtype, shapes, batch, weights=weights),
            "key": key,
            "device_name": name,
            "cpu_model": parts["cpu"],
            "threads": parts["threads"],
            "batch": batch,
            # Which model the figures belong to (``barkbench doctor`` names the architecture from them).
            "shapes": parts["shapes"],
            "versions": parts["versions"],
            "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        entries[key] = entry
        write_entries(path, entries)
    return {**entry, "cached": False}


def stage_shapes(model: Any) -> dict[str, SubModelShape]:
    """The transformer sub-models' shapes of a loaded ``BarkModel``, by stage."""
    return {
        stage: SubModelShape.from_config(getattr(model, sub.attribute).config.to_dict())
        for stage, sub in STAGE_SUBMODELS.items()
    }


#: Set to 1 (``--bark-remeasure-limits`` does, for the session and the workers it starts): measure again even when
#: the cache holds an entry.
REMEASURE_ENV = "BARKBENCH_REMEASURE_LIMITS"

_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def quantized_weights(model: Any) -> str | None:
    """``"int8"`` or ``"fp16"`` when ``model``'s Linear layers are dynamically quantized (the packed weights'
    dtype), else None."""
    import torch

    kinds = {torch.qint8: "int8", torch.float16: "fp16"}
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and getattr(packed, "dtype", None) in kinds:
            return kinds[packed.dtype]
    return None


def for_model(model: Any, device_type: str, dtype: str, batch: int, quantized_linear: int) -> dict[str, Any]:
    """What a variant's results need to hold its stages against the limits: the probe's figures for its device,
    dtype, quantized weights and shapes (``limits``), and the shapes and bytes per weight the efficiency is
    computed from."""
    shapes = stage_shapes(model)
    element = _ELEMENT_BYTES[dtype]
    remeasure = os.environ.get(REMEASURE_ENV) == "1"
    weights = quantized_weights(model) if quantized_linear else None
    return {
        "limits": probe(device_type, dtype, shapes, batch, remeasure=remeasure, weights=weights),
        "efficiency_inputs": {
            "shapes": {stage: dict(vars(shape)) for stage, shape in shapes.items()},
            "element_bytes": element,
            # quantize_dynamic stores every Linear weight as int8 (one byte each) or fp16 (two).
            "linear_weight_bytes": QUANTIZED_WEIGHT_BYTES[weights] if weights else element,
        },
    }
