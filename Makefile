# The two README commands: `make demo` (the main job) and `make test` (everything CI runs).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test test-fast test-isa lint bench chromium

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

# The tests that train and then compare with a number (marker `trains`), once per SIMD kernel path this CPU has:
# PyTorch's kernels (ATEN_CPU_CAPABILITY), oneDNN's convolutions (DNNL_MAX_CPU_ISA) and MKL's BLAS
# (MKL_ENABLE_INSTRUCTIONS) round differently on each path, so each path trains slightly different nets, and every
# margin must hold on all of them. AVX-512 runs only where the CPU has it. TESTS=... narrows the run to some files.
ISA_PATHS := default:SSE41:SSE4_2 avx2:AVX2:AVX2
ISA_PATHS += $(if $(shell grep -sqw avx512f /proc/cpuinfo && echo yes),avx512:AVX512_CORE:AVX512)

test-isa: $(STAMP)
	@failed=""; for path in $(ISA_PATHS); do \
	    set -- $$(echo $$path | tr : ' '); \
	    export ATEN_CPU_CAPABILITY=$$1 DNNL_MAX_CPU_ISA=$$2 MKL_ENABLE_INSTRUCTIONS=$$3; \
	    echo "== kernel path: $$($(BIN)/python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')," \
	         "oneDNN up to $$2, MKL up to $$3"; \
	    $(BIN)/pytest -m trains -q $(TESTS) || failed="$$failed $$1"; \
	done; \
	test -z "$$failed" || { echo "test-isa: the tests that train failed on:$$failed"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_gconv
	$(BIN)/python -m benchmarks.bench_data
	$(BIN)/python -m benchmarks.bench_sweep
