# The two commands of the README. Each sets up .venv/ itself (torch's CPU wheel first, so that
# nothing pulls a multi-GB CUDA build), then does its job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.semtune-installed
TORCH := torch==2.13.0
# e.g. https://download.pytorch.org/whl/cpu for the CPU wheel where the index is PyPI
TORCH_INDEX ?=

export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test cluster-test lint mlflow-server screenshots cli-docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: a study of the edge-loss weight on local Ray, trained on
# the bundled sample images, logged to MLflow in ./mlruns (see it with `make mlflow-server`).
# Each run gets its own folder, so nothing from an earlier demo is overwritten.
DEMO_OUT := out/demo-gamma-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(PY) -m semtune.search --space search_spaces/gamma.yaml --out $(DEMO_OUT)

# The MLflow UI + tracking server on http://127.0.0.1:5000 over ./mlruns (what `make demo` logs).
mlflow-server: setup
	mlflow/start-server.sh

# Re-take the MLflow UI screenshots in docs/img from a fresh demo (the demo's study logged to a
# fresh MLflow server in a temporary folder; headless Chromium, installed if missing). ~8 min
# (the demo with its confirmation stage).
screenshots: setup
	SEMTUNE_SCREENSHOTS=1 $(PY) -m pytest -q -rs tests/tracking/test_mlflow_ui.py -k fresh_demo

# The whole test suite (slow-marked tests included: CI runs them too).
test: setup
	$(PY) -m pytest -q -rs

# A real two-node Ray cluster on this machine (token auth, dashboard on 127.0.0.1): a study
# submitted as a Ray job and by address, then the cluster stopped by PID; and the cloud /
# Kubernetes configs validated (docs/cluster.md). Part of `make test` too.
cluster-test: setup
	$(PY) -m pytest -q -rs tests/cluster

# docs/cli.md, the --help of every command, written from the parsers themselves at a fixed
# width (tests/test_cli.py fails, naming this target, when it is stale).
cli-docs: setup
	$(PY) -m semtune.cli > docs/cli.md

lint: setup
	$(PY) -m ruff check semtune tests bench
	$(PY) -m ruff format --check semtune tests bench
	$(PY) -m mypy semtune
	$(VENV)/bin/lint-imports

clean:
	rm -rf out .pytest_cache
