# Two commands on a fresh machine: `make run` (serve the bundled model) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-reliability clean

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

bench: $(VENV)/.dev
	$(BIN)/python scripts/bench/envelope.py

# Hostile input, schemathesis, slow clients, overload and SIGTERM in 0.1 vCPU / 256 MB (~10 min, root for cgroups).
bench-reliability: $(VENV)/.dev
	$(BIN)/python scripts/bench/reliability.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
