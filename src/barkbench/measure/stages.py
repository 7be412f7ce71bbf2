"""Per-stage breakdown of one ``BarkModel.generate`` call: semantic, coarse, fine and codec decode.

``BarkModel.generate`` runs four steps one after the other — ``self.semantic.generate``,
``self.coarse_acoustics.generate``, ``self.fine_acoustics.generate`` and ``self.codec_decode`` — and each
sub-model's ``generate`` builds its own logits processors, so nothing can be injected from outside to observe
them. ``StageTracker`` instead shadows those four methods *on the instance* for the duration of one call (an
instance attribute wins over the class method; removing it restores the class method), times each, tracks its peak
memory and counts what it produced.

Nothing here waits for the device inside the call (issue 24 item 3): a stage's boundaries are marks of a
``trackers.StageClock`` (CUDA events on a GPU, ``perf_counter`` on CPU) turned into seconds once the call is over;
the allocator's peaks are host-side counters; and a count that only a device tensor holds (the semantic tokens, a
static cache's length in the per-forward hook) is kept as a device tensor and read once at the end (``_Deferred``).

What falls between the stages (building the generation configs, splitting kwargs, padding the audio of a batch,
the CPU-offload hook moving the codec to the device) is not attributed to any stage: ``unattributed_seconds``
is the call's latency minus the sum of the stages, and is expected to stay within ``STAGE_GAP_TOLERANCE``.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from barkbench.bark import COARSE_CODEBOOKS, DECODE_STAGES, SEMANTIC_PAD_TOKEN, STAGE_CALLS, STAGE_SUBMODELS, STAGES
from barkbench.measure import trackers

# The stages (``bark.STAGES``, the keys of ``extra_info["stages"]``) and the method ``BarkModel.generate`` calls
# for each (``bark.STAGE_CALLS``) are Bark's facts.

#: How far the sum of the stage times may fall short of the call's latency: the larger of a relative and an
#: absolute bound (the absolute one covers the fixed cost of the code between stages on very short calls).
STAGE_GAP_TOLERANCE = (0.05, 0.010)


def gap_allowed(total_seconds: float) -> float:
    """The largest ``unattributed_seconds`` a call of ``total_seconds`` is allowed."""
    relative, absolute = STAGE_GAP_TOLERANCE
    return max(relative * total_seconds, absolute)


@dataclass
class StageFigures:
    """One stage of one call. ``tokens`` is what the stage produced, summed over the batch:

    - semantic: semantic tokens before EOS (the pad/EOS token that ends a sample is not counted);
    - coarse: coarse codebook tokens (both codebooks, interleaved), per sample up to its own length;
    - fine: the fine codebook entries it predicted (codebooks 3-8 of every frame);
    - codec: audio samples decoded.
    """

    seconds: float = 0.0
    peak_memory_bytes: int = 0
    tokens: int = 0
    calls: int = 0
    #: Decode stages (semantic, coarse): the sub-model's forward passes, and the key positions they attended to
    #: (past + new tokens, summed over forwards and the batch) — what ``results.efficiency`` turns into bytes read.
    forwards: int = 0
    key_positions: int = 0

    def as_dict(self) -> dict[str, float | int]:
        figures: dict[str, float | int] = {
            "seconds": self.seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
            "tokens": self.tokens,
        }
        if self.forwards:
            figures.update(forwards=self.forwards, key_positions=self.key_positions)
        return figures


def fixed_length_kwargs(semantic_tokens: int) -> dict[str, int]:
    """``generate`` kwargs that make the semantic stage produce exactly ``semantic_tokens`` tokens.

    ``BarkModel.generate`` routes ``semantic_*`` kwargs to ``BarkSemanticModel.generate``, which passes unknown
    ones on to ``GenerationMixin.generate``: ``min_new_tokens`` there adds a processor that masks the EOS
    logit until that many tokens exist, so neither sampling nor Bark's EOS prioritizer (which only promotes
    EOS when its probability is high) can end the sample early. Works on transformers 4.4x and 5.x.
    """
    return {"semantic_max_new_tokens": semantic_tokens, "semantic_min_new_tokens": semantic_tokens}


#: A count: a Python int, or a 0-d tensor where only the device holds it (``_Deferred`` reads it after the call).
Count = Any


def _semantic_tokens(output: Any, args: tuple, kwargs: dict[str, Any]) -> Count:
    config = kwargs.get("semantic_generation_config")
    pad = getattr(config, "semantic_pad_token", SEMANTIC_PAD_TOKEN)
    # Counted as soon as the stage returns: the coarse stage later overwrites the EOS/pad ids in place. On a device
    # the sum is queued on the stream before the coarse stage's kernels, so it counts the ids as they are now.
    return (output != pad).sum()


def _coarse_tokens(output: Any, args: tuple, kwargs: dict[str, Any]) -> Count:
    if isinstance(output, tuple):
        # return_output_lengths=True: (tokens, per-sample lengths in coarse tokens).
        return output[1].sum()
    return int(output.numel())


def _fine_tokens(output: Any, args: tuple, kwargs: dict[str, Any]) -> int:
    coarse_config = kwargs.get("coarse_generation_config")
    given = int(getattr(coarse_config, "n_coarse_codebooks", COARSE_CODEBOOKS))
    batch, codebooks, frames = output.shape
    return int(batch * max(0, codebooks - given) * frames)


def _codec_samples(output: Any, args: tuple, kwargs: dict[str, Any]) -> int:
    # A list of 1-D waveforms when output lengths were passed (batch broken up), else (batch, samples).
    if isinstance(output, (list, tuple)):
        return int(sum(sample.shape[-1] for sample in output))
    return int(output.numel())


def _past_length(kwargs: dict[str, Any]) -> Count:
    """The cache's length before this forward: an int, or a device tensor (never read here)."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        # A transformers Cache: a DynamicCache answers an int from a shape; a StaticCache (transformers 5) its
        # ``cumulative_length`` tensor, on the cache's device — int() of it would be a host sync per forward.
        return cache.get_seq_length()
    return int(cache[0][0].shape[-2])  # legacy tuple of (key, value) per layer: a shape


def _on_device(value: Any) -> bool:
    """Whether reading ``value`` on the host would wait for a device (a tensor anywhere but on the CPU)."""
    import torch

    return isinstance(value, torch.Tensor) and value.device.type != "cpu"


class _Deferred:
    """Counts added to ``StageFigures`` fields: a host value at once (CPU behaviour as before), a device tensor kept
    and read after the call, all of one field in one transfer (``resolve``)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[int, str], tuple[StageFigures, list[tuple[Any, int]]]] = {}

    def add(self, figures: StageFigures, field: str, value: Count, scale: int = 1) -> None:
        """Add ``scale * value`` to ``figures.<field>``. A device tensor must be one nothing changes later (a fresh
        result such as ``length + n``, never a static cache's own ``cumulative_length``, updated in place)."""
        if not _on_device(value):
            setattr(figures, field, getattr(figures, field) + scale * int(value))
            return
        self._pending.setdefault((id(figures), field), (figures, []))[1].append((value, scale))

    def resolve(self) -> None:
        """After the device has finished the call: add what was deferred (one device-to-host copy per field)."""
        import torch

        for (_, field), (figures, values) in self._pending.items():
            by_scale: dict[int, list[Any]] = {}
            for value, scale in values:
                by_scale.setdefault(scale, []).append(value.reshape(()).to(torch.int64))
            total = sum(scale * int(torch.stack(group).sum()) for scale, group in by_scale.items())
            setattr(figures, field, getattr(figures, field) + total)
        self._pending.clear()


def _forward_counter(figures: StageFigures, deferred: _Deferred) -> Callable[..., None]:
    def count(module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        tensor = kwargs.get("input_ids")
        for name in ("inputs_embeds", "input_embeds"):  # the name transformers 5 / 4.x give the prefill's embeddings
            if tensor is None:
                tensor = kwargs.get(name)
        if tensor is None and args:
            tensor = args[0]
        if tensor is None:
            return
        figures.forwards += 1
        # Shapes are host values; the past length may be a device tensor, kept unread (no sync per forward).
        deferred.add(figures, "key_positions", _past_length(kwargs) + int(tensor.shape[1]), int(tensor.shape[0]))

    return count


_COUNTERS: dict[str, Callable[[Any, tuple, dict[str, Any]], Count]] = {
    "semantic": _semantic_tokens,
    "coarse": _coarse_tokens,
    "fine": _fine_tokens,
    "codec": _codec_samples,
}


def _peak_so_far(device_type: str) -> int:
    """The peak the device/process reached since the last reset (absolute bytes)."""
    if device_type == "cpu":
        # VmHWM where the kernel keeps it; the current RSS is the best lower bound elsewhere.
        return trackers.peak_rss()
    import torch

    # No synchronize: the caching allocator's statistics are host-side counters, current when read.
    return int(getattr(torch, device_type).max_memory_allocated())


def _reserved_so_far(device_type: str) -> int | None:
    """The allocator's reserved peak since the last reset (absolute bytes); None on the CPU."""
    if device_type == "cpu":
        return None
    import torch

    return int(getattr(torch, device_type).max_memory_reserved())


@contextlib.contextmanager
def _stage_peak(device_type: str, baseline_bytes: int) -> Iterator[list[int]]:
    """Peak memory of the block above ``baseline_bytes``, in ``result[0]`` after the block.

    Unlike ``trackers.MemoryTracker`` this does not trim the heap first: four trims per call cost about 0.5 %
    of a bark-small call on CPU (freed pages are faulted back in by the next stage), and a stage's peak is an
    absolute reading (weights included), not a difference that leftover free heap could hide.
    """
    result = [0]
    if device_type == "cpu":
        if not trackers.reset_peak_rss():
            # No resettable high-water mark in this kernel/sandbox: the tracker's RSS poller stands in.
            with trackers.MemoryTracker(device_type, baseline_bytes=baseline_bytes) as memory:
                yield result
            result[0] = memory.peak_bytes
            return
    else:
        import torch

        getattr(torch, device_type).reset_peak_memory_stats()  # host-side, as the reading (no synchronize)
    yield result
    result[0] = max(0, _peak_so_far(device_type) - baseline_bytes)


class StageTracker:
    """Context manager: while active, every call of the four stage methods of ``model`` is measured.

    Figures accumulate over the calls made inside the block (one ``generate`` call: one call per stage).
    Each stage resets the peak-memory counter (process high-water mark on CPU, allocator peak on an
    accelerator) when it starts; ``peak_bytes`` folds in what was reached before every reset, so it is the
    whole block's peak and callers combine it with their own tracker's reading — entered inside this block,
    since the stages' resets would otherwise cut into it unseen. ``reserved_peak_bytes`` does the same for the
    allocator's reserved peak on an accelerator.

    Stage times are marks of ``trackers.stage_clock(device_type)`` taken at the stage boundaries and turned into
    seconds when the block exits (after one synchronize on CUDA); counts held by device tensors are read then too.
    The figures are complete once the block has exited without an error.
    """

    def __init__(self, model: Any, device_type: str = "cpu", baseline_bytes: int | None = None) -> None:
        self.model = model
        self.device_type = device_type
        self.baseline_bytes = baseline_bytes
        self.stages: dict[str, StageFigures] = {name: StageFigures() for name in STAGES}
        self._peak_abs = 0
        self._reserved_abs: int | None = None
        self._resettable = True
        self._installed: list[tuple[Any, str, bool, Any]] = []
        self._hooks: list[Any] = []
        self._clock = trackers.stage_clock(device_type)
        #: Each stage call's figures and its start and end marks, turned into seconds at exit.
        self._intervals: list[tuple[StageFigures, Any, Any]] = []
        self._deferred = _Deferred()

    # -- results ---------------------------------------------------------------------------------------------
    @property
    def seconds(self) -> float:
        """Sum of the stage times."""
        return sum(f.seconds for f in self.stages.values())

    @property
    def peak_bytes(self) -> int:
        """The block's peak above the baseline, as far as this tracker observed it."""
        base = self.baseline_bytes or 0
        stage_peak = max(f.peak_memory_bytes for f in self.stages.values())
        return max(stage_peak, self._peak_abs - base, 0)

    @property
    def reserved_peak_bytes(self) -> int | None:
        """The allocator's reserved peak over the block's stages (absolute bytes); None on the CPU."""
        return self._reserved_abs

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        """Plain JSON: ``{"semantic": {"seconds", "peak_memory_bytes", "tokens"}, ...}``."""
        return {name: figures.as_dict() for name, figures in self.stages.items()}

    # -- measuring -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _measure(self, stage: str) -> Iterator[StageFigures]:
        figures = self.stages[stage]
        # Whatever ran since the last reset (the code between stages) would be lost by this stage's reset.
        # Without a resettable high-water mark, VmHWM is the process's lifetime peak: use the current RSS.
        reading = _peak_so_far(self.device_type) if self._resettable else trackers.current_rss()
        self._peak_abs = max(self._peak_abs, reading)
        self._fold_reserved()
        with _stage_peak(self.device_type, self.baseline_bytes or 0) as peak:
            start = self._clock.mark()
            yield figures
            end = self._clock.mark()
        self._intervals.append((figures, start, end))
        figures.peak_memory_bytes = max(figures.peak_memory_bytes, peak[0])
        figures.calls += 1
        self._fold_reserved()

    def _fold_reserved(self) -> None:
        reserved = _reserved_so_far(self.device_type)
        if reserved is not None:
            self._reserved_abs = max(self._reserved_abs or 0, reserved)

    def _wrap(self, stage: str, method: Callable[..., Any]) -> Callable[..., Any]:
        count = _COUNTERS[stage]

        @functools.wraps(method)
        def measured(*args: Any, **kwargs: Any) -> Any:
            with self._measure(stage) as figures:
                output = method(*args, **kwargs)
            # Counted outside the stage's interval; a device tensor's count is read after the call.
            self._deferred.add(figures, "tokens", count(output, args, kwargs))
            return output

        return measured

    def __enter__(self) -> StageTracker:
        if self.baseline_bytes is None:
            self.baseline_bytes = trackers.memory_in_use(self.device_type)
        # Whether VmHWM can be reset here. Resetting is why a caller's own peak tracker must be entered after
        # this one (inside it), as VariantRunner does: what came before the block is not the block's.
        self._resettable = self.device_type != "cpu" or trackers.reset_peak_rss()
        try:
            for stage, call in STAGE_CALLS.items():
                owner_name, method_name = call.owner, call.method
                owner = getattr(self.model, owner_name) if owner_name else self.model
                # Remember whether the instance already shadowed the method (another wrapper): restore it then.
                shadowed = method_name in vars(owner)
                previous = vars(owner)[method_name] if shadowed else None
                setattr(owner, method_name, self._wrap(stage, getattr(owner, method_name)))
                self._installed.append((owner, method_name, shadowed, previous))
        except AttributeError as exc:
            self._restore()
            raise TypeError(f"StageTracker needs a transformers BarkModel; {exc}") from None
        # The decode stages' sub-model forwards are counted (``StageFigures.forwards``). The fine model's
        # ``generate`` calls ``self.forward`` directly, past any hook; its work follows from its shapes.
        for stage in DECODE_STAGES:
            hook = _forward_counter(self.stages[stage], self._deferred)
            sub_model = getattr(self.model, STAGE_SUBMODELS[stage].attribute)
            self._hooks.append(sub_model.register_forward_pre_hook(hook, with_kwargs=True))
        return self

    def _restore(self) -> None:
        while self._hooks:
            self._hooks.pop().remove()
        while self._installed:
            owner, method_name, shadowed, previous = self._installed.pop()
            if shadowed:
                setattr(owner, method_name, previous)
            else:
                delattr(owner, method_name)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._restore()
        if exc_type is None:  # after an error the device may not answer; the figures are not wanted then
            self._settle()

    def _settle(self) -> None:
        """The block's one wait for the device (CUDA: ``synchronize``), then the stage seconds and deferred counts."""
        self._clock.settle()
        for figures, start, end in self._intervals:
            figures.seconds += self._clock.seconds(start, end)
        self._intervals.clear()
        self._deferred.resolve()


def unattributed_seconds(total_seconds: float, stages: dict[str, dict[str, float | int]]) -> float:
    """Latency not inside any stage (the code between them); stage dicts as ``StageTracker.as_dict`` gives."""
    return total_seconds - sum(float(s["seconds"]) for s in stages.values())


def _plain_mean(values: list[float]) -> float | int:
    mean = statistics.fmean(values)
    return int(mean) if float(mean).is_integer() else mean


def summarize_stages(rounds: list[dict[str, dict[str, float | int]]], latencies: list[float]) -> dict[str, Any]:
    """extra_info figures from the per-round stage dicts of the measured rounds (plain JSON values).

    ``stages``: per stage, mean seconds, the highest peak and mean tokens per call. ``semantic_tokens_per_s``
    and ``coarse_tokens_per_s`` divide each stage's tokens by that stage's own time (summed over rounds), so a
    run that generated more tokens compares fairly with one that generated fewer. ``unattributed_seconds``:
    mean latency minus the mean stage times (the code between stages).
    """
    rounds = [r for r in rounds if r]
    if not rounds:
        return {}
    stages = {
        name: {
            "seconds": statistics.fmean(float(r[name]["seconds"]) for r in rounds),
            "peak_memory_bytes": max(int(r[name]["peak_memory_bytes"]) for r in rounds),
            "tokens": _plain_mean([float(r[name]["tokens"]) for r in rounds]),
        }
        for name in STAGES
    }
    for name in STAGES:
        if all("forwards" in r[name] for r in rounds):
            for key in ("forwards", "key_positions"):
                stages[name][key] = _plain_mean([float(r[name][key]) for r in rounds])

    def rate(name: str) -> float | None:
        seconds = sum(float(r[name]["seconds"]) for r in rounds)
        return sum(float(r[name]["tokens"]) for r in rounds) / seconds if seconds > 0 else None

    return {
        "stages": stages,
        "semantic_tokens_per_s": rate("semantic"),
        "coarse_tokens_per_s": rate("coarse"),
        "unattributed_seconds": statistics.fmean(latencies) - sum(s["seconds"] for s in stages.values()),
    }
