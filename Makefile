# The README's two commands: `make demo` and `make test`. Each sets everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-portable lint bench experiments setup clean

setup: $(STAMP)

# Rebuilt only when pyproject.toml changes; torch is pinned to the release that lies on disk.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev,viz,data,export,serve]'
	bash scripts/c_compiler.sh
	bash scripts/browser.sh
	$(PY) -m alexnet.models.native
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts hubconf.py
	$(VENV)/bin/ruff format --check src tests benchmarks scripts hubconf.py

# The fast suite over up to 4 worker processes (pytest-xdist; 2 on a 2-core machine): much of
# its time is subprocesses starting Python and torch, which overlap.
PYTEST := $(VENV)/bin/pytest -q -n auto --maxprocesses 4

test: lint
	$(PYTEST)

# What a user on an AVX2-only x86 CPU (no AVX-512) runs, on any x86 machine: torch's AVX2 kernels
# and our C kernels built for x86-64-v3. Numbers differ in their last bits from an AVX-512 run;
# the suite must pass either way (it compares with tolerances, never with one CPU's bytes).
test-portable: lint
	ATEN_CPU_CAPABILITY=avx2 ALEXNET_MARCH=x86-64-v3 $(PYTEST)

demo: $(STAMP)
	bash scripts/demo.sh

experiments: $(STAMP)
	bash scripts/experiments.sh

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_lrn.py
	$(PY) benchmarks/bench_pool.py
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
