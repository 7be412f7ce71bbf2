"""Bad input ends in one clear line, and nothing already measured is lost.

Each case runs where a user meets it: the option parser, the benchmark session (pytest sub-sessions of the repo's
``bench/`` suite on the tiny model), or the harness function a library user calls. Sub-sessions that are not
about measurement run in-process (``--bark-isolation off``) with one intra-op thread, to stay quick.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import FAST

from barkbench.measure import sources
from barkbench.measure.runner import FAIL_VARIANT_ENV, RunSpec, VariantRunner
from barkbench.measure.workload import MAX_TEXT_TOKENS, Workload, WorkloadError
from barkbench.variants import Variant, VariantError, parse_variants

# Pinned to the CPU: these sub-sessions check CPU behaviour (skip reasons, RSS figures), on any machine.
IN_PROCESS = ["--bark-isolation", "off"]
LONG_PROMPT = " ".join(["Wow, batching is so great!"] * 60)


@pytest.fixture()
def bench(bench_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # The tiny model's ops are too small for intra-op threads; on a busy 2-core runner they only wait.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return bench_pytester


def run(pytester: pytest.Pytester, *args: str, timeout: int = 600) -> pytest.RunResult:
    return pytester.runpytest_subprocess("bench", *FAST, *args, timeout=timeout)


def add_conftest(pytester: pytest.Pytester, extra: str) -> None:
    """A conftest holding ``extra``: a fault to inject into the sub-session (the plugin loads by entry point)."""
    pytester.makeconftest(extra)


def benchmarks_by_variant(path: Path) -> dict[str, dict]:
    return {b["params"]["bark_variant"]: b for b in json.loads(path.read_text())["benchmarks"]}


# -- unknown variants, axis values and nonsense options: a usage error before any model loads ---------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("turbo", "unknown variant 'turbo'; use a preset or group"),
        ("dtype=fp8", "unknown dtype 'fp8'; choose one of fp32, fp16, bf16"),
        ("attention=flash", "unknown attention 'flash'; choose one of"),
        ("speed=fast", "unknown axis 'speed'; axes are attention, dtype, offload, batch"),
        ("batch=-1", "batch must be a positive integer, got -1"),
        ("batch=two", "batch must be a positive integer, got 'two'"),
        ("sdpa;;", None),  # empty items are tolerated: the result is the sdpa preset
    ],
)
def test_variant_specs_fail_with_the_fix_in_the_message(spec, message):
    if message is None:
        assert [v.id for v in parse_variants(spec)] == ["sdpa-fp32-bs1"]
        return
    with pytest.raises(VariantError) as info:
        parse_variants(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bark-variants", "dtype=fp8"], "unknown dtype 'fp8'"),
        (["--bark-rounds", "0"], "--bark-rounds must be >= 1, got 0"),
        (["--bark-semantic-tokens", "0"], "--bark-semantic-tokens must be >= 1, got 0"),
        (["--bark-warmup-rounds", "many"], "--bark-warmup-rounds must be an integer, got 'many'"),
        (["--bark-model", "./no-such-model"], "model folder no-such-model does not exist"),
    ],
)
def test_nonsense_options_are_a_one_line_usage_error(bench, args, message):
    result = run(bench, *args, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*error: argument*{message}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stderr.no_fnmatch_line("*Traceback*")


@pytest.mark.parametrize("variants", [(), ("--bark-variants", "baseline")], ids=["default-variants", "bark-variants"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bark-max-rounds", "5"], "--bark-max-rounds caps adaptive rounds; add --bark-target-precision (e.g. 0.02)"),
        (
            ["--bark-processes", "2", "--bark-isolation", "off"],
            "--bark-processes needs a fresh worker process per run; drop --bark-isolation off",
        ),
    ],
)
def test_contradicting_options_are_one_line_with_or_without_variants(bench, args, message, variants):
    # Checked where the options are read: with --bark-variants the first use of the config used to be while a
    # test was parametrized, where the same error was a collection error with its traceback.
    result = run(bench, *variants, *args, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert [x for x in text.splitlines() if x.strip()] == [f"ERROR: {message}"], text


# -- model sources ----------------------------------------------------------------------------------------------


# Checked once at start, from the files alone (config.json read with json, weight files listed, safetensors
# headers checked against the file size): a broken folder or an offline hub id not in the cache is one line before
# any worker starts, never a traceback per variant.

BARK_CONFIG = json.dumps({"model_type": "bark"}).encode()


def _weights() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return save({"w": np.zeros(4, dtype=np.float32)})


def _zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 200)
    return buffer.getvalue()


def _shard_index(*shards: str) -> bytes:
    return json.dumps({"weight_map": {f"t{i}": shard for i, shard in enumerate(shards)}}).encode()


def _make_folder(folder: Path, files: dict[str, bytes | None]) -> Path:
    """``files``: name -> content; None makes a directory of that name (a file no one can read as one)."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        if data is None:
            (folder / name).mkdir()
        else:
            (folder / name).write_bytes(data)
    return folder


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
BROKEN_FOLDERS = {
    "no config": ({"model.safetensors": _weights()}, "has no config.json (not a saved BarkModel); save one with"),
    "config unreadable": (
        {"config.json": None, "model.safetensors": _weights()},
        "cannot be read (config.json: Is a directory); make its files readable or use 'tiny'",
    ),
    "config not JSON": (
        {"config.json": b'{"model_type": "ba', "model.safetensors": _weights()},
        "is corrupt (config.json is not valid JSON: Unterminated string",
    ),
    "another model": (
        {"config.json": b'{"model_type": "bert"}', "model.safetensors": _weights()},
        "does not hold a Bark model (config.json has model_type 'bert', not 'bark'); pass a folder saved from a",
    ),
    "no weights": (
        {"config.json": BARK_CONFIG, "generation_config.json": b"{}"},
        "has no weights (none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, ",
    ),
    "truncated safetensors": (
        {"config.json": BARK_CONFIG, "model.safetensors": _weights()[:-2]},
        "is corrupt (model.safetensors: Error while deserializing header",
    ),
    "missing shard": (
        {"config.json": BARK_CONFIG, "model.safetensors.index.json": _shard_index(*SHARDS), SHARDS[0]: _weights()},
        f"is corrupt ({SHARDS[1]}, named in model.safetensors.index.json, is missing)",
    ),
    "empty bin": ({"config.json": BARK_CONFIG, "pytorch_model.bin": b""}, "is corrupt (pytorch_model.bin is empty)"),
    "truncated bin": (
        {"config.json": BARK_CONFIG, "pytorch_model.bin": _zip()[:-30]},
        "is corrupt (pytorch_model.bin is a truncated zip archive); re-save it with model.save_pretrained(folder)",
    ),
}


@pytest.mark.parametrize("case", BROKEN_FOLDERS)
def test_a_broken_model_folder_is_named_from_its_files_in_one_line(tmp_path, case):
    files, message = BROKEN_FOLDERS[case]
    folder = _make_folder(tmp_path / "model", files)
    with pytest.raises(sources.SourceError) as info:
        sources.check_source(sources.parse_model_source(str(folder)))
    assert str(info.value).startswith(f"model folder {folder} {message}"), str(info.value)
    assert "\n" not in str(info.value) and str(info.value).endswith("or use 'tiny'")


def test_whole_model_folders_pass_the_check(tmp_path, tiny_dir):
    whole = _make_folder(tmp_path / "whole", {"config.json": BARK_CONFIG, "model.safetensors": _weights()})
    sharded = _make_folder(
        tmp_path / "sharded",
        {"config.json": BARK_CONFIG, "model.safetensors.index.json": _shard_index(*SHARDS)}
        | dict.fromkeys(SHARDS, _weights()),
    )
    for folder in (whole, sharded, tiny_dir):  # tiny_dir: a real BarkModel.save_pretrained folder
        sources.check_source(sources.parse_model_source(str(folder)))


def _hub_cache(root: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A local hub cache holding ``files`` of ``repo_id`` at ``main``, laid out as huggingface_hub writes it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _make_folder(repo / "snapshots" / commit, files)
    return root


def test_an_offline_hub_id_is_looked_up_in_the_local_hub_cache(tmp_path):
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE, "tests/conftest.py sets HF_HUB_OFFLINE=1 before anything imports the hub"
    repo_id = "barkbench-test/bark"
    source = sources.parse_model_source(repo_id)
    fix = f"; download it once with network access (hf download {repo_id}), or use --bark-model tiny"
    empty = tmp_path / "empty"
    with pytest.raises(sources.SourceError) as info:
        sources.check_source(source, hub_cache=empty)
    expected = f"cannot load {repo_id!r}: the hub is offline (HF_HUB_OFFLINE) and it is not in the local hub cache"
    assert str(info.value) == f"{expected} {empty}{fix}"
    # Its config cached, its weights never downloaded: the cached copy is checked like a folder.
    partial = _hub_cache(tmp_path / "partial", repo_id, {"config.json": BARK_CONFIG})
    with pytest.raises(sources.SourceError, match=r"its copy in the local hub cache \(.*\) has no weights \(none"):
        sources.check_source(source, hub_cache=partial)
    whole = _hub_cache(tmp_path / "whole", repo_id, {"config.json": BARK_CONFIG, "model.safetensors": _weights()})
    sources.check_source(source, hub_cache=whole)
    with pytest.raises(sources.SourceError, match=r"^--bark-model 'bad id!' is neither an existing folder nor a hub"):
        sources.check_source(sources.parse_model_source("bad id!"))


def test_the_source_check_imports_neither_torch_nor_transformers(tmp_path):
    # It runs in the pytest process, which never loads a model.
    import subprocess
    import sys

    broken = _make_folder(tmp_path / "model", {"config.json": BARK_CONFIG, "model.safetensors": _weights()[:-2]})
    code = (
        "import sys\nfrom barkbench.measure import sources\n"
        f"for spec in ({str(broken)!r}, 'barkbench-test/not-cached'):\n"
        "    try:\n        sources.check_source(sources.parse_model_source(spec))\n"
        "    except sources.SourceError as exc:\n        print(str(exc)[:40])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    folder_error, hub_error, imported = done.stdout.splitlines()
    assert folder_error.startswith("model folder ") and hub_error.startswith("cannot load 'barkbench-test/"), done
    assert imported == "[]", done.stdout + done.stderr


def test_a_library_error_on_a_whole_folder_stays_the_library_error(tiny_dir):
    # Bark has no flex attention in transformers (on both stacks): its ValueError names that, and must not become
    # "corrupt". (Not SDPA: once any earlier test registered barkbench's SDPA for Bark, this process supports it.)
    folder = sources.parse_model_source(str(tiny_dir))
    with pytest.raises(ValueError, match="does not support an attention implementation") as info:
        sources.load_model(folder, attn_implementation="flex_attention")
    assert not isinstance(info.value, sources.SourceError)


@pytest.mark.parametrize("case", ["corrupt folder", "offline hub id"])
@pytest.mark.one_stack("current")
def test_a_broken_model_source_fails_the_session_once_before_any_variant(bench, monkeypatch, tmp_path, case):
    if case == "corrupt folder":
        folder = _make_folder(tmp_path / "model", {"config.json": BARK_CONFIG, "model.safetensors": _weights()[:10]})
        model, message = str(folder), f"ERROR: model folder {folder} is corrupt (model.safetensors: Error while"
    else:
        # An empty hub cache, offline (tests/conftest.py sets HF_HUB_OFFLINE=1): nothing to find, nothing to fetch.
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        model = "barkbench-test/not-cached"
        message = f"ERROR: cannot load {model!r}: the hub is offline (HF_HUB_OFFLINE) and it is not in the local hub"
    out = bench.path / "run.json"
    result = run(
        bench, "--bark-model", model, "--bark-variants", "baseline;sdpa", f"--benchmark-json={out}", timeout=120
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    (line,) = [x for x in text.splitlines() if x.startswith("ERROR:")]
    assert line.startswith(message) and line.endswith("or use --bark-model tiny" if "hub" in case else "use 'tiny'")
    # Nothing ran: no variant's progress, no worker, no traceback.
    assert "[barkbench]" not in text and "Traceback" not in text and "eager-fp32-bs1" not in text


# -- prompts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompts", [("",), ("   ",), ("Wow, batching is so great!", "\n")])
def test_an_empty_prompt_is_refused_with_the_fix(prompts):
    with pytest.raises(WorkloadError, match="^empty prompt: Bark needs text to speak; give a non-empty prompt$"):
        Workload(batch_size=len(prompts), prompts=prompts)


def test_a_prompt_past_256_tokens_is_truncated_and_reported(tiny_source):
    # Next to a short prompt in one batch: BarkProcessor alone cannot even build that batch (it pads to 256 but
    # does not truncate); the harness truncates to what Bark keeps and says so.
    spec = RunSpec(
        source=tiny_source,
        variant=Variant(),
        device_type="cpu",
        workload=Workload(batch_size=2, prompts=("Wow", LONG_PROMPT), semantic_max_new_tokens=8),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's ops gain nothing from threads on a busy runner
    runner = VariantRunner(spec)
    try:
        assert tuple(runner.inputs["input_ids"].shape) == (2, MAX_TEXT_TOKENS)
        (warning,) = runner.info.warnings
        assert warning.startswith("prompt 1 has ") and warning.endswith(
            f"tokens; Bark keeps the first {MAX_TEXT_TOKENS} (the rest is not spoken)"
        )
        assert int(warning.split()[3]) > MAX_TEXT_TOKENS
        runner.prepare()
        assert len(runner.generate().output_lengths) == 2
    finally:
        runner.close()
        torch.set_num_threads(threads)


# -- a variant that runs out of memory, one unsupported here: recorded, and the run goes on -----------------------


@pytest.mark.one_stack("legacy")
def test_an_out_of_memory_variant_is_recorded_failed_and_the_run_goes_on(bench, monkeypatch):
    # A real torch.OutOfMemoryError, raised in sdpa's worker before it generates (the documented testing hook):
    # the path a GPU out-of-memory takes, with no figure faked for the variant.
    monkeypatch.setenv(FAIL_VARIANT_ENV, "sdpa-fp32-bs1:oom")
    out = bench.path / "run.json"
    store = bench.path / "store"
    # A budgets file whose one pattern (a typo: cuda on this CPU run) matches no measured variant.
    budgets = bench.path / "budgets.toml"
    budgets.write_text('["tiny"."cuda"."eager-*"]\npeak_memory_ratio = 1.5\n')
    result = run(
        bench,
        "--bark-variants",
        "sdpa;offload;baseline",
        f"--benchmark-json={out}",
        "-rs",
        "--benchmark-autosave",
        f"--benchmark-storage=file://{store}",
        "--bark-budgets",
        str(budgets),
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    # A user error is one line: the worker's traceback is in the log file the line names, not on the terminal.
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "During handling" not in text
    (log,) = {Path(x.rpartition("(traceback in ")[2].split(")")[0]) for x in text.splitlines() if "traceback in" in x}
    assert "Traceback" in log.read_text() and "OutOfMemoryError: injected by" in log.read_text()
    # The budget gate matched nothing: it fails the session, naming the patterns and what was measured.
    (gate,) = [x for x in result.stdout.lines if x.startswith("FAILED: no budget in ")]
    assert 'patterns ["tiny"."cuda"."eager-*"]' in gate and gate.endswith(
        "measured tiny cpu eager-fp32-bs1; the session fails"
    )
    result.stdout.fnmatch_lines(
        [
            "*sdpa-fp32-bs1: out of memory: OutOfMemoryError: injected by BARKBENCH_FAIL_VARIANT*",
            "*SKIPPED*offload needs an accelerator*this machine has none*",
        ]
    )
    by_id = benchmarks_by_variant(out)
    assert set(by_id) == {"sdpa-fp32-bs1", "eager-fp32-bs1"}
    failed = by_id["sdpa-fp32-bs1"]
    assert failed["extra_info"]["status"] == "failed" and failed["stats"] is None
    assert failed["extra_info"]["error"].startswith("out of memory: OutOfMemoryError: injected by")
    assert failed["extra_info"]["failure_kind"] == "oom"
    # The variant after the failure ran, and is saved with its figures (what was measured before an
    # interruption is kept too: see the Ctrl-C test below).
    after = by_id["eager-fp32-bs1"]
    assert after["extra_info"]["status"] == "ok" and after["stats"]["rounds"] == 1
    assert after["extra_info"]["peak_memory_bytes"] > 0
    # The autosaved file keeps pytest-benchmark's schema: its own loader (--benchmark-compare) rejects a whole
    # file holding a benchmark without stats, so the failure is recorded in the --benchmark-json file only.
    (saved,) = store.rglob("*.json")
    assert [b["extra_info"]["variant"] for b in json.loads(saved.read_text())["benchmarks"]] == ["eager-fp32-bs1"]


def test_a_run_whose_every_variant_failed_still_writes_the_failures(bench, monkeypatch):
    # pytest-benchmark alone writes no file when nothing has timings; the reasons must not be lost with it.
    # (In a worker process, the default: --bark-isolation off is for debugging and shows the raw traceback.)
    monkeypatch.setenv(FAIL_VARIANT_ENV, "eager-fp32-bs1:oom")
    out = bench.path / "run.json"
    result = run(bench, "--bark-variants", "baseline", f"--benchmark-json={out}")
    result.assert_outcomes(failed=1)
    # Once, in one line naming the worker's log: no traceback, no "During handling of the above exception".
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "During handling" not in text
    result.stdout.fnmatch_lines(["eager-fp32-bs1: out of memory: *(traceback in */barkbench-logs/worker-*.log)"])
    (entry,) = json.loads(out.read_text())["benchmarks"]
    assert entry["extra_info"]["status"] == "failed" and "out of memory" in entry["extra_info"]["error"]


def test_a_run_whose_every_variant_failed_says_one_true_thing_about_what_it_saved(bench, monkeypatch):
    # pytest-benchmark alone says "Not saving anything" when nothing has timings; barkbench writes the failures to
    # --benchmark-json after all. The autosave (which holds timed rows only) is not written, and says so; the
    # failed variant's fixture counts as used (barkbench recorded it): no "fixture was not used at all".
    monkeypatch.setenv(FAIL_VARIANT_ENV, "eager-fp32-bs1:error")
    out, store = bench.path / "run.json", bench.path / "store"
    autosave = ("--benchmark-autosave", f"--benchmark-storage=file://{store}")
    result = run(bench, "--bark-variants", "baseline", f"--benchmark-json={out}", *autosave)
    result.assert_outcomes(failed=1)
    text = result.stdout.str() + result.stderr.str()
    assert "Not saving anything" not in text and "Benchmark fixture was not used at all" not in text
    assert f"Wrote benchmark data in: {out}" in text
    assert f"Not autosaving: no variant has timings; the failures are in {out} only" in text
    assert not list(store.rglob("*.json"))
    (entry,) = json.loads(out.read_text())["benchmarks"]
    assert entry["extra_info"]["status"] == "failed"


# -- an interrupted run never leaves a corrupt JSON behind --------------------------------------------------------


@pytest.mark.one_stack("legacy")
def test_ctrl_c_in_the_second_variant_keeps_the_first_in_a_valid_json(bench):
    add_conftest(
        bench,
        """
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    if "sdpa" in item.name:
        raise KeyboardInterrupt  # what Ctrl-C raises, in the middle of the second variant
""",
    )
    out = bench.path / "run.json"
    result = run(bench, *IN_PROCESS, "--bark-variants", "baseline;sdpa;bf16", f"--benchmark-json={out}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    by_id = benchmarks_by_variant(out)  # parses
    assert set(by_id) == {"eager-fp32-bs1"} and by_id["eager-fp32-bs1"]["stats"]["rounds"] == 1
    assert not list(bench.path.glob(".run.json.*.tmp"))


def test_a_kill_while_the_json_is_written_leaves_the_previous_file_intact(bench):
    from importlib.metadata import version

    if tuple(int(p) for p in version("pytest-benchmark").split(".")[:2]) < (5, 3):
        pytest.skip(
            "pytest-benchmark before 5.3 opens --benchmark-json for writing (truncating the previous file) while it "
            "parses the options, before barkbench runs: nothing can keep the previous file there"
        )
    # The process is killed (SIGKILL: no clean-up runs) after the new JSON is written but before it replaces the
    # old one. A plain open(..., "wb") write would by then have truncated the old file; the atomic write must
    # leave the old file whole, or the new one, never a part.
    add_conftest(
        bench,
        """
import os
import signal

_replace = os.replace


def _killed_before_commit(src, dst, *args, **kwargs):
    if str(dst).endswith("run.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)


os.replace = _killed_before_commit
""",
    )
    out = bench.path / "run.json"
    previous = {"benchmarks": [], "note": "an earlier run"}
    out.write_text(json.dumps(previous))
    result = run(bench, *IN_PROCESS, "--bark-variants", "baseline", f"--benchmark-json={out}")
    assert result.ret == -9, "the sub-session should have been killed at the commit point"
    assert json.loads(out.read_text()) == previous
    # What was being written is in a hidden temporary file next to it, never under the result's name.
    (partial,) = bench.path.glob(".run.json.*.tmp")
    assert json.loads(partial.read_text())["benchmarks"][0]["extra_info"]["variant"] == "eager-fp32-bs1"


def test_a_missing_folder_is_refused_by_the_library_too(tmp_path):
    # Library users (not only the option parser) get the same one line.
    with pytest.raises(sources.SourceError, match=r"does not exist; pass an existing folder or 'tiny'$"):
        sources.load_model(sources.parse_model_source(str(tmp_path / "nope")))


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary(tmp_path, monkeypatch):
    from barkbench.pytest_plugin.benchmark_patches import atomic_write_bytes

    target = tmp_path / "run.json"
    target.write_text('{"old": true}')

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt  # a second Ctrl-C while the file is being written

    monkeypatch.setattr("os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b'{"new": true, "padding": "' + b"x" * 100_000 + b'"}')
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


# -- a save that fails: refused at start when it can be known, else the rows are kept and the session fails --------


def test_a_json_path_that_is_a_folder_is_refused_at_start_in_one_line(bench):
    folder = bench.mkdir("results")
    result = run(bench, *IN_PROCESS, "--bark-variants", "baseline", f"--benchmark-json={folder}", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    # pytest-benchmark 5.3 takes a path (barkbench refuses it); 5.1 and 5.2 open the file while parsing.
    (line,) = [x for x in text.splitlines() if str(folder) in x]
    assert "directory" in line.lower(), line
    assert "[barkbench]" not in text and "Traceback" not in text


#: A conftest that makes a folder refuse new files as a read-only one would (tests may run as root, who writes
#: anywhere): the write probe barkbench's start-up check makes there fails.
READ_ONLY = """
import errno
import os
import tempfile

FOLDER = {folder!r}
_temporary_file = tempfile.TemporaryFile


def _read_only(*args, dir=None, **kwargs):
    if dir is not None and str(dir) == FOLDER:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    return _temporary_file(*args, dir=dir, **kwargs)


tempfile.TemporaryFile = _read_only
"""


def test_an_unwritable_autosave_folder_is_refused_at_start_in_one_line(bench):
    store = bench.mkdir("store")
    add_conftest(bench, READ_ONLY.format(folder=str(store)))
    autosave = ("--benchmark-autosave", f"--benchmark-storage=file://{store}")
    result = run(bench, *IN_PROCESS, "--bark-variants", "baseline", *autosave, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    (line,) = [x for x in text.splitlines() if x.startswith("ERROR:")]
    assert (
        line == f"ERROR: --benchmark-storage {store}: cannot write there (Permission denied); give a writable "
        "folder (file://PATH)"
    )
    assert "[barkbench]" not in text and "Traceback" not in text


#: A conftest that makes the atomic writer's last step fail as a full disk would, for the destination whose path
#: contains FAILING (the rescue file, named otherwise, is written).
DISK_FULL = """
import errno
import os

FAILING = {failing!r}
_replace = os.replace


def _disk_full(src, dst, *args, **kwargs):
    if FAILING in str(dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _replace(src, dst, *args, **kwargs)


os.replace = _disk_full
"""


@pytest.mark.parametrize("failing", ["json", "autosave"])
@pytest.mark.one_stack("current")
def test_a_failed_final_save_keeps_the_rows_writes_the_other_file_and_fails(bench, failing):
    out, store = bench.path / "run.json", bench.path / "store"
    add_conftest(bench, DISK_FULL.format(failing="run.json" if failing == "json" else f"{os.sep}store{os.sep}"))
    autosave = ("--benchmark-autosave", f"--benchmark-storage=file://{store}")
    result = run(bench, *IN_PROCESS, "--bark-variants", "baseline", f"--benchmark-json={out}", *autosave)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    # One line: the file, the error, where the rows are.
    (line,) = [x for x in text.splitlines() if "could not write" in x]
    assert str(out if failing == "json" else store) in line and "(No space left on device)" in line, line
    rescued = Path(line.rpartition("its rows are kept in ")[2])
    assert rescued.name.startswith("barkbench-unsaved-") and rescued.parent == bench.path
    (row,) = json.loads(rescued.read_text())["benchmarks"]
    assert row["extra_info"]["variant"] == "eager-fp32-bs1" and row["stats"]["rounds"] == 1
    # The other destination is written, and the tables printed.
    autosaved = list(store.rglob("*.json"))
    if failing == "json":
        # (pytest-benchmark 5.1 and 5.2 create the file, empty, while parsing options.)
        assert (not out.exists() or not out.read_text()) and len(autosaved) == 1
        (row,) = json.loads(autosaved[0].read_text())["benchmarks"]
    else:
        assert not autosaved
        (row,) = json.loads(out.read_text())["benchmarks"]
    assert row["extra_info"]["variant"] == "eager-fp32-bs1" and row["stats"]["rounds"] == 1
    result.stdout.fnmatch_lines(["*benchmark*1 tests*", "*barkbench results*", "*eager-fp32-bs1*"])


def test_pytest_benchmark_s_reader_refuses_a_file_with_an_unfinished_row_and_the_docs_say_so():
    import subprocess
    import sys

    # h200-tiny.json: a --benchmark-json file with an interrupted row (stats: null).
    data = Path(__file__).parent / "data" / "h200-tiny.json"
    assert any(b["stats"] is None for b in json.loads(data.read_text())["benchmarks"])
    done = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(data)], capture_output=True, text=True, timeout=120
    )
    assert f"Failed to load {data}" in done.stderr, done.stderr
    # So the docs name the autosave as what pytest-benchmark compare reads, not the --benchmark-json file.
    text = " ".join((Path(__file__).parents[1] / "docs" / "correctness.md").read_text().split())
    interrupts = text[text.index("**Interrupts**") :].split("**")[2]
    assert "`pytest-benchmark compare` reads the autosave only" in interrupts
    assert "both read by `pytest-benchmark compare`" not in text
