# The two commands every newcomer runs: `make demo` and `make test`.
# Both set everything up first (virtualenv, Python packages, Mosquitto,
# PostgreSQL) and work from a clean clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	bash scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Keeps the demo fleet running until Ctrl-C when run in a terminal;
# `make demo DEMO_EXIT=1` (or no terminal, as in CI) ends it at once.
demo: setup
	DEMO_EXIT=$(DEMO_EXIT) $(BIN)/python scripts/demo.py

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts examples
	$(BIN)/ruff format --check src tests benchmarks scripts examples

typecheck: setup
	$(BIN)/mypy

# Three workers, each file on one (its module-scoped hubs and fixtures stay
# whole): most tests wait on real hubs, agents and brokers rather than the CPU.
unit: setup
	$(BIN)/pytest -q -n 3 --dist loadfile

test: lint typecheck unit

bench: setup
	@echo "see BENCHMARKS.md for each benchmark's command"

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
