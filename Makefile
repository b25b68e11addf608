# The commands people type. `make run` and `make test` each work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint format backbone clean

# torch first and pinned: the machine has a local CPU build of 2.13.0; a bare `torch` would pull
# gigabytes of CUDA wheels. Reinstalls when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[train,sweep,audit,dev]"
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded default data: the DVC pipeline (prepare for now). DVC runs the
# stage commands in a shell, so the venv goes first on PATH.
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	$(BIN)/ruff check src tests
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: setup
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

# Convert (once) and verify the offline encoder; prints where it is.
backbone: setup
	$(BIN)/triage backbone

clean:
	rm -rf data/processed models/checkpoint .pytest_cache .ruff_cache
