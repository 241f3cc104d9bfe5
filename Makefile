# `make main`: set up a fresh machine and run the main job.  `make test`: set up and run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup main test benchmark

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,report,slurm]'
	touch $@

main: setup
	$(PY) -m jobs.sweep

test: setup
	$(PY) -m pytest -q -rs

benchmark: setup
	$(PY) -m jobs.benchmark
