"""The names semtune writes on MLflow runs and model versions, and how values are written there.

The MLflow UI's run table and compare view can show and filter on any of these tags.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from semtune.metric_names import HEADLINE

__all__ = [
    "GENERATOR_ARTIFACT",
    "MAX_TAG",
    "METRIC_TAG_PREFIX",
    "PARAM_TAG_PREFIX",
    "RUN_STATUS",
    "TAGGED_METRICS",
    "TAG_REGISTERED",
    "TAG_SEED",
    "TAG_STUDY",
    "TAG_STUDY_KEY",
    "TAG_ROLE",
    "TAG_TRIAL",
    "TAG_STATUS",
    "TAG_ERROR",
    "TAG_EDGE",
    "TAG_PRESET",
    "TAG_DATA",
    "TAG_VAL",
    "TAG_SAMPLER",
    "TAG_OBJECTIVE",
    "TAG_IMAGES_LOST",
    "TAG_MODE",
    "TAG_BEST_TRIAL",
    "TAG_CONFIG",
    "TRIAL_GENERATOR_PATH",
    "TrialStatus",
    "as_text",
    "short",
]

TAG_STUDY = "semtune.study"
TAG_STUDY_KEY = "semtune.study_key"
TAG_ROLE = "semtune.role"
TAG_TRIAL = "semtune.trial"
TAG_STATUS = "semtune.status"
TAG_ERROR = "semtune.error"
TAG_EDGE = "semtune.edge_operator"
TAG_PRESET = "semtune.preset"
TAG_DATA = "semtune.data_fingerprint"
# what the objective was measured on (the images and how they were held out and degraded): two
# versions' scores are compared only when it is the same (issue 12)
TAG_VAL = "semtune.val_fingerprint"
TAG_SAMPLER = "semtune.sampler"
TAG_OBJECTIVE = "semtune.objective"
TAG_IMAGES_LOST = "semtune.images_not_uploaded"
TAG_MODE = "semtune.mode"
TAG_BEST_TRIAL = "semtune.best_trial"
TAG_CONFIG = "semtune.config"
TAG_REGISTERED = "semtune.registered_version"  # on a study run: <model>/<version>
TAG_SEED = "semtune.seed"  # the trainer's runtime.seed
METRIC_TAG_PREFIX = "metric."
PARAM_TAG_PREFIX = "param."

GENERATOR_ARTIFACT = "generator"  # name of generator.pt inside the pyfunc model
TRIAL_GENERATOR_PATH = "generator"  # run artifact folder of a finished trial's generator.pt

TrialStatus = Literal["finished", "stopped_early", "failed", "killed"]
# semtune's trial outcome -> MLflow's run status. The UI draws FAILED and KILLED with the same
# red cross, so a trial the scheduler stopped early (a normal end, by design) is FINISHED, told
# apart by its tag semtune.status=stopped_early (issue 15); KILLED is left to a user's Ctrl-C.
RUN_STATUS: dict[str, str] = {
    "finished": "FINISHED",
    "stopped_early": "FINISHED",
    "killed": "KILLED",
    "failed": "FAILED",
}
TAGGED_METRICS = HEADLINE
MAX_TAG = 5000  # model version tag values are limited to 5000 characters


def short(value: Any) -> str:
    """A number as people read it on a page (6 significant digits); anything else as is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, str) and not any(c.isdigit() for c in value):
        return value  # "nan", "inf" spelled out stay as they were
    return f"{number:.6g}"


def as_text(value: Any) -> str:
    """A param or tag value as text: floats exactly (repr), lists and dicts as JSON."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)
