# `make main`: set up a fresh machine and run the main job.  `make test`: set up and run every test (what CI runs).
# `make check`: the fast tier a developer runs before each commit (lint, then the tests that start no cluster,
# browser or long job: see the markers in pyproject.toml).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup main test check lint benchmark gpu-check gpu-wheels

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,report,slurm]'
	touch $@

main: setup
	$(PY) -m jobs.sweep

test: lint
	$(PY) -m pytest -q -rs --durations=25

FAST := not (slow or ray or slurm or gpu or browser)

check: lint
	$(PY) -m pytest -q -x -m "$(FAST)"

lint: setup
	$(PY) -m ruff check .

benchmark: setup
	$(PY) -m jobs.benchmark

gpu-check: setup   # every piece of a job on this machine's GPU, ~5 min (benchmarks/gpu_check.py)
	HARNESS_PYTHON=$(PY) benchmarks/gpu_check.sh --device cuda --out gpu_check

# Hydra as wheels for a bare GPU machine (Python 3.12, x86-64), which benchmarks/gpu_check.sh installs from .whl
gpu-wheels: setup
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
		hydra-core==1.3.8 omegaconf==2.3.1 PyYAML==6.0.4
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3   # published as source only
