# One command to set up and run the workbench, one to set up and run every test.
#   make run    - create .venv, install, compare the bundled sample (the web app arrives with issue #3)
#   make test   - create .venv, install, run the whole test suite
#   make bench  - engine benchmarks (writes bench/RESULTS.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench samples clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: setup
	$(PY) -m quant_core compare sample_models/digits_mobilenet.keras \
		--images sample_models/digits_images --labels sample_models/digits_labels.txt \
		--out-dir artifacts/digits_mobilenet --report-json artifacts/digits_mobilenet/report.json

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_engine.py

samples: setup
	$(PY) sample_models/build_samples.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
