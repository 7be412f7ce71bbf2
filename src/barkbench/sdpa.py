"""Exact SDPA attention for Hugging Face Bark, as ``attn_implementation="sdpa"``.

transformers never shipped SDPA for Bark (only ``eager`` and ``flash_attention_2``). ``register()`` adds it from
outside, without editing transformers' files, on transformers 4.48 and 5.x::

    from barkbench import sdpa
    sdpa.register()
    model = BarkModel.from_pretrained("suno/bark-small")  # SDPA: the default for a model that supports it
    model.set_attn_implementation("eager")   # and back with "sdpa"

After ``register()`` Bark follows transformers' conventions for a model that supports SDPA: loaded without
``attn_implementation`` it gets SDPA (``attn_implementation="eager"`` asks for eager by name); an unknown name
fails in transformers' own check with its own wording, at load and at ``set_attn_implementation``;
``config.output_attentions = True`` is refused by transformers 5 on any non-eager model, as for every model there
(4.48 accepts it, as for its own SDPA models, and every call then runs eager). ``unregister()`` undoes it all.

What it guarantees, wherever Bark's eager attention is defined: the same output as eager up to floating-point
rounding of a different summation order — the causal mask aligned bottom-right (eager's slice
``bias[:, :, k_len - q_len : k_len, :k_len]``, so a multi-token query over a KV cache sees the right keys), the
attention mask added the way eager adds it (the additive 0 / dtype-min float mask, or the boolean form transformers
5 builds for SDPA), fully masked rows finite and equal to eager's, dropout only in training. A call that asks for
attention weights (``output_attentions=True`` in that call) computes that call the eager way (same output, real
weights), decided from the call's own arguments: concurrent calls on one module never see each other's choice.
``head_mask`` (transformers 4.48 only) is refused with a one-line error.

The fast path is what BetterTransformer ran: no explicit mask when there is no padding, ``is_causal`` only when the
query covers every key, no mask at all for a one-token query. Padding, or a multi-token query over a cache, takes
an explicit float mask instead. Whether a given mask masks anything is read on the CPU only: on a GPU that read
would be a host sync per forward, so a mask given there is applied as it is (transformers 5 gives none without
padding).
"""

from __future__ import annotations

import copy
import functools
import inspect
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.models.bark import modeling_bark as _bark

from barkbench.bark import STAGE_SUBMODELS

#: The implementation's name, as in ``attn_implementation=`` and ``set_attn_implementation``.
NAME = "sdpa"
#: The implementations a loaded Bark model can be switched between (their modules hold the same weights).
SWITCHABLE = ("eager", NAME)
#: BarkConfig's sub-configs whose models hold Bark attention (the transformer stages': the codec has none).
BARK_SUB_CONFIGS = tuple(sub.config_key for sub in STAGE_SUBMODELS.values())

HEAD_MASK_ERROR = (
    "barkbench's SDPA attention does not support head_mask; load the model with attn_implementation='eager' "
    "(or call model.set_attn_implementation('eager')) to use it"
)

# Where BarkSelfAttention.forward takes output_attentions when it comes positionally (it differs by version:
# 4.48 has past_key_values and head_mask before it, 5.x a cache and no head_mask). Computed once: the check runs
# on every attention call.
_FORWARD_PARAMETERS = list(inspect.signature(_bark.BarkSelfAttention.forward).parameters)
_OUTPUT_ATTENTIONS_INDEX = _FORWARD_PARAMETERS.index("output_attentions") - 2  # minus self and hidden_states


class BarkSdpaSelfAttention(_bark.BarkSelfAttention):
    """``BarkSelfAttention`` with its score computation done by ``F.scaled_dot_product_attention``.

    Same parameters, buffers and projections as eager (it is a subclass that only replaces ``_attn`` and wraps
    ``forward``), so a module can be switched between the two in place without touching its weights.
    """

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if _wants_weights(args, kwargs):
            # SDPA computes no weights. Like transformers 4.48's own SDPA models (modeling_gpt2.py: GPT2Attention
            # falls back to eager_attention_forward for a call with output_attentions), this call runs eager —
            # through a view made for this call, so nothing on the shared module says which path a call takes.
            return _eager_view(self).forward(hidden_states, *args, **kwargs)
        return super().forward(hidden_states, *args, **kwargs)

    def _attn(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if head_mask is not None:
            raise ValueError(HEAD_MASK_ERROR)
        return sdpa_attention(self, query, key, value, attention_mask), None


def _wants_weights(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether this call of ``BarkSelfAttention.forward`` asks for attention weights (keyword or positional)."""
    if "output_attentions" in kwargs:
        return bool(kwargs["output_attentions"])
    return len(args) > _OUTPUT_ATTENTIONS_INDEX and bool(args[_OUTPUT_ATTENTIONS_INDEX])


class _EagerCallAttention(_bark.BarkSelfAttention):
    """One call's eager view of a ``BarkSdpaSelfAttention`` (see ``_eager_view``); never part of a model."""

    def _attn(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if head_mask is not None:
            raise ValueError(HEAD_MASK_ERROR)
        # Eager adds the mask to the scores, so it needs the additive form (transformers 5 hands SDPA the boolean
        # one: the sub-models build their mask for the implementation their config names).
        additive = None if attention_mask is None else additive_mask(attention_mask, query.dtype)
        return super()._attn(query, key, value, additive)


def _eager_view(module: BarkSdpaSelfAttention) -> _EagerCallAttention:
    """A new object for one call, running eager's attention on ``module``'s own parameters and buffers.

    It shares ``module``'s attribute dictionary entries (the same parameter, buffer and submodule objects), so the
    weights are the module's; only its class differs. It lives for one call and is never registered anywhere, so
    two threads calling ``module`` at once each get the path their own arguments ask for.
    """
    view = object.__new__(_EagerCallAttention)
    vars(view).update(vars(module))
    return view


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The attention mask as eager adds it to the scores: 0 where a key is attended, dtype-min where not."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask.to(dtype)


# One entry: the mask last checked and whether it masks anything. Every layer of one forward call receives the same
# mask object, so this is one check per forward call instead of one per layer (CPU masks only: see below).
_last_checked: tuple[weakref.ref[torch.Tensor], int, bool] | None = None


def _masks_something(mask: torch.Tensor) -> bool:
    global _last_checked
    if torch.compiler.is_compiling():
        # A data-dependent branch would break the graph; the explicit mask is exact either way.
        return True
    if mask.device.type != "cpu":
        # Reading a device mask's values on the host waits for the device: one sync per forward inside the decode
        # loop (issue 24 item 3). The explicit mask is exact either way, so on a device it is always used: the fast
        # path then comes only from transformers passing no mask (transformers 5 drops an all-attended one).
        return True
    # Inference tensors have no version counter; they cannot be changed in place outside inference mode, and the
    # models build a new mask tensor for every forward call.
    version = -1 if mask.is_inference() else mask._version
    cached = _last_checked
    if cached is not None and cached[0]() is mask and cached[1] == version:
        return cached[2]
    masks = bool((~mask).any()) if mask.dtype == torch.bool else bool((mask != 0).any())
    _last_checked = (weakref.ref(mask), version, masks)
    return masks


def sdpa_attention(
    module: _bark.BarkSelfAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bark's eager attention output (without the weights) through ``F.scaled_dot_product_attention``.

    ``query``/``key``/``value`` are (batch, heads, length, head_dim); ``attention_mask`` is None, eager's additive
    float mask, or a boolean one (True = attend), broadcastable to (batch, heads, q_len, k_len).
    """
    q_len, k_len = query.shape[-2], key.shape[-2]
    dropout = module.dropout if module.training else 0.0
    if attention_mask is not None and not _masks_something(attention_mask):
        attention_mask = None
    if attention_mask is None:
        # The fast path: no mask tensor for the kernel to read.
        if not module.is_causal or q_len == 1:
            # A one-token query sees every key: eager's mask row is the causal buffer's last row, all ones.
            return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        if q_len == k_len:
            return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, is_causal=True)
        # Several new tokens over a cache: SDPA's is_causal aligns top-left, eager's slice bottom-right.
        causal = module.bias[:, :, k_len - q_len : k_len, :k_len]
        return F.scaled_dot_product_attention(query, key, value, attn_mask=causal, dropout_p=dropout)

    # Explicit mask, built as eager builds its scores: causal positions set to dtype-min, then the mask added
    # (dtype-min + dtype-min overflows to -inf, as in eager).
    minimum = torch.finfo(query.dtype).min
    bias = additive_mask(attention_mask, query.dtype)
    if module.is_causal:
        causal = module.bias[:, :, k_len - q_len : k_len, :k_len]
        bias = torch.zeros(causal.shape, dtype=query.dtype, device=query.device).masked_fill(~causal, minimum) + bias
    # A row whose every entry is near dtype-min (a padded query: every key it may see is padding) is finite in
    # eager because the score is absorbed by the huge negative value: eager gives softmax(bias row). Zeroing that
    # query row makes the scores 0 and SDPA give the same, in any dtype (in fp16 the score would not be absorbed
    # by a float32 accumulator and the row would come out as softmax(score) instead).
    dead = bias.amax(dim=-1, keepdim=True) < minimum / 2
    query = query.masked_fill(dead, 0.0)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout)


# -- registration ------------------------------------------------------------------------------------------------


def _bark_model_classes() -> list[type[PreTrainedModel]]:
    return [cls for cls in vars(_bark).values() if isinstance(cls, type) and issubclass(cls, _bark.BarkPreTrainedModel)]


def sync_attention_modules(model: torch.nn.Module) -> int:
    """Make every Bark attention module of ``model`` run what its sub-model's config says (eager or sdpa), in place;
    returns how many modules changed class. Weights, buffers and hooks stay where they are."""
    classes = {"eager": _bark.BarkSelfAttention, NAME: BarkSdpaSelfAttention}
    changed = 0
    for sub in model.modules():
        if not isinstance(sub, (_bark.BarkCausalModel, _bark.BarkFineModel)):
            continue
        target = classes.get(sub.config._attn_implementation)
        if target is None:
            continue  # flash_attention_2 and others were built by transformers and stay as built
        for block in sub.layers:
            if type(block.attn) in classes.values() and type(block.attn) is not target:
                block.attn.__class__ = target
                changed += 1
    return changed


def _requested(model: PreTrainedModel, implementation: Any) -> list[tuple[PreTrainedModel, str]]:
    """The names ``implementation`` asks for, each with the (sub-)model it is for: the whole model's (a ``str`` or
    the dict's ``""``) and those of Bark's three transformer sub-configs. Other keys (the codec) go to transformers
    as they are."""
    if not isinstance(implementation, dict):
        return [(model, implementation)] if implementation is not None else []
    pairs = [(model, implementation[""])] if implementation.get("") is not None else []
    for stage in STAGE_SUBMODELS.values():
        value, sub = implementation.get(stage.config_key), getattr(model, stage.attribute, None)
        if value is not None and isinstance(sub, PreTrainedModel):
            pairs.append((sub, value))
    return pairs


def _check_name(model: PreTrainedModel, name: str) -> None:
    """Raise what transformers raises for ``name`` on ``model``: an unknown name, or one the model or this machine
    cannot run, fails there with transformers' own type and wording."""
    if hasattr(model, "_check_and_adjust_attn_implementation"):
        # transformers 5: the check its own set_attn_implementation runs (modeling_utils.py,
        # PreTrainedModel.set_attn_implementation -> _check_and_adjust_attn_implementation).
        model._check_and_adjust_attn_implementation(name, is_init_check=False)
        return
    # transformers 4.48 has no set_attn_implementation; from_pretrained checks the name in
    # _autoset_attn_implementation ("Specified `attn_implementation=...` is not supported", then
    # _check_and_enable_flash_attn_2 / _check_and_enable_flex_attn). Run that check on a copy of the config, so
    # a switch is refused exactly as a load with that name would be.
    config = copy.deepcopy(model.config)
    config._attn_implementation_internal = name
    type(model)._autoset_attn_implementation(config, check_device_map=False)  # type: ignore[attr-defined,unused-ignore]


def _check_switchable(model: PreTrainedModel, implementation: Any) -> None:
    """Refuse, before anything changes, what cannot be switched in place: names transformers refuses (its error),
    names it accepts that Bark's modules cannot switch to in place (flash_attention_2's module keeps state that an
    eager module lacks), and any switch of a model loaded with flash_attention_2."""
    for target, name in _requested(model, implementation):
        if name in SWITCHABLE:
            continue
        _check_name(target, name)
        raise ValueError(
            f"a loaded Bark model switches between {' and '.join(SWITCHABLE)} only, not {name!r}; "
            f"load it with BarkModel.from_pretrained(..., attn_implementation={name!r}) instead"
        )
    flash = [type(m).__name__ for m in model.modules() if isinstance(m, _bark.BarkSelfFlashAttention2)]
    if flash:
        raise ValueError(
            f"this Bark model was loaded with flash_attention_2 ({len(flash)} modules), which cannot be switched in "
            "place; load it again with attn_implementation='eager' or 'sdpa'"
        )


def _bark_only(model: PreTrainedModel, implementation: Any) -> Any:
    """A ``str`` for BarkModel becomes the per-sub-config dict, with the codec (no attention) left as it is."""
    if isinstance(implementation, str) and isinstance(model, _bark.BarkModel):
        return {"": implementation, **{key: implementation for key in BARK_SUB_CONFIGS}}
    return implementation


_original_set_attn_implementation = getattr(PreTrainedModel, "set_attn_implementation", None)


def _set_attn_implementation(self: PreTrainedModel, attn_implementation: Any, *args: Any, **kwargs: Any) -> None:
    """Bark's ``set_attn_implementation``: "eager" or "sdpa", for the whole model or per sub-config."""
    implementation = _bark_only(self, attn_implementation)
    _check_switchable(self, implementation)
    try:
        if _original_set_attn_implementation is not None:
            _original_set_attn_implementation(self, implementation, *args, **kwargs)
        else:
            # transformers 4.48 has no set_attn_implementation; set the configs the way 5.x does.
            _set_configs(self.config, implementation)
    finally:
        # Whatever the configs now say (all of it, or part of it if transformers raised midway), the modules run it.
        sync_attention_modules(self)


def _set_configs(config: Any, implementation: Any) -> None:
    own = implementation.get("", None) if isinstance(implementation, dict) else implementation
    if own is not None:
        config._attn_implementation_internal = own
    for key in getattr(config, "sub_configs", {}):
        sub = getattr(config, key, None)
        if sub is None:
            continue
        value = implementation.get(key) if isinstance(implementation, dict) else implementation
        if value is not None:
            _set_configs(sub, value)


# What register() replaced, in order, as (class or dict, attribute or key, original value or _MISSING);
# unregister() puts it back. Empty while not registered.
_MISSING = object()
_replaced: list[tuple[Any, str, Any]] = []


def _replace(owner: Any, name: str, value: Any) -> None:
    namespace = owner if isinstance(owner, dict) else vars(owner)
    _replaced.append((owner, name, namespace.get(name, _MISSING)))
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)


def _put_back(owner: Any, name: str, original: Any) -> None:
    if isinstance(owner, dict) and original is _MISSING:
        del owner[name]
    elif isinstance(owner, dict):
        owner[name] = original
    elif original is _MISSING:
        delattr(owner, name)
    else:
        setattr(owner, name, original)


def register() -> None:
    """Make Bark an SDPA-capable model: ``attn_implementation="sdpa"``, SDPA by default, and
    ``set_attn_implementation("sdpa"/"eager")``.

    Idempotent; changes only Bark's classes (and lets the attention-free codec accept the name inside a Bark
    model), never transformers' files. As for any model that supports SDPA (transformers 5:
    ``get_correct_attn_implementation`` picks "sdpa" when nothing is requested; 4.48: ``_autoset_attn_implementation``
    calls ``_check_and_enable_sdpa`` for it), a Bark model loaded without ``attn_implementation`` now gets SDPA; ask
    for ``attn_implementation="eager"`` by name to get eager. Models already built keep what they were built with.
    """
    if _replaced:
        return
    _replace(_bark.BARK_ATTENTION_CLASSES, NAME, BarkSdpaSelfAttention)
    for cls in _bark_model_classes():
        _replace(cls, "_supports_sdpa", True)
        # transformers 5 decides whether a model can switch attention at run time by searching its module's source
        # for AttentionInterface use; Bark has none, so it would refuse. Here the switch is sync_attention_modules,
        # so the answer is given in the attribute that heuristic caches its answer in (and reads first).
        _replace(cls, "_can_set_attn_implementation_cached_value", True)
        _replace(cls, "set_attn_implementation", _set_attn_implementation)
    _replace(_bark.BarkModel, "__init__", _wrap_init(_bark.BarkModel.__init__))


def unregister() -> None:
    """Undo ``register()``: Bark is eager-only again for models loaded afterwards (models already built keep their
    modules). Idempotent. For tests and scoped use: ``register()`` changes the default for the whole process."""
    while _replaced:
        _put_back(*_replaced.pop())


def is_registered() -> bool:
    """Whether ``register()`` is in effect in this process (and not undone by ``unregister()``)."""
    return bool(_replaced)


def _wrap_init(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: PreTrainedModel, config: Any, *args: Any, **kwargs: Any) -> None:
        _codec_stays_eager(config)
        _sub_models_pick_their_default(config)
        original(self, config, *args, **kwargs)

    return __init__


def _codec_stays_eager(config: Any) -> None:
    # attn_implementation="sdpa" as a string reaches every sub-config, the codec's too, and EncodecModel (which
    # has no attention at all) refuses the name on both stacks. The codec is set back to eager before BarkModel
    # builds it, so the request means what it says for Bark's three transformers and nothing for the codec.
    codec = getattr(config, "codec_config", None)
    if codec is not None and codec._attn_implementation == NAME:
        codec._attn_implementation_internal = "eager"


def _sub_models_pick_their_default(config: Any) -> None:
    # transformers 4.48 only (5.x has no such flag): its save_pretrained resets _attn_implementation_autoset on the
    # top-level config alone (modeling_utils.py, "model_to_save.config._attn_implementation_autoset = False"), so a
    # Bark folder saved by 4.48 holds `"_attn_implementation_autoset": true` in each sub-config. A sub-model whose
    # config asks for nothing then skips _autoset_attn_implementation in PreTrainedModel.__init__ and is eager,
    # whatever it supports. Cleared for those sub-configs, each sub-model picks its default as a freshly built one
    # does: SDPA for Bark's transformers, eager for the codec (EncodecModel does not support SDPA).
    for key in getattr(config, "sub_configs", {}):
        sub: Any = getattr(config, key, None)
        if getattr(sub, "_attn_implementation_autoset", False) and sub._attn_implementation_internal is None:
            sub._attn_implementation_autoset = False
