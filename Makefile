# The two quick-start commands: `make run` and `make test`. Each creates .venv and installs what it needs:
# `make run` only the core and the extras the shipped example uses, `make test` the test tools and every extra too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shipped example (graphs/examples/fix_failing_test.yaml) scores its edits with a real language server, and its
# run_tests tool runs pytest in the local sandbox (whose Python is this venv's), as the Docker image's pytest does.
RUN_EXTRAS ?= lsp,pytest
# The extras the test suite exercises (each optional backend is tested against the real thing where it runs).
TEST_EXTRAS ?= dev,docker,e2b,postgres,otel,lsp,pytest,compare,ray,viewer

.PHONY: run test lint typecheck unit schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One marker per install, so `make run` never pulls the test tools and `make test` after it adds them.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(RUN_EXTRAS)]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@ $(VENV)/.installed-run

# The main job on embedded defaults: scripted model, local sandbox, store in .agentflow/.
run: $(VENV)/.installed-run
	$(BIN)/agentflow run graphs/examples/fix_failing_test.yaml

# The whole test suite: lint, format check, strict type check, pytest.
test: lint typecheck unit

lint: $(VENV)/.installed-test
	$(BIN)/ruff check agentflow tests benchmarks tools
	$(BIN)/ruff format --check agentflow tests benchmarks tools

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The 15 slowest tests are listed at the end: CI keeps the whole run under 20 minutes. The test files are shared out
# to one worker process per core (at most 4: the tests start sandboxes, servers and clusters of their own); a file's
# tests stay together on one worker, since some share a module-scoped cluster or server.
PYTEST_WORKERS ?= auto
unit: $(VENV)/.installed-test
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --durations=15

schema: $(VENV)/.installed-run
	$(BIN)/agentflow schema --output agentflow.schema.json

clean:
	rm -rf $(VENV) .agentflow .mypy_cache .ruff_cache .pytest_cache
