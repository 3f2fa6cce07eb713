"""A driver-side Tune callback that gives each trial's MLflow run its final status.

A trial that reaches the end of its schedule closes its own run (``TrialTracker``); one that
ASHA stops, that fails, or whose loss turns NaN is ended by Ray before it can. This callback
sees those endings on the driver and marks the run ``stopped_early``, ``failed`` or
``finished``. It holds only the study's plain tracking context, so it pickles with Tune's
experiment state and works again after ``--resume``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from semtune.tune.keys import FINISHED_KEY, NONFINITE_KEY

__all__ = ["TrialStatusCallback", "trial_outcome"]

log = logging.getLogger(__name__)


def trial_outcome(last_result: Mapping[str, Any] | None, errored: bool) -> tuple[str, str | None]:
    """(status, error) of an ended trial from its last reported result."""
    last = last_result or {}
    if errored:
        return "failed", "the trial raised an error (see error.txt in its Tune folder)"
    if last.get(NONFINITE_KEY):
        return "failed", f"non-finite loss at step {int(last.get('step', 0))}"
    if last.get(FINISHED_KEY):
        return "finished", None
    return "stopped_early", None


class TrialStatusCallback(tune.Callback):
    """Marks the child run of every ended trial (see the module docstring)."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.context = dict(context)

    def _mark(self, trial: Trial, errored: bool) -> None:
        from semtune.tracking import mark_trial

        status, error = trial_outcome(trial.last_result, errored)
        try:
            mark_trial(self.context, trial.trial_id, status, error=error)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 (a tracking hiccup must not stop the study)
            log.warning("MLflow: status of trial %s not set: %s", trial.trial_id, exc)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._mark(trial, errored=False)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._mark(trial, errored=True)
