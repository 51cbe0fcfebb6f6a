#!/usr/bin/env bash
# One command for a lent GPU machine (one H100/H200): at most 6 minutes in all, so that a rerun
# fits a 15-minute window. Stages, the most valuable first, each under its own hard timeout
# (SIGINT, then SIGKILL 5 s later), each writing its own result file as it ends, so that one
# failing or killed stage loses nothing else:
#   info           results.txt only: python, torch, CUDA, cuDNN, Triton, nvidia-smi
#   smoke          smoke.json: 3 CUDA training steps of the paper model, --amp --channels-last,
#                  on synthetic packed data made on the spot (benchmarks/smoke_train.py)
#   smoke_compile  smoke_compile.json: the same with --compile (compile time, graph breaks);
#                  same shapes as bench_train's compiled pipeline, which then finds the cache
#   smoke_jpeg     smoke_jpeg.json: the smoke training from a JPEG-packed set (on CUDA the
#                  batches are decoded by nvJPEG on the loader's decode stream)
#   bench_train    bench_train.json: end to end from a packed dataset, images/s, data stall,
#                  peak GPU memory, compile time apart (the compiled pipeline last: it may
#                  run out of time); one failing pipeline loses only itself
#   bench_model    bench_model.json: paper vs torchvision, fp32 / TF32 / bf16, channels-last
#   bench_lrn      bench_lrn.json: LRN forward+backward, bf16 channels-last, conv1's shape
#   tests          tests.xml (junit): the tests that mean something on one GPU: the device
#                  comparisons on CUDA with TF32 off, the Triton LRN compiled on the card,
#                  the loader to CUDA, the LRN (pytest output in full in results.txt)
# $OUT (default gpu_check_out) gets 8 files, no folders: results.txt (every stage's
# output, unbuffered, and a status line per stage) plus the files above. Every JSON has a
# "stage" entry: rc, timed_out, wall_s, ok; a stage that left no valid file gets a stub.
# It uses the machine's own python (a lent machine: python3 with torch, no network; it never
# builds a virtual environment or installs anything), PYTHONPATH=src. Without CUDA it is a dry
# run with tiny sizes (the checkout's .venv; under 2 minutes on 2 cores, compile skipped) that
# writes the same files. Usage: OUT=dir bash benchmarks/gpu_check.sh
set -uo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
case "$out" in /*) ;; *) [ -n "${OUT:-}" ] && out="$caller/$out" ;; esac
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
results="$out/results.txt"
: >"$results"
rm -f "$out"/{smoke,smoke_compile,smoke_jpeg,bench_train,bench_model,bench_lrn}.json \
  "$out/tests.xml"

cat >"$work/info.py" <<'EOF'
# the machine, then exit status 0 with CUDA, 1 without
import platform, sys, torch
print("python", sys.version.split()[0], platform.platform(), "|", sys.executable)
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN",
      torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"capability {p.major}.{p.minor}, {torch.cuda.device_count()} device(s)")
sys.exit(0 if torch.cuda.is_available() else 1)
EOF

echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) python=$py" | tee -a "$results"
timeout -k 5 60 "$py" "$work/info.py" 2>&1 | tee -a "$results"
if [ "${PIPESTATUS[0]}" = 0 ]; then
  device=cuda budget=360
  t_smoke=45 t_compile=80 t_jpeg=30 t_train=85 t_model=40 t_lrn=25 t_tests=45
  smoke=(--device cuda --batch-size 256 --count 768 --image-size 256 --workers 8)
  smoke_model=(--model paper --recipe paper)
  train=(--device cuda --images 2048 --batch-size 256 --workers 8 --steps 16 --skip 8
         --log-every 8 --rounds 1 --pipeline-timeout 45
         --pipelines ours-paper-amp-cl,examples,ours-torchvision-amp-cl,ours-paper-gpu)
  model=(--device cuda --batch-size 256 --reps 3 --steps 3 --models paper,torchvision
         --settings fp32,tf32,tf32+cl,bf16+cl)
  lrn=(--device cuda --dtype bfloat16 --channels-last --shape 256,96,55,55 --reps 20)
  tests=(tests/test_device.py tests/test_lrn_triton.py tests/test_data_loader.py
         tests/test_lrn.py)
else
  device=cpu budget=110
  t_smoke=30 t_compile=5 t_jpeg=20 t_train=45 t_model=25 t_lrn=10 t_tests=25
  smoke=(--device cpu --batch-size 4 --count 8 --image-size 32 --workers 1)
  smoke_model=(--model small --recipe fast)
  train=(--quick --pipelines ours-small --pipeline-timeout 40)
  model=(--device cpu --batch-size 1 --reps 1 --steps 1 --models paper,torchvision
         --settings fp32)
  lrn=(--device cpu --dtype bfloat16 --channels-last --shape 2,96,13,13 --reps 1)
  tests=(tests/test_device.py)
fi
budget=${GPU_CHECK_BUDGET:-$budget}  # e.g. less for a rerun in what is left of a window
deadline=$budget  # SECONDS counts from the start of the script

log() { echo "$*" | tee -a "$results"; }

# finish NAME FILE RC WALL LIMIT: put the stage's status into FILE (a stub if it left none)
finish() {
  rm -f "$out"/*.tmp
  "$py" - "$@" <<'EOF' 2>&1 | tee -a "$results"
import json, sys
from pathlib import Path
name, file, rc, wall, limit = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:6])
timed_out = rc in (124, 137)
status = {"name": name, "rc": rc, "timed_out": timed_out, "wall_s": wall, "limit_s": limit,
          "ok": rc == 0}
if rc == -1:
    status["skipped"] = "out of time: the script's budget was spent"
if file.suffix == ".xml":
    if not file.is_file():
        msg = f"{name}: no junit file (rc {rc}{', timed out' if timed_out else ''})"
        file.write_text(f'<?xml version="1.0"?>\n<testsuites><testsuite name="gpu_check" '
                        f'tests="1" errors="1"><testcase name="{name}"><error message="{msg}"/>'
                        f"</testcase></testsuite></testsuites>\n")
else:
    try:
        data = json.loads(file.read_text())
        data = data if isinstance(data, dict) else {"result": data}
    except (OSError, ValueError) as e:
        data = {"error": f"no valid result file: {e}"}
    data["stage"] = status
    file.write_text(json.dumps(data, indent=1) + "\n")
state = "ok" if status["ok"] else "SKIPPED" if rc == -1 else "TIMED OUT" if timed_out else "FAILED"
print(f"== stage {name}: {state} (rc {rc}, {wall} s of {limit} s) -> {file.name}")
EOF
}

# stage NAME LIMIT FILE CMD...: CMD under min(LIMIT, what is left of the budget) seconds
stage() {
  local name=$1 limit=$2 file=$3 t0=$SECONDS rc
  shift 3
  local left=$((deadline - SECONDS))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 3 ]; then
    log "== $name: skipped, the ${budget} s budget is spent"
    [ -n "$file" ] && finish "$name" "$file" -1 0 0
    return
  fi
  log "== $name (limit ${limit} s, $(date -u +%H:%M:%S)): $*"
  timeout -s INT -k 5 "$limit" "$@" 2>&1 | tee -a "$results"
  rc=${PIPESTATUS[0]}
  [ -n "$file" ] && finish "$name" "$file" "$rc" $((SECONDS - t0)) "$limit"
  [ -z "$file" ] && log "== stage $name: rc $rc, $((SECONDS - t0)) s"
}

log "device=$device, budget ${budget} s"
[ "$device" = cpu ] && log "no CUDA device: dry run with tiny sizes (same stages, same files)"
if command -v nvidia-smi >/dev/null; then
  stage nvidia-smi 5 "" nvidia-smi --format=csv \
    --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit
fi
syn="$work/synthetic"
stage smoke "$t_smoke" "$out/smoke.json" "$py" benchmarks/smoke_train.py --data "$syn" \
  --out-dir "$work/smoke" --json "$out/smoke.json" "${smoke[@]}" -- "${smoke_model[@]}" \
  --amp --channels-last
if [ "$device" = cuda ]; then
  stage smoke_compile "$t_compile" "$out/smoke_compile.json" "$py" benchmarks/smoke_train.py \
    --data "$syn" --out-dir "$work/compile" --json "$out/smoke_compile.json" "${smoke[@]}" \
    -- "${smoke_model[@]}" --amp --channels-last --compile
else
  echo '{"skipped": "dry run on a CPU: compiling takes minutes on 2 cores"}' \
    >"$out/smoke_compile.json"
  stage smoke_compile "$t_compile" "$out/smoke_compile.json" true
fi
stage smoke_jpeg "$t_jpeg" "$out/smoke_jpeg.json" "$py" benchmarks/smoke_train.py \
  --data "$work/synthetic-jpeg" --encoding jpeg --out-dir "$work/smoke-jpeg" \
  --json "$out/smoke_jpeg.json" "${smoke[@]}" -- "${smoke_model[@]}" --amp --channels-last
stage bench_train "$t_train" "$out/bench_train.json" "$py" benchmarks/bench_train.py \
  "${train[@]}" --json "$out/bench_train.json"
stage bench_model "$t_model" "$out/bench_model.json" "$py" benchmarks/bench_model.py \
  "${model[@]}" --json "$out/bench_model.json"
stage bench_lrn "$t_lrn" "$out/bench_lrn.json" "$py" benchmarks/bench_lrn.py "${lrn[@]}" \
  --json "$out/bench_lrn.json"
stage tests "$t_tests" "$out/tests.xml" env ALEXNET_TEST_DEVICE="$device" "$py" -m pytest -q \
  -p no:cacheprovider -o addopts= -m "not slow" -ra --junitxml="$out/tests.xml" "${tests[@]}"
summary="$(grep '^== stage' "$results")"
log "gpu_check done in $SECONDS s; results in $out/: $(ls "$out" | tr '\n' ' ')"
log "$summary"
# exit status 0 only when every stage ended ok
! grep -v ': ok (' <<<"$summary" | grep -q '^== stage'
