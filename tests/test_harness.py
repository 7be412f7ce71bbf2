"""End to end: the bench/ suite run as a user runs it, in pytest sub-sessions on the tiny model."""

import json

import pytest

# Pinned to the CPU: these sub-sessions check CPU behaviour (skip reasons, RSS figures), on any machine.
FAST = ["--bark-semantic-tokens", "8", "-p", "no:cacheprovider", "--bark-device", "cpu"]

EXTRA_INFO_FIELDS = {
    "variant": str,
    "attention": str,
    "dtype": str,
    "offload": str,
    "batch_size": int,
    "attention_impl": str,
    "model_source": str,
    "device": str,
    "device_name": str,
    "semantic_max_new_tokens": int,
    "rounds": int,
    "warmup_rounds": int,
    "isolation": str,
    "peak_memory_bytes": int,
    "peak_memory_bytes_mean": int,
    "memory_method": str,
    "model_memory_bytes": int,
    "throughput_samples_per_s": float,
    "audio_seconds": float,
    "audio_seconds_per_wall_second": float,
    "worker_latency_mean_s": float,
    "output_lengths": list,
    "worker_pid": int,
    "status": str,
    "wav_path": str,
}


def _run(pytester, *args):
    return pytester.runpytest_subprocess("bench", *FAST, *args, timeout=600)


@pytest.mark.one_stack("legacy")
def test_disabled_mode_runs_each_variant_once_and_skips_with_reasons(bench_pytester):
    result = _run(bench_pytester, "--benchmark-disable", "--bark-variants", "baseline;sdpa;offload", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*offload needs an accelerator*this machine has none*"])
    result.stdout.no_fnmatch_line("*benchmark*tests*Min*")  # no table when benchmarking is disabled


def test_benchmark_json_holds_every_extra_info_field(bench_pytester):
    out = bench_pytester.path / "run.json"
    result = _run(
        bench_pytester,
        "--bark-variants",
        "baseline; attention=sdpa,batch=2",
        "--bark-rounds",
        "2",
        "--bark-warmup-rounds",
        "1",
        f"--benchmark-json={out}",
        "--bark-wav-dir",
        "wav",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_generate[[]eager-fp32-bs1[]]*", "*test_generate[[]sdpa-fp32-bs2[]]*"])
    # Progress: which variant and round a long run is on.
    result.stdout.fnmatch_lines(
        [
            f"[[]barkbench[]] {step} (elapsed *, variant ~* left, run ~* left)"
            for step in (
                "eager-fp32-bs1: warm-up 1/1",
                "eager-fp32-bs1: round 1/2",
                "eager-fp32-bs1: round 2/2",
                "sdpa-fp32-bs2: round 2/2",
            )
        ]
    )
    data = json.loads(out.read_text())
    assert set(data["machine_info"]["barkbench"]) >= {
        "torch",
        "transformers",
        "optimum",
        "accelerate",
        "device",
        "gpu_name",
        "gpu_driver",
        "cuda",
    }
    by_id = {b["params"]["bark_variant"]: b for b in data["benchmarks"]}
    assert set(by_id) == {"eager-fp32-bs1", "sdpa-fp32-bs2"}
    for variant_id, bench in by_id.items():
        info = bench["extra_info"]
        for field, kind in EXTRA_INFO_FIELDS.items():
            assert isinstance(info.get(field), kind), (variant_id, field, info.get(field))
        assert info["variant"] == variant_id and info["status"] == "ok"
        assert bench["stats"]["rounds"] == 2
        assert info["peak_memory_bytes"] >= info["model_memory_bytes"] > 0
        assert info["throughput_samples_per_s"] == pytest.approx(info["batch_size"] / bench["stats"]["mean"])
        # 8 semantic tokens of random weights: never early EOS, so every sample has audio.
        assert len(info["output_lengths"]) == info["batch_size"] and min(info["output_lengths"]) > 0
        assert info["audio_seconds"] == pytest.approx(sum(info["output_lengths"]) / 24_000)
    assert by_id["sdpa-fp32-bs2"]["extra_info"]["attention_impl"] == "barkbench-sdpa"
    # One WAV per variant, the last round's first sample, listenable.
    import soundfile

    for variant_id, bench in by_id.items():
        wav = bench_pytester.path / "wav" / f"{variant_id}.wav"
        assert bench["extra_info"]["wav_path"] == str(wav)
        audio, rate = soundfile.read(wav)
        assert rate == 24_000 and len(audio) == bench["extra_info"]["output_lengths"][0]
        assert audio.std() > 0
    assert by_id["eager-fp32-bs1"]["group"] == "tiny bs1"
    # Each variant ran in its own fresh process.
    assert by_id["eager-fp32-bs1"]["extra_info"]["worker_pid"] != by_id["sdpa-fp32-bs2"]["extra_info"]["worker_pid"]


def _peak_of(pytester, out, variants):
    result = _run(
        pytester,
        "--bark-variants",
        variants,
        "--bark-rounds",
        "1",
        "--bark-warmup-rounds",
        "0",
        f"--benchmark-json={out}",
    )
    result.assert_outcomes(passed=len(variants.split(";")))
    data = json.loads(out.read_text())
    return {b["params"]["bark_variant"]: b["extra_info"] for b in data["benchmarks"]}


def test_a_variant_measures_the_same_after_another_as_alone(bench_pytester):
    # The isolation acceptance check for memory (latency is checked by benchmark, see README): bf16 measured
    # after the fp32 baseline in one session is within 5 % of bf16 measured alone.
    after = _peak_of(bench_pytester, bench_pytester.path / "after.json", "baseline;bf16")["eager-bf16-bs1"]
    alone = _peak_of(bench_pytester, bench_pytester.path / "alone.json", "bf16")["eager-bf16-bs1"]
    # Shown on failure (and with -s): the figures, to tell a regression of the method from noise.
    print(
        "isolation figures, bytes: peak after/alone",
        after["peak_memory_bytes"],
        alone["peak_memory_bytes"],
        "model after/alone",
        after["model_memory_bytes"],
        alone["model_memory_bytes"],
    )
    assert after["peak_memory_bytes"] == pytest.approx(alone["peak_memory_bytes"], rel=0.05)
    assert after["model_memory_bytes"] == pytest.approx(alone["model_memory_bytes"], rel=0.05)


def test_in_process_mode_is_available_for_debugging(bench_pytester):
    out = bench_pytester.path / "run.json"
    result = _run(
        bench_pytester,
        "--bark-isolation",
        "off",
        "--bark-variants",
        "sdpa",
        "--bark-rounds",
        "1",
        "--bark-warmup-rounds",
        "0",
        f"--benchmark-json={out}",
    )
    result.assert_outcomes(passed=1)
    info = json.loads(out.read_text())["benchmarks"][0]["extra_info"]
    assert info["isolation"] == "off" and info["attention_impl"] == "barkbench-sdpa"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bark-rounds", "0"], "--bark-rounds must be >= 1, got 0"),
        (["--bark-warmup-rounds", "-1"], "--bark-warmup-rounds must be >= 0"),
        (["--bark-variants", "attention=sdpa,batch=-2"], "batch must be a positive integer"),
        (["--bark-variants", "turbo"], "unknown variant 'turbo'"),
        (["--bark-model", "random:huge"], "unknown architecture 'huge'"),
    ],
)
def test_nonsense_options_fail_before_any_model_loads(bench_pytester, args, message):
    result = _run(bench_pytester, *args)
    assert result.ret != 0
    result.stderr.fnmatch_lines([f"*{message}*"])
