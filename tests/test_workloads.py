"""Workloads: --bark-prompts files, --bark-voice presets, long-form splitting, the workload in the results."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from barkbench.measure import workload as wl
from barkbench.measure.runner import RunSpec, VariantRunner
from barkbench.measure.workload import Workload, WorkloadError
from barkbench.variants import Variant

# -- prompt files ----------------------------------------------------------------------------------------------


def test_plain_text_prompts_one_per_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("Hello there.\n\n  Second line  \n", encoding="utf-8")
    assert wl.load_prompts(str(path)) == (wl.Prompt("Hello there."), wl.Prompt("Second line"))


def test_jsonl_prompts_with_optional_voice(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "One."}\n{"text": "Two.", "voice": "v2/en_speaker_6"}\n', encoding="utf-8")
    assert wl.load_prompts(str(path)) == (wl.Prompt("One."), wl.Prompt("Two.", "v2/en_speaker_6"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no prompts (the file is empty)"),
        (b"  \n\n", "no prompts (the file is empty)"),
        (b"caf\xe9\n", "not UTF-8 (byte 3)"),
        (b'{"text": "ok"}\n{"text": broken}\n', "line 2 is not JSON"),
        (b'{"text": "ok"}\n{"voice": "x"}\n', 'line 2 needs a non-empty "text" string'),
        (b'{"text": "ok", "voice": 3}\n', 'line 1: "voice" must be a preset name'),
    ],
)
def test_bad_prompt_files_fail_in_one_line(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_bytes(content)
    with pytest.raises(WorkloadError, match=re.escape(message)) as info:
        wl.load_prompts(str(path))
    assert "\n" not in str(info.value)


def test_missing_prompt_file(tmp_path):
    with pytest.raises(WorkloadError, match="no such file"):
        wl.load_prompts(str(tmp_path / "nope.txt"))


# -- voices ----------------------------------------------------------------------------------------------------


def _npz(tmp_path, **arrays):
    path = tmp_path / "voice.npz"
    np.savez(path, **arrays)
    return str(path)


GOOD = {
    "semantic_prompt": np.arange(20),
    "coarse_prompt": np.ones((2, 30), dtype=np.int64),
    "fine_prompt": np.ones((8, 30), dtype=np.int64),
}


def test_an_npz_voice_is_read_and_hashed(tmp_path):
    voice = wl.load_voice(_npz(tmp_path, **GOOD))
    assert voice.kind == "file" and len(voice.arrays["semantic_prompt"]) == 20
    prompt = voice.history_prompt()
    assert tuple(prompt["coarse_prompt"].shape) == (2, 30) and tuple(prompt["fine_prompt"].shape) == (8, 30)
    other = wl.load_voice(_npz(tmp_path, **{**GOOD, "semantic_prompt": np.arange(1, 21)}))
    assert other.digest != voice.digest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fine_prompt": None}, "lacks fine_prompt"),
        ({"coarse_prompt": np.ones((3, 30), dtype=np.int64)}, r"coarse_prompt has shape \(3, 30\); .*\(2, T\)"),
        ({"semantic_prompt": np.ones((2, 5), dtype=np.int64)}, r"semantic_prompt has shape \(2, 5\)"),
        ({"fine_prompt": np.full((8, 30), 2000)}, r"fine_prompt has ids outside \[0, 1024\)"),
        ({"semantic_prompt": np.ones(20) * 0.5}, "semantic_prompt holds float64"),
    ],
)
def test_bad_voice_files_say_what_is_wrong(tmp_path, change, message):
    arrays = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(WorkloadError, match=message):
        wl.load_voice(_npz(tmp_path, **arrays))


def test_voice_file_missing_or_unreadable(tmp_path):
    with pytest.raises(WorkloadError, match="no such file"):
        wl.load_voice(str(tmp_path / "none.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(WorkloadError, match="not a readable .npz"):
        wl.load_voice(str(bad))


def test_synthetic_voice_is_deterministic_with_the_preset_shapes():
    a, b = wl.synthetic_voice("v2/en_speaker_6"), wl.synthetic_voice("v2/en_speaker_6")
    assert a == b and a.arrays == b.arrays
    assert a.digest != wl.synthetic_voice("v2/en_speaker_1").digest
    shapes = {k: np.asarray(v).shape for k, v in a.arrays.items()}
    assert shapes["semantic_prompt"] == (wl.SYNTHETIC_SEMANTIC_LENGTH,)
    assert shapes["coarse_prompt"][0] == 2 and shapes["fine_prompt"][0] == 8


def test_a_preset_name_becomes_synthetic_on_random_models_only():
    random_fields = wl.workload_from_files(None, "v2/en_speaker_6", False, random_model=True)
    assert random_fields["voice"].kind == "synthetic"
    real_fields = wl.workload_from_files(None, "v2/en_speaker_6", False, random_model=False)
    assert real_fields["voice"].kind == "preset"


# -- long form -------------------------------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def test_long_text_splits_into_sentences_that_fit():
    text = "One two three. Four five six! Seven eight nine ten eleven twelve? Thirteen."
    pieces = wl.split_sentences(text, _words, limit=6)
    assert pieces == ["One two three. Four five six!", "Seven eight nine ten eleven twelve?", "Thirteen."]
    assert all(_words(p) <= 6 for p in pieces)
    assert " ".join(pieces) == text


def test_a_sentence_over_the_window_is_cut_at_words():
    pieces = wl.split_sentences("a b c d e f g", _words, limit=3)
    assert pieces == ["a b c", "d e f", "g"]


# -- the workload's identity -----------------------------------------------------------------------------------


def test_workload_id_tells_texts_voice_and_mode_apart():
    base = Workload()
    assert base.workload_id == Workload().workload_id
    ids = {
        base.workload_id,
        Workload(prompts=("Other text.",)).workload_id,
        Workload(voice=wl.synthetic_voice("x")).workload_id,
        Workload(mode="long").workload_id,
    }
    assert len(ids) == 4
    info = Workload(voice=wl.synthetic_voice("x"), mode="long").as_extra_info()
    assert info["workload_voice"] == "x" and info["workload_mode"] == "long"


def test_workload_round_trips_through_a_dict():
    load = Workload(prompts=("a.", "b."), voice=wl.synthetic_voice("x"), prompt_voices=(None, "y"))
    assert Workload.from_dict(load.as_dict()) == load


def test_long_form_needs_batch_one():
    with pytest.raises(WorkloadError, match="long-form mode .* batch 1"):
        Workload(batch_size=2, mode="long")


def test_batches_fill_from_the_prompt_set():
    assert Workload(batch_size=3, prompts=("a", "b")).batch_prompts() == ["a", "b", "a"]


# -- end to end on the tiny model ------------------------------------------------------------------------------


def test_voice_and_long_form_run_on_the_tiny_model(tiny_source):
    text = "Hello there, this is one sentence. " * 30  # well over Bark's 256-token window
    load = Workload(prompts=(text,), voice=wl.synthetic_voice("v"), mode="long", semantic_max_new_tokens=4)
    runner = VariantRunner(RunSpec(source=tiny_source, variant=Variant(), device_type="cpu", workload=load))
    try:
        assert len(runner.calls) > 1
        assert all(tuple(c["history_prompt"]["fine_prompt"].shape)[0] == 8 for c in runner.calls)
        runner.prepare()
        result = runner.generate()
    finally:
        runner.close()
    assert len(result.segment_seconds) == len(runner.calls) and result.audio_seconds > 0
    assert sum(result.segment_seconds) <= result.seconds


def test_the_options_record_the_workload_and_fail_bad_files_before_loading(bench_pytester, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "Short one."}) + "\n", encoding="utf-8")
    out = tmp_path / "out.json"
    args = ["--bark-semantic-tokens", "8", "-p", "no:cacheprovider", "--bark-device", "cpu"]
    result = bench_pytester.runpytest_subprocess(
        "bench", *args, "--bark-variants", "baseline", "--bark-prompts", str(prompts), "--bark-voice",
        "v2/en_speaker_6", "--bark-rounds", "1", "--bark-warmup-rounds", "0", f"--benchmark-json={out}",
        timeout=600,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-2000:]
    bench = json.loads(out.read_text())["benchmarks"][0]
    info = bench["extra_info"]
    assert info["workload_voice"] == "v2/en_speaker_6" and info["workload_prompts"] == 1
    assert info["workload_id"] in bench["group"]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe")
    result = bench_pytester.runpytest_subprocess("bench", *args, "--bark-prompts", str(bad), timeout=120)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--bark-prompts*not UTF-8*save the file as UTF-8*"])
