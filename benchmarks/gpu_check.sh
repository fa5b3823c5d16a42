#!/usr/bin/env bash
# Validates and times the CUDA kernels on a GPU machine, in under 8 minutes:
#   1. builds the extension with CUDA in place,
#   2. runs the CUDA tests (CUDA against CPU and the reference),
#   3. runs compute-sanitizer memcheck on a small case (when available),
#   4. trains the demo's stage 1 in bf16 and fp32, with the kernels and with the reference ops,
#      and reports where the loss stops being finite (benchmarks/gpu_train_check.py),
#   5. runs the GPU kernel benchmarks,
# and writes full logs plus a Markdown summary to OUTDIR.
#
#   bash benchmarks/gpu_check.sh OUTDIR              # on the GPU machine
#   bash benchmarks/gpu_check.sh OUTDIR --cpu-parts  # here: the same steps that need no GPU
set -uo pipefail
out="${1:?usage: gpu_check.sh OUTDIR [--cpu-parts]}"
mode="${2:-gpu}"
python="${PYTHON:-$(command -v python || command -v python3)}"
mkdir -p "$out"
summary="$out/summary.md"
failures=0

step() {  # step NAME TIMEOUT COMMAND...: runs with a time limit, logs to OUTDIR/NAME.log
  local name="$1" limit="$2"
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || failures=$((failures + 1))
  echo "| $name | $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") | $((SECONDS - started)) s |" >>"$summary"
  return 0
}

{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo '```'
  (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")
  "$python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  echo '```'
  echo
  echo "| step | result | time |"
  echo "|---|---|---|"
} >"$summary"

if [ "$mode" = "--cpu-parts" ]; then
  step build 600 env EAGER_EXT_CUDA=0 "$python" -m pip install -q --no-build-isolation --no-deps -e .
  step cuda_tests 300 "$python" -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py
  step kernel_bench 600 "$python" benchmarks/bench_cuda.py --device cpu --quick
else
  export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
  # The system compiler: by default the build on the H200 image picked up a GCC under /opt/gcc
  # that links parts of its own libstdc++ into the extension, and that copy crashed (SIGSEGV)
  # whenever an error message formatted a number.
  step build 300 env EAGER_EXT_CUDA=1 MAX_JOBS=16 CC=gcc CXX=g++ LDSHARED="g++ -shared" \
    LDCXXSHARED="g++ -shared" "$python" -m pip install -q --no-build-isolation --no-deps -e .
  step cuda_tests 180 "$python" -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py
  if command -v compute-sanitizer >/dev/null || [ -x "$CUDA_HOME/bin/compute-sanitizer" ]; then
    sanitizer="$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")"
    step memcheck 120 "$sanitizer" --tool memcheck --error-exitcode 1 "$python" benchmarks/cuda_smoke.py
  else
    echo "| memcheck | skipped: compute-sanitizer not found | - |" >>"$summary"
  fi
  step train_check 300 "$python" benchmarks/gpu_train_check.py "$(mktemp -d)"
  step kernel_bench 240 "$python" benchmarks/bench_cuda.py --device cuda
fi

{
  echo
  echo "## Test results"
  echo
  echo '```'
  tail -n 5 "$out/cuda_tests.log" 2>/dev/null
  echo '```'
  echo
  echo "## Training check"
  echo
  grep '^|' "$out/train_check.log" 2>/dev/null | tail -n 7
  echo
  echo "## Benchmarks"
  cat "$out/kernel_bench.log" 2>/dev/null
} >>"$summary"
echo "wrote $summary ($failures failed steps)"
exit $((failures > 0))
