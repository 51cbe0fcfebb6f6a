#!/usr/bin/env bash
# One script for a lent GPU machine: the test suite on CUDA, then the model, LRN, loader and
# end-to-end training benchmarks. It uses the machine's own python3 with this tree on
# PYTHONPATH (the lent machine has torch, torchvision, pytest, safetensors and onnx and no
# network): it never builds a virtual environment or installs torch.
# Writes everything to ${OUT:-gpu_check_out}/ (results.txt plus one JSON per benchmark).
# On a machine without CUDA it runs as a dry run (tiny sizes) so it keeps working.
# Usage: bash benchmarks/gpu_check.sh      (about 6-8 minutes on one H100)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
# the machine's python3 when it has torch (a lent GPU machine), else this checkout's .venv
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if python3 -c 'import torch' 2>/dev/null; then py=python3
  elif [ -x .venv/bin/python ]; then py=.venv/bin/python
  else echo "gpu_check: no python with torch (set PYTHON=...)" >&2; exit 1; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  device=cuda; batch=256; reps=5; lrn_shape=256,96,55,55; tests=tests; images=1536; workers=8
  train_args=(--device cuda --images 5120 --batch-size 256 --workers 8 --steps 30 --skip 10
              --rounds 1 --pipelines examples,ours-paper-gpu,ours-torchvision-gpu,ours-paper)
else
  device=cpu; batch=4; reps=1; lrn_shape=4,96,55,55; tests=tests/test_device.py; images=128; workers=2
  train_args=(--quick)
  echo "no CUDA device: dry run with tiny sizes" | tee "$out/results.txt"
fi
{
  echo "== $(date -u) device=$device"
  $py -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'
  echo "== tests (ALEXNET_TEST_DEVICE=$device)"
  ALEXNET_TEST_DEVICE=$device timeout 240 $py -m pytest -q -p no:cacheprovider "$tests" 2>&1 | tail -15
  echo "== bench_lrn"
  timeout 60 $py benchmarks/bench_lrn.py --device "$device" --shape "$lrn_shape" --reps "$reps" | tee "$out/bench_lrn.txt"
  echo "== bench_model"
  timeout 180 $py benchmarks/bench_model.py --device "$device" --batch-size "$batch" --reps "$reps" --steps 3 | tee "$out/bench_model.txt"
  echo "== bench_loader"
  timeout 150 $py benchmarks/bench_loader.py --device "$device" --images "$images" --workers "$workers" --rounds 1 | tee "$out/bench_loader.txt"
  echo "== bench_train (end to end: images/s, data stall, GPU memory)"
  timeout 240 $py benchmarks/bench_train.py "${train_args[@]}" | tee "$out/bench_train.txt"
} 2>&1 | tee -a "$out/results.txt"
for b in bench_model bench_lrn bench_loader bench_train; do
  tail -n 1 "$out/$b.txt" > "$out/$b.json" 2>/dev/null
done
echo "results in $out/"
