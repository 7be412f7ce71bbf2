"""What an optimization variant is, the blog's presets, and the parser behind ``--variants``.

A variant is a frozen value with four axes. Its ``id`` is derived from the axes alone, so the same variant
reached through a preset name or an ad hoc spec gets the same pytest id — the key pytest-benchmark compares
runs by.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ATTENTIONS = ("eager", "sdpa", "bettertransformer", "flash_attention_2")
DTYPES = ("fp32", "fp16", "bf16")
OFFLOADS = ("none", "cpu")

# Short forms accepted on the command line; the id always uses the long form.
_ATTENTION_ALIASES = {"bt": "bettertransformer", "fa2": "flash_attention_2", "none": "eager"}
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
_OFFLOAD_ALIASES = {"off": "none", "false": "none", "no": "none", "true": "cpu", "yes": "cpu"}


class VariantError(ValueError):
    """A ``--variants`` value that names no preset or has a bad axis; the message says how to fix it."""


@dataclass(frozen=True, order=True)
class Variant:
    attention: str = "eager"
    dtype: str = "fp32"
    offload: str = "none"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise VariantError(
                f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTIONS)}"
            )
        if self.dtype not in DTYPES:
            raise VariantError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.offload not in OFFLOADS:
            raise VariantError(f"unknown offload {self.offload!r}; choose one of {', '.join(OFFLOADS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise VariantError(f"batch must be a positive integer, got {self.batch_size!r}; e.g. batch=8")

    @property
    def id(self) -> str:
        offload = "-offload" if self.offload == "cpu" else ""
        return f"{self.attention}-{self.dtype}{offload}-bs{self.batch_size}"

    @property
    def is_baseline(self) -> bool:
        """The row the blog's relative tables divide by: eager fp32 without offload."""
        return (self.attention, self.dtype, self.offload) == ("eager", "fp32", "none")

    def as_dict(self) -> dict[str, object]:
        return {
            "variant": self.id,
            "attention": self.attention,
            "dtype": self.dtype,
            "offload": self.offload,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Variant:
        return cls(
            attention=str(data["attention"]),
            dtype=str(data["dtype"]),
            offload=str(data["offload"]),
            batch_size=int(data["batch_size"]),  # type: ignore[arg-type]
        )


_BT = "bettertransformer"

#: Named presets. The first four reproduce the blog's batch-1 table, the ``bs8*`` ones its batch-8 table
#: (BetterTransformer is on in every row there), ``fp16``/``offload`` its single-technique rows.
PRESETS: dict[str, Variant] = {
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
    # barkbench's own fused attention: what replaces BetterTransformer on the current stack.
    "sdpa": Variant(attention="sdpa"),
    "bf16": Variant(dtype="bf16"),
    "sdpa+bf16": Variant(attention="sdpa", dtype="bf16"),
}


def _swap_attention(variants: list[Variant], attention: str) -> list[Variant]:
    return [replace(v, attention=attention) if v.attention == _BT else v for v in variants]


_BLOG = [PRESETS[name] for name in PRESETS if name not in {"sdpa", "bf16", "sdpa+bf16"}]

#: Named groups of presets.
GROUPS: dict[str, list[Variant]] = {
    "blog-bs1": [PRESETS[n] for n in ("baseline", "bettertransformer", "offload+bettertransformer",
                                      "offload+bettertransformer+fp16")],
    "blog-bs8": [PRESETS[n] for n in ("bs8", "bs8+fp16", "bs8+offload", "bs8+offload+fp16")],
    "blog": _BLOG,
    # The blog's table with barkbench's SDPA in place of BetterTransformer: runs on any transformers.
    "blog-sdpa": _swap_attention(_BLOG, "sdpa"),
    "cpu": [PRESETS[n] for n in ("baseline", "sdpa", "bf16", "sdpa+bf16", "fp16")],
}

#: What ``pytest bench/`` runs when ``--variants`` is not given: the blog's matrix as it was, plus the same
#: matrix with barkbench's SDPA. Rows this machine cannot run are skipped with the reason.
DEFAULT_VARIANTS = "blog,blog-sdpa"


def _parse_axis(key: str, value: str) -> tuple[str, object]:
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
    raise VariantError(f"unknown axis {key!r}; axes are attention, dtype, offload, batch")


def parse_adhoc(spec: str) -> Variant:
    """``attention=sdpa,dtype=bf16,batch=8`` → Variant; unspecified axes keep the baseline's value."""
    axes: dict[str, object] = {}
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
    return Variant(**axes)  # type: ignore[arg-type]


def parse_variants(value: str) -> list[Variant]:
    """Parse one ``--variants`` value: ``;``-separated items, each a comma list of preset/group names or an
    ad hoc ``axis=value,...`` spec. Duplicates (by id) are dropped, first occurrence wins."""
    found: list[Variant] = []
    items = [item.strip() for item in value.split(";")]
    if not any(items):
        raise VariantError("--variants is empty; give a preset such as 'baseline' or 'blog'")
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
