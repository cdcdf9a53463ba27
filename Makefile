# The two quick-start commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The extras the test suite exercises (each optional backend is tested against the real thing where it runs).
EXTRAS ?= dev,docker,e2b,postgres,otel,lsp

.PHONY: run test lint typecheck unit schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# The main job on embedded defaults: scripted model, local sandbox, store in .agentflow/.
run: $(VENV)/.installed
	$(BIN)/agentflow run graphs/examples/fix_failing_test.yaml

# The whole test suite: lint, format check, strict type check, pytest.
test: lint typecheck unit

lint: $(VENV)/.installed
	$(BIN)/ruff check agentflow tests benchmarks tools
	$(BIN)/ruff format --check agentflow tests benchmarks tools

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest -q

schema: $(VENV)/.installed
	$(BIN)/agentflow schema --output agentflow.schema.json

clean:
	rm -rf $(VENV) .agentflow .mypy_cache .ruff_cache .pytest_cache
