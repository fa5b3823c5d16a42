#!/usr/bin/env bash
# Builds the CPU kernels with CMake against the venv's torch and runs their C++ tests (ctest).
# Usage: scripts/cpp_test.sh [python]   (default: .venv/bin/python)
set -euo pipefail
python="${1:-.venv/bin/python}"
if [ ! -f /usr/include/gtest/gtest.h ] && [ ! -f /usr/local/include/gtest/gtest.h ]; then
  echo "installing GoogleTest (libgtest-dev)"
  apt-get update -qq && apt-get install -y -qq libgtest-dev >/dev/null
fi
prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export PATH="$(dirname "$python"):$PATH"  # the venv's ninja, if any
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S . -B build/cmake "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build build/cmake -j 2
ctest --test-dir build/cmake --output-on-failure
