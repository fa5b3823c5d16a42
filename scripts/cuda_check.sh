#!/usr/bin/env bash
# Compile-checks every CUDA file with plain nvcc for Hopper (sm_90a); needs no GPU.
set -euo pipefail
nvcc="${NVCC:-$(command -v nvcc || true)}"
if [ -z "$nvcc" ]; then
  echo "nvcc not found: skipping the CUDA compile check"
  exit 0
fi
status=0
for file in csrc/cuda/*.cu; do
  if "$nvcc" -c -std=c++17 -O3 -arch=sm_90a "$file" -o /dev/null; then
    echo "nvcc ok: $file"
  else
    echo "nvcc FAILED: $file"
    status=1
  fi
done
exit $status
