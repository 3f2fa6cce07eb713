"""The live progress table of a study (a Tune callback) and the trial status words it uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from ray import tune
from ray.tune.experiment import Trial

from semtune.tune.keys import FINISHED_KEY, NONFINITE_KEY, POINT_KEY
from semtune.uncertainty import CI_BOUNDS, gain_name

__all__ = ["STATUSES", "ProgressTable", "describe_status", "short_name"]

# What the tables say about a trial.
STATUSES = {
    "done": "trained to the end of its schedule (or its time budget)",
    "stopped": "stopped early by the scheduler (ASHA) or the study's time budget",
    "diverged": "a loss became NaN/Inf; recorded as a failed trial",
    "error": "raised an exception on every attempt (see error column)",
    "running": "training",
    "pending": "waiting for resources",
    "paused": "paused",
}


def describe_status(tune_status: str, last: Mapping[str, Any], error: bool) -> str:
    """One of ``STATUSES`` from Tune's status, the trial's last result and its error."""
    if error or tune_status == "ERROR":
        return "error"
    if last.get(NONFINITE_KEY):
        return "diverged"
    if tune_status == "TERMINATED":
        return "done" if last.get(FINISHED_KEY) else "stopped"
    return tune_status.lower()


def short_name(path: str, all_paths: Sequence[str]) -> str:
    """``loss.gamma`` -> ``gamma`` unless another parameter ends the same way."""
    leaf = path.rsplit(".", 1)[-1]
    clash = sum(p.rsplit(".", 1)[-1] == leaf for p in all_paths) > 1
    return path if clash else leaf


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return round(value, 4)
    return value


def _half_width(last: Mapping[str, Any], metric: str) -> Any:
    """Half the 95% interval of ``metric``'s gain over the input (semtune.uncertainty): what
    tells trials apart, as all are scored on the same validation images; "" if not reported."""
    low, high = (last.get(f"{gain_name(metric)}{bound}") for bound in CI_BOUNDS)
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return ""
    return _fmt((float(high) - float(low)) / 2)


class ProgressTable(tune.Callback):
    """Prints a table of all trials every ``interval_s`` seconds and when a status changes.

    Columns: trial, status, the searched parameters, step, and the given metrics, the first
    (the objective) followed by the half-width of its gain's 95% interval. Stateless
    between sessions (it reads Tune's trial list), so it survives ``Tuner.restore``.

    Args:
        params: searched config paths (columns, by short name).
        metrics: metric columns, objectives first.
        interval_s: seconds between periodic prints.
        printer: where lines go (default ``print``). Not stored with the experiment: after
            ``--resume`` the restored table prints with ``print``.
    """

    def __init__(
        self,
        params: Sequence[str],
        metrics: Sequence[str],
        *,
        interval_s: float = 30.0,
        printer: Callable[[str], None] | None = None,
    ) -> None:
        self.params = list(params)
        self.metrics = list(metrics)
        self.interval_s = interval_s
        self.printer = printer
        self._last_print = -math.inf
        self._last_key: tuple[Any, ...] = ()

    def frame(self, trials: Sequence[Trial]) -> pd.DataFrame:
        rows = []
        for t in trials:
            last = t.last_result or {}
            row: dict[str, Any] = {
                "trial": t.trial_id,
                "status": describe_status(t.status, last, t.status == "ERROR"),
            }
            # a confirmation trial's parameters are one grid point (semtune.tune.confirm)
            config = t.config.get(POINT_KEY) or t.config
            for p in self.params:
                row[short_name(p, self.params)] = _fmt(config.get(p, ""))
            row["step"] = int(last["step"]) if "step" in last else 0
            for i, m in enumerate(self.metrics):
                row[m] = _fmt(last.get(m, ""))
                if i == 0:  # the objective, with how far it could move on other images
                    row[f"{m} ±95%"] = _half_width(last, m)
            rows.append(row)
        return pd.DataFrame(rows)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        now = time.monotonic()
        key = tuple((t.trial_id, t.status) for t in trials)
        since = now - self._last_print
        # A status change prints at once, unless the last table is under 3 s old (several
        # trials often change together); otherwise every interval_s.
        if since < (3.0 if key != self._last_key else self.interval_s):
            return
        if not trials:
            return
        self._last_key, self._last_print = key, now
        counts = pd.Series([t.status.lower() for t in trials]).value_counts().to_dict()
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        printer = self.printer or print
        printer(f"\n[{time.strftime('%H:%M:%S')}] trials: {summary}")
        printer(self.frame(trials).to_string(index=False))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_last_print"], state["_last_key"] = -math.inf, ()
        state["printer"] = None  # Tune pickles callbacks with the experiment; print is enough
        return state
