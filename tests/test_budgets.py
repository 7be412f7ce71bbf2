"""Memory budgets: the file, the verdicts and their messages, the budgets held by real measurements, and a
benchmark run that enforces them.

The measured tests take the model and device of the command line (``--bark-model``, ``--bark-device``; by
default the tiny model on this machine's device), so the same tests check a GPU run or a real checkpoint. Each
variant is measured in its own fresh worker process: its figures must not depend on what ran before it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST

from barkbench.measure import device as device_mod
from barkbench.measure.optimize import unsupported_reason
from barkbench.measure.runner import RunSpec
from barkbench.measure.sources import parse_model_source
from barkbench.measure.worker import WorkerProcess
from barkbench.measure.workload import Workload
from barkbench.results import budgets
from barkbench.variants import Variant

MB = budgets.BYTES_PER_MB

#: What the measured test runs: the baseline and every technique the budgets file has an entry for at batch 1.
MEASURED = [
    Variant(),
    Variant(attention="sdpa"),
    Variant(attention="bettertransformer"),
    Variant(dtype="bf16"),
    Variant(dtype="fp16"),
    Variant(offload="cpu"),
    Variant(offload="cpu", dtype="fp16"),
]


def measurement(variant: Variant, source: str = "tiny", device: str = "cpu", **figures_mb: float):
    return budgets.Measurement(source, device, variant, {k: int(v * MB) for k, v in figures_mb.items()})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    return path


# -- the file ----------------------------------------------------------------------------------------------------


def test_the_packaged_budgets_load_and_say_why():
    loaded = budgets.load_budgets()
    assert loaded.path == budgets.default_path() and loaded.path.name == "budgets.toml"
    assert loaded.limits and all(limit.why for limit in loaded.limits)
    # The reference entries: CUDA offload from the blog, CPU half-precision weights.
    assert budgets.load_budgets("default").limits == loaded.limits

    def rules(source: str, device: str, variant: str) -> set[tuple[str, str, float]]:
        return {(lim.metric, lim.kind, lim.value) for lim in loaded.applicable(source, device, variant)}

    assert ("peak_memory", "ratio", 0.45) in rules("suno/bark", "cuda", "eager-fp32-offload-bs1")
    assert ("peak_memory", "ratio", 0.25) in rules("suno/bark", "cuda", "eager-fp16-offload-bs1")
    assert ("weights", "ratio", 0.52) in rules("tiny", "cpu", "eager-bf16-bs1")
    # CUDA half precision: tiny has its own peak ratio (fixed cuBLAS workspace), every other source the general.
    assert {r for r in rules("tiny", "cuda", "sdpa-fp16-bs1") if r[0] == "peak_memory"} == {
        ("peak_memory", "ratio", 0.75)
    }
    for source in ("suno/bark-small", "random:bark-small", "/models/bark"):
        assert {r for r in rules(source, "cuda", "eager-bf16-bs8") if r[0] == "peak_memory"} == {
            ("peak_memory", "ratio", 0.60)
        }, source


def test_the_budgets_file_is_shipped_as_package_data():
    import fnmatch

    import barkbench

    pyproject = budgets.tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    packaged = budgets.default_path().relative_to(Path(barkbench.__file__).parent).as_posix()
    patterns = pyproject["tool"]["setuptools"]["package-data"]["barkbench"]
    assert budgets.default_path().is_file() and any(fnmatch.fnmatch(packaged, p) for p in patterns)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["*".cpu."*"]\npeak_ratio = 0.5\n', "unknown key(s) peak_ratio"),
        ('["*".cpu."*"]\npeak_memory_ratio = 0\n', "peak_memory_ratio must be a positive number, got 0"),
        ('["*".cpu."*"]\npeak_memory_mb = "lots"\n', "peak_memory_mb must be a positive number"),
        ('["*".cpu."*"]\nwhy = "nothing"\n', "has no limit"),
        ('["*".cpu]\npeak_memory_ratio = 0.5\n', "is not a table; limits go in a table"),
        ("this is = = not toml\n", "is not valid TOML"),
    ],
)
def test_a_bad_budgets_file_fails_in_one_line_naming_the_table(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(budgets.BudgetError) as info:
        budgets.load_budgets(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_budgets_file_says_so(tmp_path):
    with pytest.raises(budgets.BudgetError, match="does not exist; pass an existing TOML file or 'default'"):
        budgets.load_budgets(tmp_path / "nope.toml")


# -- verdicts ----------------------------------------------------------------------------------------------------


def test_ratio_and_cap_verdicts_print_measured_and_allowed_in_mb_and_as_ratio(tmp_path):
    loaded = budgets.load_budgets(
        write(
            tmp_path,
            """
["*".cpu."sdpa-*"]
peak_memory_ratio = 1.10
["*".cpu."*-bf16-*"]
weights_ratio = 0.52
peak_memory_mb = 250
""",
        )
    )
    verdicts = budgets.check(
        [
            measurement(Variant(), peak_memory=200, weights=140),
            measurement(Variant(attention="sdpa"), peak_memory=210, weights=140),  # 1.05 x: ok
            measurement(Variant(dtype="bf16"), peak_memory=300, weights=140),  # fp32 weights kept: exceeded
        ],
        loaded,
    )
    by_key = {(v.measurement.variant.id, v.limit.metric): v for v in verdicts}
    assert set(by_key) == {
        ("sdpa-fp32-bs1", "peak_memory"),
        ("eager-bf16-bs1", "weights"),
        ("eager-bf16-bs1", "peak_memory"),
    }
    sdpa = by_key["sdpa-fp32-bs1", "peak_memory"]
    assert sdpa.ok and sdpa.ratio == pytest.approx(1.05) and sdpa.allowed_bytes == 220 * MB
    weights = by_key["eager-bf16-bs1", "weights"]
    assert weights.status == "exceeded"
    assert weights.message.startswith(
        "BUDGET EXCEEDED: tiny cpu eager-bf16-bs1 weights 140.0 MB > allowed 72.8 MB "
        "(ratio 1.000 vs allowed 0.520 x baseline eager-fp32-bs1 140.0 MB)"
    )
    assert '["*"."cpu"."*-bf16-*"] in budgets.toml' in weights.message
    cap = by_key["eager-bf16-bs1", "peak_memory"]
    assert cap.status == "exceeded" and "300.0 MB > allowed 250.0 MB" in cap.message and "ratio" not in cap.message
    assert sorted(v.limit.metric for v in budgets.failures(verdicts)) == ["peak_memory", "weights"]


def test_ratios_use_the_baseline_of_the_same_batch_size_device_and_source(tmp_path):
    loaded = budgets.load_budgets(write(tmp_path, '["*"."*"."sdpa-*"]\npeak_memory_ratio = 1.0\n'))
    verdicts = budgets.check(
        [
            measurement(Variant(), peak_memory=100),
            measurement(Variant(batch_size=8), peak_memory=400),
            measurement(Variant(attention="sdpa", batch_size=8), peak_memory=390),
            measurement(Variant(attention="sdpa", batch_size=8), device="cuda", peak_memory=390),
        ],
        loaded,
    )
    cpu, cuda = verdicts
    assert cpu.ok and cpu.baseline_bytes == 400 * MB
    # No cuda baseline in the run: the ratio cannot be checked, and an enforcing run must not pass silently.
    assert cuda.status == "no-baseline" and cuda in budgets.failures(verdicts)
    assert cuda.message == (
        "budget not checked: tiny cuda sdpa-fp32-bs8 peak_memory <= 1.000 x baseline needs the baseline "
        "eager-fp32-bs8 measured in the same run; add it (--bark-variants 'batch=8') "
        '[["*"."*"."sdpa-*"] in budgets.toml]'
    )


def test_weights_ratios_fall_back_to_a_baseline_of_another_batch_size(tmp_path):
    # The blog's matrix has no eager-fp32-bs8; its bs8 fp16 rows are still held to the weights budget.
    table = '["*"."*"."*-fp16-*"]\nweights_ratio = 0.52\npeak_memory_ratio = 0.6\n'
    loaded = budgets.load_budgets(write(tmp_path, table))
    verdicts = budgets.check(
        [
            measurement(Variant(), weights=140, peak_memory=200),
            measurement(Variant(attention="sdpa", dtype="fp16", batch_size=8), weights=70, peak_memory=90),
        ],
        loaded,
    )
    by_metric = {v.limit.metric: v for v in verdicts}
    assert by_metric["weights"].ok and by_metric["weights"].baseline_id == "eager-fp32-bs1"
    assert "x baseline eager-fp32-bs1 140.0 MB" in by_metric["weights"].message
    # Peak memory grows with the batch: only the same batch size's baseline counts.
    assert by_metric["peak_memory"].status == "no-baseline"


def test_extra_info_of_failed_variants_is_not_held_to_a_budget():
    extra = {**Variant(dtype="bf16").as_dict(), "model_source": "tiny", "device": "cpu", "status": "failed"}
    assert budgets.Measurement.from_extra_info(extra) is None
    ok = {
        **Variant().as_dict(),
        "model_source": "tiny",
        "device": "cuda:0",
        "status": "ok",
        "peak_memory_bytes": 5,
        "weights_bytes": 7,
    }
    parsed = budgets.Measurement.from_extra_info(ok)
    assert parsed is not None and parsed.device == "cuda" and parsed.figures == {"peak_memory": 5, "weights": 7}


# -- the budgets hold for real measurements ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(pytestconfig: pytest.Config) -> list[budgets.Measurement]:
    """One generate per variant, each in a fresh worker process, on the command line's model and device."""
    given = pytestconfig.getoption("bark_model", None)  # a parsed ModelSource when --bark-model was given
    source = given.label if given is not None else "tiny"
    chosen = pytestconfig.getoption("bark_device", "auto")
    device = device_mod.device_type() if chosen in (None, "auto") else chosen
    runnable = [variant for variant in MEASURED if not unsupported_reason(variant, device)]
    # One intra-op thread per worker (the spawned process inherits the environment): on a busy 2-core runner the
    # threads of the tiny model's small ops only wait on each other. Every variant runs the same way, so the
    # ratios compare like with like.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        return [_measure(source, device, variant) for variant in runnable]


def _measure(source: str, device: str, variant: Variant) -> budgets.Measurement:
    spec = RunSpec(
        source=parse_model_source(source),
        variant=variant,
        workload=Workload(semantic_max_new_tokens=8),
        device_type=device,
        env={"TRANSFORMERS_VERBOSITY": "error"},
    )
    with WorkerProcess(spec) as worker:
        worker.prepare()
        peak = worker.generate().peak_memory_bytes
        info = worker.info
    figures = {"peak_memory": peak, "model_memory": info.model_memory_bytes, "weights": info.weights_bytes}
    return budgets.Measurement(source, device, variant, figures)


def test_every_variant_holds_the_packaged_budgets(measured):
    verdicts = budgets.check(measured, budgets.load_budgets())
    checked = {(v.measurement.variant.id, v.limit.metric) for v in verdicts}
    # Not vacuous: the half-precision weights budget applies on every device and model.
    assert ("eager-bf16-bs1", "weights") in checked and ("eager-fp16-bs1", "weights") in checked
    failed = budgets.failures(verdicts)
    assert not failed, "\n".join(v.message for v in failed)


def test_the_weights_budget_catches_a_half_precision_path_that_stays_fp32(measured):
    # The baseline's real figures presented as bf16: what a dtype path that silently keeps fp32 would record.
    baseline = next(m for m in measured if m.variant.is_baseline)
    stuck = budgets.Measurement(baseline.source, baseline.device, Variant(dtype="bf16"), baseline.figures)
    verdicts = budgets.check([baseline, stuck], budgets.load_budgets())
    weights = [v for v in verdicts if v.limit.metric == "weights" and v.measurement is stuck]
    assert weights and weights[0].status == "exceeded"
    assert weights[0].ratio == pytest.approx(1.0) and "BUDGET EXCEEDED" in weights[0].message


def test_half_precision_weights_are_half_of_fp32(measured):
    by_id = {m.variant.id: m for m in measured}
    fp32 = by_id["eager-fp32-bs1"].figures["weights"]
    for half in ("eager-bf16-bs1", "eager-fp16-bs1"):
        assert 0.5 <= by_id[half].figures["weights"] / fp32 <= 0.52


# -- a benchmark run enforces them -------------------------------------------------------------------------------

# Pinned to the CPU: these sub-sessions check CPU behaviour (skip reasons, RSS figures), on any machine.


@pytest.mark.one_stack("legacy")
def test_a_run_with_bark_budgets_fails_the_session_on_an_exceeded_budget(bench_pytester, monkeypatch):
    # One intra-op thread: the sub-session's workers must not fight over a small runner's cores.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    strict = bench_pytester.path / "strict.toml"
    strict.write_text(
        '["*"."*"."eager-bf16-*"]\nweights_ratio = 0.40\nwhy = "stricter than physics: must fail"\n'
        '["*"."*"."eager-fp32-*"]\npeak_memory_mb = 100000\n'
    )
    out = bench_pytester.path / "run.json"
    result = bench_pytester.runpytest_subprocess(
        "bench",
        *FAST,
        "--bark-variants",
        "baseline;bf16",
        "--bark-budgets",
        str(strict),
        f"--benchmark-json={out}",
        timeout=600,
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*barkbench memory budgets*",
            "ok: tiny cpu eager-fp32-bs1 peak_memory * MB <= allowed 100000.0 MB*",
            "BUDGET EXCEEDED: tiny cpu eager-bf16-bs1 weights 73.8 MB > allowed 57.3 MB "
            "(ratio 0.515 vs allowed 0.400 x baseline eager-fp32-bs1 143.4 MB)*strict.toml*",
            "1 of 2 budget check(s) failed: the session fails",
        ]
    )
    # The measurements are saved all the same.
    assert {b["params"]["bark_variant"] for b in json.loads(out.read_text())["benchmarks"]} == {
        "eager-fp32-bs1",
        "eager-bf16-bs1",
    }


def test_a_bad_budgets_option_fails_before_any_model_loads(bench_pytester):
    result = bench_pytester.runpytest_subprocess("bench", *FAST, "--bark-budgets", "nope.toml", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*budgets file nope.toml does not exist; pass an existing TOML file or 'default'*"])


# -- CUDA budgets from the H200 run (issue 24 item 7) ------------------------------------------------------------

DATA = Path(__file__).parent / "data"


def h200_verdicts(name: str) -> list[budgets.Verdict]:
    extra_infos = [b["extra_info"] for b in json.loads((DATA / name).read_text())["benchmarks"]]
    return budgets.check_extra_infos(extra_infos, budgets.load_budgets())


@pytest.mark.parametrize("name", ["h200-tiny.json", "h200-random-bark-small.json"])
def test_the_h200_figures_hold_the_cuda_budgets_they_set(name):
    verdicts = h200_verdicts(name)
    assert not [v.message for v in verdicts if v.status == "exceeded"]
    checked = {(v.measurement.variant.id, v.limit.metric, v.limit.kind) for v in verdicts if v.ok}
    if name == "h200-tiny.json":
        # The budgets written from these figures apply to them: tiny's fp16 peak ratio and model memory caps.
        assert {("eager-fp16-bs1", "peak_memory", "ratio"), ("eager-fp16-bs1", "model_memory", "mb")} <= checked
        assert {("eager-fp32-bs1", "model_memory", "mb"), ("sdpa-fp32-offload-bs1", "model_memory", "mb")} <= checked


def test_a_tiny_cuda_half_precision_path_that_stays_fp32_exceeds_its_model_memory_cap():
    fp32 = measurement(Variant(), device="cuda", model_memory=145.5, peak_memory=214.5)
    stuck = measurement(Variant(dtype="bf16"), device="cuda", model_memory=145.5, peak_memory=214.5)
    exceeded = {
        (v.limit.metric, v.limit.kind)
        for v in budgets.check([fp32, stuck], budgets.load_budgets())
        if v.measurement is stuck and v.status == "exceeded"
    }
    assert {("model_memory", "mb"), ("model_memory", "ratio"), ("peak_memory", "ratio")} <= exceeded


def test_an_offload_that_loads_onto_the_device_exceeds_the_offload_model_memory_cap():
    loaded = measurement(Variant(offload="cpu"), source="random:bark-small", device="cuda", model_memory=1681.0)
    [verdict] = [v for v in budgets.check([loaded], budgets.load_budgets()) if v.limit.metric == "model_memory"]
    assert verdict.status == "exceeded" and "allowed 5.0 MB" in verdict.message


def offload_verdict(peak_mb: float) -> budgets.Verdict:
    baseline = measurement(Variant(), source="random:bark-small", device="cuda", peak_memory=1897.0)
    offloaded = measurement(Variant(offload="cpu"), source="random:bark-small", device="cuda", peak_memory=peak_mb)
    verdicts = budgets.check([baseline, offloaded], budgets.load_budgets())
    [verdict] = [v for v in verdicts if v.measurement is offloaded and v.limit.metric == "peak_memory"]
    return verdict


def test_the_offload_budget_has_bounds_on_both_sides_the_lower_one_in_acceptance():
    """bark-small fp32 on the H200: baseline 1,897.0 MB, model memory 1,681.0 MB. A real offload holds the semantic
    sub-model (784.5 MB) and little else; the half-offloaded row measured 536.2 MB, below every upper limit."""
    from barkbench.results import acceptance

    floor_mb = acceptance.OFFLOAD_FLOOR * acceptance.LARGEST_SUB_MODEL["bark-small"][1] * 1681.0
    for peak, upper_ok, lower_ok in [(850.0, True, True), (536.2, True, False), (1500.0, False, True)]:
        assert offload_verdict(peak).ok is upper_ok, peak  # the budget: keeping the sub-models on the device fails
        assert (peak >= floor_mb) is lower_ok, peak  # acceptance's side: the half-offloaded peak fails
    # The upper limit is what the H200's figures give for keeping half of the offloadable weights on the device.
    assert offload_verdict(0.764 * 1897.0).status == "exceeded"
