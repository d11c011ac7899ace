# Two commands on a fresh machine: `make run` (serve the bundled model) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-tabular bench-reliability clean docker-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The package is installed editable (the `slimserve` command, `python -m slimserve`, gunicorn's imports);
# its dependencies are the pinned requirements, installed first.
$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

run: $(VENV)/.runtime
	PORT=$(PORT) $(BIN)/gunicorn -c scripts/deploy/gunicorn.conf.py

test: $(VENV)/.dev
	$(BIN)/ruff check src scripts tests
	$(BIN)/python -m pytest

# Build the image and run it like production on loopback: smoke test, one request per model, compose too.
# Needs root for dockerd when no Docker engine runs (../shared/tools/docker-local.sh); see README, "Docker".
docker-test:
	PYTHON=$(PYTHON) scripts/docker_test.sh

# The benchmarks start the real server in cgroups (root on Linux); results go to artifacts/bench/.
# slimserve vs the bare reference app in 0.1 vCPU / 256 MB, and the TensorFlow baseline (~15 min).
bench: $(VENV)/.dev
	$(BIN)/python -m scripts.bench.envelope

# Every bundled model in the envelope, per-model latency and CPU, and `mlflow models serve` (~3 min).
bench-tabular: $(VENV)/.dev
	$(BIN)/python -m scripts.bench.tabular --with-mlflow

# Hostile input, schemathesis, slow clients, overload and SIGTERM in 0.1 vCPU / 256 MB (~7 min).
bench-reliability: $(VENV)/.dev
	$(BIN)/python -m scripts.bench.reliability

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
