"""Where the Bark model comes from: ``tiny``, ``random:<arch>``, a hub id or a local folder.

Every source ends in ``BarkModel.from_pretrained(folder)`` — the random-weight ones are built once with a fixed
seed and written with ``save_pretrained`` — so the loading path measured is the one a real checkpoint takes.
Nothing here downloads weights unless the user names a hub id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barkbench.bark import ARCHITECTURES, sub_model_configs
from barkbench.bark import EXPECTED_PARAMETERS as EXPECTED_PARAMETERS  # tests/test_sources.py reads it here
from barkbench.measure.lifetime import parent_death_signal

#: Written last into a built folder: its presence means the folder is complete.
_COMPLETE_MARK = "barkbench-source.json"

# A small WordPiece vocabulary: enough to tokenize the blog's prompts without unknowns. Real Bark text ids
# are offset by 10_048 inside the semantic model; every id here stays far below the 119_547 limit.
_WORDS = """
let ' s try generating speech , with bark a text - to model wow batching is so great ! i love hugging face it
cool . the hello my dog cute need him in life this benchmark measures how fast and much memory takes on gpu
cpu you we are of for that be can what when where which who will not no yes one two three four five six seven
eight nine ten good bad fine test sound voice audio fused attention half precision offload run time
""".split()  # noqa: SIM905 - a word list reads better as text


class SourceError(RuntimeError):
    """A model source that cannot be loaded; the message names the problem and the fix."""


def first_line(text: str) -> str:
    """An error message's first line, with the lines that line introduces: a first line ending in ':' (transformers'
    "Validation error for field 'hidden_size':") says nothing without its cause on the next, so they are joined."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    taken = lines[:1]
    while taken and taken[-1].endswith(":") and len(taken) < len(lines):
        taken.append(lines[len(taken)])
    return " ".join(taken)


@dataclass(frozen=True)
class ModelSource:
    """A parsed ``--bark-model`` value."""

    spec: str
    kind: str  # "random" | "folder" | "hub"
    arch: str | None = None
    #: The value as the user gave it (a folder's spec is the expanded path): what the results record.
    given: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return self.spec if self.given is None else self.given


def parse_model_source(spec: str) -> ModelSource:
    given, spec = spec, spec.strip()
    if not spec:
        raise SourceError("--bark-model is empty; use 'tiny', 'random:bark-small', a hub id or a folder")
    if spec == "tiny":
        return ModelSource(spec, "random", "tiny", given)
    if spec.startswith("random:"):
        arch = spec.split(":", 1)[1]
        if arch not in ARCHITECTURES:
            raise SourceError(
                f"unknown architecture {arch!r} in {spec!r}; use one of "
                + ", ".join(f"random:{a}" for a in ARCHITECTURES if a != "tiny")
            )
        return ModelSource(spec, "random", arch, given)
    path = Path(spec).expanduser()
    # A hub id is "name" or "owner/name"; anything that exists on disk or reads as a path is a folder.
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return ModelSource(str(path), "folder", given=given)
    return ModelSource(spec, "hub", given=given)


def cache_dir() -> Path:
    """``$BARKBENCH_CACHE``, else ``$XDG_CACHE_HOME/barkbench``, else ``~/.cache/barkbench``."""
    if os.environ.get("BARKBENCH_CACHE"):
        return Path(os.environ["BARKBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "barkbench"


def bark_config_dict(arch: str) -> dict[str, Any]:
    """The BarkConfig keyword arguments of an architecture, original vocabularies included."""
    from transformers import EncodecConfig

    return {**sub_model_configs(arch), "codec_config": EncodecConfig().to_dict()}


def _fingerprint(arch: str) -> str:
    import transformers

    # The folder depends on the config and on the transformers major version that wrote it (formats moved
    # between 4.x and 5.x); rebuilding is cheap, mixing is not.
    blob = json.dumps(
        {"arch": ARCHITECTURES[arch], "seed": 0, "tf": transformers.__version__.split(".")[0], "codebooks": "randn"}
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def random_model_dir(arch: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / f"random-{arch}-{_fingerprint(arch)}"


@contextlib.contextmanager
def cache_lock(target: Path) -> Iterator[None]:
    """Serialize the processes that write ``target`` in the cache folder (several workers may start at once):
    an exclusive ``flock`` on ``<target>.lock`` beside it."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_random_model(arch: str, root: Path | None = None) -> Path:
    """Build the random-weight model of ``arch`` once (seed 0) and return its folder."""
    target = random_model_dir(arch, root)
    if (target / _COMPLETE_MARK).exists():
        return target
    with cache_lock(target):
        if (target / _COMPLETE_MARK).exists():
            return target
        _remove_unfinished_builds(target)
        _build_random_model(arch, target)
    return target


def _remove_unfinished_builds(target: Path) -> None:
    """The temporary folders of builds that were killed before they finished (a builder dies with its parent):
    under the lock no build of ``target`` is running, so every one left is garbage, up to gigabytes each."""
    for leftover in target.parent.glob(f".{target.name}-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def prebuild(source: ModelSource) -> None:
    """Build a random model that is not built yet in a child process, so the process that measures it holds
    nothing of the build: a worker that built its own model read 7 % lower than the next one (module state the
    build leaves behind moved into its baseline).

    The builder dies with its parent, as the workers do: it inherits a worker's ignored SIGINT, so a Ctrl-C that
    kills the worker would otherwise leave it building (a 2 GB bark-small for seconds more) after pytest ended.
    ``subprocess.run`` kills it on an interrupt of this process; the kernel's parent-death signal, requested before
    the builder runs (``parent_death_signal``; elsewhere by the builder itself), on any death."""
    if source.kind != "random" or source.arch is None:
        return
    if (random_model_dir(source.arch) / _COMPLETE_MARK).exists():
        return
    import subprocess
    import sys

    code = (
        f"from barkbench.measure.lifetime import die_with_parent; die_with_parent({os.getpid()})\n"
        f"from barkbench.measure import sources; sources.ensure_random_model({source.arch!r})"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=parent_death_signal())
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise SourceError(f"building the random {source.arch!r} model in {cache_dir()} failed: {last}")


def _build_random_model(arch: str, target: Path) -> None:
    import torch
    from transformers import BarkConfig, BarkModel, GenerationConfig
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = BarkModel(BarkConfig(**bark_config_dict(arch)))
            _fill_codebooks(model)
        # BarkModel(config) gets a plain GenerationConfig without the nested sub-model configs; this is the
        # shape the hub's generation_config.json has and the one both generate and save_pretrained accept.
        model.generation_config = GenerationConfig.from_dict(BarkGenerationConfig().to_dict())
        model.save_pretrained(tmp)
        del model
        build_processor(tmp / "processor-src").save_pretrained(tmp)
        shutil.rmtree(tmp / "processor-src")
        (tmp / _COMPLETE_MARK).write_text(json.dumps({"arch": arch, "seed": 0}))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fill_codebooks(model: Any) -> None:
    """Give the random EnCodec's codebooks content (call under a fixed seed).

    EncodecEuclideanCodebook initializes its ``embed`` buffer to zeros, so a freshly built codec decodes every
    token sequence to the same audio: equal audio would prove nothing and every WAV would sound alike.
    """
    import torch

    with torch.no_grad():
        for name, buffer in model.codec_model.named_buffers():
            if name.endswith("codebook.embed"):
                buffer.copy_(torch.randn(buffer.shape, dtype=buffer.dtype))


def build_processor(workdir: Path) -> Any:
    """A real BarkProcessor over a BertTokenizer with a small generated WordPiece vocabulary."""
    from transformers import BarkProcessor, BertTokenizer

    workdir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = sorted({c for w in _WORDS for c in w})
    vocab = [*specials, *dict.fromkeys(_WORDS), *letters, *(f"##{c}" for c in letters)]
    (workdir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # BertTokenizer(vocab_file=...) silently ignores the file on transformers 5.x; from_pretrained loads it.
    tokenizer = BertTokenizer.from_pretrained(str(workdir))
    return BarkProcessor(tokenizer=tokenizer)


def resolve(source: ModelSource) -> str:
    """The folder or hub id ``from_pretrained`` should load; builds random models on first use."""
    if source.kind == "random":
        assert source.arch is not None
        return str(ensure_random_model(source.arch))
    if source.kind == "folder":
        path = Path(source.spec)
        if not path.is_dir():
            raise SourceError(f"model folder {source.spec} does not exist; pass an existing folder or 'tiny'")
        if not (path / "config.json").exists():
            raise SourceError(
                f"model folder {source.spec} has no config.json (not a saved BarkModel); "
                "save one with model.save_pretrained(folder) or use 'tiny'"
            )
        return str(path)
    return source.spec


def load_processor(source: ModelSource) -> Any:
    from transformers import BarkProcessor

    location = resolve(source)
    try:
        return BarkProcessor.from_pretrained(location)
    except OSError as exc:
        raise _explain_load_error(source, exc) from exc


def load_model(source: ModelSource, **kwargs: Any) -> Any:
    """``BarkModel.from_pretrained`` on the source; ``kwargs`` go to from_pretrained (dtype, attention)."""
    from safetensors import SafetensorError
    from transformers import BarkModel

    location = resolve(source)
    try:
        return BarkModel.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise _explain_load_error(source, exc) from exc
    # A truncated or garbled weights file raises SafetensorError, which is neither a ValueError nor an OSError.
    except (ValueError, RuntimeError, SafetensorError) as exc:
        if source.kind == "hub":
            raise
        # Only a folder whose files do not read is called broken, with what is wrong with it: a library's own
        # ValueError (an attention implementation a sub-model lacks, a dtype it refuses) on a folder that reads
        # propagates as the error it is.
        problem = folder_problem(Path(location))
        if problem is None and not isinstance(exc, SafetensorError):
            raise
        first = first_line(str(exc)) or type(exc).__name__
        what = f"{problem.problem}; {problem.fix}" if problem else f"is corrupt ({first}); {_RESAVE}"
        raise SourceError(f"model folder {source.spec} {what}") from exc


def folder_files_read(folder: str) -> bool:
    """Whether a saved model folder's config parses as Bark's and its weight files are whole (``folder_problem``)."""
    return folder_problem(Path(folder)) is None


#: The weight files ``from_pretrained`` reads; a saved folder holds one at least (an index names its shards).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

_RESAVE = "re-save it with model.save_pretrained(folder) or use 'tiny'"


@dataclass(frozen=True)
class FolderProblem:
    """Why a saved model folder cannot load (``problem`` follows the folder's name) and what to do about it."""

    problem: str
    fix: str


def folder_problem(folder: Path) -> FolderProblem | None:
    """What keeps ``folder`` from loading as a BarkModel, found by reading its files, not by loading them: the
    config parsed with ``json`` (its ``model_type`` must be ``bark``), the weight files listed, each safetensors
    file's header checked against its size (``safe_open``), a zip-format ``.bin`` checked for its directory. None:
    it reads. Imports neither torch nor transformers, so the pytest process can run it at start-up."""
    if not folder.is_dir():
        return FolderProblem("does not exist", "pass an existing folder or 'tiny'")
    config = folder / "config.json"
    if not config.exists():
        return FolderProblem(
            "has no config.json (not a saved BarkModel)", "save one with model.save_pretrained(folder) or use 'tiny'"
        )
    try:
        parsed = json.loads(config.read_bytes())
        model_type = parsed.get("model_type") if isinstance(parsed, dict) else None
        if model_type != "bark":
            return FolderProblem(
                f"does not hold a Bark model (config.json has model_type {model_type!r}, not 'bark')",
                "pass a folder saved from a BarkModel or use 'tiny'",
            )
        present = [folder / name for name in WEIGHT_FILES if (folder / name).exists()]
        if not present:
            return FolderProblem(f"has no weights (none of {', '.join(WEIGHT_FILES)})", _RESAVE)
        for weights in present:
            broken = _weights_problem(folder, weights)
            if broken:
                return FolderProblem(f"is corrupt ({broken})", _RESAVE)
    except OSError as exc:
        name = Path(exc.filename).name if exc.filename else "a file"
        return FolderProblem(f"cannot be read ({name}: {exc.strerror or exc})", "make its files readable or use 'tiny'")
    except ValueError as exc:  # json's JSONDecodeError, a UnicodeDecodeError
        return FolderProblem(f"is corrupt (config.json is not valid JSON: {exc})", _RESAVE)
    return None


def _weights_problem(folder: Path, weights: Path) -> str | None:
    """Why one weight file (or the shards its index names) does not read; None if it does."""
    from safetensors import SafetensorError, safe_open

    if weights.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(weights.read_bytes())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"{weights.name} is not a shard index: {type(exc).__name__}: {exc}"
        for shard in shards:
            if not (folder / shard).exists():
                return f"{shard}, named in {weights.name}, is missing"
            broken = _weights_problem(folder, folder / shard)
            if broken:
                return broken
        return None
    if weights.suffix == ".safetensors":
        try:
            # The numpy framework: only the header is read (and checked against the file's size); no torch.
            with safe_open(str(weights), framework="numpy") as handle:
                handle.keys()
        except SafetensorError as exc:
            return f"{weights.name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'}"
        return None
    with open(weights, "rb") as handle:
        magic = handle.read(4)
    if not magic:
        return f"{weights.name} is empty"
    # torch.save writes a zip archive (older torch a bare pickle, left to torch.load); a cut one lacks its directory.
    if magic == b"PK\x03\x04" and not zipfile.is_zipfile(weights):
        return f"{weights.name} is a truncated zip archive"
    return None


def check_source(source: ModelSource, hub_cache: Path | None = None) -> None:
    """What can be known about ``source`` before a model loads, checked once at start (``SourceError``, one line
    with the fix): a folder's files (``folder_problem``); with the hub offline (HF_HUB_OFFLINE), that a hub id is
    in the local hub cache (``hub_cache``, default huggingface_hub's) and that its cached copy reads. Online, a hub
    id that is not cached is looked up once on the hub (one request, ``HUB_CHECK_TIMEOUT_S``); ``from_pretrained``
    downloads what is missing. Random sources are built in the cache, whose writability is checked elsewhere.
    Imports neither torch nor transformers."""
    if source.kind == "folder":
        problem = folder_problem(Path(source.spec))
        if problem:
            raise SourceError(f"model folder {source.spec} {problem.problem}; {problem.fix}")
    elif source.kind == "hub":
        _check_hub(source.spec, hub_cache)


def _check_hub(repo_id: str, hub_cache: Path | None) -> None:
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as exc:  # huggingface_hub's HFValidationError
        first = str(exc).strip().splitlines()[0]
        raise SourceError(
            f"--bark-model {repo_id!r} is neither an existing folder nor a hub id ({first}); use a hub id such as "
            "suno/bark-small, a folder or 'tiny'"
        ) from None
    cache = hub_cache or Path(constants.HF_HUB_CACHE)
    fix = f"download it once with network access (hf download {repo_id}), or use --bark-model tiny"
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
    if not constants.HF_HUB_OFFLINE:
        if not isinstance(config, str):
            _check_hub_answers(repo_id, cache)
        return
    if not isinstance(config, str):
        raise SourceError(
            f"cannot load {repo_id!r}: the hub is offline (HF_HUB_OFFLINE) and it is not in the local hub cache "
            f"{cache}; {fix}"
        )
    snapshot = Path(config).parent
    problem = folder_problem(snapshot)
    if problem:
        raise SourceError(
            f"cannot load {repo_id!r}: the hub is offline (HF_HUB_OFFLINE) and its copy in the local hub cache "
            f"({snapshot}) {problem.problem}; {fix}"
        )


#: The one look at the hub for an id that is not cached: long enough for a slow link, short beside the retries a
#: download makes in every variant's worker (about 30 s each with no network).
HUB_CHECK_TIMEOUT_S = 10.0


def _check_hub_answers(repo_id: str, cache: Path) -> None:
    """An id that is not in the local hub cache, online: one request, no retries, that the hub knows it. With no
    network each variant's worker would otherwise retry its download for about 30 s and fail, one after another."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    where = f"cannot load {repo_id!r}: it is not in the local hub cache {cache} and"
    try:
        HfApi().model_info(repo_id, timeout=HUB_CHECK_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise SourceError(
            f"{where} the hub has no model of that name (or it is private: log in with `hf auth login`); check the "
            "id, or use --bark-model tiny"
        ) from None
    except HfHubHTTPError as exc:
        raise SourceError(
            f"{where} the hub answered with an error ({first_line(str(exc))}); retry later, or use --bark-model tiny"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the connection's own error, whichever HTTP library raised it
        why = _connection_problem(exc)
        raise SourceError(
            f"{where} the hub is unreachable ({why}); download it once with network access (hf download "
            f"{repo_id}) and run with HF_HUB_OFFLINE=1, pass a hub id that is cached, or use --bark-model tiny"
        ) from None


def _connection_problem(exc: Exception) -> str:
    """The system's words for a failed connection ("[Errno -2] Name or service not known"), which requests buries
    in a retry error's repr; else the exception's first line."""
    import re

    errno = re.search(r"\[Errno -?\d+\] [^)\"'\]]+", str(exc))
    return errno.group(0).strip() if errno else f"{type(exc).__name__}: {first_line(str(exc))[:160]}"


def _explain_load_error(source: ModelSource, exc: OSError) -> SourceError:
    first = first_line(str(exc)) or type(exc).__name__
    if source.kind == "hub":
        return SourceError(
            f"cannot load {source.spec!r}: the hub is unreachable or offline and it is not in the local cache "
            f"({first[:160]}); download it once with network access, or use --bark-model tiny"
        )
    return SourceError(f"cannot load {source.spec}: {first[:200]}; re-save the folder or use 'tiny'")


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
