"""Ray Tune's ``OptunaSearch`` with the bookkeeping a resumable study needs.

- Each Optuna trial carries the Tune trial id (user attribute ``tune_trial_id``), so tables,
  the Pareto front and optuna-dashboard can be matched to Tune's trial folders.
- A trial that diverged (``nonfinite_loss``) or errored is told to Optuna as FAIL, never as
  COMPLETE with its last good value (``OptunaSearch`` alone would do the latter for errors that
  happened after a report).
- The Optuna study names its objectives (``set_metric_names``: optuna-dashboard shows ``ssim``
  instead of "Objective 0"), and a trial the scheduler stopped early keeps Optuna's COMPLETE
  state with its last value (what the sampler learns from) but says so: user attributes
  ``semtune_status`` (``finished`` / ``stopped_early``) and ``stopped_at_step``, shown by
  optuna-dashboard on the trial.
- ``close_orphans`` marks Optuna trials left RUNNING by a driver that was killed between asking
  Optuna and saving Tune's experiment state: Tune never learnt of them, so they will not finish.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from semtune.tune.keys import FINISHED_KEY, NONFINITE_KEY

__all__ = ["STATUS_ATTR", "TUNE_TRIAL_ATTR", "StudySearcher", "close_orphans"]

TUNE_TRIAL_ATTR = "tune_trial_id"
STATUS_ATTR = "semtune_status"


class StudySearcher(OptunaSearch):
    """``OptunaSearch`` that tags trials with their Tune id and fails diverged trials."""

    def _setup_study(self, mode: str | list[str]) -> None:
        super()._setup_study(mode)
        names = _as_list(self._metric)
        study: optuna.Study | None = self._ot_study
        if study is not None and names and study.metric_names != names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        params = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return params

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if result.get(NONFINITE_KEY):
            return  # NaN is not an intermediate value worth recording
        super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        diverged = bool(result and result.get(NONFINITE_KEY))
        values = [result.get(m) for m in _as_list(self.metric)] if result else []
        if not diverged and any(v is None or not math.isfinite(v) for v in values):
            diverged = bool(values)
        if ot_trial is not None and trial_id not in self._completed_trials:
            if diverged:
                ot_trial.set_user_attr("failure", "non-finite loss")
            elif error:
                ot_trial.set_user_attr("failure", "error (retries exhausted)")
            elif result:
                finished = bool(result.get(FINISHED_KEY))
                ot_trial.set_user_attr(STATUS_ATTR, "finished" if finished else "stopped_early")
                if not finished and "step" in result:
                    ot_trial.set_user_attr("stopped_at_step", int(result["step"]))
        if diverged or error:
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)


def _as_list(metric: str | list[str] | None) -> list[str]:
    if metric is None:
        return []
    return [metric] if isinstance(metric, str) else list(metric)


def close_orphans(study: optuna.Study, keep: set[str]) -> list[int]:
    """Fail Optuna trials left RUNNING that no Tune trial will finish (call after ``fit``).

    Args:
        study: the study in its storage.
        keep: Tune ids of trials that are unfinished but resumable (left alone).

    Returns:
        The Optuna numbers of the trials that were failed.
    """
    closed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(TUNE_TRIAL_ATTR) in keep:
            continue
        study.tell(t.number, state=TrialState.FAIL)
        closed.append(t.number)
    return closed
