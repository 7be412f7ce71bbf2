"""The record: every key barkbench writes into a benchmark's ``extra_info``, defined once.

``Record`` is a frozen dataclass whose fields are the ``extra_info`` keys: a field's name *is* its key, so files
written before this module read by the same names. Each field's metadata holds its unit, a one-line meaning, the
direction that is better (``"lower"``/``"higher"``; None for identity and context) and its group; ``FIELDS`` lists
them as ``FieldInfo``, with the kind of value the field's type annotation gives. The measuring side builds one record
and stores ``to_extra_info()``; every reader goes through ``from_extra_info``, which migrates older formats first.

Rules the code keeps:

- A field is *set* when it is not None. ``to_extra_info`` writes the set fields in declaration order (the order the
  results files have always had) and nothing else, with one exception: a *group* (fields produced together: the
  worker's facts, the measured figures, the processes' spread, ...) is written whole. Once one of its fields is set,
  the others are written too, as null where None: a measured "no value" such as ``device_index`` on the CPU. So a
  record keeps the keys its file had, and ``Record.from_extra_info(r.to_extra_info()) == r``.
- ``barkbench_format`` is written in every record (``FORMAT_VERSION``); a record always holds the current format.
  ``from_extra_info`` migrates an older one (``migrate``) and refuses a newer one (``NewerFormatError``).
- Building a record checks each value's kind (TypeError naming the key), keeps sequences as tuples and nested blocks
  as plain dicts. Reading JSON is as lenient as the readers always were: a number may arrive as a string, a bool
  where a number belongs reads as None, a non-finite float reads as None; anything else of the wrong kind raises
  TypeError or ValueError naming the key.
- Nested blocks (``stages``, ``quality``, ``noise``, ``cpu_usage``, ``efficiency``, ``limits``) are typed mappings;
  ``Stage`` defines a ``stages`` entry here, the others are defined by the code that builds them (named in the
  field's meaning).

Values only: the standard library and ``barkbench.variants``; no torch, nothing from ``measure``, ``results`` or the
pytest plugin, so the measuring side and the reporting side both import it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from barkbench.variants import Variant

#: The record's format. Raise it when a key changes meaning or shape, and add the step from the previous format to
#: ``_MIGRATIONS``; adding a key that older files simply lack needs no new format.
FORMAT_VERSION = 1
#: The key holding it, in each benchmark's ``extra_info`` (and, where a writer puts it, the file's top level).
FORMAT_KEY = "barkbench_format"
#: The file's top-level block about the whole run (shard, matrix, workload), written by the pytest plugin and read by
#: ``barkbench merge`` and ``barkbench sweep``: part of the file format, so defined here, below both.
SWEEP_KEY = "barkbench_sweep"

Direction = Literal["lower", "higher"]
#: A nested block of plain JSON values (``noise``, ``cpu_usage``, ``quality``, ``limits``).
Block = Mapping[str, Any]
#: A block of blocks, one per stage (``stages``, ``efficiency``).
Blocks = Mapping[str, Mapping[str, Any]]

#: The variant axes that came after the first four: absent in older files, where they were at their defaults.
_LATER_AXES: Mapping[str, object] = {"quantization": "none", "compile": False, "kv_cache": "dynamic"}


class NewerFormatError(ValueError):
    """A record written by a newer barkbench than this one: its keys may mean what this version cannot know."""

    def __init__(self, version: int) -> None:
        super().__init__(f"written by a newer barkbench (format {version}); upgrade barkbench")
        self.version = version


# -- kinds of value -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How one kind of value is checked when a record is built, read from JSON and written back."""

    name: str
    #: A value given to ``Record(...)`` -> the value stored; TypeError when it is of another kind.
    check: Callable[[Any], Any]
    #: A JSON value -> the value stored (None for a value readers always took as absent); TypeError/ValueError.
    read: Callable[[Any], Any]
    #: The stored value -> its JSON form.
    write: Callable[[Any], Any] = lambda value: value


def _wrong(value: Any, expected: str) -> TypeError:
    return TypeError(f"expected {expected}, got {type(value).__name__} {value!r}")


def _check_float(value: Any) -> float:
    # bool is an int subclass; a True here is a slip, not the number 1.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _wrong(value, "a number")
    return float(value)


def _check_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _wrong(value, "an integer")
    return int(value)


def _check_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong(value, "a string")
    return value


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong(value, "true or false")
    return value


def read_float(value: Any) -> float | None:
    """A JSON number as the readers always took it: None for null, a bool or a non-finite value; a numeric string
    is its number; ValueError/TypeError for anything else."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def read_int(value: Any) -> int | None:
    """A JSON integer as the readers always took it: None for null or a bool; ``int()`` of anything else."""
    if value is None or isinstance(value, bool):
        return None
    return int(value)


def read_str(value: Any) -> str | None:
    """A JSON string as the readers always took it: None for null; ``str()`` of anything else."""
    return None if value is None else str(value)


def _tuple_of(check: Callable[[Any], Any], expected: str) -> Callable[[Any], tuple[Any, ...]]:
    def check_tuple(value: Any) -> tuple[Any, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _wrong(value, f"a list of {expected}")
        return tuple(check(item) for item in value)

    return check_tuple


def _check_block(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise _wrong(value, "an object")
    return dict(value)


def _check_blocks(value: Any) -> dict[str, dict[str, Any]]:
    return {key: _check_block(block) for key, block in _check_block(value).items()}


def _scalar(name: str, check: Callable[[Any], Any], read: Callable[[Any], Any]) -> Kind:
    # A reading that gives None stays None; otherwise it is checked like a value given to the constructor.
    return Kind(name, check, lambda value: None if (got := read(value)) is None else check(got))


def _sequence(name: str, check: Callable[[Any], Any]) -> Kind:
    strict = _tuple_of(check, name)
    return Kind(f"list of {name}", strict, lambda value: None if value is None else strict(value), list)


FLOAT = _scalar("number", _check_float, read_float)
INT = _scalar("integer", _check_int, read_int)
STR = _scalar("string", _check_str, read_str)
BOOL = Kind("boolean", _check_bool, lambda value: None if value is None else _check_bool(value))
FLOATS = _sequence("numbers", _check_float)
INTS = _sequence("integers", _check_int)
STRS = _sequence("strings", _check_str)
BLOCK = Kind("object", _check_block, lambda value: None if value is None else _check_block(value), dict)
BLOCKS = Kind(
    "object of objects",
    _check_blocks,
    lambda value: None if value is None else _check_blocks(value),
    lambda value: {key: dict(block) for key, block in value.items()},
)

#: The kind of each field type a record may declare (the annotation, evaluated).
_KINDS: dict[object, Kind] = {
    int: INT,
    float | None: FLOAT,
    int | None: INT,
    str | None: STR,
    bool | None: BOOL,
    tuple[float, ...] | None: FLOATS,
    tuple[int, ...] | None: INTS,
    tuple[str, ...] | None: STRS,
    Block | None: BLOCK,
    Blocks | None: BLOCKS,
}


# -- field definitions --------------------------------------------------------------------------------------------


def _key(
    unit: str, meaning: str, better: Direction | None = None, *, group: str | None = None, default: Any = None
) -> Any:
    """A record field: its definition in the metadata, None (not recorded) unless a default is given."""
    return field(default=default, metadata={"unit": unit, "meaning": meaning, "better": better, "group": group})


@dataclass(frozen=True)
class FieldInfo:
    """One key's definition: the field's name (the key), its kind, unit, meaning, better direction and group."""

    key: str
    kind: Kind
    unit: str
    meaning: str
    #: Which way is better, for figures that can improve; None for identity and context.
    better: Direction | None
    #: Fields written together (see the module's rules); None for a field written on its own.
    group: str | None


#: ``definitions``' answers: every record's construction asks, and the annotations need evaluating once per class.
_DEFINITIONS: dict[type, Mapping[str, FieldInfo]] = {}


def definitions(cls: type) -> Mapping[str, FieldInfo]:
    """Every field of a dataclass declared with ``_key`` (``Record``, ``Stage``), by key, in declaration order."""
    known = _DEFINITIONS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _DEFINITIONS[cls] = MappingProxyType({f.name: _info(f, hints[f.name]) for f in dataclasses.fields(cls)})
    return known


def _info(f: dataclasses.Field[Any], annotation: object) -> FieldInfo:
    kind = _KINDS.get(annotation)
    if kind is None:  # a new field type needs its kind (check, read, write) first
        raise TypeError(f"{f.name}: no kind of value for type {annotation}")
    meta = f.metadata
    return FieldInfo(f.name, kind, meta["unit"], meta["meaning"], meta["better"], meta["group"])


_T = TypeVar("_T")


def _checked(cls: type[_T], values: Mapping[str, Any], read: bool) -> _T:
    """``cls(**values)`` with each value checked (``read``: read from JSON) by its field's kind; unknown keys are
    left out when reading and refused (TypeError) when building. Errors name the key."""
    fields = definitions(cls)
    kept = {}
    for key, value in values.items():
        info = fields.get(key)
        if info is None:
            if read:
                continue  # a key this version does not define: the raw extra_info still holds it
            raise TypeError(f"{cls.__name__} has no key {key!r}")
        try:
            kept[key] = None if value is None else (info.kind.read if read else info.kind.check)(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{key}: {exc}") from None
    return cls(**kept)


def _check_all(instance: object) -> None:
    """``__post_init__`` of a record: every set value checked by its kind and stored in its canonical form."""
    for info in definitions(type(instance)).values():
        value = getattr(instance, info.key)
        if value is None:
            continue
        try:
            object.__setattr__(instance, info.key, info.kind.check(value))
        except TypeError as exc:
            raise TypeError(f"{info.key}: {exc}") from None


# -- the record ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One entry of ``Record.stages``: a stage's figures, means over the measured rounds (the peak: their highest).
    ``forwards`` and ``key_positions`` exist for the decode stages (semantic, coarse) of newer files only."""

    seconds: float | None = _key("s", "the stage's mean seconds per call", "lower")
    peak_memory_bytes: int | None = _key("bytes", "the highest peak memory during the stage", "lower")
    tokens: float | None = _key("tokens", "the stage's mean tokens per call")
    forwards: float | None = _key("forwards", "the sub-model's mean forward passes per call")
    key_positions: float | None = _key("positions", "the mean key positions those forwards attended to, summed")

    def __post_init__(self) -> None:
        _check_all(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Stage:
        """Read one stage's block (JSON values); keys it does not define are left out."""
        return _checked(cls, values, read=True)


@dataclass(frozen=True)
class Record:
    """Everything barkbench records about one benchmarked variant, as ``extra_info`` keys. None: not recorded."""

    barkbench_format: int = _key("", "the record's format; absent in files before it", default=FORMAT_VERSION)
    # -- the variant (Variant.as_dict) --
    variant: str | None = _key("", "the variant's id (Variant.id): the test id runs are compared by", group="variant")
    attention: str | None = _key(
        "", "attention implementation asked for: eager, sdpa, bettertransformer, ...", group="variant"
    )
    dtype: str | None = _key("", "weights' and activations' dtype: fp32, fp16, bf16", group="variant")
    offload: str | None = _key("", "'cpu': sub-models kept on the CPU between stages; 'none'", group="variant")
    batch_size: int | None = _key("samples", "prompts per generate call", group="variant")
    quantization: str | None = _key("", "dynamic quantization of the Linear weights: none, int8, fp16", group="variant")
    compile: bool | None = _key("", "sub-models run through torch.compile", group="variant")
    kv_cache: str | None = _key("", "the semantic and coarse KV cache: dynamic or static", group="variant")
    # -- the session's set-up --
    model_source: str | None = _key(
        "", "the model source's label: tiny, random:bark-small, a hub id or folder", group="setup"
    )
    device: str | None = _key(
        "", "the torch device: the session's kind, then the worker's ('cuda:0' when offloaded)", group="setup"
    )
    semantic_max_new_tokens: int | None = _key("tokens", "the cap on semantic tokens per call", group="setup")
    rounds: int | None = _key("rounds", "measured rounds, all processes' together", group="setup")
    warmup_rounds: int | None = _key("rounds", "untimed warm-up calls before a process's rounds", group="setup")
    isolation: str | None = _key(
        "", "'process': each variant in a fresh worker process; 'off': in pytest's", group="setup"
    )
    fixed_length: bool | None = _key("", "every call generates exactly semantic_max_new_tokens tokens", group="setup")
    # -- the workload (Workload.as_extra_info) --
    workload_id: str | None = _key("", "the measured call's id: texts hash, voice and mode", group="workload")
    workload_texts_hash: str | None = _key("", "hash of the prompts' texts", group="workload")
    workload_prompts: int | None = _key("prompts", "prompts the batch cycles through", group="workload")
    workload_voice: str | None = _key("", "the voice preset, or 'none'", group="workload")
    workload_mode: str | None = _key("", "'single' call, or 'long-form' pieces one after another", group="workload")
    # -- the worker, once the model loaded (RunnerInfo) --
    attention_impl: str | None = _key("", "the attention implementation the loaded model runs", group="worker")
    device_index: int | None = _key("", "the device's index ('cuda:1' -> 1); null on the CPU", group="worker")
    device_name: str | None = _key("", "the GPU's name, or the CPU's", group="worker")
    model_memory_bytes: int | None = _key(
        "bytes", "memory the loaded model holds before any call", "lower", group="worker"
    )
    weights_bytes: int | None = _key("bytes", "bytes of the parameters and buffers as stored", "lower", group="worker")
    warnings: tuple[str, ...] | None = _key("", "warnings the worker caught while loading", group="worker")
    worker_pid: int | None = _key("", "the (first) worker process's pid", group="worker")
    offload_placement: str | None = _key("", "'checked': the worker checked where offloaded layers run, and passed")
    # -- several processes (--bark-processes, --bark-interleave, adaptive rounds) --
    processes: int | None = _key(
        "processes", "fresh worker processes measured, each with its warm-up", group="processes"
    )
    interleave: bool | None = _key(
        "", "processes interleaved with the other variants' (else in a row)", group="processes"
    )
    process_pids: tuple[int, ...] | None = _key("", "each process's pid", group="processes")
    process_rounds: tuple[int, ...] | None = _key("rounds", "each process's measured rounds", group="processes")
    process_means_s: tuple[float, ...] | None = _key(
        "s", "each process's mean round seconds", "lower", group="processes"
    )
    process_peak_memory_bytes: tuple[int, ...] | None = _key(
        "bytes", "each process's peak memory", "lower", group="processes"
    )
    round_started_unix_s: tuple[float, ...] | None = _key(
        "s", "Unix time at each timed round's start", group="processes"
    )
    within_process_cv: float | None = _key(
        "", "mean of the processes' standard deviations / mean", "lower", group="processes"
    )
    between_process_cv: float | None = _key(
        "", "standard deviation of the process means / mean", "lower", group="processes"
    )
    # -- what the variant changed in the model --
    compiled: tuple[str, ...] | None = _key("", "sub-models run through torch.compile", group="optimized")
    quantized_linear: int | None = _key("layers", "nn.Linear layers quantized", group="optimized")
    # -- adaptive rounds (--bark-target-precision) --
    target_precision: float | None = _key("", "the 95 % interval's half-width asked for / mean", group="precision")
    precision_met: bool | None = _key("", "the target was met before a cap stopped the rounds", group="precision")
    precision_reason: str | None = _key("", "why the rounds stopped", group="precision")
    precision_half_width: float | None = _key(
        "", "the 95 % interval's half-width reached / mean", "lower", group="precision"
    )
    # -- after the rounds, untimed --
    wav_path: str | None = _key("", "the last call's audio, saved (--bark-wav-dir)")
    quality: Block | None = _key("", "drift from the fp32 eager reference and its noise floor (measure.quality)")
    # -- the measured figures: per stage (measure.stages.summarize_stages) --
    stages: Blocks | None = _key("", "per stage: Stage's figures", group="stages")
    semantic_tokens_per_s: float | None = _key(
        "tokens/s", "semantic tokens / the stage's seconds", "higher", group="stages"
    )
    coarse_tokens_per_s: float | None = _key(
        "tokens/s", "coarse tokens / the stage's seconds", "higher", group="stages"
    )
    unattributed_seconds: float | None = _key(
        "s", "mean latency less the stages' mean seconds", "lower", group="stages"
    )
    # -- the measured figures (measure.summary.summarize) --
    real_time_factor: float | None = _key(
        "", "wall seconds per second of audio (below 1: faster than real time)", "lower", group="figures"
    )
    latency_cv: float | None = _key("", "the rounds' standard deviation / mean", "lower", group="figures")
    peak_memory_bytes: int | None = _key("bytes", "the highest peak memory of a call", "lower", group="figures")
    peak_memory_bytes_mean: int | None = _key("bytes", "the rounds' mean peak memory", "lower", group="figures")
    memory_method: str | None = _key(
        "", "how peak memory was measured (cuda_max_memory_allocated, ...)", group="figures"
    )
    # -- every kind of memory on a GPU row (measure.summary.GPU_MEMORY_FIELDS; absent on CPU rows) --
    peak_memory_reserved_bytes: int | None = _key(
        "bytes",
        "the allocator's highest reserved peak of a call (max_memory_reserved): its pool, cached blocks included",
        "lower",
        group="device_memory",
    )
    device_process_memory_bytes: int | None = _key(
        "bytes",
        "the device's own view of the worker after a call (NVML per-process used memory): CUDA context included",
        "lower",
        group="device_memory",
    )
    host_peak_rss_bytes: int | None = _key(
        "bytes",
        "the worker's highest peak resident set during a call on the host (VmHWM): where offload keeps sub-models",
        "lower",
        group="device_memory",
    )
    gpu_memory_notes: tuple[str, ...] | None = _key(
        "",
        "why a GPU memory figure is missing (nvidia-ml-py not installed, pid unseen by NVML, ...)",
        group="device_memory",
    )
    throughput_samples_per_s: float | None = _key("samples/s", "batch size / mean latency", "higher", group="figures")
    audio_seconds: float | None = _key("s", "mean seconds of audio a call generates", group="figures")
    audio_seconds_per_wall_second: float | None = _key("", "audio seconds / wall seconds", "higher", group="figures")
    worker_latency_mean_s: float | None = _key(
        "s", "mean seconds of a call, timed in the worker", "lower", group="figures"
    )
    output_lengths: tuple[int, ...] | None = _key("samples", "each audio's length in the last call", group="figures")
    torch_threads: int | None = _key("threads", "torch's intra-op threads in the worker")
    noise: Block | None = _key("", "stability checks of the rounds (stats.NoiseCheck.as_dict)")
    cpu_usage: Block | None = _key("", "load and other processes' CPU time during the rounds (stats.CpuUsage.as_dict)")
    # -- the outcome --
    status: str | None = _key("", "ok, failed or interrupted (absent in the oldest files: ok)")
    error: str | None = _key("", "why it failed or was interrupted, in one line", group="failure")
    failure_kind: str | None = _key("", "oom, error, timeout, interrupted, ...", group="failure")
    # -- against the machine's limits (results.efficiency.extra_info) --
    efficiency: Blocks | None = _key("", "per stage: the share of the machine's limit reached", group="efficiency")
    limits: Block | None = _key("", "the machine limits the stages were held to, and when measured", group="efficiency")
    limits_error: str | None = _key("", "why the machine's limits could not be measured")
    # -- long form, compile --
    segment_seconds: tuple[float, ...] | None = _key("s", "each long-form piece's mean seconds, in order", "lower")
    first_call_seconds: float | None = _key("s", "the first (compiling) call's seconds", "lower", group="first_call")
    compile_seconds: float | None = _key(
        "s", "the first call's excess over the steady call", "lower", group="first_call"
    )

    def __post_init__(self) -> None:
        _check_all(self)
        if self.barkbench_format != FORMAT_VERSION:
            raise ValueError(
                f"{FORMAT_KEY}: a record holds format {FORMAT_VERSION}, not {self.barkbench_format}; "
                "read older ones through Record.from_extra_info"
            )

    def to_extra_info(self) -> dict[str, Any]:
        """The ``extra_info`` entries: the set fields and their groups (module rules), in the files' order."""
        written = {info.group for info in FIELDS.values() if info.group and getattr(self, info.key) is not None}
        out = {}
        for info in FIELDS.values():
            value = getattr(self, info.key)
            if value is not None:
                out[info.key] = info.kind.write(value)
            elif info.group in written:
                out[info.key] = None
        return out

    @classmethod
    def from_extra_info(cls, extra_info: Mapping[str, Any]) -> Record:
        """Read a benchmark's ``extra_info`` of any known format (``migrate``); keys this version does not define are
        left out. TypeError/ValueError (naming the key) for a value of the wrong kind; ``NewerFormatError`` for a
        record of a newer format."""
        return _checked(cls, migrate(extra_info), read=True)

    def as_variant(self) -> Variant:
        """The variant its axes name; KeyError/TypeError/ValueError when they are missing or invalid."""
        return Variant.from_dict(self.to_extra_info())

    def stage_figures(self) -> dict[str, Stage]:
        """``stages`` read as ``Stage`` values, by stage name, in their recorded order."""
        return {name: Stage.from_mapping(values) for name, values in (self.stages or {}).items()}


#: Every key, by name, in the order ``to_extra_info`` writes them.
FIELDS: Mapping[str, FieldInfo] = definitions(Record)
#: A ``stages`` entry's keys.
STAGE_FIELDS: Mapping[str, FieldInfo] = definitions(Stage)

#: Not an ``extra_info`` key: pytest-benchmark's own mean seconds per round (``stats.mean``), defined here beside the
#: record's figures so that every comparable figure has its unit and direction in one place.
LATENCY_MEAN = FieldInfo(
    "latency_mean", FLOAT, "s", "mean seconds per generate call (pytest-benchmark's stats.mean)", "lower", None
)


def real_time_factor_of(latency_s: float | None, audio_seconds: float | None) -> float | None:
    """``real_time_factor``'s one definition: mean seconds per call (pytest-benchmark's ``stats.mean`` where it
    recorded the rounds, else the workers' mean) / seconds of audio per call; None when either is missing or 0.
    The worker's summary writes it; ``barkbench report`` computes it this way for records written before the field
    existed."""
    return latency_s / audio_seconds if latency_s and audio_seconds else None


# -- formats ------------------------------------------------------------------------------------------------------


def format_of(extra_info: Mapping[str, Any]) -> int:
    """The format ``extra_info`` was written in: 0 when it carries none (written before formats were numbered).
    ``NewerFormatError`` above ``FORMAT_VERSION``; ValueError for a value that is no format number."""
    version = extra_info.get(FORMAT_KEY)
    if version is None:
        return 0
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{FORMAT_KEY}: {version!r} is not a format number")
    if version > FORMAT_VERSION:
        raise NewerFormatError(version)
    return version


def _from_unnumbered(old: dict[str, Any]) -> dict[str, Any]:
    """Format 0 (no ``barkbench_format``: every file before it) to 1. The keys are the same; what readers of
    those files assumed becomes explicit: the variant axes added later (quantization, compile, kv_cache) at their
    defaults, and ``device_index`` (recorded on its own since) from a ``cuda:N`` device."""
    new = {FORMAT_KEY: 1, **old}
    if "attention" in old:  # a variant's record, not some other benchmark's extra_info
        for axis, default in _LATER_AXES.items():
            new.setdefault(axis, default)
    index = str(old.get("device") or "").partition(":")[2]
    if "device_index" not in old and index.isdigit():
        new["device_index"] = int(index)
    return new


#: The step from each format to the next.
_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _from_unnumbered}


def migrate(extra_info: Mapping[str, Any]) -> dict[str, Any]:
    """``extra_info`` of any known format, brought to ``FORMAT_VERSION`` (a new dict; the input is not changed).
    ``NewerFormatError`` for a newer format: its keys may mean something this version cannot know."""
    version = format_of(extra_info)
    current = dict(extra_info)
    while version < FORMAT_VERSION:
        current = _MIGRATIONS[version](current)
        version += 1
    return current
