# One command to set up and run the workbench, one to set up and run every test.
#   make run    - create .venv, install the app's packages (requirements.txt), start the web app on the bundled
#                 sample at http://localhost:8501; another port: make run PORT=8600
#   make test   - create .venv, install the app's and the dev packages (requirements-dev.txt), run the checks
#                 (ruff, mypy) and the whole test suite
#   make bench  - engine, browser and load benchmarks (write bench/RESULTS.md)
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8501
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.installed-app
DEV_STAMP := $(VENV)/.installed-dev

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup setup-dev browser services run lint test bench samples clean

setup: $(APP_STAMP)
setup-dev: $(DEV_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The first install downloads TensorFlow and friends (several minutes): not --quiet, pip shows its progress.
$(APP_STAMP): requirements.txt | $(PY)
	@echo "Installing the app's packages (requirements.txt); the first time takes a few minutes..."
	$(PY) -m pip install -r requirements.txt
	touch $@

# requirements-dev.txt includes requirements-ray.txt, which includes requirements.txt: this also satisfies the
# app's stamp.
$(DEV_STAMP): requirements.txt requirements-ray.txt requirements-dev.txt | $(PY)
	@echo "Installing the app's and the dev packages (requirements-dev.txt)..."
	$(PY) -m pip install -r requirements-dev.txt
	touch $@ $(APP_STAMP)

# Debian's chromium for the browser tests (Playwright drives it; it never downloads browsers).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Debian's PostgreSQL server programs for the tests against a real PostgreSQL (tests/pg_server.py starts a private
# server on a loopback port and stops it). Debian keeps initdb off PATH, in /usr/lib/postgresql/<version>/bin.
services:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null; }

run: setup
	$(PY) -m ui.prewarm
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint browser services
	$(PY) -m pytest -q

bench: setup-dev browser services
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_browser.py
	$(PY) bench/bench_whatif.py
	$(PY) bench/bench_publish.py
	$(PY) bench/bench_tune.py
	$(PY) bench/bench_ray.py
	$(PY) bench/bench_load.py
	$(PY) bench/bench_protocol.py
	$(PY) bench/bench_tasks.py
	$(PY) bench/bench_task_display.py
	$(PY) bench/bench_memory.py
	$(PY) bench/bench_crash.py
	$(PY) bench/bench_cluster.py

samples: setup-dev
	$(PY) sample_models/build_samples.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
