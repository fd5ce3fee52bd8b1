# Two entry points, each self-installing on a fresh machine:
#   make demo   set up, then run the main job on the embedded synthetic twin world
#   make test   set up, then lint and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
PRESET ?= demo

.PHONY: demo test lint setup services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: the local 2.13.0 CPU build; any looser request pulls a CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/cascadia-ensemble demo --preset $(PRESET) --out $(DEMO_DIR)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Debian packages the tests use (a single-node SLURM they start themselves, a headless
# Chromium that opens the run report); needs root or sudo.
services:
	@if [ "$$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then \
		bash deploy/slurm/install.sh; \
		bash deploy/chromium/install.sh; \
	else \
		echo "not root: skipping the SLURM and Chromium installs (their tests skip outside CI)"; \
	fi

test: lint services
	$(BIN)/pytest

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
