# Two entry points: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use. torch is pinned to 2.13.0 and installed before the
# project: that release is a CPU build available locally, and an unpinned torch would pull a
# multi-GB CUDA build. `make throughput` also installs the published optimizers that the
# step-throughput benchmark measures side by side (the `throughput` extra) and runs it;
# pass options with ARGS, e.g. `make throughput ARGS=--quick`.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
THRU   := $(VENV)/.throughput-installed
TORCH  := torch==2.13.0

.PHONY: demo test lint install throughput clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/optiwise list
	$(VENV)/bin/optiwise schedule warmup_cosine --total-steps 1000 --warmup 0.05 \
		--min-lr-ratio 0.1 --plot optiwise-report/warmup_cosine.png
	$(VENV)/bin/optiwise schedule wsd --total-steps 1000 --warmup 50 --decay 0.2 \
		--plot optiwise-report/wsd.png

test: $(STAMP)
	$(PY) -m pytest -q

$(THRU): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,throughput]'
	touch $(THRU)

throughput: $(THRU)
	$(PY) benchmarks/step_throughput.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) optiwise-report .pytest_cache .mypy_cache .ruff_cache
