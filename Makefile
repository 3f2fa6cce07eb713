# The two commands of the README. Each sets up .venv/ itself (torch's CPU wheel first, so that
# nothing pulls a multi-GB CUDA build), then does its job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.semtune-installed
TORCH := torch==2.13.0

export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: the bundled sample images, local CPU.
demo: setup
	$(PY) -m semtune.benchmark --data data/sample/test --sets A B C --out out/demo-benchmark

# The whole test suite (slow-marked tests included: CI runs them too).
test: setup
	$(PY) -m pytest -q -rs

lint: setup
	$(PY) -m ruff check semtune tests bench
	$(PY) -m mypy semtune

clean:
	rm -rf out .pytest_cache
