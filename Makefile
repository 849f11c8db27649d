# Every target installs what it needs into .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := ledger domain projections api tests bench

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Where `make run` serves; HOST=0.0.0.0 PORT=9000 make run (or make run PORT=9000).
HOST ?= 127.0.0.1
PORT ?= 8080

# The home is $ACCORD_HOME, as for every accord command, else ./.accord.
run: $(STAMP)
	@test -f "$${ACCORD_HOME:-.accord}/config.json" || $(BIN)/accord init --origin accord.localhost/demo
	$(BIN)/accord serve --demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.append
	$(BIN)/python -m bench.domain
	$(BIN)/python -m bench.projections
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.verify
	$(BIN)/python -m bench.stream

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .accord .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
