# Two commands for a fresh machine (see README.md):
#   make run    the main job on the embedded default data; prints the run folder, stage times and the verdict
#   make test   every notebook's tests (nbdev-test)
#   make docs   the documentation site in _docs/ (nbdev-docs, with Quarto from PyPI)
# Each first makes .venv and installs fusion_nb[dev] with torch: the CUDA build where `nvidia-smi` works, else the
# CPU build; and XGBoost for the Trees baseline: `xgboost` (CUDA-capable) where `nvidia-smi` works, else `xgboost-cpu`.
# The install is redone only when pyproject.toml changes (the stamp holds its hash).
# Options: make run MODEL=all ARGS="--seeds 5"; make test ARGS=nbs/11_cli.ipynb; PYTHON=python3.12.

PYTHON ?= python3
VENV ?= .venv
MODEL ?= Gated
ARGS ?=
# PyTorch's index of CPU-only builds; plain PyPI gives Linux the CUDA build.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# An index that cannot be reached must cost seconds, not minutes.
PIP_NET := --timeout 15 --retries 1

BIN := $(VENV)/bin
STAMP := $(VENV)/.fusion_nb-installed
# A flag given on the command line appends to pip's configured extra-index-url (PIP_EXTRA_INDEX_URL would replace it).
CPU_SOURCES := $(PIP_NET) --extra-index-url $(TORCH_CPU_INDEX)

.PHONY: run test docs setup help

help:
	@sed -n 's/^#   //p' Makefile

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/fusion-nb run --model $(MODEL) $(ARGS)

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/nbdev-test $(ARGS)

# Quarto comes from PyPI: `quarto-cli` fetches Quarto's release for this platform when it installs and keeps the
# binary in its package folder (it adds no command), so that folder goes on PATH for nbdev-docs. No sudo, no system
# package.
QUARTO_BIN = $$($(BIN)/python -c 'import os, quarto_cli; print(os.path.join(list(quarto_cli.__path__)[0], "bin"))')
docs: setup
	@test -x "$(QUARTO_BIN)/quarto" || $(BIN)/pip install $(PIP_NET) quarto-cli
	PATH="$(QUARTO_BIN):$(CURDIR)/$(BIN):$$PATH" $(BIN)/nbdev-docs

# Torch first, then the package (whose bare `torch>=2.3` the installed torch then satisfies). CPU build: the newest
# `+cpu` version among the wheels pip is already set up with (a mirror, find-links), else among PyTorch's CPU index
# (plain PyPI hosts no `+cpu` builds); none found: plain `torch`.
setup:
	@test -x $(BIN)/python || { echo "make: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@set -e; \
	newest_cpu() { $(BIN)/pip index versions torch "$$@" 2> /dev/null | sed -n 's/^Available versions: //p' \
		| tr -d ' ' | tr ',' '\n' | grep -m1 '+cpu$$' || true; }; \
	key=$$($(BIN)/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())'); \
	if [ "$$(cat $(STAMP) 2>/dev/null)" = "$$key" ]; then exit 0; fi; \
	if nvidia-smi > /dev/null 2>&1; then \
		echo "make: nvidia-smi works: installing torch's default (CUDA) build"; \
		$(BIN)/pip install $(PIP_NET) torch; \
	elif $(BIN)/python -c 'import torch' 2> /dev/null; then \
		echo "make: $(VENV) already has torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		sources="$(PIP_NET)"; cpu=$$(newest_cpu $$sources); \
		if [ -z "$$cpu" ]; then sources="$(CPU_SOURCES)"; cpu=$$(newest_cpu $$sources); fi; \
		if [ -n "$$cpu" ]; then \
			echo "make: no NVIDIA driver: installing torch $$cpu (CPU build)"; \
			$(BIN)/pip install $$sources "torch==$$cpu"; \
		else \
			echo "make: no NVIDIA driver, but no CPU build of torch found (is $(TORCH_CPU_INDEX) reachable?): installing torch's default build"; \
			$(BIN)/pip install $(PIP_NET) torch; \
		fi; \
	fi; \
	if $(BIN)/python -c 'import xgboost' 2> /dev/null; then :; \
	elif nvidia-smi > /dev/null 2>&1; then $(BIN)/pip install $(PIP_NET) xgboost || echo "make: no xgboost wheel: the Trees baseline falls back to scikit-learn"; \
	else $(BIN)/pip install $(PIP_NET) xgboost-cpu || echo "make: no xgboost-cpu wheel: the Trees baseline falls back to scikit-learn"; fi; \
	$(BIN)/pip install $(PIP_NET) -e ".[dev]"; \
	echo "$$key" > $(STAMP); \
	echo "make: $(VENV) is ready (activate it with: . $(BIN)/activate)"
