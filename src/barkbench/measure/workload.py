"""What one measured call does: the blog's prompts, its seeded sampling call, the pinned output length."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The blog's prompt, then the two it adds for batches; a batch of N cycles through them.
PROMPTS = (
    "Let's try generating speech, with Bark, a text-to-speech model",
    "Wow, batching is so great!",
    "I love Hugging Face, it's so cool.",
)

#: Bark's text window: BarkProcessor pads or truncates the prompt to this many tokens.
MAX_TEXT_TOKENS = 256
SEED = 0
#: The blog's cap on new semantic tokens in its tables. Random weights almost never emit EOS, so this is also
#: the length every run reaches.
DEFAULT_SEMANTIC_TOKENS = 256


class WorkloadError(ValueError):
    """A workload the harness refuses to run; the message says what to change."""


@dataclass(frozen=True)
class Workload:
    batch_size: int = 1
    semantic_max_new_tokens: int = DEFAULT_SEMANTIC_TOKENS
    prompts: tuple[str, ...] = PROMPTS
    seed: int = SEED
    #: The blog's sampling settings.
    generate_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"do_sample": True, "fine_temperature": 0.4, "coarse_temperature": 0.8}
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise WorkloadError(f"batch size must be >= 1, got {self.batch_size}")
        if self.semantic_max_new_tokens < 1:
            raise WorkloadError(
                f"--bark-semantic-tokens must be >= 1, got {self.semantic_max_new_tokens}; the blog used 256"
            )
        if not self.prompts or any(not p.strip() for p in self.prompts):
            raise WorkloadError("empty prompt: Bark needs text to speak; give a non-empty prompt")

    def batch_prompts(self) -> list[str]:
        return [self.prompts[i % len(self.prompts)] for i in range(self.batch_size)]

    def call_kwargs(self) -> dict[str, Any]:
        return {**self.generate_kwargs, "semantic_max_new_tokens": self.semantic_max_new_tokens}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts"] = list(self.prompts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workload:
        return cls(**{**data, "prompts": tuple(data["prompts"])})


def text_token_counts(processor: Any, prompts: list[str]) -> list[int]:
    """Untruncated token counts, to tell the user when Bark's 256-token window cuts a prompt."""
    return [len(processor.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]


def prepare_inputs(processor: Any, workload: Workload, device: Any) -> tuple[dict[str, Any], list[str]]:
    """Tokenized inputs on ``device`` and warnings (e.g. truncation) the report must carry."""
    prompts = workload.batch_prompts()
    warnings = [
        f"prompt {i} has {n} tokens; Bark keeps the first {MAX_TEXT_TOKENS} (the rest is not spoken)"
        for i, n in enumerate(text_token_counts(processor, prompts))
        if n > MAX_TEXT_TOKENS
    ]
    # BarkProcessor pads to 256 but does not truncate: a longer prompt alone gets more ids (the semantic model
    # then keeps the first 256), and in a batch next to a shorter one the tokenizer cannot build the tensor.
    # Truncating here keeps exactly what Bark would keep, for every batch; the warnings above report it.
    inputs = processor(prompts, truncation=True)
    # BarkProcessor returns a BatchFeature; history_prompt stays None without a voice preset.
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items() if v is not None}
    return inputs, warnings


def audio_seconds(audio: Any, sample_rate: int, lengths: list[int] | None = None) -> float:
    """Seconds of audio generated in one call, summed over the batch."""
    if lengths is not None:
        return float(sum(lengths)) / sample_rate
    batch = audio.shape[0] if audio.dim() > 1 else 1
    return float(batch * audio.shape[-1]) / sample_rate
