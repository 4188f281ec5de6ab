# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench bench-deps venv clean browser

# The console's browser tests drive Debian's Chromium with a CJK font (Playwright's own browser
# download does not work here). Installed only when missing; in CI (CI=true) a browser that
# cannot be installed fails the run (the tests fail too, rather than skip).
CHROMIUM ?= /usr/bin/chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install whenever a requirements file changes.
$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# One process: the demo data is seeded at start when the database has none (serve --seed-demo).
# `make serve` is development: dev-login, the dev callback token, loopback only (APP_ENV=production to override).
serve: export APP_ENV ?= development
serve: $(STAMP)
	exec $(BIN)/python -m bot serve --seed-demo

browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing chromium and fonts-wqy-microhei for the console's browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei ) \
		|| { if [ "$$CI" = "true" ]; then echo "chromium could not be installed" >&2; exit 1; \
		     else echo "chromium could not be installed: the browser tests will be skipped" >&2; fi; }; \
	elif ! fc-list 2>/dev/null | grep -qi wqy; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -qq fonts-wqy-microhei || [ "$$CI" != "true" ]; \
	fi

test: $(STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2

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
