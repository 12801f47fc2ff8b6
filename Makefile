# lmrl: `make demo` runs the main job on a CPU; `make test` runs the test suite. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

# torch is pinned first so that pip never swaps in a multi-GB CUDA build on CPU machines;
# on a GPU machine set TORCH_VERSION or install torch into .venv yourself before `make install`.
$(VENV)/.installed: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/python examples/ilql_quickstart.py --out runs/demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check lmrl tasks tests examples benchmarks

bench: install
	$(BIN)/python benchmarks/heads.py

clean:
	rm -rf runs .pytest_cache
