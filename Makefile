# Verity: two commands on a fresh machine.
#   make run   - set up everything and serve the embedded default on http://127.0.0.1:$${PORT:-8000}
#   make test  - set up everything and run ruff, import-linter and the whole pytest suite
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test setup setup-test lint bench

setup:
	bash scripts/bootstrap.sh

setup-test:
	bash scripts/bootstrap.sh --test

run: setup
	PORT=$(PORT) bash scripts/run.sh

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

bench: setup-test
	$(PY) benchmarks/engine.py
