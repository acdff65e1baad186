# `make demo` and `make test` each set everything up on a fresh machine (a virtual environment
# in .venv with the CPU build of torch), then run. Set PYTHON to choose the interpreter.
# Each installs only what it needs, remembered by a stamp file in .venv: `make demo` the core and
# the demo extra (about 1.8 GB, mostly torch), `make test` (and lint, docs) the dev extra on top
# (about 2.9 GB in all), so `make test` after `make demo` only adds what is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-all lint docs install clean

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

$(DEV_STAMP): $(DEMO_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# everything a developer needs (the dev extra: every optional backend, the test and lint tools)
install: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/mixsearch demo

# the everyday loop: everything but the tests marked slow (a few minutes on 2 cores)
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# every test, the slow end-to-end ones too: what CI runs
test-all: $(DEV_STAMP)
	$(BIN)/python -m pytest -q --durations=15

# ruff (lint and formatting) and mypy, configured in pyproject.toml; CI runs this before the tests
lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

# the documentation site (mkdocs.yml, docs/) into build/site/; --strict: a broken link or reference fails
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
