# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench bench-deps venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever a requirements file changes.
$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# One process: the demo data is seeded at start when the database has none (serve --seed-demo).
serve: $(STAMP)
	exec $(BIN)/python -m bot serve --seed-demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The benchmark peers and profilers (WeRoBot, gunicorn, py-spy): never product requirements.
bench-deps: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt

bench: bench-deps
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
