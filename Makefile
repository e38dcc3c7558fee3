# sensorhub — everything runs from the project's own virtualenv (.venv), created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ./sensorhub-data

.PHONY: mosquitto-plugin demo test test-fast lint typecheck serve bench clean install

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e './client[all]'
	touch $(STAMP)

install: $(STAMP)

## Create the venv, seed the demo tenant, print URL + a fresh token, and serve on http://127.0.0.1:8000
demo: $(STAMP)
	$(BIN)/sensorhub demo --data-dir $(DATA)

## Install and run the whole test suite (SQLite always; PostgreSQL/Redis/browser when available), three
## test files at a time (most tests wait on servers, not on the CPU)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

serve: $(STAMP)
	$(BIN)/sensorhub serve --data-dir $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check src tests client bench tools
	$(BIN)/ruff format --check src tests client bench tools
	$(BIN)/mypy
	$(BIN)/mypy --strict client/src
	$(BIN)/lint-imports
	$(BIN)/python tools/import_cycles.py
	$(BIN)/python -m sensorhub.lint.tenancy src/sensorhub

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Build the sensorhub Mosquitto auth plugin (mosquitto-plugin/sensorhub_auth.so; docs/mqtt.md)
mosquitto-plugin:
	sh tools/build_mosquitto_plugin.sh
