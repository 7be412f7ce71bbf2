#!/usr/bin/env bash
# barkbench's two entry points, each doing its own set-up:
#   ./dev.sh bench [pytest args...]  create .venv (current stack), run the benchmark suite (bench/)
#   ./dev.sh test  [pytest args...]  create .venv and .venv-legacy, run tests/ in both stacks
# Environments are created once and reused; delete .venv* to start over. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
# torch 2.13 is what the project is tested with; pip takes a local wheel where one is provided (find-links).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

make_env() {  # make_env DIR EXTRA CONSTRAINTS
  local dir=$1 extra=$2 constraints=$3
  local stamp="$dir/.barkbench-installed"
  local want
  want=$(cat pyproject.toml "$constraints" | sha256sum | cut -c1-16)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  echo "barkbench: setting up $dir ($extra stack)" >&2
  [[ -x $dir/bin/python ]] || "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$dir/bin/python" -m pip install -q "$TORCH_SPEC"
  "$dir/bin/python" -m pip install -q -c "$constraints" -e ".[$extra,test]"
  echo "$want" >"$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
  bench)
    make_env .venv current constraints/current.txt
    exec .venv/bin/python -m pytest bench/ --benchmark-autosave "$@"
    ;;
  test)
    make_env .venv current constraints/current.txt
    make_env .venv-legacy legacy constraints/legacy.txt
    echo "barkbench: tests on the current stack (transformers 5.x)" >&2
    .venv/bin/python -m pytest tests/ "$@"
    echo "barkbench: tests on the legacy stack (transformers 4.48 + optimum BetterTransformer)" >&2
    .venv-legacy/bin/python -m pytest tests/ "$@"
    ;;
  *)
    echo "usage: ./dev.sh bench|test [pytest args...]" >&2
    exit 2
    ;;
esac
