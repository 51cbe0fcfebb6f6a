#!/usr/bin/env bash
# One script for a lent GPU machine: the test suite on CUDA, then the model, LRN and loader
# benchmarks.
# Writes everything to ${OUT:-gpu_check_out}/ (results.txt plus one JSON per benchmark).
# On a machine without CUDA it runs as a dry run (tiny sizes) so it keeps working.
# Usage: bash benchmarks/gpu_check.sh      (about 5-7 minutes on one H100 including set-up)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
py=.venv/bin/python
[ -x "$py" ] || { python3 -m venv .venv && .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 && .venv/bin/pip install -q -e '.[dev,viz,data,export]'; }
if $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  device=cuda; batch=256; reps=5; lrn_shape=256,96,55,55; tests=tests; images=1536; workers=8
else
  device=cpu; batch=4; reps=1; lrn_shape=4,96,55,55; tests=tests/test_device.py; images=128; workers=2
  echo "no CUDA device: dry run with tiny sizes" | tee "$out/results.txt"
fi
{
  echo "== $(date -u) device=$device"
  $py -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")'
  echo "== tests (ALEXNET_TEST_DEVICE=$device)"
  ALEXNET_TEST_DEVICE=$device timeout 240 .venv/bin/pytest -q -p no:cacheprovider "$tests" 2>&1 | tail -15
  echo "== bench_lrn"
  timeout 60 $py benchmarks/bench_lrn.py --device "$device" --shape "$lrn_shape" --reps "$reps" | tee "$out/bench_lrn.txt"
  echo "== bench_model"
  timeout 180 $py benchmarks/bench_model.py --device "$device" --batch-size "$batch" --reps "$reps" --steps 3 | tee "$out/bench_model.txt"
  echo "== bench_loader"
  timeout 150 $py benchmarks/bench_loader.py --device "$device" --images "$images" --workers "$workers" --rounds 1 | tee "$out/bench_loader.txt"
} 2>&1 | tee -a "$out/results.txt"
tail -n 1 "$out/bench_model.txt" > "$out/bench_model.json" 2>/dev/null
tail -n 1 "$out/bench_lrn.txt" > "$out/bench_lrn.json" 2>/dev/null
tail -n 1 "$out/bench_loader.txt" > "$out/bench_loader.json" 2>/dev/null
echo "results in $out/"
