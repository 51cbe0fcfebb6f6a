#!/usr/bin/env bash
# `make experiments`: the quick budget of every paper experiment (alexnet reproduce) on
# Fashion-MNIST, each resumable (rerun after an interruption: finished runs are reused).
# Environment knobs:
#   FMNIST_DIR=DIR      the four Fashion-MNIST *.gz idx files (default /usr/share/datasets/fashion-mnist)
#   EXP_DATA=DIR        use this packed dataset instead (a colour one also runs `towers`)
#   EXP_DIR=DIR         where data and results go (default runs/experiments)
#   EXP_ARGS=...        extra flags for every `alexnet reproduce` (e.g. "--seeds 5",
#                       "--budget full", "--jobs 2")
# Results go to EXP_DIR/reproduce/NAME-BUDGET[-paper], the command's own default names, so a
# `--budget full` call never lands on the runs of a quick one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # absolute: the experiments run in WORK
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
alexnet() { "$PY" -m alexnet "$@"; }
WORK=${EXP_DIR:-runs/experiments}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
DATA=${EXP_DATA:-}
if [ -z "$DATA" ]; then
  if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get install -y dataset-fashion-mnist >/dev/null; } || true
  fi
  if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    echo "experiments: Fashion-MNIST not found in $FMNIST_DIR (apt-get install dataset-fashion-mnist," \
         "or FMNIST_DIR=DIR, or EXP_DATA=a packed dataset)" >&2
    exit 1
  fi
  DATA=$WORK/fashion-mnist
  [ -f "$DATA/header.json" ] || alexnet prepare "$FMNIST_DIR" "$DATA" --no-progress
fi
DATA=$(cd "$DATA" && pwd)
T0=$(date +%s)
for name in relu-tanh ablations depth retrieval paper-net towers; do
  echo "== alexnet reproduce $name"
  # towers needs colour images: on a grayscale dataset it says so in one line and is skipped
  (cd "$WORK" && alexnet reproduce "$name" --data "$DATA" ${EXP_ARGS:-}) \
    || echo "(reproduce $name did not finish; rerun to resume)"
done
echo "== all experiments: $(( $(date +%s) - T0 )) s; results under $WORK/reproduce/*/table.md"
