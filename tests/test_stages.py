"""Per-stage breakdown, fixed-length mode and the length-normalized figures, on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import running_stack

from barkbench.measure import stages
from barkbench.measure.optimize import cache as cache_axis
from barkbench.measure.runner import RunSpec, VariantRunner
from barkbench.measure.workload import Workload
from barkbench.variants import Variant

TOKENS = 12
#: Bark's semantic end-of-speech id (also its pad id): BarkSemanticGenerationConfig.eos_token_id.
SEMANTIC_EOS = 10_000
#: Unbiased lm_head calls before EOS is forced: the prefill plus 4 one-token steps, i.e. 5 semantic tokens.
EOS_AFTER_CALLS = 5
#: A stage's counts (what a tracker on another device must count the same).
COUNTS = ("tokens", "forwards", "key_positions")


def _runner(tiny_source, batch_size: int = 1, fixed_length: bool = True, tokens: int = TOKENS) -> VariantRunner:
    spec = RunSpec(
        source=tiny_source,
        variant=Variant(batch_size=batch_size),
        workload=Workload(batch_size=batch_size, semantic_max_new_tokens=tokens),
        device_type="cpu",
        fixed_length=fixed_length,
    )
    return VariantRunner(spec)


@pytest.fixture(scope="module")
def runner(tiny_source):
    runner = _runner(tiny_source, batch_size=2)
    yield runner
    runner.close()


def _one_round(runner: VariantRunner):
    runner.prepare()
    return runner.generate()


#: Rounds over which the stage gap's tolerance is judged: the machine can only add time to the code between two
#: stages (another process preempting this one there), so the smallest of a few rounds is the gap's own cost.
GAP_ROUNDS = 3


def test_every_stage_is_measured_and_the_stages_add_up_to_the_call(runner):
    gaps = []
    for _ in range(GAP_ROUNDS):
        result = _one_round(runner)
        assert list(result.stages) == list(stages.STAGES)
        for name, figures in result.stages.items():
            # Decode stages also count their sub-model's forward passes and the key positions they attended to.
            decode = {"forwards", "key_positions"} if name in ("semantic", "coarse") else set()
            assert set(figures) == {"seconds", "peak_memory_bytes", "tokens"} | decode, name
            assert figures["seconds"] > 0 and figures["tokens"] > 0, (name, figures)
            # Peaks count from the pre-load baseline, like the call's: the weights are inside every stage's peak.
            assert 0 < figures["peak_memory_bytes"] <= result.peak_memory_bytes, name
        gap = stages.unattributed_seconds(result.seconds, result.stages)
        # Stages run inside the call, one after the other: never more than the call.
        assert gap >= 0, (gap, result.seconds, result.stages)
        gaps.append((gap, result.seconds))
    # ... and short of it only by the code between them, within the stated tolerance: judged on the round with
    # the smallest gap, since a busy machine can only lengthen it (a timing figure, so never on one sample).
    gap, seconds = min(gaps)
    assert gap <= stages.gap_allowed(seconds), gaps


def test_stage_token_counts_follow_bark_ratios(runner):
    result = _one_round(runner)
    figures = result.stages
    batch = 2
    assert figures["semantic"]["tokens"] == TOKENS * batch
    # Coarse: 75 Hz x 2 codebooks per 49.9 Hz semantic token, floored to whole frames per sample.
    frames = int(TOKENS * 75 / 49.9)
    assert figures["coarse"]["tokens"] == frames * 2 * batch
    # Fine predicts codebooks 3..8 of every frame.
    assert figures["fine"]["tokens"] == frames * 6 * batch
    # Codec: every audio sample decoded, which is what the call returns per sample.
    assert figures["codec"]["tokens"] == sum(result.output_lengths)


def test_tracker_restores_the_methods_even_when_the_call_fails(runner):
    model = runner.model
    before = {name: type(getattr(model, name)).generate for name in ("semantic", "coarse_acoustics")}
    with pytest.raises(RuntimeError, match="boom"), stages.StageTracker(model, "cpu"):
        assert "generate" in vars(model.semantic)
        raise RuntimeError("boom")
    for name, method in before.items():
        assert "generate" not in vars(getattr(model, name))
        assert getattr(model, name).generate.__func__ is method
    assert "codec_decode" not in vars(model)


def test_tracker_refuses_a_model_that_is_not_bark():
    with pytest.raises(TypeError, match="needs a transformers BarkModel"), stages.StageTracker(torch.nn.Linear(2, 2)):
        pass


def _force_eos_after(model, calls: int):
    """Make the semantic model's EOS overwhelmingly likely after ``calls`` forward calls, as a real
    checkpoint does at the end of the sentence (random weights never do)."""
    count = {"n": 0}

    def hook(module, inputs, logits):
        count["n"] += 1
        if count["n"] <= calls:
            return logits
        logits = logits.clone()
        logits[..., SEMANTIC_EOS] += 100.0
        return logits

    return count, model.semantic.lm_head.register_forward_hook(hook)


@pytest.mark.parametrize("fixed_length", [False, True], ids=["natural-length", "fixed-length"])
def test_fixed_length_generates_the_pinned_length_even_when_eos_comes_early(tiny_source, fixed_length):
    runner = _runner(tiny_source, batch_size=2, fixed_length=fixed_length)
    try:
        count, handle = _force_eos_after(runner.model, EOS_AFTER_CALLS)
        try:
            result = _one_round(runner)
        finally:
            handle.remove()
    finally:
        runner.close()
    semantic = result.stages["semantic"]["tokens"]
    if fixed_length:
        assert semantic == TOKENS * 2
    else:
        # EOS after 5 tokens per sample; the EOS itself is not counted.
        assert semantic == EOS_AFTER_CALLS * 2
    assert count["n"] > EOS_AFTER_CALLS
    assert min(result.output_lengths) > 0


def test_fixed_length_kwargs_pin_both_ends():
    assert stages.fixed_length_kwargs(64) == {"semantic_max_new_tokens": 64, "semantic_min_new_tokens": 64}


def test_summarize_stages_averages_rounds_and_normalizes_by_stage_time():
    def round_(sem_s, coarse_s, tokens):
        return {
            "semantic": {"seconds": sem_s, "peak_memory_bytes": 10, "tokens": tokens},
            "coarse": {"seconds": coarse_s, "peak_memory_bytes": 30, "tokens": 3 * tokens},
            "fine": {"seconds": 1.0, "peak_memory_bytes": 20, "tokens": 6 * tokens},
            "codec": {"seconds": 0.5, "peak_memory_bytes": 5, "tokens": 100},
        }

    summary = stages.summarize_stages([round_(1.0, 2.0, 10), round_(3.0, 2.0, 30)], [4.6, 6.6])
    assert summary["stages"]["semantic"] == {"seconds": 2.0, "peak_memory_bytes": 10, "tokens": 20}
    # Tokens over the stage's own time, summed over rounds: 40 tokens in 4 s, 120 coarse tokens in 4 s.
    assert summary["semantic_tokens_per_s"] == pytest.approx(10.0)
    assert summary["coarse_tokens_per_s"] == pytest.approx(30.0)
    assert summary["unattributed_seconds"] == pytest.approx(5.6 - (2.0 + 2.0 + 1.0 + 0.5))
    assert stages.summarize_stages([], []) == {}


def test_gap_tolerance_is_relative_with_an_absolute_floor():
    relative, absolute = stages.STAGE_GAP_TOLERANCE
    assert stages.gap_allowed(0.001) == absolute
    assert stages.gap_allowed(100.0) == pytest.approx(relative * 100.0)


def test_benchmark_json_carries_stages_and_length_normalized_figures(bench_pytester):
    out = bench_pytester.path / "run.json"
    result = bench_pytester.runpytest_subprocess(
        "bench",
        "--bark-semantic-tokens",
        "8",
        "-p",
        "no:cacheprovider",
        "--bark-variants",
        "baseline",
        "--bark-rounds",
        "2",
        "--bark-warmup-rounds",
        "1",
        "--bark-fixed-length",
        f"--benchmark-json={out}",
        timeout=600,
    )
    result.assert_outcomes(passed=1)
    bench = json.loads(out.read_text())["benchmarks"][0]
    info, mean = bench["extra_info"], bench["stats"]["mean"]
    assert info["fixed_length"] is True
    assert list(info["stages"]) == list(stages.STAGES)
    assert info["stages"]["semantic"]["tokens"] == 8
    assert all(isinstance(v, (int, float)) for s in info["stages"].values() for v in s.values())
    sem = info["stages"]["semantic"]
    assert info["semantic_tokens_per_s"] == pytest.approx(sem["tokens"] / sem["seconds"])
    coarse = info["stages"]["coarse"]
    assert info["coarse_tokens_per_s"] == pytest.approx(coarse["tokens"] / coarse["seconds"])
    assert info["real_time_factor"] == pytest.approx(1 / info["audio_seconds_per_wall_second"])
    assert info["real_time_factor"] == pytest.approx(mean / info["audio_seconds"])
    assert info["latency_cv"] == pytest.approx(bench["stats"]["stddev"] / mean)
    # The per-stage sum falls short of the worker's time, and the gap recorded is exactly that shortfall (its
    # tolerance is a timing claim, judged over several rounds in the test above, not on one session's mean).
    stage_sum = sum(s["seconds"] for s in info["stages"].values())
    assert info["unattributed_seconds"] >= 0
    assert info["unattributed_seconds"] == pytest.approx(info["worker_latency_mean_s"] - stage_sum)
    assert "compile_seconds" not in info


def test_report_shows_a_per_stage_table_when_the_results_have_stages():
    from barkbench.results.load import BenchmarkResult
    from barkbench.results.report import stage_table

    def entry(variant, stage_info):
        extra = {
            "variant": variant,
            "attention": "eager",
            "dtype": "fp32",
            "offload": "none",
            "batch_size": 1,
            "audio_seconds": 2.0,
        }
        if stage_info:
            extra["stages"] = stage_info
        return BenchmarkResult.from_json(
            {"fullname": f"t[{variant}]", "extra_info": extra, "stats": {"mean": 4.0, "stddev": 0.1, "rounds": 2}}, "m"
        )

    stage_info = {name: {"seconds": 1.0, "peak_memory_bytes": 2_000_000, "tokens": 64} for name in stages.STAGES}
    with_stages, without = entry("eager-fp32-bs1", stage_info), entry("sdpa-fp32-bs1", None)
    assert stage_table([without]) is None
    table = stage_table([with_stages, without])
    row = next(line for line in table.splitlines() if line.startswith("| `eager-fp32-bs1`"))
    # 4 stages of 1 s, 64 tokens/s in semantic and coarse, 2 MB per stage, RTF = 4 s / 2 s.
    assert row == "| `eager-fp32-bs1` | 1.00 | 1.00 | 1.00 | 1.00 | 64.0 | 64.0 | 2 / 2 / 2 / 2 | 2.00 |"
    assert "sdpa-fp32-bs1" not in table


# -- no host sync inside the call: CUDA events at the stage boundaries, device counts read after it (issue 24) -----


class _CudaStandIn:
    """torch.cuda as the stage tracker uses it, on a CPU machine: timing events, one synchronize, the allocator's
    host-side counters. ``log`` keeps the order of the timing calls; the model itself runs on the CPU."""

    MILLISECONDS = 7.0
    RESERVED = 3 << 20

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[str] = []
        self.resets = 0
        log = self.log

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing
                self.recorded = False

            def record(self, stream: object = None) -> None:
                self.recorded = True
                log.append("record")

            def elapsed_time(self, end: object) -> float:
                assert "synchronize" in log, "read before the device finished"
                return _CudaStandIn.MILLISECONDS

        cuda = torch.cuda
        monkeypatch.setattr(cuda, "Event", Event)
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: log.append("synchronize"))
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", self._reset)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: 2 << 20)
        monkeypatch.setattr(cuda, "max_memory_reserved", lambda device=None: self.RESERVED)
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: 1 << 20)

    def _reset(self, device: object = None) -> None:
        self.resets += 1


def _call_kwargs(runner: VariantRunner) -> dict:
    return {
        **runner.inputs,
        **runner.spec.workload.call_kwargs(),
        "return_output_lengths": True,
        **stages.fixed_length_kwargs(runner.spec.workload.semantic_max_new_tokens),
    }


def _tracked_call(runner: VariantRunner, device_type: str) -> stages.StageTracker:
    runner.prepare()
    tracker = stages.StageTracker(runner.model, device_type, baseline_bytes=0)
    with torch.inference_mode(), tracker:
        runner.model.generate(**_call_kwargs(runner))
    return tracker


def test_the_cuda_stage_tracker_records_events_and_synchronizes_once_per_call(runner, monkeypatch):
    on_cpu = _tracked_call(runner, "cpu").as_dict()
    cuda = _CudaStandIn(monkeypatch)
    tracker = _tracked_call(runner, "cuda")
    # Two events per stage, recorded while the call runs; the one synchronize comes after the last of them.
    assert cuda.log == ["record"] * 2 * len(stages.STAGES) + ["synchronize"]
    assert cuda.resets == len(stages.STAGES)  # each stage's allocator peak, reset without a synchronize
    for name, figures in tracker.as_dict().items():
        assert figures["seconds"] == pytest.approx(_CudaStandIn.MILLISECONDS / 1000), name
        # The counts are the CPU tracker's: the same seeded call.
        counts = {k: v for k, v in figures.items() if k not in ("seconds", "peak_memory_bytes")}
        assert counts == {k: v for k, v in on_cpu[name].items() if k not in ("seconds", "peak_memory_bytes")}
        assert figures["peak_memory_bytes"] == 2 << 20
    assert tracker.reserved_peak_bytes == _CudaStandIn.RESERVED
    assert stages.StageTracker(runner.model, "cpu").reserved_peak_bytes is None  # CPU: not measured, not 0


def test_a_failed_call_leaves_the_events_unread(runner, monkeypatch):
    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("device-side assert")

    cuda = _CudaStandIn(monkeypatch)
    monkeypatch.setattr(runner.model.coarse_acoustics, "generate", fails)  # the coarse stage fails once started
    runner.prepare()
    tracker = stages.StageTracker(runner.model, "cuda", baseline_bytes=0)
    with pytest.raises(RuntimeError, match="device-side assert"), torch.inference_mode(), tracker:
        runner.model.generate(**_call_kwargs(runner))
    # The semantic stage's two events and the coarse stage's start; no synchronize after the error (the device may
    # not answer, and a second error would hide the first) and no reading.
    assert cuda.log == ["record"] * 3
    assert vars(runner.model.coarse_acoustics)["generate"] is fails  # the tracker put back what it found


class _ReadCounted(torch.Tensor):
    """A stand-in for a count held on a GPU: every host read (what would be a device sync) is counted."""

    reads = 0

    def __int__(self) -> int:
        _ReadCounted.reads += 1
        return super().__int__()

    def item(self) -> object:
        _ReadCounted.reads += 1
        return super().item()

    def __bool__(self) -> bool:
        _ReadCounted.reads += 1
        return super().__bool__()


class _StaticLikeCache:
    """A cache whose length, like transformers 5's StaticCache, is a device tensor updated in place."""

    def __init__(self) -> None:
        self.length = torch.tensor(0).as_subclass(_ReadCounted)

    def get_seq_length(self) -> torch.Tensor:
        return self.length


def test_the_forward_hook_reads_no_device_count_per_forward(monkeypatch):
    monkeypatch.setattr(stages, "_on_device", lambda value: isinstance(value, _ReadCounted))
    figures, deferred = stages.StageFigures(), stages._Deferred()
    hook = stages._forward_counter(figures, deferred)
    cache = _StaticLikeCache()
    _ReadCounted.reads = 0
    hook(None, (), {"input_ids": torch.ones(2, 5, dtype=torch.long), "cache": cache})  # prefill of 5
    cache.length.add_(5)  # in place, as StaticLayer.update does
    for _ in range(20):  # one-token steps
        hook(None, (), {"input_ids": torch.ones(2, 1, dtype=torch.long), "cache": cache})
        cache.length.add_(1)
    assert _ReadCounted.reads == 0 and figures.forwards == 21 and figures.key_positions == 0
    deferred.resolve()
    assert _ReadCounted.reads == 1  # one read for the whole call, after it
    # Batch 2: the prefill attends 5 positions, step k (0-based) 5 + k + 1: each as it was, not the final length.
    assert figures.key_positions == 2 * (5 + sum(5 + k + 1 for k in range(20)))


def test_a_count_is_deferred_only_when_it_lives_on_a_device():
    assert not stages._on_device(3) and not stages._on_device(torch.tensor(3))
    assert stages._on_device(torch.tensor(3, device="meta"))  # anything but the CPU: reading it would wait


@pytest.mark.skipif(running_stack() == "legacy", reason="static cache: transformers 5 only")
def test_a_static_cache_call_counts_the_same_when_every_count_is_deferred(tiny_source, monkeypatch):
    spec = RunSpec(
        source=tiny_source,
        variant=Variant(kv_cache="static"),
        workload=Workload(semantic_max_new_tokens=TOKENS),
        device_type="cpu",
        fixed_length=True,
    )
    static = VariantRunner(spec)
    try:
        kwargs = {**_call_kwargs(static), **cache_axis.generate_kwargs(spec.variant)}
        figures = []
        for defer in (False, True):
            if defer:  # every tensor count taken as a device's: kept unread until the call is over
                monkeypatch.setattr(stages, "_on_device", lambda value: isinstance(value, torch.Tensor))
            static.prepare()
            tracker = stages.StageTracker(static.model, "cpu", baseline_bytes=0)
            with torch.inference_mode(), tracker:
                static.model.generate(**kwargs)
            figures.append({n: {k: v for k, v in f.items() if k in COUNTS} for n, f in tracker.as_dict().items()})
    finally:
        static.close()
    assert figures[0] == figures[1] and figures[0]["semantic"]["key_positions"] > 0
