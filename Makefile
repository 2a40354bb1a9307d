# One command to set up and run the workbench, one to set up and run every test.
#   make run    - create .venv, install, start the web app on the bundled sample (http://localhost:8501)
#   make test   - create .venv, install, run the checks (ruff, mypy) and the whole test suite
#   make bench  - engine, browser and load benchmarks (write bench/RESULTS.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser run lint test bench samples clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Debian's chromium for the browser tests (Playwright drives it; it never downloads browsers).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: setup
	$(PY) -m ui.prewarm
	$(PY) -m streamlit run streamlit_app.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint browser
	$(PY) -m pytest -q

bench: setup browser
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_browser.py
	$(PY) bench/bench_whatif.py
	$(PY) bench/bench_load.py

samples: setup
	$(PY) sample_models/build_samples.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
