# The two README commands: `make demo` (the main job) and `make test` (everything CI runs).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test test-fast lint bench

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

# The quick sweep on an embedded local Ray: exact vs approximate P4CNN and a plain CNN on real MNIST digits,
# W&B offline. --resume makes a second `make demo` continue (or just reprint) the same sweep.
demo: $(STAMP)
	$(BIN)/equisweep sweep sweeps/quick.yaml --resume

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_gconv
	$(BIN)/python -m benchmarks.bench_data
	$(BIN)/python -m benchmarks.bench_sweep
