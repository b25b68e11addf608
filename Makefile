# The commands people type. `make run` and `make test` each work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-fast lint format backbone clean

# torch first and pinned to 2.13.0: a bare `torch` would pull gigabytes of CUDA wheels. This
# machine has a local CPU build of 2.13.0, which `pip install torch==2.13.0` finds. On an ordinary
# machine, put the CPU wheel from PyTorch's CPU index into the venv first, then run make:
#   python3.11 -m venv .venv
#   .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# Reinstalls when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[train,sweep,audit,dev,openvino]"
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded default data: the DVC pipeline (prepare, train, calibrate,
# evaluate + the baseline, export). DVC runs the stage commands in a shell, so the venv goes
# first on PATH.
run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The whole suite, as CI runs it: lint, the import rules (docs/design.md), declared
# dependencies, then every test.
test: setup
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(BIN)/deptry src
	$(BIN)/pytest

# The edit loop: the same tests less those that train, export or drive a server (under a minute).
test-fast: setup
	$(BIN)/pytest -m "not slow and not e2e" -q

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
