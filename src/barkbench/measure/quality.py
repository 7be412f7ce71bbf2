"""What a variant changes in Bark's output, measured against the fp32 eager reference (llama.cpp's
``perplexity --kl-divergence`` report, per Bark stage).

Bark samples every token with ``torch.multinomial`` (semantic and coarse inside ``GenerationMixin``'s sampling
loop, fine in ``BarkFineModel.generate``). ``SamplingRecorder`` replaces that one function for the duration of a
call and sees, for each sampling step, the exact distribution the model sampled from (after temperature and
Bark's logits processors) and the token drawn:

- ``record``: the reference's call: each step's distribution and token, per stage.
- ``force``: teacher forcing. The variant's call draws nothing: every step returns the reference's token, so
  the variant walks the reference's token sequences, KV cache and all, and each of its distributions is compared
  with the reference's at the same position: KL(reference || variant), and whether the most likely token is the
  same (top-1 agreement).

A free-running call of the variant with the reference's seed gives the position of the first sampled token that
differs, and the decoded audio's log-mel distance to the reference's. The noise floor is the reference against
itself with another seed: what re-sampling alone changes. Teacher-forced KL of the reference against itself is
exactly zero (same model, same tokens), so for KL and top-1 the floor is 0 and 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from barkbench.bark import STAGE_SUBMODELS

#: Bark's sampled stages, in the order ``BarkModel.generate`` runs them, with the sub-model attribute.
SAMPLED_STAGES = tuple((stage, sub.attribute) for stage, sub in STAGE_SUBMODELS.items())
#: Probabilities below this count as this in KL(reference || variant): a token the variant rules out entirely
#: where the reference does not gives a large, finite divergence instead of infinity.
PROB_FLOOR = 1e-12


class QualityError(RuntimeError):
    """The variant's call cannot be compared with the reference's; the message says why."""


@dataclass
class Step:
    stage: str
    #: (rows, vocab) float32 on the CPU: the distribution sampled from, one row per sequence (or fine position).
    probs: Any
    #: (rows, 1) int64 on the CPU: the tokens drawn.
    tokens: Any


@dataclass
class Capture:
    """One call's sampling steps, and its audio (first sample, trimmed to its length) as a float32 numpy array."""

    steps: list[Step] = field(default_factory=list)
    audio: Any = None

    def tokens(self, stage: str) -> list[int]:
        """The stage's sampled tokens in call order, flattened (the first-differing-token position counts here)."""
        return [int(t) for s in self.steps if s.stage == stage for t in s.tokens.reshape(-1).tolist()]


class SamplingRecorder:
    """Context manager: replaces ``torch.multinomial`` and labels the sub-models' ``generate`` calls with their
    stage. ``reference`` given: teacher forcing (returns the reference's tokens step by step)."""

    def __init__(self, model: Any, reference: Capture | None = None) -> None:
        self.model = model
        self.reference = reference
        self.capture = Capture()
        self._stage = "other"

    @contextlib.contextmanager
    def _stage_labels(self) -> Iterator[None]:
        wrapped = []
        for stage, attribute in SAMPLED_STAGES:
            owner = getattr(self.model, attribute, None)
            if owner is None:
                continue
            original = owner.generate

            def labelled(*args: Any, _stage: str = stage, _original: Any = original, **kwargs: Any) -> Any:
                self._stage = _stage
                try:
                    return _original(*args, **kwargs)
                finally:
                    self._stage = "other"

            owner.generate = labelled
            wrapped.append(owner)
        try:
            yield
        finally:
            for owner in wrapped:
                del owner.generate  # the instance attribute goes; the class's method shows again

    def _multinomial(self, original: Any) -> Any:
        def multinomial(probs: Any, num_samples: int = 1, *args: Any, **kwargs: Any) -> Any:
            index = len(self.capture.steps)
            if self.reference is None:
                tokens = original(probs, num_samples, *args, **kwargs)
            else:
                if index >= len(self.reference.steps):
                    raise QualityError(f"the variant samples more steps than the reference ({index + 1}th step)")
                ref = self.reference.steps[index]
                if ref.stage != self._stage or tuple(ref.probs.shape) != tuple(probs.shape):
                    raise QualityError(
                        f"step {index}: the variant samples {self._stage} {tuple(probs.shape)} where the reference "
                        f"sampled {ref.stage} {tuple(ref.probs.shape)}; the calls are not the same workload"
                    )
                tokens = ref.tokens.to(probs.device)
            self.capture.steps.append(Step(self._stage, probs.detach().float().cpu(), tokens.detach().cpu()))
            return tokens

        return multinomial

    def __enter__(self) -> SamplingRecorder:
        import torch

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self._stage_labels())
        original = torch.multinomial
        torch.multinomial = self._multinomial(original)
        self._stack.callback(setattr, torch, "multinomial", original)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def capture_call(model: Any, call_kwargs: dict[str, Any], seed: int, reference: Capture | None = None) -> Capture:
    """One seeded ``generate`` call under a ``SamplingRecorder``; the capture holds its steps and audio."""
    import torch
    from transformers import set_seed

    set_seed(seed)
    with torch.inference_mode(), SamplingRecorder(model, reference) as recorder:
        audio, lengths = model.generate(**call_kwargs, return_output_lengths=True)
    if reference is not None and len(recorder.capture.steps) != len(reference.steps):
        raise QualityError(
            f"the variant sampled {len(recorder.capture.steps)} steps, the reference {len(reference.steps)}"
        )
    recorder.capture.audio = audio[0, : int(lengths[0])].detach().float().cpu().numpy()
    return recorder.capture


@dataclass(frozen=True)
class StageDrift:
    #: KL(reference || variant) of the sampled distributions, over every teacher-forced step and row (nats).
    kl_mean: float
    kl_p99: float
    #: Fraction of steps where the variant's most likely token is the reference's.
    top1_agreement: float
    #: Free-running, same seed: index of the first sampled token that differs (None: all the same).
    first_diff_token: int | None
    #: Tokens the stage sampled in the reference's call (the scale for first_diff_token).
    tokens: int


@dataclass(frozen=True)
class Drift:
    stages: dict[str, StageDrift]
    #: Log-mel spectral distance of the free-running call's audio to the reference's (dB RMS over mel bands,
    #: averaged over frames; the shorter audio padded with silence).
    audio_log_mel_db: float

    def as_dict(self) -> dict[str, Any]:
        return {"stages": {k: asdict(v) for k, v in self.stages.items()}, "audio_log_mel_db": self.audio_log_mel_db}


def stage_divergence(reference: Capture, forced: Capture, stage: str) -> tuple[float, float, float]:
    """(mean KL, p99 KL, top-1 agreement) of ``forced`` (the variant, teacher-forced) against ``reference``."""
    import torch

    kls: list[Any] = []
    agree = total = 0
    for ref, var in zip(reference.steps, forced.steps, strict=True):
        if ref.stage != stage:
            continue
        p = ref.probs.double()
        q = var.probs.double()
        log_ratio = torch.log(p.clamp_min(PROB_FLOOR)) - torch.log(q.clamp_min(PROB_FLOOR))
        kls.append(torch.where(p > 0, p * log_ratio, torch.zeros_like(p)).sum(-1).clamp_min(0.0))
        agree += int((p.argmax(-1) == q.argmax(-1)).sum())
        total += p.shape[0]
    if not kls:
        return 0.0, 0.0, 1.0
    values = torch.cat(kls)
    return float(values.mean()), float(torch.quantile(values, 0.99)), agree / total


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def mel_power(audio: Any, sample_rate: int) -> Any:
    """(80 mel bands, frames) power spectrogram, by transformers' audio utilities (numpy)."""
    import numpy as np
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    filters = mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=80,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    waveform = np.asarray(audio, dtype=np.float64)
    if waveform.shape[-1] < 1024:
        waveform = np.pad(waveform, (0, 1024 - waveform.shape[-1]))
    return spectrogram(
        waveform, window_function(1024, "hann"), frame_length=1024, hop_length=256, power=2.0, mel_filters=filters
    )


#: The dB range below the reference's loudest mel bin that counts; quieter is clamped there (as librosa's
#: ``top_db``), so silence and padding sit at one level, whatever the audio's absolute loudness.
DB_RANGE = 80.0


def log_mel_distance(reference: Any, other: Any, sample_rate: int) -> float:
    """Log-mel spectral distance in dB: per frame the RMS over mel bands of the difference of the two dB
    spectrograms, averaged over frames. Both in dB relative to the reference's loudest bin; the shorter audio is
    padded with silence, so a length difference counts."""
    import numpy as np

    n = max(len(reference), len(other))
    a = mel_power(np.pad(np.asarray(reference, dtype=np.float64), (0, n - len(reference))), sample_rate)
    b = mel_power(np.pad(np.asarray(other, dtype=np.float64), (0, n - len(other))), sample_rate)
    peak = max(float(a.max()), 1e-30)
    floor = peak * 10 ** (-DB_RANGE / 10)
    diff = 10 * np.log10(np.maximum(a, floor) / peak) - 10 * np.log10(np.maximum(b, floor) / peak)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


def drift(reference: Capture, forced: Capture, free: Capture, sample_rate: int) -> Drift:
    """The variant's drift: ``forced`` is its teacher-forced call, ``free`` its free-running call (same seed)."""
    stages = {}
    for stage, _ in SAMPLED_STAGES:
        ref_tokens = reference.tokens(stage)
        kl_mean, kl_p99, top1 = stage_divergence(reference, forced, stage)
        stages[stage] = StageDrift(
            kl_mean, kl_p99, top1, first_difference(ref_tokens, free.tokens(stage)), len(ref_tokens)
        )
    return Drift(stages, log_mel_distance(reference.audio, free.audio, sample_rate))


def noise_floor(reference: Capture, resampled: Capture, sample_rate: int) -> dict[str, Any]:
    """What re-sampling the reference with another seed changes: the floor the drift figures are read against."""
    return {
        "first_diff_token": {
            stage: first_difference(reference.tokens(stage), resampled.tokens(stage)) for stage, _ in SAMPLED_STAGES
        },
        "audio_log_mel_db": log_mel_distance(reference.audio, resampled.audio, sample_rate),
        "kl_mean": 0.0,
        "top1_agreement": 1.0,
    }


#: Why random-weight models get no audio scores: their output is noise to a recognizer and a MOS predictor.
RANDOM_AUDIO_SKIP = "random weights make noise: WER and MOS judge trained checkpoints only"
_scorer: Any = None


def audio_figures(audio: Any, sample_rate: int, text: str, random_model: bool) -> dict[str, Any]:
    """The ``audio`` extra's scores of one call's audio (WER against ``text``, DNSMOS), or why there are none:
    ``{"skipped": reason}`` (random weights, extra not installed) or ``{"error": message}``."""
    from barkbench.measure import audio_metrics

    global _scorer
    if random_model:
        return {"skipped": RANDOM_AUDIO_SKIP}
    missing = audio_metrics.missing_modules()
    if missing:
        return {"skipped": f"audio extra not installed ({', '.join(missing)}): {audio_metrics.INSTALL_HINT}"}
    try:
        if _scorer is None:  # one recognizer and one set of ONNX sessions per worker process
            _scorer = audio_metrics.AudioScorer()
        return _scorer.score(audio, sample_rate, text).as_dict()
    except Exception as exc:  # noqa: BLE001 - an add-on score after the measurement must not lose the drift figures
        return {"error": f"audio metrics failed: {type(exc).__name__}: {exc}"}


def save_capture(capture: Capture, path: str) -> None:
    import torch

    torch.save({"steps": [asdict(s) for s in capture.steps], "audio": capture.audio}, path)


def load_capture(path: str) -> Capture:
    import torch

    data = torch.load(path, weights_only=False)
    return Capture([Step(**s) for s in data["steps"]], data["audio"])


def summary_line(result: dict[str, Any]) -> str:
    """One line for the terminal: semantic KL and top-1, audio distance against its floor."""
    stages = result.get("stages", {})
    parts = [
        f"{name} KL {figures['kl_mean']:.2e} top1 {figures['top1_agreement']:.3f}" for name, figures in stages.items()
    ]
    floor = result.get("floor", {}).get("audio_log_mel_db")
    audio = f"audio {result.get('audio_log_mel_db', float('nan')):.2f} dB"
    if floor is not None:
        audio += f" (re-sampling floor {floor:.2f} dB)"
    parts.append(audio)
    scores = result.get("audio") or {}
    if "wer" in scores:
        ref = result.get("floor", {}).get("audio") or {}
        line = f"WER {scores['wer']:.2f} MOS {scores['mos_p808']:.2f}"
        if "wer" in ref:
            line += f" (reference WER {ref['wer']:.2f} MOS {ref['mos_p808']:.2f})"
        parts.append(line)
    elif scores and scores.get("skipped") != RANDOM_AUDIO_SKIP:
        parts.append(f"WER/MOS: {scores.get('skipped') or scores.get('error')}")
    return "; ".join(parts)
