# The commands in the README. `make demo` and `make test` each set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the package with its test tools

demo: setup  ## generate sample data, run the pipeline on it, list the tables
	$(BIN)/digital-finance generate --stocks 200000 --funds 20000 --out data/generated --seed 7
	$(BIN)/digital-finance run --stocks 'data/generated/stocks/*' --funds 'data/generated/mutual_funds/*' --output lakehouse
	$(BIN)/digital-finance tables --output lakehouse

lint: setup
	$(BIN)/ruff check src tests bench transform.py
	$(BIN)/ruff format --check src tests bench transform.py

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

test: lint typecheck  ## lint, type-check and run every test
	$(BIN)/pytest -q

bench: setup  ## side-by-side benchmark against the seed's PySpark job (installs PySpark)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run_benchmark.py

clean:
	rm -rf $(VENV) lakehouse data/generated .pytest_cache .mypy_cache .ruff_cache
