"""The offload axis: each sub-model on the accelerator only while it runs, on the CPU otherwise (the blog's memory
saver), and a check that this is what happened.

Why not ``BarkModel.enable_cpu_offload()`` (transformers 4.48 and 5.25, ``modeling_bark.py``): it puts one hook on
``semantic.input_embeds_layer`` and one on each sub-model (``accelerate.cpu_offload_with_hook``, chained). The
embedding runs first (``BarkSemanticModel.generate`` builds the prompt's embeddings before any forward), so its own
hook moves the embedding alone; then the semantic model's hook, ``accelerate.hooks.CpuOffload.pre_forward``
(accelerate 1.15 and 1.16), skips the move because it looks only at the first parameter — that same embedding,
already on the execution device. The semantic layers stay on the CPU: transformers 5 moves the activations across
and nothing fails, the figures are wrong (a peak below the semantic weights, a slow semantic stage); transformers
4.48 fails with a device mismatch.

``offload_whole_sub_models`` builds the same chain with ``cpu_offload_with_hook`` (each sub-model offloads the one
before it; ``BarkModel.generate`` offloads the fine model and moves the codec itself through
``fine_acoustics_hook``/``codec_model_hook``), but the embedding's hook moves the whole semantic model, through the
semantic model's own hook (diffusers' ``apply_forward_hook`` calls ``_hf_hook.pre_forward`` the same way for
``encode``/``decode``). The embedding then only ever moves with its sub-model, so the first-parameter test of
``CpuOffload`` speaks for the whole sub-model again.

``install_placement_check`` checks it on a real call: when each sub-model starts its work, every parameter and
buffer of it must be on the execution device and (on an accelerator) no other sub-model may hold one there. It
checks once per sub-model, with PyTorch hooks that ``PlacementCheck.__call__`` removes: the runner runs it on one
untimed call at load, before the warm-up, so no timed round carries a hook.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from barkbench.bark import CODEC, SUB_MODEL_ATTRIBUTES
from barkbench.variants import Variant

#: The BarkModel attributes offloaded as units, in the order ``BarkModel.generate`` runs them.
SUB_MODELS = (*SUB_MODEL_ATTRIBUTES, CODEC.attribute)

#: Where the check looks in each sub-model: the module its work calls first, and whether to look after that module
#: ran ("post": the embeddings, whose call is what moves the sub-model in) or before ("pre": the codec, which
#: ``BarkModel.generate`` moves itself before ``codec_decode``). Same names on transformers 4.48 and 5.x.
PROBES: dict[str, tuple[str, str]] = {
    "semantic": ("input_embeds_layer", "post"),
    "coarse_acoustics": ("input_embeds_layer", "post"),
    "fine_acoustics": ("input_embeds_layers.0", "post"),
    "codec_model": ("decoder", "pre"),
}

#: The BarkModel attributes transformers' generate reads to offload the fine model and the codec by hand.
_MANUAL_HOOKS = {"fine_acoustics": "fine_acoustics_hook", "codec_model": "codec_model_hook"}


class OffloadPlacementError(RuntimeError):
    """A sub-model ran with tensors off the execution device, or left some there; the message is one line."""


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
    """Offload the sub-models when ``variant`` asks; returns the device the model's inputs go to."""
    if variant.offload != "cpu":
        return device
    import torch

    device = torch.device(device)
    if device.index is None and device.type != "cpu":
        device = torch.device(device.type, 0)  # as enable_cpu_offload(accelerator_id=0) does
    offload_whole_sub_models(model, device)
    return model.device


# -- the placement ------------------------------------------------------------------------------------------------


def offload_whole_sub_models(model: Any, execution_device: Any) -> None:
    """``enable_cpu_offload`` with whole sub-models: the chain transformers builds, and an embedding hook that
    moves the semantic model it belongs to (see the module docstring)."""
    from accelerate import cpu_offload_with_hook
    from accelerate.hooks import add_hook_to_module  # type: ignore[import-untyped,unused-ignore]

    if any(t.device.type != "cpu" for t in _tensors(model)):
        model.to("cpu")
    hooks: dict[str, Any] = {}
    previous = None
    for name in SUB_MODELS:
        # Each hook moves its sub-model in on its first forward and offloads the previous one (prev_module_hook).
        _, previous = cpu_offload_with_hook(getattr(model, name), execution_device, prev_module_hook=previous)
        hooks[name] = previous
    for name, attribute in _MANUAL_HOOKS.items():
        setattr(model, attribute, hooks[name])
    add_hook_to_module(model.semantic.input_embeds_layer, _owner_hook(model.semantic, hooks["semantic"]))


def _owner_hook(owner: Any, owner_hook: Any) -> Any:
    """An accelerate ``ModelHook`` for a module used outside its sub-model's forward: it runs the sub-model's own
    offload hook (which moves all of it and offloads the previous sub-model), then sends the inputs across."""
    from accelerate.hooks import ModelHook  # type: ignore[import-untyped,unused-ignore]
    from accelerate.utils import send_to_device  # type: ignore[import-untyped,unused-ignore]

    class MoveOwner(ModelHook):
        # BarkModel.device reads execution_device from the hooks under the semantic model.
        execution_device = owner_hook.hook.execution_device

        def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            owner_hook.hook.pre_forward(owner)
            return send_to_device(args, self.execution_device), send_to_device(kwargs, self.execution_device)

    return MoveOwner()


# -- the check ----------------------------------------------------------------------------------------------------


@dataclass
class PlacementCheck:
    """Hooks that look at the placement when each sub-model starts its work; calling the check removes them and
    raises ``OffloadPlacementError`` when a sub-model was misplaced or never ran under them."""

    model: Any
    execution_device: Any
    #: Sub-model -> the problem found when it ran (None: placed right).
    seen: dict[str, str | None] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)

    def observe(self, name: str) -> None:
        """Called by the hooks; checks a sub-model once (later calls return at once) and raises at the first
        problem, so a misplaced run stops there."""
        if name in self.seen:
            return
        self.seen[name] = placement_problem(self.model, name, self.execution_device)
        if self.seen[name]:
            raise OffloadPlacementError(self.seen[name])

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def __call__(self) -> None:
        self.remove()
        problem = next((p for p in self.seen.values() if p), None)
        if problem:
            raise OffloadPlacementError(problem)
        missing = [name for name in SUB_MODELS if name not in self.seen]
        if missing:
            raise OffloadPlacementError(
                f"offload placement not checked: {', '.join(missing)} never ran under the check (transformers' "
                f"BarkModel.generate no longer calls {', '.join(PROBES[n][0] for n in missing)}?); update "
                "barkbench's PROBES in measure/optimize/offload.py; no figure recorded"
            )


def install_placement_check(model: Any, execution_device: Any = None) -> PlacementCheck:
    """Hook the placement check into ``model`` (a BarkModel); ``execution_device`` defaults to ``model.device``,
    the offload hooks' execution device. Run one call, then call the returned check."""
    import torch

    device = torch.device(model.device if execution_device is None else execution_device)
    check = PlacementCheck(model, device)
    for name, (path, when) in PROBES.items():
        sub_model = getattr(model, name)
        hook = _hook(check, name, compiled=bool(getattr(sub_model, "_barkbench_compiled", False)))
        module = sub_model.get_submodule(path)
        register = module.register_forward_hook if when == "post" else module.register_forward_pre_hook
        check.handles.append(register(hook))
    return check


def check_placement(model: Any, call: Callable[[], object]) -> None:
    """Run ``call`` (one generate) under the placement check; raises ``OffloadPlacementError`` (one line)."""
    check = install_placement_check(model)
    try:
        call()
    finally:
        check.remove()
    check()


def _hook(check: PlacementCheck, name: str, compiled: bool) -> Callable[..., None]:
    def hook(module: Any, *args: Any) -> None:
        check.observe(name)

    if not compiled:
        return hook
    import torch

    # In a compiled forward, dynamo would trace the check; a graph break keeps it eager (torch.compiler.disable
    # imports dynamo, already loaded where a sub-model is compiled).
    return torch.compiler.disable(hook)


def placement_problem(model: Any, name: str, execution_device: Any) -> str | None:
    """What is wrong with the placement while ``name`` runs: tensors of it off the execution device, or (on an
    accelerator) tensors of another sub-model still on it; None when placed right."""
    running = list(_named_tensors(getattr(model, name)))
    off = [(path, t.device) for path, t in running if not _on(t.device, execution_device)]
    if off:
        path, where = off[0]
        moved = "did not move it in" if len(off) == len(running) else "moved only part of it"
        return (
            f"offload placement: {name} ran with {len(off)} of {len(running)} tensors off {execution_device} "
            f"({path} on {where}); its offload hook {moved}, so the figures would not be offload's: "
            "barkbench's offload (measure/optimize/offload.py) must move whole sub-models; no figure recorded"
        )
    if execution_device.type == "cpu":
        return None  # nothing moves: the other sub-models are on the execution device by definition
    for other in SUB_MODELS:
        left = [path for path, t in _named_tensors(getattr(model, other)) if t.device.type != "cpu"]
        if other != name and left:
            return (
                f"offload placement: while {name} ran, {other} still held {len(left)} tensors on "
                f"{execution_device} ({left[0]}); the previous sub-model must go back to the CPU when the next "
                "one starts (prev_module_hook in measure/optimize/offload.py); no figure recorded"
            )
    return None


def _on(actual: Any, expected: Any) -> bool:
    """Same device; an expected device without an index ("cuda") accepts any index of its kind."""
    return bool(actual.type == expected.type and (expected.index is None or actual.index == expected.index))


def _named_tensors(module: Any) -> Iterator[tuple[str, Any]]:
    return itertools.chain(module.named_parameters(), module.named_buffers())


def _tensors(module: Any) -> Iterator[Any]:
    return (t for _, t in _named_tensors(module))
