# The two commands README promises: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test system-deps bench

run: $(VENV)/.installed
	$(BIN)/healwatch run

test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

system-deps:
	@bash .ci/system-deps

bench: $(VENV)/.installed system-deps
	$(BIN)/python bench/scrape_latency.py
	$(BIN)/python bench/collect_cycle.py
	$(BIN)/python bench/store_memory.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
