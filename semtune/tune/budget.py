"""Equal-budget ranking: a study's best trial is chosen among trials scored at the same step.

ASHA stops weak trials early, so a results table mixes a stopped trial's score at step 80 with
a finished trial's score at step 240. Ranking those side by side compares budgets, not settings
(issue 12). Here the comparison uses the highest step at which at least two scored trials have
an evaluation (one trial alone is not a comparison; a study of one trial uses its own), and each
trial's metrics *at that step*, taken from everything it reported to Tune.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from semtune.uncertainty import CI_BOUNDS

if TYPE_CHECKING:
    from ray.tune import Result

__all__ = ["Budget", "at_equal_budget", "trial_histories"]

SCORED_STATUSES = ("done", "stopped")


@dataclass(frozen=True)
class Budget:
    """The step the ranking used and how many trials had a score there."""

    step: int
    trials: int
    top_step: int  # the furthest any scored trial got

    def describe(self) -> str:
        if self.step == self.top_step:
            return f"at step {self.step}, where {self.trials} trials were scored"
        return (
            f"at step {self.step}, the highest step at least two trials reached ({self.trials} "
            f"trials; the furthest got to {self.top_step})"
        )


def trial_histories(results: Iterable[Result], metrics: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Every evaluation each trial reported to Tune: trial id -> frame indexed by step."""
    out: dict[str, pd.DataFrame] = {}
    for r in results:
        df = getattr(r, "metrics_dataframe", None)
        if df is None or df.empty or "step" not in df:
            continue
        name = Path(r.path).name.removeprefix("trial_")  # as results_frame names it
        tid = str(df["trial_id"].iloc[-1]) if "trial_id" in df else name
        cols = [m for m in metrics if m in df]
        rows = df[["step", *cols]].dropna(subset=[c for c in cols if not c.endswith(CI_BOUNDS)])
        rows = rows.assign(step=rows["step"].astype(int)).drop_duplicates("step", keep="last")
        out[tid] = rows.set_index("step")
    return out


def at_equal_budget(
    table: pd.DataFrame,
    histories: Mapping[str, pd.DataFrame],
    metrics: Sequence[str],
    carry: Sequence[str] = (),
) -> tuple[pd.DataFrame, Budget | None]:
    """The scored trials' rows, with ``metrics`` and ``step`` replaced by their values at the
    common budget; only the trials that reached it.

    Args:
        table: one row per trial (``trial_id``, ``status``, ``step``, the metrics: last values).
        histories: ``trial_histories`` of the same study.
        metrics: the columns compared (the objectives, and what is reported beside them).
        carry: further columns taken at the budget too when the history has them (confidence
            bounds), NaN otherwise; never required.

    Returns:
        The rows to rank, and the budget (None when no trial was scored).
    """
    scored = table[table["status"].isin(SCORED_STATUSES)]
    scored = scored[scored[list(metrics)].notna().all(axis=1)]
    if scored.empty:
        return scored, None

    def evaluations(tid: str) -> pd.DataFrame:
        h = histories.get(str(tid))
        if h is None or not set(metrics) <= set(h.columns):
            return pd.DataFrame()
        finite = h[list(metrics)].map(lambda v: isinstance(v, int | float) and math.isfinite(v))
        return h[finite.all(axis=1)]

    per_trial = {str(t): evaluations(t) for t in scored["trial_id"]}
    counts: dict[int, int] = {}
    for h in per_trial.values():
        for step in h.index:
            counts[int(step)] = counts.get(int(step), 0) + 1
    if not counts:  # no history (e.g. a table from elsewhere): the last values, as they are
        top = int(scored["step"].max())
        return scored, Budget(step=top, trials=len(scored), top_step=top)
    need = min(2, len(scored))
    step = max(s for s, n in counts.items() if n >= need)
    rows = []
    for _, row in scored.iterrows():
        h = per_trial[str(row["trial_id"])]
        if step not in h.index:
            continue
        row = row.copy()
        for m in metrics:
            row[m] = float(h.loc[step, m])
        full = histories[str(row["trial_id"])]
        for c in carry:
            row[c] = float(full.loc[step, c]) if c in full and step in full.index else math.nan
        row["step"] = step
        rows.append(row)
    ranked = pd.DataFrame(rows, columns=scored.columns)
    budget = Budget(step=step, trials=len(ranked), top_step=max(counts))
    return ranked, budget
