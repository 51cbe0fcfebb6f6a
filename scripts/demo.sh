#!/usr/bin/env bash
# `make demo`: the main job on real data, end to end, on this machine's CPU (or GPU if any).
#   1. the paper's network, layer by layer (alexnet summary)
#   2. get Fashion-MNIST (apt package dataset-fashion-mnist) and pack it (alexnet prepare)
#   3. train the `small` model with the `fast` recipe (alexnet train)
#   4. evaluate the weights (alexnet eval) and print a results table
#   5. the pictures: conv1 kernels, curves, retrieval, predictions, RUN/report.md (alexnet report)
# Environment knobs:
#   FMNIST_DIR=DIR        the four Fashion-MNIST *.gz idx files (default /usr/share/datasets/fashion-mnist)
#   DEMO_DATA=DIR         use this packed dataset (from `alexnet prepare`) instead of Fashion-MNIST
#   DEMO_DIR=DIR          where data and runs go (default runs/demo)
#   DEMO_TRAIN_ARGS=...   extra flags for `alexnet train` (e.g. "--epochs 2")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
alexnet() { "$PY" -m alexnet "$@"; }
WORK=${DEMO_DIR:-runs/demo}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
DATA=${DEMO_DATA:-}
mkdir -p "$WORK"
T0=$(date +%s)

echo "== 1/5  the paper's network (Krizhevsky et al. 2012, Fig. 2)"
alexnet summary --model paper

have_fmnist() { [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] && [ -f "$FMNIST_DIR/t10k-labels-idx1-ubyte.gz" ]; }
if [ -z "$DATA" ]; then
  echo "== 2/5  Fashion-MNIST"
  if ! have_fmnist && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing dataset-fashion-mnist with apt-get"
    apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get install -y dataset-fashion-mnist >/dev/null; } || true
  fi
  if ! have_fmnist; then
    cat >&2 <<MSG
demo: Fashion-MNIST not found in $FMNIST_DIR.
  Get it one of these ways, then run \`make demo\` again:
  - as root on Debian/Ubuntu: apt-get install dataset-fashion-mnist
  - download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
    t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist (data/fashion)
    into a directory and run: FMNIST_DIR=that/directory make demo
  - or use other data: alexnet prepare SRC DIR, then DEMO_DATA=DIR make demo
MSG
    exit 1
  fi
  DATA=$WORK/fashion-mnist
  if [ -f "$DATA/header.json" ]; then
    echo "already packed: $DATA"
  else
    alexnet prepare "$FMNIST_DIR" "$DATA"
  fi
fi

RUN=$WORK/run-$(date +%Y%m%d-%H%M%S)
echo "== 3/5  training small with the fast recipe -> $RUN"
# shellcheck disable=SC2086
alexnet train --data "$DATA" --model small --recipe fast --output-dir "$RUN" ${DEMO_TRAIN_ARGS:-}

echo "== 4/5  evaluation"
alexnet eval --data "$DATA" --weights "$RUN/weights.safetensors" --crops 1 --json >"$RUN/eval-1crop.json"
alexnet eval --data "$DATA" --weights "$RUN/weights.safetensors" --crops 2 --json \
  --per-class --confusion "$RUN/confusion.png" >"$RUN/eval-2crop.json"

echo "== 5/5  pictures and report"
alexnet report "$RUN" --data "$DATA"

"$PY" - "$RUN" "$(( $(date +%s) - T0 ))" <<'PYEOF'
import json, sys
from pathlib import Path

run, seconds = Path(sys.argv[1]), int(sys.argv[2])
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
print()
print("epoch    lr      train loss  val top-1 err  val top-5 err  images/s  time (s)")
for r in rows:
    print(f"{r['epoch']:>5}  {r['lr']:<8.4g}  {r['train_loss']:>10.4f}  "
          f"{100 * r['val_top1_error']:>11.2f} %  {100 * r['val_top5_error']:>11.2f} %  "
          f"{r['images_per_sec']:>8.0f}  {r['time']:>8.1f}")
print()
print("test set                       accuracy  top-1 err  top-5 err   loss")
for name, crops in (("eval-1crop.json", "centre crop"), ("eval-2crop.json", "centre + mirror")):
    e = json.loads((run / name).read_text())
    print(f"{crops:<22} ({e['images']:>5})  {1 - e['top1_error']:.4f}   "
          f"{100 * e['top1_error']:>6.2f} %  {100 * e['top5_error']:>6.2f} %  {e['loss']:.4f}")
print()
print(f"run directory: {run}  (weights.safetensors, metrics.jsonl, confusion.png, TensorBoard)")
print(f"report:        {run / 'report.md'}  (kernels.png, curves.png, neighbours.png, predictions.png)")
print(f"demo wall time: {seconds // 60} min {seconds % 60} s")
PYEOF
