# The two README commands: `make demo` (the main job) and `make test` (everything CI runs).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test test-fast lint bench chromium

# Every version comes from requirements/lock.txt, the lock the Dockerfile and cluster/aws-gpu.yaml install from too;
# requirements/constraints.txt says how to refresh it after a change to pyproject.toml's dependencies.
$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements/lock.txt -e '.[dev]'
	touch $(STAMP)

# The quick sweep on an embedded local Ray (real MNIST digits, W&B offline), then its report, logged to W&B as the
# sweep's summary run. --resume makes a second `make demo` continue the same sweep, or just report it again.
SWEEP_STORAGE ?= runs/sweeps

demo: $(STAMP)
	$(BIN)/equisweep sweep sweeps/quick.yaml --resume --storage $(SWEEP_STORAGE)
	$(BIN)/equisweep report $(SWEEP_STORAGE)/quick --log-to-wandb

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

# The report test renders the HTML page in headless Chromium (Debian's package), installed here when missing.
chromium:
	@command -v chromium >/dev/null || { \
	    sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	    $$sudo apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { $$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; }; }

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -x

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_gconv
	$(BIN)/python -m benchmarks.bench_data
	$(BIN)/python -m benchmarks.bench_sweep
