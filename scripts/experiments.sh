#!/usr/bin/env bash
# `make experiments`: the quick budget of every paper experiment (alexnet reproduce) on
# Fashion-MNIST, each resumable (rerun after an interruption: finished runs are reused).
# Environment knobs:
#   FMNIST_DIR=DIR      the four Fashion-MNIST *.gz idx files (default /usr/share/datasets/fashion-mnist)
#   EXP_DATA=DIR        use this packed dataset instead (a colour one also runs `towers`)
#   EXP_DIR=DIR         where data and results go (default runs/experiments)
#   EXP_ARGS=...        extra flags for every `alexnet reproduce` (e.g. "--seeds 5")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
alexnet() { "$PY" -m alexnet "$@"; }
WORK=${EXP_DIR:-runs/experiments}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
DATA=${EXP_DATA:-}
mkdir -p "$WORK"
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
T0=$(date +%s)
for name in relu-tanh ablations depth retrieval paper-net towers; do
  echo "== alexnet reproduce $name"
  # towers needs colour images: on a grayscale dataset it says so in one line and is skipped
  alexnet reproduce "$name" --data "$DATA" --output-dir "$WORK/$name" ${EXP_ARGS:-} \
    || echo "(reproduce $name did not finish; rerun to resume)"
done
echo "== all experiments: $(( $(date +%s) - T0 )) s; results under $WORK/*/table.md"
