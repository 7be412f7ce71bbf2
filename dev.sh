#!/usr/bin/env bash
# barkbench's entry points, each doing its own set-up:
#   ./dev.sh bench [pytest args...]        create .venv (current stack), run the benchmark suite (bench/)
#   ./dev.sh test  [pytest args...]        create .venv and .venv-legacy, lint (once), run tests/ on both stacks
#   ./dev.sh lint                          ruff check, ruff format --check and mypy src, on .venv
#   ./dev.sh test-current|test-legacy ...  the same on one stack
#   ./dev.sh bench-legacy [pytest args...] bench/ on the legacy stack (optimum's BetterTransformer runs there)
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

current_env() { make_env .venv current constraints/current.txt; }
legacy_env() { make_env .venv-legacy legacy constraints/legacy.txt; }

# run_tests NAME VENV [pytest args...]: runs tests/ on one stack; returns pytest's exit status.
run_tests() {
  local name=$1 venv=$2
  shift 2
  echo "barkbench: tests on the $name stack ($("$venv/bin/python" -c \
    'import transformers; print("transformers", transformers.__version__)'))" >&2
  "$venv/bin/python" -m pytest tests/ "$@"
}

# lint: the static checks, once (they do not depend on the stack); returns non-zero when any fails.
lint() {
  local status=0
  echo "barkbench: ruff check, ruff format --check, mypy src" >&2
  .venv/bin/python -m ruff check src tests bench || status=1
  .venv/bin/python -m ruff format --check src tests bench || status=1
  .venv/bin/python -m mypy src || status=1
  return "$status"
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
    current_env
    legacy_env
    # The lint and both stacks run even when one fails, so one CI run shows every failure; the status is
    # non-zero when any failed.
    status=0
    lint || status=$?
    run_tests current .venv "$@" || { current=$?; [[ $status -ne 0 ]] || status=$current; }
    run_tests legacy .venv-legacy "$@" || { legacy=$?; [[ $status -ne 0 ]] || status=$legacy; }
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
  *)
    echo "usage: ./dev.sh bench|bench-legacy|test|test-current|test-legacy|lint [pytest args...]" >&2
    exit 2
    ;;
esac
