# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine: they create
# the virtual environment, install pinned torch and the package (building its kernels), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of this torch lies on our machines' disk; any unpinned torch pulls GBs of CUDA.
TORCH_SPEC ?= torch==2.13.0
INSTALLED := $(VENV)/.installed

.PHONY: setup demo test bench cpp-test cuda-check clean

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml setup.py $(wildcard csrc/*.* csrc/cpu/* csrc/cuda/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" numpy
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[dev]"
	touch $@

demo: $(INSTALLED)
	$(BIN)/eager-llm demo

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

# The CPU benchmark tables of BENCHMARKS.md (several minutes; run on a quiet machine).
bench: $(INSTALLED)
	for name in rq_encode gathered_infonce trie_beam_step decode gct_overhead; do \
		$(BIN)/python benchmarks/bench_$$name.py || exit 1; done

# C++ unit tests of the CPU kernels (GoogleTest via ctest); scripts/cpp_test.sh installs gtest.
cpp-test: $(INSTALLED)
	bash scripts/cpp_test.sh $(BIN)/python

# Compile-checks every CUDA file with plain nvcc (no GPU needed).
cuda-check:
	bash scripts/cuda_check.sh

clean:
	rm -rf build $(VENV) eager_ext/_C*.so *.egg-info
