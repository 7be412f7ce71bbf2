"""More bad input in one clear line, and output that says what it did (issue 23, items 3 to 5).

A corrupt or wrong ``.npz`` voice, a prompts folder, a hub id that cannot be reached, a config field the library
refuses, a prompts file longer than any batch, a long-form call that runs for minutes, ``budgets`` on someone
else's file, ``merge`` with overlapping inputs or a folder as its output, doctor's limits of several batch sizes.
Sub-sessions run the repo's ``bench/`` suite on the tiny model, on the CPU, with one intra-op thread.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST

from barkbench.cli import main
from barkbench.measure import sources
from barkbench.measure import workload as wl
from barkbench.measure.workload import WorkloadError

DATA = Path(__file__).parent / "data" / "run-cpu.json"
GOOD_VOICE = {
    "semantic_prompt": np.arange(20),
    "coarse_prompt": np.ones((2, 30), dtype=np.int64),
    "fine_prompt": np.ones((8, 30), dtype=np.int64),
}


@pytest.fixture()
def bench(bench_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return bench_pytester


def run(pytester: pytest.Pytester, *args: str, timeout: int = 300) -> pytest.RunResult:
    return pytester.runpytest_subprocess("bench", *FAST, *args, timeout=timeout)


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


# -- voices: a file that is no voice preset is named, in one line, with what it is -----------------------------


def _voice_files(folder: Path) -> dict[str, Path]:
    good = folder / "good.npz"
    np.savez(good, **GOOD_VOICE)
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "text": b"semantic_prompt = [1, 2, 3]\n",
        "empty": b"",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.npz"
        paths[name].write_bytes(content)
    paths["npy"] = folder / "npy.npz"
    with open(paths["npy"], "wb") as handle:
        np.save(handle, np.arange(3))
    paths["objects"] = folder / "objects.npz"
    np.savez(paths["objects"], semantic_prompt=np.array([{"a": 1}], dtype=object))
    paths["bad crc"] = folder / "bad-crc.npz"
    paths["bad crc"].write_bytes(_flip_last_data_byte(data, good))
    return paths


def _flip_last_data_byte(data: bytes, archive_path: Path) -> bytes:
    """The archive with its first member's last stored byte changed: whole as a zip, its CRC check fails on read."""
    with zipfile.ZipFile(archive_path) as archive:
        member = archive.infolist()[0]
    offset = member.header_offset
    # The local header's name and extra lengths (at 26 and 28), which may differ from the central directory's.
    name_length = int.from_bytes(data[offset + 26 : offset + 28], "little")
    extra_length = int.from_bytes(data[offset + 28 : offset + 30], "little")
    end = offset + 30 + name_length + extra_length + member.compress_size
    changed = bytearray(data)
    changed[end - 1] ^= 0xFF
    return bytes(changed)


VOICE_MESSAGES = {
    "truncated": "the .npz file is damaged, a truncated or corrupt zip archive (",
    "bad crc": "the .npz file is damaged, a truncated or corrupt zip archive (Bad CRC-32",
    "text": "is text, not an .npz voice preset (not a readable .npz file",
    "empty": "is empty, not an .npz voice preset",
    "npy": "is a single .npy array (numpy.save), not an .npz voice preset",
    "objects": "holds Python objects, not the integer arrays of a voice preset",
}


@pytest.mark.parametrize("case", VOICE_MESSAGES)
def test_a_file_that_is_no_voice_preset_is_named_in_one_line(tmp_path: Path, case: str) -> None:
    path = _voice_files(tmp_path)[case]
    with pytest.raises(WorkloadError) as info:
        wl.load_voice(str(path))
    message = str(info.value)
    assert message.startswith(f"--bark-voice {path}: {VOICE_MESSAGES[case]}"), message
    assert "\n" not in message and "allow_pickle" not in message and "pickle.load" not in message
    assert "numpy.savez" in message  # the fix


def test_a_jsonl_voice_names_its_file_and_line(tmp_path: Path) -> None:
    voice = _voice_files(tmp_path)["truncated"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "One."}) + "\n" + json.dumps({"text": "Two.", "voice": str(voice)}) + "\n")
    with pytest.raises(WorkloadError) as info:
        wl.load_prompts(str(prompts))
    assert str(info.value).startswith(f"--bark-prompts {prompts}: line 2: voice {voice}: the .npz file is damaged")


def test_a_prompts_folder_is_called_a_folder(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError) as info:
        wl.load_prompts(str(tmp_path))
    assert str(info.value) == (
        f"--bark-prompts {tmp_path}: is a directory; give a file: a text file with one prompt per line, or JSONL"
    )


@pytest.mark.parametrize("case", ["voice", "jsonl voice", "prompts folder"])
@pytest.mark.one_stack("legacy")
def test_bad_workload_files_are_a_one_line_usage_error(bench: pytest.Pytester, tmp_path: Path, case: str) -> None:
    voices = _voice_files(tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "Hello.", "voice": str(voices["text"])}) + "\n")
    args, message = {
        "voice": (["--bark-voice", str(voices["truncated"])], "the .npz file is damaged"),
        "jsonl voice": (["--bark-prompts", str(prompts)], "line 1: voice"),
        "prompts folder": (["--bark-prompts", str(tmp_path)], "is a directory; give a file"),
    }[case]
    result = run(bench, *args, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    (line,) = [x for x in result.stderr.lines if "error: argument" in x]
    assert message in line
    assert "Traceback" not in output(result) and "BadZipFile" not in output(result)


# -- a hub id the hub cannot be asked about: one line at start, not a 30 s failure per variant -----------------


def test_an_uncached_hub_id_with_the_hub_unreachable_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # Online (no HF_HUB_OFFLINE), nothing cached, a hub address that refuses connections: the one look fails.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    repo_id = "barkbench-test/not-cached"
    with pytest.raises(sources.SourceError) as info:
        sources.check_source(sources.parse_model_source(repo_id), hub_cache=tmp_path / "empty")
    message = str(info.value)
    assert message.startswith(f"cannot load {repo_id!r}: it is not in the local hub cache {tmp_path / 'empty'} and ")
    assert "the hub is unreachable ([Errno" in message and "\n" not in message
    assert "HF_HUB_OFFLINE=1" in message and message.endswith("or use --bark-model tiny")


def test_a_cached_hub_id_is_not_looked_up_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_request(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached id needs no request")

    monkeypatch.setattr(HfApi, "model_info", no_request)
    repo_id = "barkbench-test/bark"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text('{"model_type": "bark"}')
    sources.check_source(sources.parse_model_source(repo_id), hub_cache=tmp_path)


@pytest.mark.one_stack("current")
def test_an_unreachable_hub_fails_the_session_once_before_any_variant(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # tests/conftest.py sets HF_HUB_OFFLINE=1; a user without it, and without network, gets one line at start.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # refuses at once, whatever network this machine has
    model = "barkbench-test/not-cached"
    result = run(bench, "--bark-model", model, "--bark-variants", "baseline;sdpa", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    text = output(result)
    (line,) = [x for x in text.splitlines() if x.startswith("ERROR:")]
    assert line.startswith(f"ERROR: cannot load {model!r}: it is not in the local hub cache ")
    assert "the hub is unreachable" in line and "HF_HUB_OFFLINE=1" in line
    # Nothing ran: no variant's progress, no worker, no failure per variant.
    assert "[barkbench]" not in text and "Traceback" not in text and "eager-fp32-bs1" not in text


# -- a config field the library refuses: the recorded error holds the cause, not only its heading ----------------


def test_a_multi_line_error_keeps_the_lines_its_first_line_introduces() -> None:
    from barkbench.measure.worker import classify

    # transformers 5's strict config validation: the heading alone says nothing of what is wrong.
    exc = ValueError(
        "Validation error for field 'hidden_size':\n    TypeError: Field 'hidden_size' expected int, got str"
    )
    assert classify(exc).message == (
        "ValueError: Validation error for field 'hidden_size': TypeError: Field 'hidden_size' expected int, got str"
    )
    assert classify(RuntimeError("first line\nsecond line")).message == "RuntimeError: first line"
    assert sources.first_line("a:\n\n  b:\n c\nd") == "a: b: c"


def test_a_bad_config_field_is_recorded_with_its_cause(tmp_path: Path) -> None:
    from conftest import running_stack

    from barkbench.measure.runner import RunSpec
    from barkbench.measure.worker import VariantFailed, WorkerProcess
    from barkbench.variants import Variant

    if running_stack() == "legacy":
        pytest.skip("transformers 4.x raises a one-line error for this config (from torch, when the model is built)")
    # The tiny model built in a child process (as a worker would): this process imports no torch for it.
    tiny = sources.parse_model_source("tiny")
    sources.prebuild(tiny)
    folder = tmp_path / "model"
    shutil.copytree(sources.random_model_dir("tiny"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["semantic_config"]["hidden_size"] = "wide"
    (folder / "config.json").write_text(json.dumps(config))
    spec = RunSpec(
        source=sources.parse_model_source(str(folder)),
        variant=Variant(),
        workload=wl.Workload(semantic_max_new_tokens=8),
        device_type="cpu",
        threads=1,
    )
    with pytest.raises(VariantFailed) as info:
        WorkerProcess(spec)
    message = str(info.value)
    assert "Validation error for field 'hidden_size': TypeError: Field 'hidden_size' expected int, got str" in message
    assert "\n" not in message and "(traceback in " in message


# -- prompts a call never speaks: said once, at start ------------------------------------------------------------


def test_the_unused_prompts_note_says_how_many_are_given_and_used() -> None:
    fields = {"mode": "single", "prompts": tuple(f"Prompt {i}." for i in range(10_000))}
    assert wl.unused_prompts_note("p.txt", fields, [1]) == (
        "--bark-prompts p.txt gives 10000 prompts, but a call speaks as many as its batch size, the first 1: "
        "9999 are never spoken; use a batch that holds them, or --bark-long-form to speak them all in sequence"
    )
    assert "the first 1 or 8: 9992 are never spoken" in (wl.unused_prompts_note("p.txt", fields, [8, 1, 8]) or "")
    assert wl.unused_prompts_note("p.txt", {**fields, "mode": "long"}, [1]) is None  # long-form speaks them all
    assert wl.unused_prompts_note("p.txt", {"mode": "single", "prompts": ("a", "b")}, [2]) is None
    assert wl.unused_prompts_note(None, fields, [1]) is None  # the blog's prompts: the default, cycled


@pytest.mark.one_stack("current")
def test_a_prompts_file_longer_than_every_batch_is_warned_about_once(bench: pytest.Pytester, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Prompt number {i}.\n" for i in range(10_000)))
    result = run(bench, "--bark-prompts", str(prompts), "--bark-variants", "baseline;batch=2", "--collect-only")
    lines = [x for x in output(result).splitlines() if "WARNING" in x and "--bark-prompts" in x]
    assert lines == [
        f"barkbench: WARNING: --bark-prompts {prompts} gives 10000 prompts, but a call speaks as many as its batch "
        "size, the first 1 or 2: 9998 are never spoken; use a batch that holds them, or --bark-long-form to speak "
        "them all in sequence"
    ], output(result)


# -- a long-form call shows its pieces ---------------------------------------------------------------------------


@pytest.mark.one_stack("legacy")
def test_a_long_form_call_shows_each_piece_with_an_estimate(bench: pytest.Pytester) -> None:
    # The blog's three prompts, long-form: three pieces per call (each prompt one piece), in the worker.
    result = run(bench, "--bark-long-form", "--bark-variants", "baseline", timeout=300)
    assert result.ret == pytest.ExitCode.OK, output(result)
    pieces = [x for x in result.stdout.lines if ": piece " in x]
    # The load's untimed calls run their pieces too (the CPU's memory call); each call but its last piece.
    assert [x for x in pieces if "round 1/1" in x] == [
        line
        for line in pieces
        if line.startswith("[barkbench] eager-fp32-bs1: round 1/1: piece ") and "(this call ~" in line
    ]
    assert [x.split(": piece ")[1].split(" ")[0] for x in pieces if "round 1/1" in x] == ["1/3", "2/3"]
    assert any(x.startswith("[barkbench] eager-fp32-bs1: loading the model: piece 1/3 done") for x in pieces)


# -- budgets on a file that holds no barkbench benchmark: a wrong input, not a failed budget -------------------


def test_budgets_on_a_plain_pytest_benchmark_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = json.loads(DATA.read_text())
    for bench in plain["benchmarks"]:
        bench["extra_info"] = {}
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(plain))
    assert main(["budgets", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"barkbench: error: {path}: no barkbench benchmarks to check; pass a run written by "
        "`pytest bench/ --benchmark-json=FILE`"
    ]


# -- merge: the rows two inputs hold are listed with the one kept; a folder output is refused -------------------


def _ok_rows(path: Path) -> dict[str, Any]:
    data = json.loads(DATA.read_text())
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"].get("status") == "ok"]
    path.write_text(json.dumps(data))
    return data


def test_merge_lists_the_rows_several_inputs_hold_and_which_was_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    data = _ok_rows(first)
    variants = [b["extra_info"]["variant"] for b in data["benchmarks"]]
    failed = json.loads(json.dumps(data))
    failed["benchmarks"][0]["extra_info"].update(status="failed", error="boom")
    failed["benchmarks"][0]["stats"] = None
    second.write_text(json.dumps(failed))
    out = tmp_path / "merged.json"
    assert main(["merge", str(first), str(second), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "in several inputs" in x]
    assert line.startswith(f"barkbench: {len(variants)} row(s) in several inputs: ")
    # The later file's row, unless it failed where the earlier one ran.
    assert f"{variants[0]} in {first}, {second}: kept {first}'s (the successful row; the later one failed)" in line
    assert f"{variants[1]} in {first}, {second}: kept {second}'s (the later row)" in line
    recorded = json.loads(out.read_text())["barkbench_sweep"]["duplicates"]
    assert [d["variant"] for d in recorded] == variants and recorded[0]["kept"] == str(first)


def test_merge_refuses_a_folder_as_its_output_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_file = tmp_path / "run.json"
    _ok_rows(run_file)
    folder = tmp_path / "out"
    folder.mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert main(["merge", str(run_file), "-o", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"barkbench: error: -o {folder}: is a directory; give a file path, e.g. {folder / 'merged.json'}"]
    assert sorted(tmp_path.rglob("*")) == before
    # A write that fails after the check (a full disk) leaves no temporary file either.
    from barkbench.results import merge as merge_mod

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(merge_mod.json, "dump", full_disk)
    assert main(["merge", str(run_file), "-o", str(tmp_path / "merged.json")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] and os.listdir(folder) == []
