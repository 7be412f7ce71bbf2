#!/usr/bin/env bash
# barkbench's entry points, each doing its own set-up:
#   ./dev.sh bench [pytest args...]        create .venv (current stack), run the benchmark suite (bench/)
#   ./dev.sh test  [pytest args...]        create .venv and .venv-legacy, lint (once), run tests/ on both stacks,
#                                          side by side (BARKBENCH_TEST_JOBS=1: one after the other)
#   ./dev.sh lint                          ruff check, ruff format --check, mypy src and lint-imports, on .venv
#   ./dev.sh test-current|test-legacy ...  the same on one stack
#   ./dev.sh bench-legacy [pytest args...] bench/ on the legacy stack (optimum's BetterTransformer runs there)
#   ./dev.sh gpu-acceptance                check barkbench on a CUDA GPU: .venv-gpu with the CUDA torch of
#                                          TORCH_CUDA_INDEX, then doctor, the tests on cuda, a short fixed-length
#                                          benchmark and `barkbench acceptance` (everything in gpu-acceptance/)
#   ./dev.sh gpu-acceptance-installed      the same in an existing CUDA python (GPU_PYTHON, default python3), for
#                                          offline boxes: pip install --no-deps --no-build-isolation -e . into it,
#                                          say which optional pieces are missing, run everything else
#   (both GPU modes: GPU_ACCEPTANCE_VARIANTS overrides the benchmark's --bark-variants, default
#    "blog-sdpa;modern;bs8;static-cache+compile" (bf16 comes with modern; static-cache+compile is the CUDA-graph
#    variant); GPU_ACCEPTANCE_OVERHEAD=0 leaves out the harness-overhead step (barkbench overhead --device cuda
#    --paired, about a minute); GPU_ACCEPTANCE_TESTS=0 leaves out the test step, the slowest, for a time-boxed run;
#    GPU_ACCEPTANCE_TEST_ARGS adds pytest arguments to the test step; GPU_ACCEPTANCE_TEST_TIMEOUT (seconds, or
#    timeout(1) units such as 4m) interrupts the test step then, as Ctrl-C would, so pytest still writes its junit
#    XML (tests.xml, every test's name and outcome); GPU_ACCEPTANCE_OUT names the output folder, default
#    gpu-acceptance/)
# An environment is (re)installed when it is missing or when pyproject.toml, its constraints file or TORCH_SPEC
# changed since it was set up (a stamp file in the environment records what it was built from); delete .venv*
# to start over. PYTHON picks the interpreter; TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) picks
# where torch comes from.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
# torch 2.13 is what the project is tested with; pip takes a local wheel where one is provided (find-links).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}

make_env() {  # make_env DIR EXTRA CONSTRAINTS
  local dir=$1 extra=$2 constraints=$3
  local stamp="$dir/.barkbench-installed"
  local want
  want=$( { cat pyproject.toml "$constraints"; echo "$TORCH_SPEC $TORCH_INDEX"; } | sha256sum | cut -c1-16)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  echo "barkbench: setting up $dir ($extra stack, $constraints)" >&2
  [[ -x $dir/bin/python ]] || "$PYTHON" -m venv "$dir"
  # A newer pip is welcome but not required (editable installs need pip >= 21.3, which venv ships).
  "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch first, on its own: the project's requirements then keep that build (CPU or CUDA) instead of PyPI's.
  "$dir/bin/python" -m pip install -q "$TORCH_SPEC" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
  "$dir/bin/python" -m pip install -q -c "$constraints" -e ".[$extra,test]"
  "$dir/bin/python" -m pip check >&2 || { echo "barkbench: $dir has conflicting requirements (pip check)" >&2; exit 1; }
  echo "$want" >"$stamp"
}

# The audio extra (WER and MOS scores) only here: the legacy stack skips those tests, which keeps CI shorter. The
# docs extra (MkDocs, for the documentation site .ci/run builds) only here too: one environment builds it.
current_env() { make_env .venv current,audio,docs constraints/current.txt; }
legacy_env() { make_env .venv-legacy legacy constraints/legacy.txt; }

# run_tests NAME VENV [pytest args...]: runs tests/ on one stack; returns pytest's exit status.
run_tests() {
  local name=$1 venv=$2
  shift 2
  echo "barkbench: tests on the $name stack ($("$venv/bin/python" -c \
    'import transformers; print("transformers", transformers.__version__)'))" >&2
  "$venv/bin/python" -m pytest tests/ "$@"
}

# lint: the static checks, once (they do not depend on the stack), the import contracts among them; returns non-zero
# when any fails.
lint() {
  local status=0
  echo "barkbench: ruff check, ruff format --check, mypy src, lint-imports" >&2
  .venv/bin/python -m ruff check src tests bench || status=1
  .venv/bin/python -m ruff format --check src tests bench || status=1
  .venv/bin/python -m mypy src || status=1
  .venv/bin/lint-imports --no-logo || status=1
  return "$status"
}

# gpu_acceptance PY: the acceptance run with the python PY (barkbench installed in it). Stops at once, with the
# reason, where torch cannot use a CUDA GPU.
require_cuda() {  # require_cuda PY: exit 1 with the reason unless torch in PY can use a CUDA GPU
  "$1" - <<'EOF' || exit 1
import sys, torch
if not (torch.version.cuda and torch.cuda.is_available()):
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    sys.exit(f"barkbench: gpu-acceptance needs a CUDA GPU: torch {torch.__version__} ({build} build) sees none "
             "(check nvidia-smi; on a GPU machine install a CUDA torch, e.g. TORCH_CUDA_INDEX=.../cu128)")
print(f"barkbench: gpu-acceptance on {torch.cuda.get_device_name(0)} "
      f"(torch {torch.__version__}, CUDA {torch.version.cuda})", file=sys.stderr)
EOF
}

gpu_acceptance() {
  local py=$1 out=${GPU_ACCEPTANCE_OUT:-gpu-acceptance} status=0
  require_cuda "$py"
  rm -rf "$out" && mkdir -p "$out"
  "$py" -m barkbench doctor | tee "$out/doctor.txt"
  "$py" -m barkbench doctor --json >"$out/doctor.json"
  local missing=() module
  for module in soundfile optimum flash_attn hypothesis; do
    "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" || missing+=("$module")
  done
  # Nothing is --ignore'd: a file that needs a missing package skips itself with the reason (pytest.importorskip),
  # so the junit XML and the summary say what did not run. Without hypothesis that includes test_equivalence.py,
  # the only CUDA numerics test: install hypothesis to run it.
  if ((${#missing[@]})); then
    echo "barkbench: not installed here: ${missing[*]} (soundfile: no WAVs; optimum: BetterTransformer rows" \
      "skipped; flash_attn: FA2 rows skipped; hypothesis: its property-test files skip themselves, the CUDA" \
      "numerics of test_equivalence.py among them); the rest runs" | tee "$out/missing.txt" >&2
  fi
  local bench=(bench/test_bark.py --bark-device cuda --bark-fixed-length --bark-semantic-tokens 64 --bark-rounds 3
    --bark-variants "${GPU_ACCEPTANCE_VARIANTS:-blog-sdpa;modern;bs8;static-cache+compile}" -p no:cacheprovider)
  local model
  for model in tiny random:bark-small; do
    "$py" -m pytest "${bench[@]}" --bark-model "$model" --benchmark-json="$out/${model//:/-}.json" \
      2>&1 | tee -a "$out/bench.txt" || status=1
  done
  "$py" -m barkbench acceptance "$out/tiny.json" "$out/random-bark-small.json" --summary "$out/summary.md" || status=1
  # The harness's own cost on the GPU (CUDA events, allocator and NVML readings, the pipe), paired in each worker
  # so that process-to-process differences cancel: about a minute on the tiny model. GPU_ACCEPTANCE_OVERHEAD=0 skips.
  if [[ ${GPU_ACCEPTANCE_OVERHEAD:-1} != 0 ]]; then
    "$py" -m barkbench overhead --device cuda --paired --model tiny --processes 2 --rounds 10 \
      --json "$out/overhead.json" 2>&1 | tee "$out/overhead.txt" || status=1
  fi
  # The tests last: the slowest step (each sub-session starts CUDA workers), and the benchmark's verdicts above
  # are what a user came for. On an H200 the benchmark took about 13 s per variant, most of it the worker's start.
  if [[ ${GPU_ACCEPTANCE_TESTS:-1} == 0 ]]; then
    echo "barkbench: the tests were left out (GPU_ACCEPTANCE_TESTS=0)" | tee "$out/tests.txt" >&2
  else
    # GPU_ACCEPTANCE_TEST_ARGS: more pytest arguments, e.g. "-n 8 -v" (pytest-xdist, one line per test as it
    # ends, so a run cut short still names its failures).
    local extra=() deadline=()
    read -r -a extra <<<"${GPU_ACCEPTANCE_TEST_ARGS:-}"
    # SIGINT, not SIGTERM: pytest ends an interrupted session normally and writes the junit XML of what ran.
    [[ -z ${GPU_ACCEPTANCE_TEST_TIMEOUT:-} ]] || deadline=(timeout --signal=INT --kill-after=60 "$GPU_ACCEPTANCE_TEST_TIMEOUT")
    "${deadline[@]}" "$py" -m pytest tests/ --bark-device cuda -p no:cacheprovider --junitxml="$out/tests.xml" \
      "${extra[@]}" 2>&1 | tee "$out/tests.txt" || status=1
  fi
  if ((status)); then echo "barkbench: gpu-acceptance FAILED; see $out/" >&2; else echo "barkbench: gpu-acceptance passed; see $out/" >&2; fi
  exit "$status"
}

cmd=${1:-}
shift || true
case "$cmd" in
  bench)
    current_env
    exec .venv/bin/python -m pytest bench/ --benchmark-autosave "$@"
    ;;
  bench-legacy)
    legacy_env
    exec .venv-legacy/bin/python -m pytest bench/ --benchmark-autosave "$@"
    ;;
  test)
    if [[ ${BARKBENCH_TEST_JOBS:-2} == 1 ]]; then
      current_env
      legacy_env
    else
      # The two environments install side by side too (mostly waiting on disk and unpacking): pip's cache is
      # safe to share, each writes its own folder.
      legacy_env &
      legacy_setup=$!
      current_env
      wait "$legacy_setup"
    fi
    # The lint and both stacks run even when one fails, so one CI run shows every failure; the status is
    # non-zero when any failed.
    status=0
    lint || status=$?
    if [[ ${BARKBENCH_TEST_JOBS:-2} == 1 ]]; then
      run_tests current .venv "$@" || { current=$?; [[ $status -ne 0 ]] || status=$current; }
      run_tests legacy .venv-legacy "$@" || { legacy=$?; [[ $status -ne 0 ]] || status=$legacy; }
    else
      # Both stacks at once (BARKBENCH_TEST_JOBS=1 runs them one after the other): most of the suite's time is
      # spent starting Python processes and importing torch, one core each, so two stacks side by side take about
      # half the time on 2 cores. Each gets one torch thread, so the two never oversubscribe the cores (OpenMP
      # threads spinning against each other made a 2-thread run 8x slower beside another). The tests assert
      # behaviour, never speed. The legacy stack's output is shown whole after the current stack's.
      legacy_log=$(mktemp "${TMPDIR:-/tmp}/barkbench-legacy-tests.XXXXXX")
      OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} run_tests legacy .venv-legacy "$@" >"$legacy_log" 2>&1 &
      legacy_pid=$!
      trap 'kill "$legacy_pid" 2>/dev/null || true' EXIT INT TERM
      OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} run_tests current .venv "$@" \
        || { current=$?; [[ $status -ne 0 ]] || status=$current; }
      wait "$legacy_pid" || { legacy=$?; [[ $status -ne 0 ]] || status=$legacy; }
      trap - EXIT INT TERM
      echo "barkbench: the legacy stack's tests (run beside the current stack's):" >&2
      cat "$legacy_log"
      rm -f "$legacy_log"
    fi
    if [[ $status -ne 0 ]]; then echo "barkbench: tests failed (exit $status); see above" >&2; fi
    exit "$status"
    ;;
  lint)
    current_env
    lint
    ;;
  test-current)
    current_env
    run_tests current .venv "$@"
    ;;
  test-legacy)
    legacy_env
    run_tests legacy .venv-legacy "$@"
    ;;
  gpu-acceptance)
    # Before anything is installed: no GPU driver, no point downloading a CUDA torch.
    if ! nvidia-smi -L >/dev/null 2>&1; then
      echo "barkbench: gpu-acceptance needs a CUDA GPU: nvidia-smi finds none on this machine; run it on a GPU" \
        "machine (or ./dev.sh gpu-acceptance-installed in a python that already has a CUDA torch)" >&2
      exit 1
    fi
    # Its own environment, with the CUDA build named: TORCH_SPEC alone can resolve to a +cpu wheel that pip
    # ranks higher, and .venv (the CPU development stack) stays as it is.
    TORCH_INDEX=${TORCH_CUDA_INDEX:-https://download.pytorch.org/whl/cu128}
    make_env .venv-gpu current constraints/current.txt
    gpu_acceptance .venv-gpu/bin/python
    ;;
  gpu-acceptance-installed)
    py=${GPU_PYTHON:-python3}
    require_cuda "$py"
    # No downloads: barkbench alone goes into the python that already has torch (CUDA), transformers and the rest.
    "$py" -m pip install -q --no-deps --no-build-isolation -e .
    gpu_acceptance "$py"
    ;;
  *)
    echo "usage: ./dev.sh bench|bench-legacy|test|test-current|test-legacy|lint|gpu-acceptance|gpu-acceptance-installed" \
      "[pytest args...]" >&2
    exit 2
    ;;
esac
