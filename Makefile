# Two commands: `make demo` runs the pipeline on synthetic data, `make test` runs the tests.
# Both build .venv from the project's files alone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO ?= demo_out

.PHONY: demo test lint format clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pinned first: on the project's machines this takes the local CPU build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	rm -rf $(DEMO)
	$(VENV)/bin/eegtune synth --out $(DEMO)/bids --subjects 8 --releases R1,R2 --seed 0
	$(VENV)/bin/eegtune prepare --bids $(DEMO)/bids --out $(DEMO)/store --workers 2
	$(VENV)/bin/eegtune info $(DEMO)/store --verify
	$(VENV)/bin/eegtune audit $(DEMO)/store --folds 4
	$(VENV)/bin/eegtune cv --store $(DEMO)/store --challenge 1 --model softargmax_tcn \
		--folds 4 --set max_epochs=8 --out $(DEMO)/runs/c1_softargmax_tcn
	$(VENV)/bin/eegtune tune --store $(DEMO)/store --challenge 1 --space softargmax_tcn \
		--name demo --storage-path $(DEMO)/tune --smoke-test --quiet
	$(VENV)/bin/eegtune ensemble --experiment $(DEMO)/tune/demo --challenge 1 \
		--out $(DEMO)/ensemble_c1

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
