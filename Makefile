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

# Until the sweep pipeline lands: the exactness report of the paper's models at their exact and approximate
# sizes, then the p4cnn trained for one epoch on real MNIST digits at 28 (exact) and 29 (approximate).
DEMO_TRAIN := --dataset mnist5k --model p4cnn --group p4 --epochs 1 --batch-size 8 --lr 0.003 --dropout 0

demo: $(STAMP)
	$(BIN)/equisweep check p4cnn --group p4 --input-size 27 --measure
	$(BIN)/equisweep check p4cnn --group p4 --input-size 28 --measure
	$(BIN)/equisweep check resnet44 --group p4m --input-size 32
	$(BIN)/equisweep check resnet44 --group p4m --input-size 33
	$(BIN)/equisweep check resnet18 --group p4 --input-size 224
	$(BIN)/equisweep check resnet18 --group p4 --input-size 225
	$(BIN)/equisweep train $(DEMO_TRAIN) --input-size 28 --out runs/demo/p4cnn-28
	$(BIN)/equisweep train $(DEMO_TRAIN) --input-size 29 --out runs/demo/p4cnn-29

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
