"""What an optimization variant is, the blog's presets, and the parser behind ``--bark-variants``.

A variant is a frozen value with four axes. Its ``id`` is derived from the axes alone, so the same variant
reached through a preset name or an ad hoc spec gets the same pytest id — the key pytest-benchmark compares
runs by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal, get_args

Attention = Literal["eager", "sdpa", "bettertransformer", "flash_attention_2"]
Dtype = Literal["fp32", "fp16", "bf16"]
Offload = Literal["none", "cpu"]
#: Weight quantization of the Linear layers, dynamic (CPU, fp32 activations): int8 weights, or fp16 weights
#: ("fp16", id "-fp16w": half the fp32 bytes, fp32 arithmetic). Not part of the id unless set.
Quantization = Literal["none", "int8", "fp16"]

#: The KV cache the semantic and coarse sub-models' ``generate`` use: transformers' default DynamicCache (grows
#: every step) or a StaticCache (preallocated, fixed shapes; ``cache_implementation="static"``).
KvCache = Literal["dynamic", "static"]

ATTENTIONS: tuple[Attention, ...] = get_args(Attention)
KV_CACHES: tuple[KvCache, ...] = get_args(KvCache)
DTYPES: tuple[Dtype, ...] = get_args(Dtype)
OFFLOADS: tuple[Offload, ...] = get_args(Offload)
QUANTIZATIONS: tuple[Quantization, ...] = get_args(Quantization)

# Short forms accepted on the command line; the id always uses the long form.
_ATTENTION_ALIASES = {"bt": "bettertransformer", "fa2": "flash_attention_2", "none": "eager"}
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_OFFLOAD_ALIASES = {"off": "none", "false": "none", "no": "none", "true": "cpu", "yes": "cpu"}
_QUANTIZATION_ALIASES = {
    "off": "none",
    "false": "none",
    "no": "none",
    "qint8": "int8",
    "dynamic-int8": "int8",
    "fp16w": "fp16",
    "fp16-weights": "fp16",
}
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class VariantError(ValueError):
    """A ``--bark-variants`` value that names no preset or has a bad axis; the message says how to fix it."""


@dataclass(frozen=True, order=True)
class Variant:
    attention: Attention = "eager"
    dtype: Dtype = "fp32"
    offload: Offload = "none"
    batch_size: int = 1
    # Axes beyond the blog. They come last and default to off, so every earlier id stays what it was.
    quantization: Quantization = "none"
    compile: bool = False
    kv_cache: KvCache = "dynamic"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise VariantError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTIONS)}")
        if self.dtype not in DTYPES:
            raise VariantError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.offload not in OFFLOADS:
            raise VariantError(f"unknown offload {self.offload!r}; choose one of {', '.join(OFFLOADS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise VariantError(f"batch must be a positive integer, got {self.batch_size!r}; e.g. batch=8")
        if self.quantization not in QUANTIZATIONS:
            raise VariantError(f"unknown quantization {self.quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
        if not isinstance(self.compile, bool):
            raise VariantError(f"compile must be true or false, got {self.compile!r}")
        if self.kv_cache not in KV_CACHES:
            raise VariantError(f"unknown kv_cache {self.kv_cache!r}; choose one of {', '.join(KV_CACHES)}")

    @property
    def id(self) -> str:
        offload = "-offload" if self.offload == "cpu" else ""
        # Inserted before -bs<N> (reports strip that suffix to find a series); absent at their defaults.
        int8 = {"int8": "-int8", "fp16": "-fp16w"}.get(self.quantization, "")
        compiled = "-compile" if self.compile else ""
        static = "-static" if self.kv_cache == "static" else ""
        return f"{self.attention}-{self.dtype}{int8}{offload}{static}{compiled}-bs{self.batch_size}"

    @property
    def is_baseline(self) -> bool:
        """The row the blog's relative tables divide by: eager fp32 without offload, int8 or compile (every axis
        but the batch size at its default). The one baseline rule: ``barkbench.results.schema`` reads it."""
        return self == Variant(batch_size=self.batch_size)

    def as_dict(self) -> dict[str, object]:
        return {
            "variant": self.id,
            "attention": self.attention,
            "dtype": self.dtype,
            "offload": self.offload,
            "batch_size": self.batch_size,
            "quantization": self.quantization,
            "compile": self.compile,
            "kv_cache": self.kv_cache,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variant:
        """From ``as_dict``'s keys (e.g. a benchmark's extra_info); values are checked by the constructor."""
        return cls(
            attention=str(data["attention"]),  # type: ignore[arg-type]
            dtype=str(data["dtype"]),  # type: ignore[arg-type]
            offload=str(data["offload"]),  # type: ignore[arg-type]
            batch_size=int(data["batch_size"]),
            # Absent in results written before these axes existed.
            quantization=str(data.get("quantization", "none")),  # type: ignore[arg-type]
            compile=bool(data.get("compile", False)),
            kv_cache=str(data.get("kv_cache", "dynamic")),  # type: ignore[arg-type]
        )


_BT: Attention = "bettertransformer"
_FA2: Attention = "flash_attention_2"

#: Named presets, in one table. The first four reproduce the blog's batch-1 table, the ``bs8*`` ones its batch-8
#: table (BetterTransformer is on in every row there), ``fp16``/``offload`` its single-technique rows; then
#: barkbench's own SDPA (what replaces BetterTransformer on the current stack) and bf16; then the variants beyond
#: the blog: FlashAttention-2 (CUDA), torch.compile of the sub-models, dynamic int8 Linear layers (CPU).
PRESETS: Mapping[str, Variant] = MappingProxyType(
    {
        "baseline": Variant(),
        "bettertransformer": Variant(attention=_BT),
        "offload+bettertransformer": Variant(attention=_BT, offload="cpu"),
        "offload+bettertransformer+fp16": Variant(attention=_BT, offload="cpu", dtype="fp16"),
        "fp16": Variant(dtype="fp16"),
        "offload": Variant(offload="cpu"),
        "bs8": Variant(attention=_BT, batch_size=8),
        "bs8+fp16": Variant(attention=_BT, dtype="fp16", batch_size=8),
        "bs8+offload": Variant(attention=_BT, offload="cpu", batch_size=8),
        "bs8+offload+fp16": Variant(attention=_BT, offload="cpu", dtype="fp16", batch_size=8),
        "sdpa": Variant(attention="sdpa"),
        "bf16": Variant(dtype="bf16"),
        "sdpa+bf16": Variant(attention="sdpa", dtype="bf16"),
        "flash_attention_2+fp16": Variant(attention=_FA2, dtype="fp16"),
        "flash_attention_2+bf16": Variant(attention=_FA2, dtype="bf16"),
        "compile": Variant(compile=True),
        "sdpa+compile": Variant(attention="sdpa", compile=True),
        "sdpa+bf16+compile": Variant(attention="sdpa", dtype="bf16", compile=True),
        "int8": Variant(quantization="int8"),
        "sdpa+int8": Variant(attention="sdpa", quantization="int8"),
        "static-cache": Variant(kv_cache="static"),
        "static-cache+compile": Variant(kv_cache="static", compile=True),
        # CPU combinations aimed at the decode steps' gap to the machine's limit (docs/measurement.md, "How close to
        # the limit").
        "fp16-weights": Variant(quantization="fp16"),
        "sdpa+fp16-weights": Variant(attention="sdpa", quantization="fp16"),
        "sdpa+int8+static-cache": Variant(attention="sdpa", quantization="int8", kv_cache="static"),
    }
)


def _presets(*names: str) -> tuple[Variant, ...]:
    return tuple(PRESETS[name] for name in names)


_BLOG_BS1 = _presets("baseline", "bettertransformer", "offload+bettertransformer", "offload+bettertransformer+fp16")
_BLOG_BS8 = _presets("bs8", "bs8+fp16", "bs8+offload", "bs8+offload+fp16")
_BLOG = (*_BLOG_BS1, *_presets("fp16", "offload"), *_BLOG_BS8)

#: Named groups of presets.
GROUPS: Mapping[str, tuple[Variant, ...]] = MappingProxyType(
    {
        "blog-bs1": _BLOG_BS1,
        "blog-bs8": _BLOG_BS8,
        "blog": _BLOG,
        # The blog's table with barkbench's SDPA in place of BetterTransformer: runs on any transformers.
        "blog-sdpa": tuple(replace(v, attention="sdpa") if v.attention == _BT else v for v in _BLOG),
        "cpu": _presets("baseline", "sdpa", "bf16", "sdpa+bf16", "fp16"),
        "modern": _presets(
            "bf16", "sdpa+bf16", "flash_attention_2+bf16", "compile", "sdpa+bf16+compile", "int8", "sdpa+int8"
        ),
        # The CPU combination study: which weight/activation formats move a decode stage toward its floor.
        "cpu-combinations": _presets(
            "baseline", "sdpa", "sdpa+bf16", "sdpa+int8", "sdpa+fp16-weights", "sdpa+int8+static-cache"
        ),
    }
)

#: What ``pytest bench/`` runs when ``--bark-variants`` is not given: the blog's matrix as it was, plus the same
#: matrix with barkbench's SDPA. Rows this machine cannot run are skipped with the reason.
DEFAULT_VARIANTS = "blog,blog-sdpa"

#: Why the CPU default leaves rows out: printed in the run's header, so the choice is never silent.
CPU_DEFAULT_NOTE = (
    "on CPU the default leaves out fp16 at batch 8 (CPU fp16 runs ~5x slower than fp32, and those two rows "
    "alone take longer than the rest of the suite); ask for them with --bark-variants blog-bs8 or 'bs8+fp16'"
)


#: Why a CPU without native half-precision instructions leaves every fp16/bf16 row out of the default.
CPU_EMULATED_HALF_NOTE = (
    "this CPU has no native bf16/fp16 instructions (no avx512_bf16, amx_bf16, avx512_fp16 or amx_fp16 flag): "
    "torch emulates them, slower than fp32, so the default leaves the fp16 and bf16 rows out; ask for them by "
    "name (e.g. --bark-variants 'fp16' or 'bf16') to measure the emulation anyway"
)


def default_variants(device_type: str, cpu_half_native: bool = True) -> list[Variant]:
    """The default selection: ``DEFAULT_VARIANTS``, less fp16 at batch 8 on CPU (see ``CPU_DEFAULT_NOTE``), and
    less every fp16/bf16 row on a CPU that only emulates half precision (``CPU_EMULATED_HALF_NOTE``)."""
    variants = parse_variants(DEFAULT_VARIANTS)
    if device_type == "cpu":
        variants = [v for v in variants if not (v.dtype == "fp16" and v.batch_size > 1)]
        if not cpu_half_native:
            variants = [v for v in variants if v.dtype == "fp32"]
    return variants


def _parse_axis(key: str, value: str) -> tuple[str, Any]:
    value = value.strip().lower()
    if key in ("attention", "attn", "attn_implementation"):
        return "attention", _ATTENTION_ALIASES.get(value, value)
    if key in ("dtype", "torch_dtype"):
        return "dtype", _DTYPE_ALIASES.get(value, value)
    if key == "offload":
        return "offload", _OFFLOAD_ALIASES.get(value, value)
    if key in ("batch", "batch_size", "bs"):
        try:
            return "batch_size", int(value)
        except ValueError:
            raise VariantError(f"batch must be a positive integer, got {value!r}; e.g. batch=8") from None
    if key in ("quantization", "quant", "quantize"):
        return "quantization", _QUANTIZATION_ALIASES.get(value, value)
    if key == "compile":
        if value not in _BOOLEANS:
            raise VariantError(f"compile must be true or false, got {value!r}; e.g. compile=true")
        return "compile", _BOOLEANS[value]
    if key in ("kv_cache", "cache"):
        return "kv_cache", value
    raise VariantError(
        f"unknown axis {key!r}; axes are attention, dtype, offload, batch, quantization, compile, kv_cache"
    )


def parse_adhoc(spec: str) -> Variant:
    """``attention=sdpa,dtype=bf16,batch=8`` → Variant; unspecified axes keep the baseline's value."""
    axes: dict[str, Any] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise VariantError(
                f"{part!r} in ad hoc variant {spec!r} is not axis=value; write e.g. attention=sdpa,batch=8"
            )
        key, value = part.split("=", 1)
        name, parsed = _parse_axis(key.strip().lower(), value)
        if name in axes:
            raise VariantError(f"axis {key.strip()!r} given twice in {spec!r}")
        axes[name] = parsed
    if not axes:
        raise VariantError(f"empty ad hoc variant {spec!r}; write e.g. attention=sdpa,dtype=bf16")
    return Variant(**axes)


def parse_variants(value: str) -> list[Variant]:
    """Parse one ``--bark-variants`` value: ``;``-separated items, each a comma list of preset/group names or an
    ad hoc ``axis=value,...`` spec. Duplicates (by id) are dropped, first occurrence wins."""
    found: list[Variant] = []
    items = [item.strip() for item in value.split(";")]
    if not any(items):
        raise VariantError("--bark-variants is empty; give a preset such as 'baseline' or 'blog'")
    for item in items:
        if not item:
            continue
        if "=" in item:
            found.append(parse_adhoc(item))
            continue
        for name in (n.strip() for n in item.split(",")):
            if not name:
                continue
            if name in GROUPS:
                found.extend(GROUPS[name])
            elif name in PRESETS:
                found.append(PRESETS[name])
            else:
                known = ", ".join([*GROUPS, *PRESETS])
                raise VariantError(
                    f"unknown variant {name!r}; use a preset or group ({known}) "
                    "or an ad hoc spec like attention=sdpa,dtype=bf16,batch=8"
                )
    return dedupe(found)


def dedupe(variants: list[Variant]) -> list[Variant]:
    seen: dict[str, Variant] = {}
    for variant in variants:
        seen.setdefault(variant.id, variant)
    return list(seen.values())
