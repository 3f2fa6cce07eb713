"""Small real studies on a local Ray: they complete, write their outputs, fail diverging trials
without stopping, and retry a crashed trial from its checkpoint."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml

from semtune.train.state import load_generator
from semtune.tune.space import load_space
from semtune.tune.study import StudyError, StudyResult, run_study
from semtune.tune.trainable import FAULT_INJECT_ENV

pytestmark = pytest.mark.filterwarnings("ignore")


def _space(tmp: Path, name: str, sample_train_dir: Path, **fields: Any) -> Path:
    data: dict[str, Any] = {
        "study": name,
        "base": {
            "config": "tiny",
            "overrides": {"data.clean_dir": str(sample_train_dir), "schedule.log_every": 3},
        },
        "objective": {"metric": "ssim", "mode": "max"},
        "scheduler": "none",
        "concurrency": 2,
        "resources": {"cpu": 1},
        "max_failures": 1,
    }
    data.update(fields)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _reported_steps(trial_path: str) -> list[tuple[int, int]]:
    """(step, resumed_from) of every result Tune recorded for a trial, in order."""
    rows = [json.loads(line) for line in Path(trial_path, "result.json").read_text().splitlines()]
    return [(int(r["step"]), int(r["resumed_from"])) for r in rows]


@pytest.fixture(scope="module")
def gamma_study(
    ray_session: Any, tmp_path_factory: pytest.TempPathFactory, sample_train_dir: Path
) -> tuple[StudyResult, list[str]]:
    # gamma = 1e39 is inf in float32: the weighted edge loss is inf (or inf * 0 = nan) at the
    # first step, so that trial diverges deterministically while the other two train.
    tmp = tmp_path_factory.mktemp("gamma")
    path = _space(
        tmp,
        "gamma-test",
        sample_train_dir,
        space={"loss.gamma": {"distribution": "grid", "values": [0.0, 10.0, 1.0e39]}},
        sampler={"name": "grid", "seed": 0},
    )
    lines: list[str] = []
    result = run_study(load_space(path), tmp / "out", printer=lines.append, progress_interval_s=5)
    return result, lines


def test_a_small_study_completes_and_writes_its_table_figures_and_generator(
    gamma_study: tuple[StudyResult, list[str]],
) -> None:
    result, lines = gamma_study
    out = result.out_dir
    assert result.complete
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["loss.gamma"]) == [0.0, 10.0, 1.0e39]
    for name in ("history.png", "ssim_psnr_vs_loss.gamma.png", "best_trial.json", "study.json"):
        assert (out / name).is_file(), name
    assert (out / "optuna.db").is_file()
    # The best trial is the trained trial with the highest SSIM, recomputed from the CSV.
    trained = table[table["status"] == "done"]
    expected = trained.loc[trained["ssim"].idxmax()]
    best = json.loads((out / "best_trial.json").read_text())
    assert best["trial_id"] == expected["trial_id"]
    g, cfg = load_generator(out / "best_generator.pt")
    assert cfg.loss.gamma == expected["loss.gamma"]
    # every score with its 95% interval over the validation images
    for m in ("ssim", "psnr"):
        assert (trained[f"{m}_ci_low"] <= trained[m]).all()
        assert (trained[m] <= trained[f"{m}_ci_high"]).all()
    low, high = best["ci95"]["ssim"]
    assert low <= best["metrics"]["ssim"] <= high
    assert any("trials:" in line for line in lines)  # the live table was printed


def test_reported_metrics_are_the_trainers_own(gamma_study: tuple[StudyResult, list[str]]) -> None:
    result, _ = gamma_study
    for _, row in result.table[result.table["status"] == "done"].iterrows():
        # The final checkpoint carries the trainer's metrics.csv: its last row must be what
        # Tune recorded and the table shows.
        ckpts = sorted(Path(row["path"]).glob("checkpoint_*"))
        with (ckpts[-1] / "metrics.csv").open() as fh:
            last = list(csv.DictReader(fh))[-1]
        assert int(float(last["step"])) == row["step"] == 6
        assert math.isclose(float(last["ssim"]), row["ssim"], rel_tol=1e-9)
        assert math.isclose(float(last["psnr"]), row["psnr"], rel_tol=1e-9)


def test_a_complete_study_keeps_of_its_checkpoints_what_is_read_again(
    gamma_study: tuple[StudyResult, list[str]],
) -> None:
    result, lines = gamma_study
    done = result.table[result.table["status"] == "done"]
    assert len(done) == 2
    for _, row in done.iterrows():
        ckpts = sorted(Path(row["path"]).glob("checkpoint_*"))
        assert len(ckpts) == 2  # Tune's num_to_keep, its bookkeeping untouched
        # no training state (only continuing a trial reads it; none continues now) ...
        assert not any((c / "last.pt").exists() for c in ckpts)
        # ... the latest generator (what best_generator.pt and the registry take), metrics
        assert (ckpts[-1] / "generator.pt").is_file() and (ckpts[-1] / "metrics.csv").is_file()
        assert not (ckpts[0] / "generator.pt").exists()
    assert any(line.startswith("checkpoints of the finished trials:") for line in lines)


def test_a_diverging_trial_fails_while_the_study_completes(
    gamma_study: tuple[StudyResult, list[str]],
) -> None:
    result, _ = gamma_study
    table = result.table.set_index("loss.gamma")
    assert table.loc[1.0e39, "status"] == "diverged"
    assert math.isnan(table.loc[1.0e39, "ssim"])
    assert list(table.loc[[0.0, 10.0], "status"]) == ["done", "done"]
    study = optuna.load_study(
        study_name="gamma-test", storage=f"sqlite:///{result.out_dir / 'optuna.db'}"
    )
    states = {t.params["loss.gamma"]: t.state.name for t in study.trials}
    assert states == {0.0: "COMPLETE", 10.0: "COMPLETE", 1.0e39: "FAIL"}
    # optuna-dashboard shows the objective by name, and how each trial ended
    assert study.metric_names == ["ssim"]
    ended = {t.params["loss.gamma"]: t.user_attrs.get("semtune_status") for t in study.trials}
    assert ended == {0.0: "finished", 10.0: "finished", 1.0e39: None}


def test_a_folder_holding_a_study_is_not_overwritten(
    gamma_study: tuple[StudyResult, list[str]],
) -> None:
    result, _ = gamma_study
    spec = load_space(result.out_dir / "space.yaml")
    with pytest.raises(StudyError, match="already holds a study; add --resume"):
        run_study(spec, result.out_dir, printer=lambda _: None)


def test_a_trial_that_crashes_once_is_retried_from_its_checkpoint(
    ray_session: Any, tmp_path: Path, sample_train_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "crashed"
    monkeypatch.setenv(FAULT_INJECT_ENV, str(marker))
    path = _space(
        tmp_path,
        "crash-test",
        sample_train_dir,
        space={"loss.gamma": {"distribution": "grid", "values": [5.0]}},
        sampler="grid",
    )
    result = run_study(load_space(path), tmp_path / "out", printer=lambda _: None)
    assert marker.read_text().startswith("crashed once after the checkpoint at step 3")
    row = result.table.iloc[0]
    assert row["status"] == "done" and row["step"] == 6 and row["error"] == ""
    # Steps 3 then 6: the retry continued from the step-3 checkpoint (a restart from scratch
    # would have reported step 3 again, with resumed_from 0).
    assert _reported_steps(row["path"]) == [(3, 0), (6, 3)]


def test_a_trial_stopped_by_a_full_disk_fails_clearly_and_the_study_resumes(
    ray_session: Any, tmp_path: Path, sample_train_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "disk-full"
    monkeypatch.setenv(FAULT_INJECT_ENV, f"enospc:{marker}")
    path = _space(
        tmp_path,
        "disk-full-test",
        sample_train_dir,
        space={"loss.gamma": {"distribution": "grid", "values": [5.0]}},
        sampler="grid",
        max_failures=0,  # no retry: the study ends with the trial failed
    )
    out = tmp_path / "out"
    first = run_study(load_space(path), out, printer=lambda _: None)
    row = first.table.iloc[0]
    assert row["status"] != "done" and "No space left on device" in row["error"]
    # room made: --resume continues the failed trial from its last checkpoint
    again = run_study(load_space(path), out, resume=True, printer=lambda _: None)
    row = again.table.iloc[0]
    assert row["status"] == "done" and row["step"] == 6 and row["error"] == ""
    assert _reported_steps(row["path"])[-1] == (6, 3)


def test_the_driver_says_once_what_every_trial_measures_on_the_data(
    sample_train_dir: Path,
) -> None:
    """Trials write F's starting blur, the blurred images' noise and their warnings only to
    their own train.log; the driver prints them once before the trials start, so that a study
    on noise-free blurred images (or a blur that cannot be measured) says so in the terminal."""
    from semtune.train.config import load_train_config
    from semtune.tune.study import _say_what_trials_measure

    def said(*overrides: str, preset: str = "cpu") -> list[str]:
        lines: list[str] = []
        cfg = load_train_config(preset, [f"data.clean_dir={sample_train_dir}", *overrides])
        _say_what_trials_measure(cfg, lines.append)
        return lines

    noisy = said()  # the cpu preset: set A+n of the bundled images
    assert any("F starts from the data: blur sigma" in line for line in noisy)
    assert any("F adds the blurred images' noise" in line for line in noisy)
    assert not any("almost no pixel noise" in line for line in noisy)
    clean = said("data.synthetic_set=A")
    warnings = [line for line in clean if "WARNING: the blurred images carry almost no" in line]
    assert len(warnings) == 1 and "paint grain into real, noisy ones" in warnings[0]
    assert said(preset="tiny") == []  # F from a fixed Gaussian, no noise: nothing measured
