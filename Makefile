# The two entry points of the README. Each is self-sufficient on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint benchmark venv model

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP)

model: venv
	$(BIN)/harness build-model

# The default comparison: legacy stand-in vs MLX-Textgen on the built-in offline model.
run: model
	$(BIN)/harness run

# Two workers by default (the suite is mostly waiting on one single-threaded server at a time, so
# two cores play two test modules at once). --dist loadscope keeps each module on one worker, so a
# module-scoped run is played once for all the tests that read it. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

test: model
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# Lint, format and type checks (settings in pyproject.toml); CI runs them before the tests.
lint: venv
	$(BIN)/ruff check harness servers tests
	$(BIN)/ruff format --check harness servers tests
	$(BIN)/mypy

# The live benchmark of the default comparison through pytest-benchmark, gated by [tool.harness.gate].
benchmark: model
	$(BIN)/python -m pytest -q --benchmark tests/benchmarks --benchmark-json reports/benchmark.json
