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

# Every benchmark, each beside its peer where it has one; results land in bench/results/.
bench: $(VENV)/.installed system-deps
	$(BIN)/python -m bench.scrape_latency
	$(BIN)/python -m bench.collect_cycle
	$(BIN)/python -m bench.store_memory
	$(BIN)/python -m bench.rule_eval
	$(BIN)/python -m bench.notify_latency
	$(BIN)/python -m bench.mttr
	$(BIN)/python bench/agent_memory.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
