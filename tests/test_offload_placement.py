"""Offload that really offloads (issue 24 item 1), checked on a machine without a GPU.

accelerate's hooks take any execution device. ``meta`` stands in for the GPU: moving a sub-model there is a real
``Module.to`` (its tensors change device; their values are dropped, which a placement test does not need), and a
forward on meta tensors runs the modelling code for shapes only. Moving back from meta is impossible, so each meta
test runs one sub-model of a fresh model; the chain between sub-models is checked on the hook objects, and a whole
``generate`` runs with the CPU as execution device (nothing moves; every hook and check runs).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from transformers import BarkModel, set_seed

from barkbench.measure import sources, workload
from barkbench.measure.optimize import offload

META = torch.device("meta")


@pytest.fixture()
def model(tiny_source: sources.ModelSource) -> Any:
    return sources.load_model(tiny_source).eval()


def transformers_placement(model: Any, device: torch.device) -> None:
    """The hooks ``BarkModel.enable_cpu_offload`` installs (transformers 4.48 and 5.25, the same lines), with the
    device as an argument: it hard-codes CUDA (4.48) or the current accelerator (5.x)."""
    from accelerate import cpu_offload_with_hook

    model.semantic.input_embeds_layer, _ = cpu_offload_with_hook(model.semantic.input_embeds_layer, device)
    hook = None
    for sub_model in (model.semantic, model.coarse_acoustics, model.fine_acoustics):
        _, hook = cpu_offload_with_hook(sub_model, device, prev_module_hook=hook)
    model.fine_acoustics_hook = hook
    _, model.codec_model_hook = cpu_offload_with_hook(model.codec_model, device, prev_module_hook=hook)


def devices(module: Any) -> set[str]:
    return {t.device.type for t in (*module.parameters(), *module.buffers())}


def test_the_replayed_placement_is_what_the_installed_transformers_does():
    # If transformers changes enable_cpu_offload (e.g. fixes the embedding hook), this replay is stale: re-read it.
    source = inspect.getsource(BarkModel.enable_cpu_offload)
    assert "cpu_offload_with_hook(self.semantic.input_embeds_layer, device)" in source
    assert "prev_module_hook=hook" in source and "self.codec_model_hook = hook" in source


def test_transformers_placement_leaves_the_semantic_layers_behind_and_the_check_fails_the_call(model):
    transformers_placement(model, META)
    check = offload.install_placement_check(model)
    # BarkSemanticModel.generate embeds the prompt before any forward: the embedding's own hook moves it alone.
    with pytest.raises(offload.OffloadPlacementError) as info:
        model.semantic.input_embeds_layer(torch.zeros(1, 4, dtype=torch.long, device=META))
    assert devices(model.semantic.input_embeds_layer) == {"meta"}
    assert "cpu" in devices(model.semantic.layers)  # what the H200 offload rows measured
    message = str(info.value)
    assert message.startswith("offload placement: semantic ran with ") and "moved only part of it" in message
    assert "measure/optimize/offload.py" in message and "\n" not in message
    with pytest.raises(offload.OffloadPlacementError, match="semantic ran with"):
        check()  # the check also fails afterwards, whoever swallowed the first raise


def test_the_semantic_embedding_moves_the_whole_semantic_model(model):
    offload.offload_whole_sub_models(model, META)
    assert model.device == META and devices(model) == {"cpu"}  # nothing moves until a sub-model runs
    check = offload.install_placement_check(model)
    ids = torch.zeros(1, 4, dtype=torch.long, device=META)
    model.semantic.input_embeds_layer(ids)
    assert devices(model.semantic) == {"meta"}
    for other in ("coarse_acoustics", "fine_acoustics", "codec_model"):
        assert devices(getattr(model, other)) == {"cpu"}, other
    assert model.semantic(input_ids=ids).logits.device == META  # its forward runs wholly on the device
    assert check.seen == {"semantic": None}


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("coarse_acoustics", {"input_ids": torch.zeros(1, 4, dtype=torch.long)}),
        ("fine_acoustics", {"codebook_idx": 2, "input_ids": torch.zeros(1, 4, 8, dtype=torch.long)}),
    ],
)
def test_each_acoustic_sub_model_runs_wholly_on_the_device(model, name, inputs):
    offload.offload_whole_sub_models(model, META)
    check = offload.install_placement_check(model)
    sub_model = getattr(model, name)
    sub_model(**{k: v.to(META) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
    assert devices(sub_model) == {"meta"} and devices(model.semantic) == {"cpu"}
    assert check.seen == {name: None}


def test_the_hooks_chain_the_sub_models_in_generate_order_on_the_execution_device(model):
    offload.offload_whole_sub_models(model, META)
    names = offload.SUB_MODELS
    hooks = {name: getattr(model, name)._hf_hook for name in names}
    assert all(hook.execution_device == META for hook in hooks.values())
    # Each sub-model's hook offloads the one before it when it starts (accelerate's prev_module_hook).
    assert hooks["semantic"].prev_module_hook is None
    for before, after in zip(names, names[1:], strict=False):
        assert hooks[after].prev_module_hook.model is getattr(model, before), after
    # BarkModel.generate offloads the fine model and the codec itself through these two.
    assert model.fine_acoustics_hook.model is model.fine_acoustics
    assert model.codec_model_hook.model is model.codec_model
    assert model.semantic.input_embeds_layer._hf_hook.execution_device == META


def test_a_previous_sub_model_left_on_the_device_is_named(model):
    model.semantic.to(META)
    model.coarse_acoustics.to(META)
    problem = offload.placement_problem(model, "coarse_acoustics", META)
    assert problem is not None and problem.startswith("offload placement: while coarse_acoustics ran, semantic ")
    assert "prev_module_hook" in problem and "\n" not in problem
    # The other way round too: while semantic runs, coarse is the one left on the device.
    assert "while semantic ran, coarse_acoustics still held" in (
        offload.placement_problem(model, "semantic", META) or ""
    )


def test_a_sub_model_that_never_ran_under_the_check_fails_it(model):
    offload.offload_whole_sub_models(model, META)
    check = offload.install_placement_check(model)
    with pytest.raises(offload.OffloadPlacementError) as info:
        check()
    assert "semantic, coarse_acoustics, fine_acoustics, codec_model never ran under the check" in str(info.value)
    assert not check.handles  # the hooks are gone either way


# -- a whole generate: every sub-model passes the check, on both stacks ---------------------------------------------


def generate(model: Any, tiny_source: sources.ModelSource) -> Any:
    wl = workload.Workload(semantic_max_new_tokens=8)
    calls, _ = workload.prepare_calls(sources.load_processor(tiny_source), wl, torch.device("cpu"), random_model=True)
    set_seed(0)
    with torch.inference_mode():
        audio, _ = model.generate(**calls[0], **wl.call_kwargs(), return_output_lengths=True)
    return audio


def test_generate_under_whole_sub_model_offload_checks_every_sub_model_and_matches_no_offload(model, tiny_source):
    expected = generate(sources.load_model(tiny_source).eval(), tiny_source)
    offload.offload_whole_sub_models(model, torch.device("cpu"))  # the CPU as execution device: nothing moves
    check = offload.install_placement_check(model)
    actual = generate(model, tiny_source)
    assert check.seen == dict.fromkeys(offload.SUB_MODELS)  # each sub-model checked once, none misplaced
    check()
    assert not check.handles and torch.equal(actual, expected)


def test_a_generate_whose_sub_model_is_off_the_execution_device_stops_at_once_in_one_line(model, tiny_source):
    check = offload.install_placement_check(model, execution_device=META)
    with pytest.raises(offload.OffloadPlacementError) as info:
        generate(model, tiny_source)
    assert str(info.value).startswith("offload placement: semantic ran with ") and "did not move it in" in str(
        info.value
    )
    assert list(check.seen) == ["semantic"]  # it stopped at the first sub-model


def test_check_placement_removes_its_hooks_even_when_the_call_fails(model):
    offload.offload_whole_sub_models(model, torch.device("cpu"))

    def boom() -> None:
        raise RuntimeError("generate failed")

    with pytest.raises(RuntimeError, match="generate failed"):
        offload.check_placement(model, boom)
    embedding = model.semantic.input_embeds_layer
    assert not embedding._forward_hooks and not model.codec_model.decoder._forward_pre_hooks


# -- the runner runs the check at load, and its failure is the variant's one-line failure ---------------------------


def runner_spec(tiny_source: sources.ModelSource) -> Any:
    from barkbench.measure.runner import RunSpec
    from barkbench.variants import Variant

    # RunSpec.source is the parsed source on the engine being rewritten, the spec string before it.
    source = tiny_source if RunSpec.__dataclass_fields__["source"].type != "str" else tiny_source.spec
    return RunSpec(
        source=source,  # type: ignore[arg-type]
        variant=Variant(offload="cpu"),
        workload=workload.Workload(semantic_max_new_tokens=8),
        device_type="cpu",
    )


@pytest.fixture()
def offload_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offload allowed with the CPU as execution device (it refuses a CPU-only machine otherwise)."""
    monkeypatch.setattr(offload, "unsupported_reason", lambda variant, device_type: None)


def test_the_runner_checks_the_placement_on_an_untimed_call_at_load(tiny_source, offload_on_cpu, monkeypatch):
    from barkbench.measure.runner import VariantRunner

    calls: list[str] = []
    real = offload.check_placement
    monkeypatch.setattr(offload, "check_placement", lambda m, call: (calls.append("checked"), real(m, call)))
    runner = VariantRunner(runner_spec(tiny_source))
    try:
        assert calls == ["checked"] and runner.info.offload_placement_checked
        embedding = runner.model.semantic.input_embeds_layer
        assert not embedding._forward_hooks  # the rounds run without the check's hooks
    finally:
        runner.close()


def test_a_misplaced_offload_fails_the_variant_at_load_in_one_line(tiny_source, offload_on_cpu, monkeypatch):
    from barkbench.measure.runner import VariantRunner
    from barkbench.measure.worker import classify

    monkeypatch.setattr(offload, "offload_whole_sub_models", lambda model, device: transformers_placement(model, META))
    with pytest.raises(offload.OffloadPlacementError) as info:
        VariantRunner(runner_spec(tiny_source))
    reply = classify(info.value)  # what the worker sends back: the row fails with this line, and no figure
    assert reply.kind == "error" and reply.message.startswith("OffloadPlacementError: offload placement: semantic ")
    assert "\n" not in reply.message


def test_a_misplaced_offload_in_process_fails_the_row_in_the_workers_line(tiny_source, offload_on_cpu, monkeypatch):
    """``--bark-isolation off`` with one variant: the row fails with the line a worker would send, no traceback."""
    from barkbench.measure import engine

    monkeypatch.setattr(offload, "offload_whole_sub_models", lambda model, device: transformers_placement(model, META))
    plan = engine.Plan(specs=(runner_spec(tiny_source),), warmup_rounds=0, rounds=1, isolated=False)
    (measured,) = engine.run(plan).values()
    assert not measured.complete and measured.round_seconds == []
    assert measured.failure is not None and measured.failure.kind == "error"
    assert measured.failure.message.startswith("OffloadPlacementError: offload placement: semantic ")
    assert "\n" not in measured.failure.message
