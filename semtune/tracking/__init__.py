"""MLflow tracking for studies: a parent run per study, a child run per trial, the model registry.

One module per side of the work, matching where the code runs:

* ``store``: where to log (tracking URIs, the server check, a client that waits out a busy
  sqlite store);
* ``study``: the driver's ``StudyTracker`` (the study's parent run, its results, registration);
* ``trial``: each trial's ``TrialTracker`` (a Ray worker's child run, the trainer's reporter);
* ``registration``: a study's best generator registered, the champion alias moved on merit;
* ``registry``: listing, promoting and loading registered versions;
* ``pyfunc``: the model format (a pyfunc model logged from code, no pickle);
* ``tags`` and ``provenance``: the names written on runs and versions, commits and data
  fingerprints.

The public names are importable from ``semtune.tracking`` itself. They are loaded on first use,
so that a trial process that needs only ``semtune.tracking.trial`` does not import torch and the
model format with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from semtune.tracking.provenance import data_fingerprint, git_commit, validation_fingerprint
    from semtune.tracking.pyfunc import GeneratorModel, log_generator_model
    from semtune.tracking.registration import RegistrationResult
    from semtune.tracking.registry import (
        ModelVersionInfo,
        list_model_versions,
        load_registered_generator,
        load_registered_generator_file,
        promote,
        training_data_tags,
    )
    from semtune.tracking.store import (
        CHAMPION,
        DEFAULT_MODEL_NAME,
        TrackingError,
        check_server,
        default_tracking_uri,
        resolve_tracking_uri,
        ui_hint,
    )
    from semtune.tracking.study import StudyTracker
    from semtune.tracking.tags import TrialStatus
    from semtune.tracking.trial import TrialTracker, TrialTrackerFactory, mark_trial

_HOMES = {
    "data_fingerprint": "provenance",
    "git_commit": "provenance",
    "validation_fingerprint": "provenance",
    "GeneratorModel": "pyfunc",
    "log_generator_model": "pyfunc",
    "ModelVersionInfo": "registry",
    "RegistrationResult": "registration",
    "list_model_versions": "registry",
    "load_registered_generator": "registry",
    "load_registered_generator_file": "registry",
    "promote": "registry",
    "training_data_tags": "registry",
    "CHAMPION": "store",
    "DEFAULT_MODEL_NAME": "store",
    "TrackingError": "store",
    "check_server": "store",
    "default_tracking_uri": "store",
    "resolve_tracking_uri": "store",
    "ui_hint": "store",
    "StudyTracker": "study",
    "TrialStatus": "tags",
    "TrialTracker": "trial",
    "TrialTrackerFactory": "trial",
    "mark_trial": "trial",
}

__all__ = [
    "CHAMPION",
    "DEFAULT_MODEL_NAME",
    "GeneratorModel",
    "ModelVersionInfo",
    "RegistrationResult",
    "StudyTracker",
    "TrackingError",
    "TrialStatus",
    "TrialTracker",
    "TrialTrackerFactory",
    "check_server",
    "data_fingerprint",
    "default_tracking_uri",
    "git_commit",
    "list_model_versions",
    "load_registered_generator",
    "load_registered_generator_file",
    "log_generator_model",
    "mark_trial",
    "promote",
    "resolve_tracking_uri",
    "training_data_tags",
    "ui_hint",
    "validation_fingerprint",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'semtune.tracking' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"semtune.tracking.{home}"), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
