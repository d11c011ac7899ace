# Two commands on a fresh machine: `make run` (serve the bundled model) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: run test lint bench clean docker-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
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

bench: $(VENV)/.dev
	$(BIN)/python scripts/bench/envelope.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
