"""Fixtures of the study tests."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import ray


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """One local Ray for the module: starting Ray costs ~10 s on 2 cores."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield
    ray.shutdown()
