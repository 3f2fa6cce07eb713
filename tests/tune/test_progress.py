"""The live table of a study (semtune.tune.progress)."""

from __future__ import annotations

from types import SimpleNamespace

from semtune.tune.progress import ProgressTable


def _trial(tid: str, status: str, last: dict) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status=status, last_result=last, config={"loss.gamma": 1})


def test_the_objective_is_shown_with_the_half_width_of_its_gains_interval() -> None:
    table = ProgressTable(["loss.gamma"], ["ssim", "psnr"])
    last = {
        "step": 80,
        "ssim": 0.80,
        "psnr": 33.0,
        "ssim_gain_ci_low": 0.01,
        "ssim_gain_ci_high": 0.03,
    }
    frame = table.frame([_trial("a", "RUNNING", last), _trial("b", "PENDING", {})])
    assert list(frame.columns) == ["trial", "status", "gamma", "step", "ssim", "ssim ±95%", "psnr"]
    assert frame.loc[0, "ssim ±95%"] == 0.01
    assert frame.loc[1, "ssim ±95%"] == ""  # nothing reported yet


def test_a_score_objective_uses_its_own_interval() -> None:
    table = ProgressTable([], ["score"])
    frame = table.frame(
        [_trial("a", "RUNNING", {"score": 2.0, "score_ci_low": 1.0, "score_ci_high": 1.5})]
    )
    assert frame.loc[0, "score ±95%"] == 0.25
