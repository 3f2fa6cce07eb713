"""`python -m semtune.search` end to end against a real MLflow server: the user's command.

A real Ray study (local Ray, two trials at a time, ASHA) runs in a subprocess and logs to the
server started in conftest.py; MlflowClient then checks what a user would look at in the UI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

STUDY = "search-cli-test"


@pytest.fixture(scope="module")
def search_run(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory, sample_train_dir: Path
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("search-cli")
    space = tmp / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "study": STUDY,
                "base": {
                    "config": "tiny",
                    "overrides": {
                        "data.clean_dir": str(sample_train_dir),
                        "schedule.steps": 9,
                        "schedule.eval_every": 3,
                    },
                },
                "space": {"loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0}},
                "objective": {"metric": "ssim", "mode": "max"},
                "scheduler": {"name": "asha", "grace_period": 3, "reduction_factor": 2},
                "trials": 4,
                "concurrency": 2,
                "resources": {"cpu": 1},
            },
            sort_keys=False,
        )
    )
    out = tmp / "study"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "semtune.search", "--space", str(space), "--out", str(out)]
        + ["--tracking-uri", mlflow_server, "--model-name", "search-cli-model"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "stdout": proc.stdout, "uri": mlflow_server}


def _tune_results(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every result each trial reported to Tune, by trial id (from Tune's own files)."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for f in (out / "tune").rglob("result.json"):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            by_trial.setdefault(row["trial_id"], []).append(row)
    return by_trial


def test_search_logs_a_parent_run_and_one_child_per_trial_with_every_metric_point(
    search_run: dict[str, Any],
) -> None:
    client = MlflowClient(search_run["uri"])
    exp = client.get_experiment_by_name(STUDY)
    assert exp is not None
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`semtune.role` = 'study'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_trial = {r.data.tags["semtune.trial"]: r for r in children}
    reported = _tune_results(search_run["out"])
    assert set(by_trial) == set(reported) and len(reported) == 4
    study = optuna.load_study(
        study_name=STUDY, storage=f"sqlite:///{search_run['out'] / 'optuna.db'}"
    )
    assert study.metric_names == ["ssim"]
    optuna_trials = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for tid, rows in reported.items():
        run = by_trial[tid]
        history = client.get_metric_history(run.info.run_id, "ssim")
        # every evaluation reported to Tune is in MLflow, at its training step, none lost
        assert sorted((int(m.step), m.value) for m in history) == sorted(
            (int(r["step"]), pytest.approx(r["ssim"])) for r in rows
        )
        finished = bool(rows[-1].get("finished"))
        expected = "finished" if finished else "stopped_early"
        assert run.data.tags["semtune.status"] == expected
        assert run.info.status == "FINISHED"  # stopped early is not a failure (a red cross)
        # optuna-dashboard says the same (the trial keeps its value for the sampler)
        ot = optuna_trials[tid]
        assert ot.state.name == "COMPLETE"
        assert ot.user_attrs["semtune_status"] == expected
        if not finished:
            assert ot.user_attrs["stopped_at_step"] == int(rows[-1]["step"])
        assert float(run.data.params["loss.gamma"]) == pytest.approx(
            rows[0]["config"]["loss.gamma"]
        )
        images = {f.path for f in client.list_artifacts(run.info.run_id, "images")}
        assert {f"images/step_{int(r['step']):06d}.png" for r in rows} <= images
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "results")} >= {
        "results/results.csv",
        "results/best_trial.json",
    }


def test_search_registers_the_best_generator_as_champion(search_run: dict[str, Any]) -> None:
    client = MlflowClient(search_run["uri"], registry_uri=search_run["uri"])
    best = json.loads((search_run["out"] / "best_trial.json").read_text())
    version = client.get_model_version_by_alias("search-cli-model", "champion")
    assert version.tags["semtune.trial"] == best["trial_id"]
    assert "registered search-cli-model version 1" in search_run["stdout"]
    assert f"open {search_run['uri']}" in search_run["stdout"]
    # and the link that opens the runs table on the study's columns
    exp = client.get_experiment_by_name(STUDY)
    page = f"{search_run['uri']}/#/experiments/{exp.experiment_id}/runs?viewStateShareKey=semtune"
    assert page in search_run["stdout"]


def test_the_best_trial_is_chosen_at_an_equal_budget(search_run: dict[str, Any]) -> None:
    """ASHA stopped some trials early: the best is ranked by every trial's score at the highest
    step at least two trials reached, never a late score against an early one."""
    best = json.loads((search_run["out"] / "best_trial.json").read_text())
    budget = best["budget"]
    scores = {
        tid: {int(r["step"]): float(r["ssim"]) for r in rows}
        for tid, rows in _tune_results(search_run["out"]).items()
    }
    reached: dict[int, int] = {}
    for steps in scores.values():
        for step in steps:
            reached[step] = reached.get(step, 0) + 1
    assert budget["step"] == max(s for s, n in reached.items() if n >= 2)
    assert budget["furthest_step"] == max(reached)
    at = {tid: s[budget["step"]] for tid, s in scores.items() if budget["step"] in s}
    assert len(at) == budget["trials"] >= 2
    assert best["trial_id"] == max(at, key=lambda t: at[t])
    assert best["step"] == budget["step"]
    assert best["metrics"]["ssim"] == pytest.approx(at[best["trial_id"]])


def test_the_champion_is_re_scored_beside_a_candidate_on_the_same_images(
    search_run: dict[str, Any],
) -> None:
    """What the registry calls before moving the alias (issue 12): both models restore the
    candidate's validation images; the same model against itself differs by exactly 0."""
    from semtune.train.state import load_generator_file
    from semtune.tune.tracked import paired_check

    out, uri = search_run["out"], search_run["uri"]
    same = paired_check(out / "best_generator.pt", "ssim", uri)("models:/search-cli-model/1")
    assert same.metric == "ssim" and same.images == 4  # the tiny split holds out 4 images
    assert same.mean == 0 and same.ci_low == 0 and same.ci_high == 0
    best = json.loads((out / "best_trial.json").read_text())["trial_id"]
    other = next(
        p
        for p in sorted((out / "tune").glob("trial_*/checkpoint_*/generator.pt"))
        if best not in str(p)
        and load_generator_file(p).config.loss.gamma
        != load_generator_file(out / "best_generator.pt").config.loss.gamma
    )
    diff = paired_check(other, "ssim", uri)("models:/search-cli-model/1")
    assert diff.mean != 0 and diff.ci_low <= diff.mean <= diff.ci_high
