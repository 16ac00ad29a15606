# The two commands README promises: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test typecheck system-deps bench see-it-heal

run: $(VENV)/.installed
	$(BIN)/healwatch run

test: $(VENV)/.installed typecheck system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy --strict over the packages, tests, benchmarks and example, as [tool.mypy] in pyproject.toml
# says; its cache in .mypy_cache/ makes a re-run take seconds.
typecheck: $(VENV)/.installed
	$(BIN)/mypy

system-deps:
	@bash .ci/system-deps

# The incident of examples/incident/: web1 broken six ways, healed while you watch (about 3 minutes).
see-it-heal: $(VENV)/.installed system-deps
	$(BIN)/python -m examples.incident

# Every benchmark with a peer, repeated, into bench/results/REPORT.md (+ charts, raw JSON in
# bench/results/raw/); BENCH_ARGS="--repeats 1 --quick" for a smoke test. The benchmarks without
# a peer (collect_cycle, store_memory, agent_memory, notify_latency) run on their own: bench/README.md.
bench: $(VENV)/.installed system-deps
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench.report $(BENCH_ARGS)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@
