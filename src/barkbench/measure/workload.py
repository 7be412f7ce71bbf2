"""What one measured call does: the prompts (the blog's, or the user's ``--bark-prompts`` file), the voice preset
(``--bark-voice``), the mode (one call per batch, or long-form: sentence after sentence), the seeded sampling call
and the pinned output length.

Everything here is plain values: files are read and checked when the options are parsed, before any model loads,
and the workload crosses to the worker process as lists of numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from barkbench.bark import (
    COARSE_CODEBOOKS,
    CODEBOOK_SIZE,
    FINE_CODEBOOKS,
    MAX_SEMANTIC_TOKENS,
    MAX_TEXT_TOKENS,
    SEMANTIC_VOCAB,
    SEMANTIC_WINDOW,
)

#: The blog's prompt, then the two it adds for batches; a batch of N cycles through them.
PROMPTS = (
    "Let's try generating speech, with Bark, a text-to-speech model",
    "Wow, batching is so great!",
    "I love Hugging Face, it's so cool.",
)

SEED = 0
#: The blog's cap on new semantic tokens in its tables. Random weights almost never emit EOS, so this is also
#: the length every run reaches.
DEFAULT_SEMANTIC_TOKENS = 256


#: "single": one generate call per round over the batch; "long": the text split into sentences that fit Bark's
#: window, generated one after another (batch 1), the round's time their sum.
Mode = Literal["single", "long"]
MODES: tuple[str, ...] = ("single", "long")

#: Voice preset shapes (suno's .npz files): semantic (T,), coarse (2, T), fine (8, T). The codebook sizes bound
#: the values: semantic tokens < 10000, codec codes < 1024 (``barkbench.bark``).
VOICE_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
VOICE_ROWS = {"semantic_prompt": None, "coarse_prompt": COARSE_CODEBOOKS, "fine_prompt": FINE_CODEBOOKS}
#: Synthetic presets for random models: about 2 s of a voice (suno's presets hold a few seconds).
SYNTHETIC_SEMANTIC_LENGTH = 100
SYNTHETIC_CODEC_LENGTH = 150


class WorkloadError(ValueError):
    """A workload the harness refuses to run; the message says what to change."""


@dataclass(frozen=True)
class Voice:
    """A voice preset: where it comes from and, for files and synthetic presets, its arrays as nested lists.

    ``kind`` is "preset" (a hub name such as ``v2/en_speaker_6``, resolved by the processor of a real
    checkpoint), "file" (an ``.npz`` read at parse time) or "synthetic" (deterministic arrays of the right shapes
    for random models, so the history-prompt code path runs offline).
    """

    name: str
    kind: Literal["preset", "file", "synthetic"]
    arrays: dict[str, list[Any]] = field(default_factory=dict, compare=False)
    #: sha256 of the arrays (files, synthetic) or of the name (hub presets): what the workload id hashes.
    digest: str = ""

    def history_prompt(self) -> dict[str, Any]:
        """The ``history_prompt`` mapping Bark's generate takes (torch tensors, on the CPU)."""
        import torch

        return {key: torch.tensor(value, dtype=torch.int64) for key, value in self.arrays.items()}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_voice_arrays(arrays: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """The preset's arrays as nested lists, or WorkloadError naming the key or shape that is wrong."""
    import numpy as np

    missing = [k for k in VOICE_KEYS if k not in arrays]
    if missing:
        raise WorkloadError(
            f"{where}: voice preset lacks {', '.join(missing)}; it needs semantic_prompt (T,), coarse_prompt "
            "(2, T) and fine_prompt (8, T) (the layout of suno's .npz presets)"
        )
    out: dict[str, list[Any]] = {}
    for key in VOICE_KEYS:
        value = np.asarray(arrays[key])
        rows = VOICE_ROWS[key]
        shape_ok = value.ndim == 1 if rows is None else value.ndim == 2 and value.shape[0] == rows
        expected = "(T,)" if rows is None else f"({rows}, T)"
        if not shape_ok or value.shape[-1] == 0:
            raise WorkloadError(f"{where}: {key} has shape {value.shape}; a voice preset needs {expected} with T > 0")
        if not np.issubdtype(value.dtype, np.integer):
            raise WorkloadError(f"{where}: {key} holds {value.dtype}; a voice preset holds integer token ids")
        bound = SEMANTIC_VOCAB if key == "semantic_prompt" else CODEBOOK_SIZE
        if value.min() < 0 or value.max() >= bound:
            raise WorkloadError(f"{where}: {key} has ids outside [0, {bound}); is this a Bark voice preset?")
        out[key] = value.astype(np.int64).tolist()
    return out


def synthetic_voice(name: str = "synthetic") -> Voice:
    """A deterministic preset of the right shapes and ranges (seeded by ``name``): exercises the voice path of a
    random model; it is no voice anyone would recognize."""
    import numpy as np

    rng = np.random.default_rng(int(_digest(name.encode())[:8], 16))
    arrays = {
        "semantic_prompt": rng.integers(0, SEMANTIC_VOCAB, SYNTHETIC_SEMANTIC_LENGTH),
        "coarse_prompt": rng.integers(0, CODEBOOK_SIZE, (COARSE_CODEBOOKS, SYNTHETIC_CODEC_LENGTH)),
        "fine_prompt": rng.integers(0, CODEBOOK_SIZE, (FINE_CODEBOOKS, SYNTHETIC_CODEC_LENGTH)),
    }
    lists = check_voice_arrays(arrays, name)
    return Voice(name=name, kind="synthetic", arrays=lists, digest=_digest(json.dumps(lists).encode()))


def load_voice(value: str, where: str | None = None) -> Voice:
    """``--bark-voice``: an ``.npz`` file (checked now) or a preset name (resolved later by a real checkpoint's
    processor, or replaced by ``synthetic_voice`` for random models). ``where`` names the value in errors
    (default ``--bark-voice VALUE``; a JSONL prompt's voice names its file and line)."""
    text = value.strip()
    if not text:
        raise WorkloadError("--bark-voice is empty; give a preset name (v2/en_speaker_6) or an .npz file")
    if not text.endswith(".npz"):
        return Voice(name=text, kind="preset", digest=_digest(text.encode()))
    where = where or f"--bark-voice {text}"
    path = Path(text)
    if path.is_dir():
        raise WorkloadError(f"{where}: is a directory, not an .npz voice preset; {_VOICE_FIX}")
    if not path.is_file():
        raise WorkloadError(f"{where}: no such file; give an existing .npz voice preset")
    lists = check_voice_arrays(_read_npz(path, where), where)
    return Voice(name=path.name, kind="file", arrays=lists, digest=_digest(json.dumps(lists).encode()))


_VOICE_FIX = (
    "give an .npz saved by numpy.savez(path, semantic_prompt=..., coarse_prompt=..., fine_prompt=...) or a preset "
    "name such as v2/en_speaker_6"
)
_ZIP_MAGIC = b"PK"
_NPY_MAGIC = b"\x93NUMPY"


def _read_npz(path: Path, where: str) -> dict[str, Any]:
    """The arrays of an .npz file, or WorkloadError (one line) saying what the file is instead. numpy's own errors
    would leak a zipfile traceback or suggest loading the file unpickled (allow_pickle), which a voice preset,
    integer arrays only, never needs."""
    import zipfile

    import numpy as np

    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head.startswith(_ZIP_MAGIC):
        raise WorkloadError(f"{where}: {_not_a_zip(head)}, not an .npz voice preset ({_NOT_READABLE}); {_VOICE_FIX}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise WorkloadError(
            f"{where}: the .npz file is damaged, a truncated or corrupt zip archive ({reason}); save the preset "
            "again with numpy.savez or give another one"
        ) from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise WorkloadError(
                f"{where}: holds Python objects, not the integer arrays of a voice preset; {_VOICE_FIX}"
            ) from None
        raise WorkloadError(f"{where}: {_NOT_READABLE} ({' '.join(str(exc).split())}); {_VOICE_FIX}") from None


_NOT_READABLE = "not a readable .npz file: numpy writes an .npz as a zip archive of arrays"


def _not_a_zip(head: bytes) -> str:
    """What a file that is no zip archive looks like, from its first bytes."""
    if not head:
        return "is empty"
    if head.startswith(_NPY_MAGIC):
        return "is a single .npy array (numpy.save)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a zip archive"
    return "is text"


@dataclass(frozen=True)
class Prompt:
    text: str
    #: A per-prompt voice from a JSONL line (preset name or .npz path); None: the workload's voice.
    voice: str | None = None


def load_prompts(path: str) -> tuple[Prompt, ...]:
    """``--bark-prompts FILE``: one prompt per line, or JSONL (every non-empty line an object with ``text`` and
    optional ``voice``) when the file ends in .jsonl or its first line starts with ``{``."""
    file = Path(path)
    where = f"--bark-prompts {path}"
    if file.is_dir():
        raise WorkloadError(f"{where}: is a directory; give a file: a text file with one prompt per line, or JSONL")
    if not file.is_file():
        raise WorkloadError(f"{where}: no such file; give a text file with one prompt per line, or JSONL")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{where}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise WorkloadError(f"{where}: no prompts (the file is empty); put one prompt per line")
    jsonl = file.suffix == ".jsonl" or lines[0][1].startswith("{")
    if not jsonl:
        return tuple(Prompt(line) for _, line in lines)
    prompts = []
    for number, line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: line {number} is not JSON ({exc.msg}); each line is one object") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise WorkloadError(f'{where}: line {number} needs a non-empty "text" string, e.g. {{"text": "Hello."}}')
        voice = item.get("voice")
        if voice is not None and not (isinstance(voice, str) and voice.strip()):
            raise WorkloadError(f'{where}: line {number}: "voice" must be a preset name or an .npz path')
        if voice is not None:
            load_voice(voice, where=f"{where}: line {number}: voice {voice.strip()}")  # an .npz is checked now
        prompts.append(Prompt(item["text"].strip(), voice))
    return tuple(prompts)


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def split_sentences(text: str, count_tokens: Any, limit: int = 0) -> list[str]:
    """Long-form text as pieces that each fit Bark's window: sentences (split after . ! ? ; :), merged while the
    merge fits, and a sentence still over the window cut at word boundaries. ``count_tokens(str) -> int``."""
    limit = limit or MAX_TEXT_TOKENS
    pieces: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text.strip())):
        if not sentence:
            continue
        if count_tokens(sentence) <= limit:
            pieces.append(sentence)
            continue
        words: list[str] = []
        for word in sentence.split():
            if words and count_tokens(" ".join([*words, word])) > limit:
                pieces.append(" ".join(words))
                words = []
            words.append(word)
        if words:
            pieces.append(" ".join(words))
    merged: list[str] = []
    for piece in pieces:
        if merged and count_tokens(f"{merged[-1]} {piece}") <= limit:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


@dataclass(frozen=True)
class Workload:
    batch_size: int = 1
    semantic_max_new_tokens: int = DEFAULT_SEMANTIC_TOKENS
    prompts: tuple[str, ...] = PROMPTS
    seed: int = SEED
    #: The workload's voice preset (None: no history_prompt, as the blog ran).
    voice: Voice | None = None
    mode: str = "single"
    #: Per-prompt voices from a JSONL file, parallel to ``prompts`` (None entries use ``voice``).
    prompt_voices: tuple[str | None, ...] = ()
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
        if self.semantic_max_new_tokens > MAX_SEMANTIC_TOKENS:
            raise WorkloadError(
                f"--bark-semantic-tokens {self.semantic_max_new_tokens} does not fit Bark's {SEMANTIC_WINDOW}-position "
                f"window ({MAX_TEXT_TOKENS} text + 1 + new tokens); use at most {MAX_SEMANTIC_TOKENS}"
            )
        if not self.prompts or any(not p.strip() for p in self.prompts):
            raise WorkloadError("empty prompt: Bark needs text to speak; give a non-empty prompt")
        if self.mode not in MODES:
            raise WorkloadError(f"unknown workload mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.mode == "long" and self.batch_size != 1:
            raise WorkloadError("long-form mode generates sentence after sentence at batch 1; use a bs1 variant")
        if self.prompt_voices and len(self.prompt_voices) != len(self.prompts):
            raise WorkloadError("prompt_voices must give one entry (or None) per prompt")

    @property
    def texts_hash(self) -> str:
        """sha256 (first 12 hex digits) of the prompts, in order: which texts a result was measured on."""
        return _digest("\n".join(self.prompts).encode())[:12]

    @property
    def voice_label(self) -> str:
        return self.voice.name if self.voice is not None else "none"

    @property
    def workload_id(self) -> str:
        """texts hash, voice and mode in one token: part of a result's group, so that runs on different workloads
        are never compared as the same benchmark."""
        voices = "|".join(v or "" for v in self.prompt_voices)
        digest = self.voice.digest[:8] if self.voice is not None else "none"
        extra = f"+{_digest(voices.encode())[:6]}" if any(self.prompt_voices) else ""
        return f"{self.texts_hash}-{digest}{extra}-{self.mode}"

    def as_extra_info(self) -> dict[str, Any]:
        """What the results record about the workload (plain values)."""
        return {
            "workload_id": self.workload_id,
            "workload_texts_hash": self.texts_hash,
            "workload_prompts": len(self.prompts),
            "workload_voice": self.voice_label,
            "workload_mode": self.mode,
        }

    def batch_prompts(self) -> list[str]:
        return [self.prompts[i % len(self.prompts)] for i in range(self.batch_size)]

    def call_kwargs(self) -> dict[str, Any]:
        return {**self.generate_kwargs, "semantic_max_new_tokens": self.semantic_max_new_tokens}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompts"] = list(self.prompts)
        data["prompt_voices"] = list(self.prompt_voices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workload:
        voice = data.get("voice")
        return cls(
            **{
                **data,
                "prompts": tuple(data["prompts"]),
                "prompt_voices": tuple(data.get("prompt_voices") or ()),
                "voice": Voice(**voice) if isinstance(voice, dict) else voice,
            }
        )


def workload_from_files(
    prompts_file: str | None, voice: str | None, long_form: bool, random_model: bool
) -> dict[str, Any]:
    """The workload fields the options give (prompts, voice, mode, per-prompt voices), checked now: a bad file
    fails here, in one line, before any model loads. ``random_model``: a preset name becomes a synthetic preset of
    the right shapes (random models have no hub presets)."""
    fields: dict[str, Any] = {"mode": "long" if long_form else "single"}
    if prompts_file is not None:
        prompts = load_prompts(prompts_file)
        fields["prompts"] = tuple(p.text for p in prompts)
        if any(p.voice for p in prompts):
            # Their .npz files were checked by load_prompts; the worker loads them again.
            fields["prompt_voices"] = tuple(p.voice for p in prompts)
    if voice is not None:
        parsed = load_voice(voice)
        if parsed.kind == "preset" and random_model:
            parsed = synthetic_voice(parsed.name)
        fields["voice"] = parsed
    return fields


def unused_prompts_note(prompts_file: str | None, fields: dict[str, Any], batch_sizes: list[int]) -> str | None:
    """The warning for a prompts file longer than every batch (``fields``: ``workload_from_files``'s): a call speaks
    as many prompts as its batch size, from the first, so the rest are never spoken. None when all are, or in
    long-form mode (which speaks every prompt in sequence)."""
    prompts = fields.get("prompts") or ()
    if prompts_file is None or fields.get("mode") == "long" or not batch_sizes:
        return None
    largest = max(batch_sizes)
    if len(prompts) <= largest:
        return None
    uses = " or ".join(str(size) for size in sorted(set(batch_sizes)))
    return (
        f"--bark-prompts {prompts_file} gives {len(prompts)} prompts, but a call speaks as many as its batch size, "
        f"the first {uses}: {len(prompts) - largest} are never spoken; use a batch that holds them, or "
        "--bark-long-form to speak them all in sequence"
    )


def resolve_history_prompt(voice: Voice | str | None, processor: Any, random_model: bool) -> dict[str, Any] | None:
    """The ``history_prompt`` for one call: a file's or synthetic preset's arrays, or a hub preset through the
    processor (which downloads suno's speaker_embeddings for real checkpoints)."""
    if voice is None:
        return None
    if isinstance(voice, str):
        voice = load_voice(voice)
        if voice.kind == "preset" and random_model:
            voice = synthetic_voice(voice.name)
    if voice.kind != "preset":
        return voice.history_prompt()
    inputs = processor("x", voice_preset=voice.name)
    history = inputs.get("history_prompt")
    if history is None:
        raise WorkloadError(
            f"voice preset {voice.name!r}: the model's processor has no speaker embeddings for it; pass an .npz file"
        )
    return dict(history)


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
    return _tokenize(processor, prompts, device), warnings


def _tokenize(processor: Any, prompts: list[str], device: Any) -> dict[str, Any]:
    # BarkProcessor pads to 256 but does not truncate: a longer prompt alone gets more ids (the semantic model
    # then keeps the first 256), and in a batch next to a shorter one the tokenizer cannot build the tensor.
    # Truncating here keeps exactly what Bark would keep, for every batch; the warnings report it.
    inputs = processor(prompts, truncation=True)
    # BarkProcessor returns a BatchFeature; history_prompt stays None without a voice preset.
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items() if v is not None}


def prepare_calls(
    processor: Any, workload: Workload, device: Any, random_model: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """The generate calls of one round, as keyword arguments (inputs and ``history_prompt`` on ``device``), and
    the warnings the report carries. Single mode: one call over the batch. Long-form: one call per piece of the
    prompt set's text (``split_sentences``), in order."""

    def history(voice: Voice | str | None) -> dict[str, Any] | None:
        prompt = resolve_history_prompt(voice, processor, random_model)
        return None if prompt is None else {k: v.to(device) for k, v in prompt.items()}

    def voice_of(index: int) -> Voice | str | None:
        own = workload.prompt_voices[index] if workload.prompt_voices else None
        return own or workload.voice

    if workload.mode == "single":
        inputs, warnings = prepare_inputs(processor, workload, device)
        indices = [i % len(workload.prompts) for i in range(workload.batch_size)]
        voices = {str(voice_of(i)) for i in indices}
        if len(voices) > 1:
            raise WorkloadError(
                f"a batch mixes voices ({', '.join(sorted(voices))}); Bark takes one voice per call: "
                "give the batch's prompts the same voice, or run batch 1"
            )
        return [{**inputs, "history_prompt": history(voice_of(indices[0]))}], warnings

    def count(text: str) -> int:
        return text_token_counts(processor, [text])[0]

    calls: list[dict[str, Any]] = []
    for index, text in enumerate(workload.prompts):
        prompt_history = history(voice_of(index))
        for piece in split_sentences(text, count):
            calls.append({**_tokenize(processor, [piece], device), "history_prompt": prompt_history})
    return calls, [f"long-form: {len(calls)} piece(s) of text generated in sequence per round"]


def audio_seconds(audio: Any, sample_rate: int, lengths: list[int] | None = None) -> float:
    """Seconds of audio generated in one call, summed over the batch."""
    if lengths is not None:
        return float(sum(lengths)) / sample_rate
    batch = audio.shape[0] if audio.dim() > 1 else 1
    return float(batch * audio.shape[-1]) / sample_rate
