"""Equal-budget ranking (semtune.tune.budget): never a stopped trial's early score against a
finished trial's late one."""

from __future__ import annotations

import pandas as pd
import pytest

from semtune.tune.budget import at_equal_budget

METRICS = ["ssim"]


def _table(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trial_id", "status", "step", "ssim"])


def _history(points: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"ssim": list(points.values())}, index=list(points)).rename_axis("step")


HIST = {
    "a": _history({80: 0.70, 160: 0.78, 240: 0.80}),  # finished, slow starter
    "b": _history({80: 0.75}),  # stopped by ASHA at 80
    "c": _history({80: 0.76, 160: 0.77, 240: 0.79}),  # finished
}


def test_finished_trials_are_compared_at_their_common_final_step() -> None:
    table = _table([("a", "done", 240, 0.80), ("b", "stopped", 80, 0.75), ("c", "done", 240, 0.79)])
    ranked, budget = at_equal_budget(table, HIST, METRICS)
    assert budget is not None and (budget.step, budget.trials, budget.top_step) == (240, 2, 240)
    assert list(ranked["trial_id"]) == ["a", "c"]  # b never reached 240: not in the ranking
    assert list(ranked["ssim"]) == [0.80, 0.79]


def test_when_one_trial_went_furthest_all_are_compared_where_at_least_two_were() -> None:
    # only a reached 240; at 160 only a; at 80 all three: compared there, at their step-80 scores
    hist = {**HIST, "c": _history({80: 0.76})}
    table = _table(
        [("a", "done", 240, 0.80), ("b", "stopped", 80, 0.75), ("c", "stopped", 80, 0.76)]
    )
    ranked, budget = at_equal_budget(table, hist, METRICS)
    assert budget is not None and (budget.step, budget.trials, budget.top_step) == (80, 3, 240)
    assert dict(zip(ranked["trial_id"], ranked["ssim"], strict=True)) == {
        "a": 0.70,
        "b": 0.75,
        "c": 0.76,
    }
    assert set(ranked["step"]) == {80}
    assert "highest step at least two trials reached" in budget.describe()


def test_failed_and_diverged_trials_are_not_ranked_and_one_trial_is_its_own_budget() -> None:
    table = _table([("a", "done", 240, 0.80), ("b", "failed", 80, float("nan"))])
    ranked, budget = at_equal_budget(table, HIST, METRICS)
    assert list(ranked["trial_id"]) == ["a"] and budget is not None and budget.step == 240
    empty, none = at_equal_budget(_table([("b", "diverged", 3, float("nan"))]), HIST, METRICS)
    assert empty.empty and none is None


@pytest.mark.parametrize("histories", [{}, {"a": pd.DataFrame()}])
def test_without_histories_the_last_scores_are_ranked_as_they_are(histories: dict) -> None:
    table = _table([("a", "done", 240, 0.80), ("c", "done", 240, 0.79)])
    ranked, budget = at_equal_budget(table, histories, METRICS)
    assert list(ranked["trial_id"]) == ["a", "c"] and budget is not None and budget.step == 240
