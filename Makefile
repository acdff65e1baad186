# `make demo` and `make test` each set everything up on a fresh machine (a virtual environment
# in .venv with the CPU build of torch), then run. Set PYTHON to choose the interpreter.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint docs install clean

$(BIN)/mixsearch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/mixsearch

demo: install
	$(BIN)/mixsearch demo

# the everyday loop: everything but the tests marked slow (a few minutes on 2 cores)
test: install
	$(BIN)/python -m pytest -q -m "not slow"

# every test, the slow end-to-end ones too: what CI runs
test-all: install
	$(BIN)/python -m pytest -q --durations=15

# ruff (lint and formatting) and mypy, configured in pyproject.toml; CI runs this before the tests
lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

# the documentation site (mkdocs.yml, docs/) into build/site/; --strict: a broken link or reference fails
docs: install
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
