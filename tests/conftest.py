"""Shared fixtures: the bundled sample images (never ../shared) and a quiet, small CPU setup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"

# Small tensors gain nothing from a second thread, and CI runs Ray trials beside the tests.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_train_dir() -> Path:
    return SAMPLE_DIR / "train"


@pytest.fixture(scope="session")
def sample_test_dir() -> Path:
    return SAMPLE_DIR / "test"
