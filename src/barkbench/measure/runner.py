"""The measured call: ``VariantRunner`` loads the model as a variant asks and runs the workload's call under the
trackers, returning one ``RoundResult`` per round.

It runs in a fresh worker process per variant (``barkbench.measure.worker``: a variant measured after another is
not the variant measured alone) or in this process (``--bark-isolation off``) for debugging and for tests that need
the model object. Both implement ``Runner``, which is all the pytest glue sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from barkbench.measure.optimize import cache as cache_axis
from barkbench.measure.sources import ModelSource
from barkbench.measure.stages import StageTracker, fixed_length_kwargs
from barkbench.measure.workload import Workload
from barkbench.variants import Variant


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs; plain values only (it is pickled over the spawn pipe to the worker)."""

    #: Where the model comes from, as parsed once from --bark-model: the worker never parses it again.
    source: ModelSource
    variant: Variant
    workload: Workload
    device_type: str
    bt_via: str = "transform"
    #: Set in the worker's environment before it loads (e.g. ``BARKBENCH_REMEASURE_LIMITS``, read by the probe).
    env: dict[str, str] = field(default_factory=dict)
    #: Force every call to the pinned semantic length (EOS masked until then): low-variance A/B comparisons.
    fixed_length: bool = False
    #: torch intra-op threads in the worker (``torch.set_num_threads``); None keeps torch's default.
    threads: int | None = None


@dataclass(frozen=True)
class RunnerInfo:
    attention_impl: str
    attention_modules: dict[str, int]
    #: The device kind ("cuda", "cpu"): results group by it. An offloaded model reports the offload hook's
    #: execution device ("cuda:0"), the others the plain kind: the index is recorded on its own.
    device: str
    device_name: str
    baseline_memory_bytes: int
    model_memory_bytes: int
    sample_rate: int
    warnings: tuple[str, ...]
    pid: int
    #: Bytes the model's parameters and buffers hold as stored (numel × element size): the dtype's footprint,
    #: free of what the allocator keeps around (CPU RSS after a dtype cast on load holds both copies' pages).
    weights_bytes: int = 0
    #: Sub-models run through torch.compile, and nn.Linear layers quantized to int8, by the variant.
    compiled: tuple[str, ...] = ()
    quantized_linear: int = 0
    #: Compile variants only: the first generate call (where compilation happens), timed at load.
    first_call_seconds: float | None = None
    #: torch's intra-op threads while the rounds run (``torch.get_num_threads()``).
    torch_threads: int | None = None
    #: The machine's limits this variant is held to, and what its efficiency is computed from
    #: (``limits.for_model``: ``limits``, ``efficiency_inputs``; ``error`` when the probe failed).
    limits: dict[str, Any] = field(default_factory=dict)
    #: The device's index ("cuda:1" -> 1), None on the CPU.
    device_index: int | None = None
    #: Offload variants: the placement check (``offload.install_placement_check``) ran on an untimed call at load
    #: and every sub-model ran wholly on the execution device (a misplaced one fails the variant instead).
    offload_placement_checked: bool = False


@dataclass(frozen=True)
class RoundResult:
    """One measured generate call, timed and measured inside the process that ran it."""

    seconds: float
    peak_memory_bytes: int
    memory_method: str
    audio_seconds: float
    output_lengths: tuple[int, ...]
    #: Per-stage figures, ``StageTracker.as_dict()``: {"semantic": {"seconds", "peak_memory_bytes", "tokens"}, ...}
    stages: dict[str, dict[str, float | int]] = field(default_factory=dict)
    #: Long-form mode: each piece's seconds, in order (their sum is ``seconds`` less the loop's overhead).
    segment_seconds: tuple[float, ...] = ()
    #: Accelerator rounds only (None on the CPU, never 0; ``trackers.PeakMemory``): the allocator's reserved peak,
    #: what NVML reports the process using on the device after the call, the host's peak resident set during it,
    #: and why any of them is missing.
    reserved_peak_bytes: int | None = None
    device_process_bytes: int | None = None
    host_peak_rss_bytes: int | None = None
    memory_notes: tuple[str, ...] = ()


#: ``memory_method`` of CPU rounds: the kernel's peak resident set, read on the dedicated memory call with the
#: allocator pinned (``VariantRunner._memory_call``).
MEMORY_CALL_METHOD = "cpu_peak_rss_memory_call"


class Runner(Protocol):
    """What the pytest glue drives, in this process (``VariantRunner``) or in a worker (``WorkerProcess``)."""

    @property
    def info(self) -> RunnerInfo: ...

    def prepare(self) -> None: ...

    def generate(self) -> RoundResult: ...

    def bare_generate(self) -> float: ...

    def save_wav(self, path: str) -> str: ...

    def capture_reference(self, path: str) -> dict[str, Any]: ...

    def drift(self, path: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


#: Long-form progress: (pieces done, pieces in the call, the last piece's seconds), told while a call runs.
PieceDone = Callable[[int, int, float], None]


class VariantRunner:
    """Loads the model as the variant asks and runs the workload's call under the trackers."""

    def __init__(self, spec: RunSpec, on_piece: PieceDone | None = None) -> None:
        from barkbench.measure import device as device_mod
        from barkbench.measure import optimize, sources, trackers, workload

        self.spec = spec
        self._on_piece = on_piece
        self._trackers = trackers
        if spec.threads is not None:
            import torch

            # Before any model code runs: the thread pool is sized on first use.
            torch.set_num_threads(spec.threads)
        self._cpu = spec.device_type == "cpu"
        if self._cpu:
            # Before anything is loaded: the resident set must follow live allocations through loading and the
            # memory call, or two fresh processes doing the same work read differently (trackers.pin_allocator).
            trackers.pin_allocator()
        # Import the modelling code before the baseline is taken: the library's own resident memory (about
        # 150 MB for torch's and transformers' Bark modules) belongs to no variant, and on a small model it
        # would otherwise dominate model_memory_bytes and every ratio built on it.
        import transformers.models.bark.modeling_bark  # noqa: F401

        if spec.variant.attention == "bettertransformer":
            # Same for optimum (~25 MB resident on CPU); where it is missing, prepare_model says why below.
            from barkbench.measure.optimize.attention import AttentionUnavailable, optimum_bettertransformer

            with contextlib.suppress(AttentionUnavailable):
                optimum_bettertransformer()
        source = spec.source
        # A random model is built and saved on first use: in another process, so the first variant of a run
        # with an empty cache neither counts the build nor keeps what it leaves behind.
        sources.prebuild(source)
        self._baseline = trackers.memory_in_use(spec.device_type)
        prepared = optimize.prepare_model(source, spec.variant, spec.device_type, bt_via=spec.bt_via)
        if self._cpu:
            # Weights still mapped from the checkpoint count in full, whatever the page cache held.
            trackers.make_mapped_weights_resident()
        self.model = prepared.model
        self.processor = sources.load_processor(source)
        self._random_model = source.kind == "random"
        self.calls, warnings = workload.prepare_calls(
            self.processor, spec.workload, prepared.device, random_model=self._random_model
        )
        self._audio: tuple[Any, Any] | None = None
        device_kind, device_index = device_mod.device_kind_and_index(prepared.device)
        self.info = RunnerInfo(
            attention_impl=prepared.attention_impl,
            attention_modules=prepared.attention_modules,
            device=device_kind,
            device_index=_resolved_index(device_kind, device_index),
            device_name=device_mod.device_name(spec.device_type),
            baseline_memory_bytes=self._baseline,
            model_memory_bytes=max(0, trackers.memory_in_use(spec.device_type) - self._baseline),
            sample_rate=int(self.model.generation_config.sample_rate),
            warnings=tuple(warnings),
            pid=os.getpid(),
            weights_bytes=_weights_bytes(self.model),
            compiled=prepared.compiled,
            quantized_linear=prepared.quantized_linear,
            torch_threads=_torch_threads(),
        )
        if prepared.compiled:
            # torch.compile is lazy: the first call compiles. Done here, timed, so that neither the warm-up
            # rounds nor the measured ones carry compilation, and compile time is reported on its own.
            self.prepare()
            first = self._measured_call()
            self.info = dataclasses.replace(self.info, first_call_seconds=first.seconds)
        if spec.variant.offload != "none":
            # Issue 24 item 1: one untimed call under the offload placement check, before the warm-up and the
            # rounds (no timed call carries its hooks); a sub-model that runs with tensors off the execution
            # device raises OffloadPlacementError here, which the worker reports as the variant's one-line failure.
            from barkbench.measure.optimize import offload as offload_axis

            self.prepare()
            offload_axis.check_placement(self.model, self._measured_call)
            self._audio = None
            self.info = dataclasses.replace(self.info, offload_placement_checked=True)
        #: On CPU, the call whose peak memory every round reports; see ``_memory_call``.
        self._memory: RoundResult | None = self._memory_call() if self._cpu else None
        # After the memory call, so that the probe's buffers never count in the variant's memory figures.
        self.info = dataclasses.replace(self.info, limits=_machine_limits(self.model, spec, prepared.quantized_linear))

    @property
    def inputs(self) -> dict[str, Any]:
        """The first call's keyword arguments (the only call outside long-form mode)."""
        return self.calls[0]

    def prepare(self) -> None:
        """Outside the timed region, before every round: the blog's ``set_seed(0)``."""
        from transformers import set_seed

        set_seed(self.spec.workload.seed)

    def _memory_call(self) -> RoundResult:
        """One untimed call, before the warm-up, whose peak resident set is the variant's CPU memory figure.

        Measured with the allocator pinned (every large block its own mapping, freed at once), so the figure
        is the call's live memory and reads the same in every fresh process; then the allocator is released so
        that the timed calls run as in any process (pinned, page faults would add 45 % to a call's latency).
        The timed rounds report this call's peak and per-stage peaks: on CPU their own readings depend on what
        the allocator kept from earlier calls. An accelerator's allocator counts live bytes itself, so there the
        rounds keep their own readings, as the blog's tables do.
        """
        self.prepare()
        result = self._measured_call()
        self._audio = None  # nothing of the memory call stays alive into the rounds
        self._trackers.release_allocator()
        return result

    def generate(self) -> RoundResult:
        _raise_injected_failure(self.spec.variant.id)
        # On CPU the memory call's figures stand for every round: no whole-call memory tracking here, whose heap
        # trim before each round would hand back the pages the released allocator is meant to reuse.
        result = self._measured_call(track_memory=self._memory is None)
        if self._memory is None:
            return result
        stages = {
            name: {**figures, "peak_memory_bytes": self._memory.stages.get(name, {}).get("peak_memory_bytes", 0)}
            for name, figures in result.stages.items()
        }
        return dataclasses.replace(
            result, peak_memory_bytes=self._memory.peak_memory_bytes, memory_method=MEMORY_CALL_METHOD, stages=stages
        )

    def _measured_call(self, track_memory: bool = True) -> RoundResult:
        import torch

        from barkbench.measure.workload import audio_seconds

        kwargs = self._generate_kwargs()
        # The previous call's audio must not be alive (on the device) inside this call's peak.
        self._audio = None
        segments: list[float] = []
        pieces: list[tuple[Any, Any]] = []
        memory: contextlib.AbstractContextManager[Any] = (
            self._trackers.MemoryTracker(self.spec.device_type, baseline_bytes=self._baseline)
            if track_memory
            else contextlib.nullcontext(self._trackers.PeakMemory())
        )
        latency = self._trackers.LatencyTracker(self.spec.device_type)
        # The stage tracker is entered first: installing its wrappers is not part of the timed call.
        stage_tracker = StageTracker(self.model, self.spec.device_type, baseline_bytes=self._baseline)
        with torch.inference_mode(), stage_tracker as stages, memory as mem, latency as lat:
            # One call per round, or long-form's pieces in sequence (each timed; the round is their sum).
            for call in self.calls:
                start = time.perf_counter()
                audio, lengths = self.model.generate(**call, **kwargs)
                segments.append(time.perf_counter() - start)
                if len(self.calls) > 1:
                    pieces.append((audio.detach().cpu(), [int(n) for n in lengths]))
                    # A long-form call can take minutes: say how far it is (not after the last piece, whose end is
                    # the call's answer; a pipe message of microseconds, outside the pieces' own timings).
                    if self._on_piece is not None and len(segments) < len(self.calls):
                        self._on_piece(len(segments), len(self.calls), segments[-1])
        if pieces:
            # The round's audio is the pieces one after another (batch 1 in long-form mode).
            audio = torch.cat([a[0, : int(n[0])] for a, n in pieces])[None]
            lengths = torch.tensor([audio.shape[-1]])
        # Kept on the host for save_wav: a device copy would sit in the allocator between rounds.
        self._audio = (audio.detach().cpu(), lengths.detach().cpu() if hasattr(lengths, "cpu") else lengths)
        return RoundResult(
            seconds=lat.seconds,
            # Each stage resets the peak counter; the stage tracker keeps what was reached before each reset.
            peak_memory_bytes=max(mem.peak_bytes, stages.peak_bytes),
            memory_method=mem.method,
            audio_seconds=audio_seconds(audio, self.info.sample_rate, list(lengths)),
            output_lengths=tuple(int(n) for n in lengths),
            stages=stages.as_dict(),
            segment_seconds=tuple(segments) if len(segments) > 1 else (),
            **_device_memory(mem, stages),
        )

    def _generate_kwargs(self) -> dict[str, Any]:
        """What every call passes ``generate`` besides the inputs: the workload's, the pinned length, the cache's."""
        kwargs = {**self.spec.workload.call_kwargs(), "return_output_lengths": True}
        if self.spec.fixed_length:
            kwargs.update(fixed_length_kwargs(self.spec.workload.semantic_max_new_tokens))
        kwargs.update(cache_axis.generate_kwargs(self.spec.variant))
        return kwargs

    def bare_generate(self) -> float:
        """The workload's call as a user would time it, for ``barkbench overhead --paired``: no tracker, no stage
        wrapper, no memory reading, no pipe — ``perf_counter`` around ``generate`` in this process, the device
        synchronized once before the clock stops (nothing on CPU). Same inputs and arguments as a round; seconds."""
        import torch

        from barkbench.measure.device import synchronize

        kwargs = self._generate_kwargs()
        self._audio = None
        with torch.inference_mode():
            start = time.perf_counter()
            for call in self.calls:
                self.model.generate(**call, **kwargs)
            synchronize(self.spec.device_type)
            return time.perf_counter() - start

    def save_wav(self, path: str) -> str:
        """Write the last call's first sample as a WAV file (soundfile), to listen to what a variant does."""
        import soundfile

        if self._audio is None:
            raise RuntimeError("no audio yet: save_wav needs a generate call first")
        audio, lengths = self._audio
        first = audio[0, : int(lengths[0])].float().cpu().numpy()
        soundfile.write(path, first, self.info.sample_rate)
        return path

    def _quality_kwargs(self) -> dict[str, Any]:
        """The workload's first call (long-form: its first piece), as the rounds make it."""
        kwargs = {**self.calls[0], **self.spec.workload.call_kwargs()}
        if self.spec.fixed_length:
            kwargs.update(fixed_length_kwargs(self.spec.workload.semantic_max_new_tokens))
        return kwargs

    def capture_reference(self, path: str) -> dict[str, Any]:
        """As the reference (fp32 eager): record the seeded call's sampling to ``path``; return the noise floor
        (the same call with the next seed, against it). Untimed, after the rounds."""
        from barkbench.measure import quality

        kwargs = self._quality_kwargs()
        seed = self.spec.workload.seed
        reference = quality.capture_call(self.model, kwargs, seed)
        resampled = quality.capture_call(self.model, kwargs, seed + 1)
        quality.save_capture(reference, path)
        floor = quality.noise_floor(reference, resampled, self.info.sample_rate)
        floor["audio"] = quality.audio_figures(
            reference.audio, self.info.sample_rate, self._quality_text(), self._random_model
        )
        return floor

    def drift(self, path: str) -> dict[str, Any]:
        """This variant against the reference recorded at ``path``: teacher-forced and free-running calls."""
        from barkbench.measure import quality

        kwargs = self._quality_kwargs()
        reference = quality.load_capture(path)
        seed = self.spec.workload.seed
        forced = quality.capture_call(self.model, kwargs, seed, reference=reference)
        free = quality.capture_call(self.model, kwargs, seed)
        result = quality.drift(reference, forced, free, self.info.sample_rate).as_dict()
        result["audio"] = quality.audio_figures(
            free.audio, self.info.sample_rate, self._quality_text(), self._random_model
        )
        return result

    def _quality_text(self) -> str:
        """The text of the quality call's first sample (long-form: the first piece), for the WER."""
        from barkbench.measure import workload

        text = self.spec.workload.prompts[0]
        if self.spec.workload.mode == "single":
            return text
        return workload.split_sentences(text, lambda piece: workload.text_token_counts(self.processor, [piece])[0])[0]

    def close(self) -> None:
        import gc

        self.model = self.processor = self._audio = None
        gc.collect()


def _device_memory(memory: Any, stages: StageTracker) -> dict[str, Any]:
    """``RoundResult``'s accelerator memory fields from the call's ``PeakMemory`` and its stage tracker (whose
    per-stage resets the call's own reading cannot see past); all None on the CPU."""
    reserved = [r for r in (memory.reserved_peak_bytes, stages.reserved_peak_bytes) if r is not None]
    return {
        "reserved_peak_bytes": max(reserved) if reserved else None,
        "device_process_bytes": memory.device_process_bytes,
        "host_peak_rss_bytes": memory.host_peak_rss_bytes,
        "memory_notes": tuple(memory.notes),
    }


def _machine_limits(model: Any, spec: RunSpec, quantized_linear: int) -> dict[str, Any]:
    from barkbench.measure import limits

    try:
        return limits.for_model(model, spec.device_type, spec.variant.dtype, spec.variant.batch_size, quantized_linear)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        # The limits only add the "% of limit" figures: a variant that ran is not lost because the probe failed.
        return {"error": f"machine-limits probe failed: {type(exc).__name__}: {exc}"}


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _resolved_index(kind: str, index: int | None) -> int | None:
    """The index of the device the model runs on: a plain "cuda" means the current device."""
    if index is not None or kind != "cuda":
        return index
    import torch

    return int(torch.cuda.current_device())


def _weights_bytes(model: Any) -> int:
    import itertools

    return sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))


#: Testing hook: ``BARKBENCH_FAIL_VARIANT=<variant id>:oom[,<variant id>:error]`` makes that variant's
#: generate raise a real ``torch.OutOfMemoryError`` (or RuntimeError) before it runs, so the failure path a GPU
#: out-of-memory takes (recorded as failed, the next variants still run) can be tested on any machine. No
#: figure is produced for the failed variant. ``<variant id>:died`` kills the process with SIGKILL instead, as
#: the kernel's OOM killer would (in a worker process only: in-process, it would kill pytest).
FAIL_VARIANT_ENV = "BARKBENCH_FAIL_VARIANT"


def _raise_injected_failure(variant_id: str) -> None:
    import torch

    value = os.environ.get(FAIL_VARIANT_ENV, "")
    for item in filter(None, (part.strip() for part in value.split(","))):
        target, _, kind = item.rpartition(":")
        if target != variant_id:
            continue
        message = f"injected by {FAIL_VARIANT_ENV}={value} (testing hook), before generate"
        if kind == "oom":
            raise torch.OutOfMemoryError(message)
        if kind == "error":
            raise RuntimeError(message)
        if kind == "died":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError(
            f"{FAIL_VARIANT_ENV}: unknown failure kind {kind!r} in {item!r}; use <variant id>:oom, "
            "<variant id>:error or <variant id>:died"
        )
