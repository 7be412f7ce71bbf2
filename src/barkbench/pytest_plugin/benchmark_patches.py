"""Every patch of pytest-benchmark's private API, in one place. Each names the upstream limitation it works around;
the rest of barkbench only uses pytest-benchmark's public fixture, options and hooks.

1. Atomic saves: pytest-benchmark writes ``--benchmark-json`` and its autosave files with a plain
   ``open(..., "wb")`` (``BenchmarkSession.save_json``, ``FileStorage.save``): a Ctrl-C or a kill during the write
   leaves a truncated file that no reader can parse. Both are replaced by writes through ``atomic_write_bytes``
   that keep pytest-benchmark's bytes and log lines. A write that fails (a full disk, a folder made read-only)
   raises out of pytest-benchmark's sessionfinish, after every variant was measured: the other destination, the
   tables and the rows would all be lost. The patched writers catch ``OSError``, put the bytes in a rescue file
   (``rescue_file``) and note one line saying where; the session prints it and fails.
2. Failed variants in the JSON: pytest-benchmark drops a benchmark whose test raised, so the ``--benchmark-json``
   file would not say a variant was tried and failed, nor why. The patched ``save_json`` appends them.
3. Failures only: pytest-benchmark writes no file at all when no benchmark has timings
   (``BenchmarkSession.handle_saving`` warns "Not saving anything"), so a run whose every variant failed would lose
   the reasons. The patched ``handle_saving`` writes the file it would have written (``save_failures_only``)
   instead of that warning.
4. A recorded failure uses the fixture: pytest-benchmark warns "Benchmark fixture was not used at all" for a test
   that never called it, which a variant that failed or was interrupted does not (nothing is timed); barkbench
   recorded it, so ``mark_recorded`` marks the fixture used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that anyone reading it — or a run killed half-way — finds the old file or
    the new one, never a part: a temporary file in the same folder, fsync, then ``os.replace`` (atomic)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def failed_benchmark_json(benchmark: Any) -> dict[str, Any]:
    """A failed variant in pytest-benchmark's per-benchmark shape: identity and extra_info (status, error) and
    ``stats: null`` — it has no timings, and none are invented."""
    return {
        "group": benchmark.group,
        "name": benchmark.name,
        "fullname": benchmark.fullname,
        "params": benchmark.params,
        "param": benchmark.param,
        "extra_info": dict(benchmark.extra_info),
        "options": {},
        "stats": None,
    }


#: The name of a rescue file (``rescue_file``): ``{stamp}`` the local time, ``{n}`` empty or ``-2``, ``-3``...
RESCUE_NAME = "barkbench-unsaved-{stamp}{n}.json"


def rescue_file(data: bytes, folders: tuple[Path, ...] | None = None) -> Path | None:
    """Write ``data`` (a destination's bytes that could not be written) to a new file in the first of ``folders``
    (default: the working directory, then the system's temporary folder) that takes it; None if none does."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in folders or (Path.cwd(), Path(tempfile.gettempdir())):
        path = _new_name(folder, stamp)
        try:
            atomic_write_bytes(path, data)
        except OSError:
            continue  # this folder is full or read-only too: try the next
        return path
    return None


def _new_name(folder: Path, stamp: str) -> Path:
    """A rescue file's name in ``folder`` that no file has yet (two failed destinations in one second)."""
    for n in itertools.count(1):
        path = folder / RESCUE_NAME.format(stamp=stamp, n=f"-{n}" if n > 1 else "")
        if not path.exists():
            return path
    raise AssertionError("unreachable")


def _write_or_rescue(what: str, place: Callable[[], Path], data: bytes, unsaved: list[str]) -> Path | None:
    """Write ``data`` to ``place()`` (which may make its folder); on ``OSError`` the bytes go to a rescue file and
    ``unsaved`` gets one line naming the destination, the error and where the rows are. The path written, or
    None."""
    path: Path | None = None
    try:
        path = place()
        atomic_write_bytes(path, data)
    except OSError as exc:
        rescued = rescue_file(data)
        kept = f"its rows are kept in {rescued}" if rescued else "its rows could not be kept (no folder took them)"
        where = path if path is not None else exc.filename
        unsaved.append(f"barkbench: could not write {what} {where} ({exc.strerror or exc}); {kept}")
        return None
    return path


def mark_recorded(benchmark: Any) -> None:
    """Patch 4: the fixture of a variant barkbench recorded as failed or interrupted counts as used, so
    pytest-benchmark does not warn "Benchmark fixture was not used at all" (``_mode``, set by ``pedantic``, is what
    its clean-up reads in 5.x)."""
    if hasattr(benchmark, "_mode") and not benchmark._mode:
        benchmark._mode = "recorded by barkbench (no timings)"


def storage_folder(config: pytest.Config) -> Path | None:
    """The folder --benchmark-autosave / --benchmark-save writes to, when one of them is given and the storage is
    pytest-benchmark's file storage (its ``path``); None otherwise."""
    bs = _benchmark_session(config)
    storage: Any = getattr(bs, "storage", None)
    if bs is None or not (bs.save or bs.autosave) or type(storage).__name__ != "FileStorage":
        return None
    path = getattr(storage, "path", None)
    return Path(path) if isinstance(path, (str, os.PathLike)) else None


def _benchmark_session(config: pytest.Config) -> Any:
    # pytest-benchmark keeps its session object on the config under a private name (no public accessor).
    return getattr(config, "_benchmarksession", None)


def json_option_path(value: object) -> Path | None:
    """The path given to ``--benchmark-json``: pytest-benchmark 5.3 parses it as a path, 5.1 and 5.2 as a file it
    has already opened (``argparse.FileType("wb")``; 5.2.3 on a GPU machine), whose ``name`` is the path."""
    if isinstance(value, (str, os.PathLike)):  # before .name: a Path's .name is its last part only
        return Path(value)
    name = getattr(value, "name", None)  # an open file's name is the path it was opened with
    return Path(name) if isinstance(name, (str, os.PathLike)) else None


def _add_failures(failed: list[dict[str, Any]], output_json: dict[str, Any]) -> None:
    """Append the failed variants (``stats: null``) to the ``--benchmark-json`` file's benchmarks. Not to the
    autosaved files: pytest-benchmark's own loader (``--benchmark-compare``, ``pytest-benchmark compare``)
    rejects a whole file when one benchmark has no stats."""
    present = {entry.get("fullname") for entry in output_json.get("benchmarks", [])}
    output_json.setdefault("benchmarks", []).extend(e for e in failed if e["fullname"] not in present)


def install(
    config: pytest.Config,
    failed: list[dict[str, Any]],
    saved: list[str] | None = None,
    unsaved: list[str] | None = None,
) -> None:
    """Patches 1 to 3 on this session's pytest-benchmark session (a no-op without pytest-benchmark).

    ``failed`` is the session's list of failed variants, read when the JSON is saved; the path of every file
    written is appended to ``saved``, a line for every one that could not be to ``unsaved``."""
    saved = [] if saved is None else saved
    unsaved = [] if unsaved is None else unsaved
    bs = _benchmark_session(config)
    if bs is None:
        return
    from pytest_benchmark.utils import safe_dumps

    def dumps(output_json: Any) -> bytes:
        return safe_dumps(output_json, ensure_ascii=True, indent=4).encode()

    json_path = json_option_path(getattr(bs, "json", None))
    if json_path is not None:
        opened = bs.json
        if hasattr(opened, "close"):  # 5.1/5.2's open file: written atomically by path instead
            opened.close()
        bs.json = json_path

        def save_json(output_json: Any) -> None:
            _add_failures(failed, output_json)
            if _write_or_rescue("--benchmark-json", lambda: Path(bs.json), dumps(output_json), unsaved):
                saved.append(str(bs.json))
                bs.logger.info(f"Wrote benchmark data in: {bs.json}", purple=True)

        bs.save_json = save_json
        _install_failures_only(config, bs, failed)
    storage: Any = getattr(bs, "storage", None)
    # Only the file storage (the default); its private _next_num is stable across pytest-benchmark 5.x.
    if storage is not None and type(storage).__name__ == "FileStorage" and hasattr(storage, "_next_num"):

        def save(output_json: Any, save: str) -> None:
            name = f"{storage._next_num}_{save}.json"
            # storage.get makes the machine's folder: a failure there is the write's failure too.
            output_file = _write_or_rescue("the autosave", lambda: Path(storage.get(name)), dumps(output_json), unsaved)
            if output_file is not None:
                saved.append(str(output_file))
                storage.logger.info(f"Saved benchmark data in: {output_file}")

        storage.save = save


def _install_failures_only(config: pytest.Config, bs: Any, failed: list[dict[str, Any]]) -> None:
    """Patch 3: when variants failed and none has timings, ``handle_saving`` writes the ``--benchmark-json`` file
    with the failures rather than warn "Not saving anything" (which the written file would contradict). The
    autosave stays unwritten (pytest-benchmark's reader rejects a benchmark without stats): one line says so."""
    handle_saving = getattr(bs, "handle_saving", None)
    if handle_saving is None:  # not a pytest-benchmark 5.x session: nothing to patch
        return

    def failures_or_saving() -> None:
        if bs.benchmarks or not failed or bs.disabled:
            handle_saving()
            return
        save_failures_only(config, failed)
        if bs.save or bs.autosave:
            bs.logger.warning(f"Not autosaving: no variant has timings; the failures are in {bs.json} only")

    bs.handle_saving = failures_or_saving


def save_failures_only(config: pytest.Config, failed: list[dict[str, Any]]) -> None:
    """Write the ``--benchmark-json`` file pytest-benchmark skips when no benchmark has timings, through its own
    hooks; ``save_json`` (patched above) adds the failures."""
    bs = _benchmark_session(config)
    if not failed or bs is None or not bs.json or bs.benchmarks or bs.disabled:
        return
    machine_info = bs.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output_json = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=[], include_data=True, machine_info=machine_info, commit_info=commit_info
    )
    config.hook.pytest_benchmark_update_json(config=config, benchmarks=[], output_json=output_json)
    bs.save_json(output_json)
