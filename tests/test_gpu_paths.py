"""The CUDA code paths, checked on a machine without a GPU: what reaches transformers, what the pytest process
may touch, how results from a GPU are grouped, and the start-up checks.

Stand-ins replace the hardware: an importable ``flash_attn`` module, transformers' FA2 availability check, and a
``torch.cuda`` whose every call raises (the parent pytest process must never make one)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import transformers
from packaging.version import Version
from transformers import BarkModel, PreTrainedModel

from barkbench.measure import device, optimize, sources
from barkbench.measure.optimize import attention
from barkbench.variants import Variant

FA2 = Variant(attention="flash_attention_2", dtype="fp16")
TF5 = Version(transformers.__version__).major >= 5
#: Tests of the no-GPU paths. device.probe() asks a child process, so this pytest process never starts CUDA.
no_cuda = pytest.mark.skipif(device.probe().kind == "cuda", reason="checks the no-GPU path; this machine has CUDA")


@pytest.fixture()
def flash_attn_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``flash_attn`` package on sys.path (a stand-in: no kernels), as an installed flash-attn would be."""
    package = tmp_path / "stand-in" / "flash_attn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "2.8.3"\n')
    monkeypatch.syspath_prepend(str(package.parent))


@pytest.fixture()
def fa2_dispatch_allowed() -> object:
    """transformers' own FA2 availability check passes (it needs CUDA and the real package); everything else in
    from_pretrained, the choice of each sub-model's attention class included, runs as it would on a GPU."""
    if TF5:
        original = PreTrainedModel._check_and_adjust_attn_implementation

        def check(self: PreTrainedModel, implementation: object, *args: object, **kwargs: object) -> object:
            if implementation == "flash_attention_2":
                return implementation
            return original(self, implementation, *args, **kwargs)

        patch = mock.patch.object(PreTrainedModel, "_check_and_adjust_attn_implementation", check)
    else:
        patch = mock.patch.object(
            PreTrainedModel, "_check_and_enable_flash_attn_2", classmethod(lambda cls, config, *a, **k: config)
        )
    with patch:
        yield


def test_fa2_is_asked_per_sub_config_with_an_eager_codec(flash_attn_importable, fa2_dispatch_allowed, tiny_source):
    assert optimize.unsupported_reason(FA2, "cuda") is None  # flash-attn "installed", a CUDA device named
    kwargs = attention.load_kwargs(FA2)
    assert kwargs == {
        "attn_implementation": {
            "semantic_config": "flash_attention_2",
            "coarse_acoustics_config": "flash_attention_2",
            "fine_acoustics_config": "flash_attention_2",
            "codec_config": "eager",
        }
    }
    with mock.patch.object(BarkModel, "from_pretrained", wraps=BarkModel.from_pretrained) as spy:
        model = sources.load_model(tiny_source, **kwargs)
    assert spy.call_args.kwargs["attn_implementation"] == kwargs["attn_implementation"]
    # Every transformer block got the FA2 class; the codec kept eager (EncodecModel has no FA2).
    assert attention.attention_summary(model) == {"BarkSelfFlashAttention2": 6}
    for sub in (model.semantic, model.coarse_acoustics, model.fine_acoustics):
        assert sub.config._attn_implementation == "flash_attention_2"
    assert model.codec_model.config._attn_implementation == "eager"


@pytest.mark.skipif(not TF5, reason="the string form's ValueError is transformers 5.x's (4.48 fails elsewhere)")
def test_the_string_form_is_a_library_error_not_a_corrupt_folder(tiny_source):
    # A library's ValueError on a whole, readable folder propagates as itself: never "model folder is corrupt".
    folder = sources.parse_model_source(sources.resolve(tiny_source))
    with (
        mock.patch.object(BarkModel, "from_pretrained", side_effect=ValueError("EncodecModel does not support FA2")),
        pytest.raises(ValueError, match="EncodecModel does not support FA2"),
    ):
        sources.load_model(folder, attn_implementation="flash_attention_2")


def test_a_truncated_folder_is_still_called_corrupt(tmp_path, tiny_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_dir.iterdir():
        if item.is_file():
            data = item.read_bytes()
            (broken / item.name).write_bytes(data[: len(data) // 2] if item.suffix == ".safetensors" else data)
    assert not sources.folder_files_read(str(broken)) and sources.folder_files_read(str(tiny_dir))
    with pytest.raises(sources.SourceError, match="is corrupt"):
        sources.load_model(sources.parse_model_source(str(broken)))


# -- devices: kinds and indices, the start-up check, no CUDA call in the parent ----------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("cuda:0", ("cuda", 0)), ("cuda", ("cuda", None)), ("cpu", ("cpu", None)), ("xpu:1", ("xpu", 1))],
)
def test_device_kind_and_index(given, expected):
    assert device.device_kind_and_index(given) == expected


@no_cuda  # on a GPU box this would run the whole CUDA matrix instead of failing at start-up (issue 24)
def test_bark_device_cuda_without_cuda_fails_at_start_up_in_one_line(bench_pytester):
    result = bench_pytester.runpytest_subprocess("bench", "--bark-device", "cuda", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [text for text in result.stderr.lines if "--bark-device cuda" in text]
    assert "ERROR: --bark-device cuda:" in line and ("CPU-only build" in line or "sees no CUDA GPU" in line)
    assert "--bark-device cpu" in line
    assert "eager-fp32" not in result.stdout.str()  # nothing was collected or loaded


def test_cpu_capability_facts_read_proc_cpuinfo(monkeypatch):
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert device.cpu_half_precision() == {"bf16": False, "fp16": False} and device.cpu_emulates_half_precision()
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert device.cpu_half_precision() == {"bf16": True, "fp16": False} and not device.cpu_emulates_half_precision()
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset())
    assert not device.cpu_emulates_half_precision()  # unknown: nothing is left out


def test_machine_info_of_a_cpu_run_names_no_gpu(monkeypatch):
    h100 = device.AcceleratorFacts("cuda", (device.DeviceFacts(0, "NVIDIA H100 80GB HBM3", 85_000_000_000),))
    monkeypatch.setattr(device, "probe", lambda: h100)
    assert device.machine_info("cpu")["gpu_name"] is None
    info = device.machine_info("cuda")
    assert info["gpu_name"] == "NVIDIA H100 80GB HBM3" and info["gpu_memory_bytes"] == 85_000_000_000


CUDA_RAISES = """
import pytest
import torch


def _forbidden(name):
    def call(*args, **kwargs):
        raise AssertionError(f"torch.{name} called in the pytest process")
    return call


# At import: this conftest loads before any plugin hook runs, so every torch.cuda / torch.accelerator function
# raises in this process from the start of the session.
for _module, _prefix in ((torch.cuda, "cuda"), (getattr(torch, "accelerator", None), "accelerator")):
    if _module is None:
        continue
    for _name in dir(_module):
        _value = getattr(_module, _name)
        if _name.startswith("__") or isinstance(_value, type) or not callable(_value):
            continue
        setattr(_module, _name, _forbidden(f"{_prefix}.{_name}"))
"""


@pytest.mark.one_stack("current")
def test_a_full_cpu_run_makes_no_cuda_call_in_the_pytest_process(bench_pytester):
    # The workers are separate processes (--bark-isolation process): only the parent's calls are forbidden.
    (bench_pytester.path / "conftest.py").write_text(textwrap.dedent(CUDA_RAISES))
    out = bench_pytester.path / "run.json"
    result = bench_pytester.runpytest_subprocess(
        "bench",
        "--bark-variants",
        "baseline;sdpa",
        "--bark-semantic-tokens",
        "8",
        "--bark-rounds",
        "1",
        "--bark-warmup-rounds",
        "0",
        "-p",
        "no:cacheprovider",
        f"--benchmark-json={out}",
        timeout=600,
    )
    result.assert_outcomes(passed=2)
    data = json.loads(out.read_text())
    assert data["machine_info"]["barkbench"]["device"] == "cpu"
    assert {(b["extra_info"]["device"], b["extra_info"]["device_index"]) for b in data["benchmarks"]} == {("cpu", None)}


# -- barkbench acceptance: the GPU run's must-holds, checked on JSON ---------------------------------------------

DATA = Path(__file__).parent / "data"


def placement_checked(path: Path, folder: Path) -> Path:
    """A copy of a run whose offload rows say the placement check ran and passed, as the worker records it now."""
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        if bench["extra_info"].get("offload") == "cpu":
            bench["extra_info"]["offload_placement"] = "checked"
    copy = folder / path.name
    copy.write_text(json.dumps(data))
    return copy


def test_acceptance_passes_the_gpu_shaped_run_and_groups_cuda_0_offload_with_its_baseline(tmp_path, capsys):
    from barkbench.cli import main

    # Changed deliberately (issue 24): the file as recorded, before the placement check existed, fails on that.
    assert main(["acceptance", str(DATA / "run-gpu.json")]) == 1
    assert "| **FAIL** | `run-gpu.json` | `bettertransformer-fp16-offload-bs1` offload placement checked |" in (
        capsys.readouterr().out
    )
    assert main(["acceptance", str(placement_checked(DATA / "run-gpu.json", tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "| ok | `run-gpu.json` | memory from the CUDA allocator | cuda_max_memory_allocated |" in out
    assert "report groups offload with its baseline (suno/bark-small, bs1)" in out
    assert "`bettertransformer-fp16-offload-bs1` peak below `bettertransformer-fp16-bs1` | 540.0 vs 1,200.0 MB" in out


def test_the_report_explains_offload_rows_model_memory():
    from barkbench.results.load import load_run
    from barkbench.results.report import group_results

    groups = {g.batch_size: g.to_markdown() for g in group_results(load_run(DATA / "run-gpu.json").benchmarks)}
    assert "Offload rows: model memory is what stays on the device" in groups[1]
    assert "Offload rows" not in groups[8]  # no offload row there


def test_acceptance_fails_a_cpu_run_and_an_offload_that_saves_nothing(tmp_path, capsys):
    from barkbench.cli import main

    assert main(["acceptance", str(DATA / "run-cpu.json")]) == 1
    out = capsys.readouterr().out
    assert "**FAIL** | `run-cpu.json` | memory from the CUDA allocator" in out
    assert "**FAIL** | `run-cpu.json` | `eager-fp32-bs1` device kind | recorded 'cpu'" in out
    data = json.loads((DATA / "run-gpu.json").read_text())
    for bench in data["benchmarks"]:
        if bench["extra_info"].get("offload") == "cpu":
            bench["extra_info"]["peak_memory_bytes"] = 2_000_000_000
    bad = tmp_path / "offload-no-saving.json"
    bad.write_text(json.dumps(data))
    summary = tmp_path / "summary.md"
    assert main(["acceptance", str(bad), "--summary", str(summary)]) == 1
    assert (
        "**FAIL** | `offload-no-saving.json` | `bettertransformer-fp16-offload-bs1` peak below" in summary.read_text()
    )


# -- ./dev.sh gpu-acceptance ---------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@no_cuda
def test_gpu_acceptance_installed_stops_at_once_without_cuda(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        ["./dev.sh", "gpu-acceptance-installed"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "GPU_PYTHON": sys.executable, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("barkbench: gpu-acceptance needs a CUDA GPU: torch ") and "sees none" in line


def test_gpu_acceptance_installed_mode_installs_barkbench_alone():
    script = (REPO / "dev.sh").read_text()
    mode = script.split("gpu-acceptance-installed)", 1)[1].split(";;", 1)[0]
    # require_cuda comes first: a CPU machine stops before anything is installed.
    assert mode.index("require_cuda") < mode.index("-m pip install -q --no-deps --no-build-isolation -e .")


# -- what the first GPU run found (NVIDIA H200, torch 2.11+cu130, transformers 5.17, pytest-benchmark 5.2.3) --------


def test_acceptance_fails_the_h200_run_and_names_why_but_compares_an_offload_row_without_its_exact_twin(capsys):
    from barkbench.cli import main

    # Changed deliberately (issue 24): this run scored 12 of 12 before. It has two interrupted rows, offload rows
    # from before the placement check, and a bark-small offload peak below the semantic sub-model alone.
    assert main(["acceptance", str(DATA / "h200-tiny.json"), str(DATA / "h200-random-bark-small.json")]) == 1
    out = capsys.readouterr().out
    assert "| **FAIL** | `h200-tiny.json` | `sdpa-fp16-bs8` measured | interrupted: interrupted by SIGTERM" in out
    assert "| **FAIL** | `h200-random-bark-small.json` | `sdpa-fp16-offload-bs1` measured | interrupted:" in out
    assert "| **FAIL** | `h200-tiny.json` | `sdpa-fp32-offload-bs1` offload placement checked | not recorded" in out
    assert (
        "| **FAIL** | `h200-random-bark-small.json` | `sdpa-fp32-offload-bs1` peak within offload's bounds | 536.2 MB "
        "in 747.4-1,346.9 MB (semantic 0.468 of `sdpa-fp32-bs1`'s 1,681.0 MB model memory); below the largest "
        "sub-model alone: part of it never reached the device |"
    ) in out
    # The blog-sdpa preset has sdpa+fp16+offload but no sdpa+fp16: its twin is the eager fp16 row of the same run.
    assert "| ok | `h200-tiny.json` | `sdpa-fp16-offload-bs1` peak below `eager-fp16-bs1` | 106.4 vs 133.8 MB |" in out
    assert "| ok | `h200-tiny.json` | `sdpa-fp32-offload-bs1` peak below `sdpa-fp32-bs1` |" in out
    assert "| ok | `h200-tiny.json` | `eager-fp16-bs1` model memory half of fp32 | 0.509 x `eager-fp32-bs1`" in out
    assert "NVIDIA H200" in out


def test_acceptance_fails_when_no_offload_row_has_a_no_offload_peak_to_compare(tmp_path, capsys):
    from barkbench.cli import main

    data = json.loads((DATA / "h200-tiny.json").read_text())
    # Left: the fp32 rows without offload and the fp16 rows with it, so no offload row has a same-dtype twin.
    data["benchmarks"] = [
        b for b in data["benchmarks"] if (b["extra_info"]["offload"] == "none") == (b["extra_info"]["dtype"] == "fp32")
    ]
    lone = tmp_path / "lone.json"
    lone.write_text(json.dumps(data))
    assert main(["acceptance", str(lone)]) == 1
    out = capsys.readouterr().out
    assert (
        "| **FAIL** | `lone.json` | offload compared with a no-offload peak | no no-offload row of the same dtype and "
        "batch size for `sdpa-fp16-offload-bs1` |" in out
    )


def test_benchmark_json_given_as_an_open_file_is_checked_and_saved_atomically_by_path(tmp_path):
    """pytest-benchmark 5.1 and 5.2 parse --benchmark-json with argparse.FileType('wb'): the option's value is an
    open file, which made the start-up check raise TypeError on the GPU machine."""
    import types

    from barkbench.pytest_plugin import benchmark_patches
    from barkbench.pytest_plugin.config import BenchOptions
    from barkbench.pytest_plugin.session import startup_checks

    target = tmp_path / "run.json"
    opened = open(target, "wb")  # noqa: SIM115 - what argparse.FileType hands over
    assert benchmark_patches.json_option_path(opened) == target
    assert benchmark_patches.json_option_path(str(target)) == target
    assert (
        benchmark_patches.json_option_path(target) == target
    )  # pytest-benchmark 5.3: a Path, whose .name is "run.json"
    assert benchmark_patches.json_option_path(None) is None

    class Config:
        def getoption(self, name, default=None):
            return {"benchmark_json": opened, "bark_model": None}.get(name, default)

    startup_checks(BenchOptions.read(Config()))  # raised TypeError before: Path(<BufferedWriter>)

    logged = []
    bs = types.SimpleNamespace(
        json=opened, storage=None, logger=types.SimpleNamespace(info=lambda m, **k: logged.append(m))
    )
    config = types.SimpleNamespace(_benchmarksession=bs)
    saved: list[str] = []
    benchmark_patches.install(config, failed=[], saved=saved)
    assert opened.closed and bs.json == target
    bs.save_json({"benchmarks": []})
    assert json.loads(target.read_text()) == {"benchmarks": []}
    assert saved == [str(target)]


STAND_IN_PYTHON = """#!/usr/bin/env bash
# A stand-in CUDA python: says yes to every check and records what it is asked to run.
echo "$*" >> "$CALLS"
case "$*" in
  "-m pytest bench/"*) for a in "$@"; do [[ $a == --benchmark-json=* ]] && echo '{}' > "${a#--benchmark-json=}"; done ;;
esac
[[ $1 == - ]] && cat > /dev/null
exit 0
"""


@pytest.mark.parametrize("tests_step", ["1", "0"])
def test_gpu_acceptance_runs_the_benchmark_before_the_tests_and_takes_its_knobs(tmp_path, tests_step):
    overhead_step = tests_step  # both steps on, or both off
    import os
    import subprocess

    python = tmp_path / "python"
    python.write_text(STAND_IN_PYTHON)
    python.chmod(0o755)
    calls, out = tmp_path / "calls.txt", tmp_path / "out"
    env = {
        **os.environ,
        "GPU_PYTHON": str(python),
        "CALLS": str(calls),
        "GPU_ACCEPTANCE_OUT": str(out),
        "GPU_ACCEPTANCE_TESTS": tests_step,
        **({"GPU_ACCEPTANCE_OVERHEAD": "0"} if overhead_step == "0" else {}),
        "GPU_ACCEPTANCE_VARIANTS": "blog-sdpa;static-cache+compile",
        "GPU_ACCEPTANCE_TEST_ARGS": "-n 8 -v",
    }
    result = subprocess.run(
        ["./dev.sh", "gpu-acceptance-installed"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    bench = [i for i, line in enumerate(lines) if line.startswith("-m pytest bench/")]
    accept = [i for i, line in enumerate(lines) if line.startswith("-m barkbench acceptance")]
    tests = [i for i, line in enumerate(lines) if line.startswith("-m pytest tests/")]
    overhead = [i for i, line in enumerate(lines) if line.startswith("-m barkbench overhead")]
    assert len(bench) == 2 and all("--bark-variants blog-sdpa;static-cache+compile" in lines[i] for i in bench)
    assert len(accept) == 1 and max(bench) < accept[0]
    if overhead_step == "1":  # on by default, after the verdicts and before the tests (a cut-short test step keeps it)
        assert len(overhead) == 1 and accept[0] < overhead[0] and "--device cuda --paired" in lines[overhead[0]]
        assert f"--json {out / 'overhead.json'}" in lines[overhead[0]]
    else:
        assert overhead == []
    if tests_step == "1":
        assert overhead[0] < tests[0]
        assert len(tests) == 1 and accept[0] < tests[0] and "--bark-device cuda" in lines[tests[0]]
        assert lines[tests[0]].endswith(" -n 8 -v")
    else:
        assert tests == [] and "left out (GPU_ACCEPTANCE_TESTS=0)" in (out / "tests.txt").read_text()
    assert (out / "doctor.txt").exists() and (out / "tiny.json").exists()  # the output went where it was told
    # The CUDA check (a script on stdin) before barkbench alone is installed, then the check again in the run.
    assert lines[:3] == ["-", "-m pip install -q --no-deps --no-build-isolation -e .", "-"]


# -- the test suite on a GPU box (issue 24 item 6) -------------------------------------------------------------------


def test_the_cuda_start_up_test_is_skipped_where_a_cuda_gpu_is_present():
    # Decided through device.probe() (a child process): collecting this file never starts CUDA in pytest.
    [mark] = [
        m for m in test_bark_device_cuda_without_cuda_fails_at_start_up_in_one_line.pytestmark if m.name == "skipif"
    ]
    assert mark.kwargs["reason"] == "checks the no-GPU path; this machine has CUDA"
    assert mark.args == (device.probe().kind == "cuda",)


SLOW_TESTS_PYTHON = """#!/usr/bin/env bash
# A stand-in CUDA python whose test step runs until it is interrupted, and records the signal.
echo "$*" >> "$CALLS"
case "$*" in
  "-m pytest bench/"*) for a in "$@"; do [[ $a == --benchmark-json=* ]] && echo '{}' > "${a#--benchmark-json=}"; done ;;
  "-m pytest tests/"*)
    sleep 60 >/dev/null 2>&1 &
    trap 'kill $!; echo "SIGINT" >> "$CALLS"; exit 130' INT
    wait $!; exit 0 ;;
esac
[[ $1 == - ]] && cat > /dev/null
exit 0
"""


def test_gpu_acceptance_defaults_keeps_junit_and_can_interrupt_the_tests_at_a_deadline(tmp_path):
    import os
    import subprocess
    import time

    python = tmp_path / "python"
    python.write_text(SLOW_TESTS_PYTHON)
    python.chmod(0o755)
    calls, out = tmp_path / "calls.txt", tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_ACCEPTANCE")}
    env.update(GPU_PYTHON=str(python), CALLS=str(calls), GPU_ACCEPTANCE_OUT=str(out), GPU_ACCEPTANCE_TEST_TIMEOUT="2")
    start = time.monotonic()
    result = subprocess.run(
        ["./dev.sh", "gpu-acceptance-installed"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert time.monotonic() - start < 50 and result.returncode == 1  # cut at the deadline, and the run fails
    lines = calls.read_text().splitlines()
    bench = [line for line in lines if line.startswith("-m pytest bench/")]
    # The default variants: the blog's with SDPA, modern (bf16 among them), bs8 and the CUDA-graph variant.
    assert bench and all("--bark-variants blog-sdpa;modern;bs8;static-cache+compile" in line for line in bench)
    [tests] = [line for line in lines if line.startswith("-m pytest tests/")]
    # Every test's name and outcome in junit XML; nothing --ignore'd (files that need a missing package skip).
    assert f"--junitxml={out}/tests.xml" in tests and "--ignore" not in tests
    assert lines[-1] == "SIGINT"  # pytest gets SIGINT, ends the session and writes the XML of what ran


def test_the_gpu_workflow_runs_the_acceptance_and_the_tests_and_keeps_the_junit_xml():
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "gpu.yml").read_text())
    job = workflow["jobs"]["acceptance"]
    steps = {step.get("name", ""): step for step in job["steps"]}
    [run] = [s for s in steps.values() if "gpu-acceptance-installed" in s.get("run", "")]
    # dev.sh's gpu_acceptance: doctor, the benchmark, `barkbench acceptance`, then tests/ with --junitxml.
    assert run["run"].strip() == "./dev.sh gpu-acceptance-installed" and run["env"]["GPU_PYTHON"] == ".venv/bin/python"
    assert run["env"]["GPU_ACCEPTANCE_TEST_TIMEOUT"] and run["env"]["GPU_ACCEPTANCE_OUT"] == "gpu-acceptance"
    [upload] = [s for s in steps.values() if s.get("uses") == "actions/upload-artifact@v4"]
    assert upload["if"].startswith("${{ always()") and upload["with"]["path"] == "gpu-acceptance/"
    script = (REPO / "dev.sh").read_text().split("gpu_acceptance() {", 1)[1].split("\n}\n", 1)[0]
    assert '-m barkbench acceptance "$out/tiny.json" "$out/random-bark-small.json"' in script
    assert '--junitxml="$out/tests.xml"' in script


# -- issue 24 item 2: a CPU row never touches CUDA, in the process that measures it ------------------------------------

#: torch.cuda / torch.accelerator functions that torch and transformers call in any CPU process without starting the
#: driver: flags (``is_initialized``, ``_is_in_bad_fork``, ``_is_compiled``), seeding that is queued until CUDA
#: starts (``manual_seed_all``: torch.cuda's ``_lazy_call``; torch.manual_seed and transformers' set_seed call it),
#: and the build's accelerator type (``current_accelerator()``: "This API does NOT poison fork"; its
#: check_available=True form calls is_available, which raises here). barkbench itself may call none of them.
DRIVER_FREE = {
    "cuda.is_initialized",
    "cuda._is_in_bad_fork",
    "cuda._is_compiled",
    "cuda.manual_seed",
    "cuda.manual_seed_all",
    "accelerator.current_accelerator",
}


def _watch_device_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every torch.cuda / torch.accelerator function records (name, calling module); all but DRIVER_FREE raise, and
    those too when barkbench calls them."""
    import sys

    import torch

    calls: list[tuple[str, str]] = []

    def watched(name: str, function: object) -> object:
        def call(*args: object, **kwargs: object) -> object:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            calls.append((name, caller))
            if name not in DRIVER_FREE or caller.split(".")[0] == "barkbench":
                raise AssertionError(f"torch.{name} called from {caller} while a CPU row runs")
            return function(*args, **kwargs)  # type: ignore[operator]

        return call

    for module, prefix in ((torch.cuda, "cuda"), (getattr(torch, "accelerator", None), "accelerator")):
        for name in dir(module) if module is not None else ():
            value = getattr(module, name)
            if name.startswith("__") or isinstance(value, type) or not callable(value):
                continue
            monkeypatch.setattr(module, name, watched(f"{prefix}.{name}", value))
    return calls


def test_a_cpu_row_makes_no_cuda_or_accelerator_call_in_its_process(tiny_source, monkeypatch):
    """--bark-isolation off style: the runner in this process, loading, its memory call and a measured round."""
    import torch

    from barkbench.measure.runner import RunSpec, VariantRunner
    from barkbench.measure.workload import Workload

    initialized = torch.cuda.is_initialized
    calls = _watch_device_calls(monkeypatch)
    spec = RunSpec(tiny_source, Variant(), Workload(semantic_max_new_tokens=8), device_type="cpu", fixed_length=True)
    runner = VariantRunner(spec)
    try:
        runner.prepare()
        result = runner.generate()
    finally:
        runner.close()
    assert result.seconds > 0 and result.memory_method == "cpu_peak_rss_memory_call"
    assert not [call for call in calls if call[1].split(".")[0] == "barkbench"]
    assert {name for name, _ in calls} <= DRIVER_FREE and not initialized()


# -- issue 24 item 3: no host read of a device mask in barkbench's SDPA ------------------------------------------------


def test_sdpa_applies_a_device_mask_without_reading_it():
    import torch

    from barkbench import sdpa

    # A meta tensor stands in for a GPU's: reading its values (bool(), .any()) would raise, as it would sync there.
    mask = torch.zeros(2, 1, 1, 9, device="meta")
    assert sdpa._masks_something(mask)  # applied as given: exact either way
    # On the CPU the check still reads it (no device to wait for) and takes the fast path for an all-attended mask.
    assert not sdpa._masks_something(torch.zeros(2, 1, 1, 9)) and sdpa._masks_something(torch.full((1, 9), -1e9))


# -- issue 24 item 3: `barkbench overhead --device cuda` ---------------------------------------------------------------


@no_cuda
def test_overhead_on_cuda_refuses_in_one_line_without_cuda(capsys):
    from barkbench.cli import main

    assert main(["overhead", "--device", "cuda", "--processes", "1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("barkbench: error: --device cuda:") and line.endswith("or use --device cpu")


def test_overhead_runs_both_sides_on_the_device_asked_for(monkeypatch):
    from barkbench.measure import engine, overhead

    bare: list[str] = []
    specs: list[object] = []

    def fake_bare(*args: object, device: str = "cpu", **kwargs: object) -> list[float]:
        bare.append(device)
        return [1.0, 1.0]

    def fake_run(plan: engine.Plan) -> dict:
        specs.extend(plan.specs)
        raise RuntimeError("stop after the plan")  # what is checked is the worker's spec

    monkeypatch.setattr(overhead, "bare_loop_times", fake_bare)
    monkeypatch.setattr(engine, "run", fake_run)
    with pytest.raises(RuntimeError, match="stop after the plan"):
        overhead.measure("tiny", processes=1, rounds=2, device="cuda")
    assert bare == ["cuda"] and [spec.device_type for spec in specs] == ["cuda"]


def test_the_bare_loop_on_cuda_synchronizes_once_per_call(tiny_source, monkeypatch):
    """BARE_LOOP run in this process with torch.cuda stand-ins: the model stays on the CPU, every call ends in
    exactly one synchronize before its clock stops, and CPU runs synchronize nothing."""
    import contextlib
    import io
    import sys

    import torch

    from barkbench.measure import overhead, workload

    events: list[str] = []
    to = torch.nn.Module.to
    prepare_inputs = workload.prepare_inputs
    load_model = sources.load_model

    def logged_model(*args: object, **kwargs: object) -> object:
        model = load_model(*args, **kwargs)
        generate = model.generate  # the instance's own: transformers' view of the class stays as it is
        model.generate = lambda **k: events.append("generate") or generate(**k)
        return model

    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self if a == ("cuda",) else to(self, *a, **k))
    monkeypatch.setattr(
        workload, "prepare_inputs", lambda processor, load, device: prepare_inputs(processor, load, "cpu")
    )
    monkeypatch.setattr(sources, "load_model", logged_model)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("synchronize"))
    for device_type, expected in (("cuda", ["generate", "synchronize"] * 3), ("cpu", ["generate"] * 3)):
        events.clear()
        args = {"model": "tiny", "tokens": 8, "warmup": 1, "rounds": 2, "threads": None, "fixed_length": True}
        monkeypatch.setattr(sys, "argv", ["-c", json.dumps({**args, "device": device_type})])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(overhead.BARE_LOOP, "<BARE_LOOP>", "exec"), {"__name__": "__main__"})
        assert events == expected, device_type
        assert len(json.loads(out.getvalue().split("BARE_TIMES=", 1)[1])) == 2
