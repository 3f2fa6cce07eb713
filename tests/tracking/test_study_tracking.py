"""A small study against a real MLflow server: runs, metrics, images, registry, CLIs, enhance.

The study itself (four tiny trainings logging at once, finish, three registrations) is the
session fixture ``study`` in conftest.py; each test here checks one promise with MlflowClient.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from semtune import tracking
from semtune.grids import labelled_grid
from semtune.registry import main as models_main
from semtune.tracking import (
    DEFAULT_MODEL_NAME,
    RegistrationResult,
    StudyTracker,
    TrialTracker,
    check_server,
    data_fingerprint,
    load_registered_generator,
)
from semtune.train.state import load_generator

from .conftest import Study


@pytest.fixture
def use_server(study: Study, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow's global URIs point at the test server for one test (as MLFLOW_TRACKING_URI
    does for a user), and are restored after it."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    return study.uri


@pytest.fixture(scope="module")
def client(study: Study) -> MlflowClient:
    return MlflowClient(tracking_uri=study.uri, registry_uri=study.uri)


def _children(client: MlflowClient, study: Study) -> dict[str, object]:
    runs = client.search_runs(
        [study.tracker.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{study.tracker.run_id}'",
    )
    return {r.data.tags["semtune.trial"]: r for r in runs}


def _download(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(dst)))


# -- the study's runs ------------------------------------------------------------------------------


def test_check_server_accepts_the_running_server(study: Study) -> None:
    check_server(study.uri)  # raises if it does not answer /health and the REST API


def test_parent_run_holds_the_study_files_and_the_best_trials_metrics(
    client: MlflowClient, study: Study
) -> None:
    run = client.get_run(study.tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tracking-test"
    assert run.data.params["study"] == "tracking-test"
    assert run.data.params["sampler"] == "tpe"
    assert run.data.params["num_samples"] == "4"
    assert run.data.tags["semtune.role"] == "study"
    assert run.data.tags["semtune.best_trial"] == study.registrations[-1][0]
    # the parent shows the best trial's best evaluation, i.e. the best score of the study
    scores = [
        v for t in study.trials.values() for (k, _), v in t.recorder.points.items() if k == "score"
    ]
    assert run.data.metrics["score"] == max(scores)
    files = {f.path for f in client.list_artifacts(run.info.run_id, "study")}
    assert files == {"study/space.yaml", "study/base_config.yaml"}
    assert {f.path for f in client.list_artifacts(run.info.run_id, "results")} == {
        "results/results.csv"
    }
    assert {f.path for f in client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/score_vs_gamma.png"
    }


def test_base_config_artifact_is_the_resolved_config(
    client: MlflowClient, study: Study, tmp_path: Path
) -> None:
    import yaml

    path = _download(client, study.tracker.run_id, "study/base_config.yaml", tmp_path)
    assert yaml.safe_load(path.read_text()) == study.tracker.base_config.to_dict()


def test_each_trial_is_a_nested_child_run_with_params_and_tags(
    client: MlflowClient, study: Study, sample_train_dir: Path
) -> None:
    children = _children(client, study)
    assert set(children) == {"t0", "t1", "t2", "t3"}
    fingerprint = data_fingerprint([sample_train_dir])
    for tid, run in children.items():
        t = study.trials[tid]
        assert run.data.tags["mlflow.parentRunId"] == study.tracker.run_id
        assert run.data.tags["semtune.study"] == "tracking-test"
        assert run.data.tags["semtune.preset"] == "tiny"
        assert run.data.tags["semtune.data_fingerprint"] == fingerprint
        assert run.data.tags["semtune.edge_operator"] == t.params["loss.edge_operator"]
        # hyperparameters are named by their config path
        assert run.data.params == {k: str(v) for k, v in t.params.items()}
    commit = tracking.git_commit()
    if commit is not None:
        assert all(r.data.tags["mlflow.source.git.commit"] == commit for r in children.values())


def test_trial_status_is_finished_stopped_early_or_failed(
    client: MlflowClient, study: Study
) -> None:
    children = _children(client, study)
    got = {tid: (r.info.status, r.data.tags["semtune.status"]) for tid, r in children.items()}
    assert got == {
        "t0": ("FINISHED", "finished"),
        "t1": ("FINISHED", "finished"),
        "t2": ("FINISHED", "stopped_early"),  # not a red cross in the UI
        "t3": ("FAILED", "failed"),
    }
    assert "injected failure at step 2" in children["t3"].data.tags["semtune.error"]


def test_no_metric_point_is_lost_when_trials_log_concurrently(
    client: MlflowClient, study: Study
) -> None:
    children = _children(client, study)
    total = 0
    for tid, run in children.items():
        reported = study.trials[tid].recorder.points
        assert reported, f"trial {tid} reported nothing"
        keys = {k for k, _ in reported}
        assert set(run.data.metrics) == keys
        for key in keys:
            history = client.get_metric_history(run.info.run_id, key)
            logged = sorted((m.step, m.value) for m in history)
            expected = sorted((s, v) for (k, s), v in reported.items() if k == key)
            assert logged == expected, f"trial {tid}, metric {key}"
            total += len(logged)
    # the loop reported losses at every step (log_every=1) plus evaluations every 3 steps
    assert total > 150


def test_the_runs_page_opens_on_the_studys_columns(client: MlflowClient, study: Study) -> None:
    exp = client.get_experiment(study.tracker.experiment_id)
    view = json.loads(exp.tags["mlflow.sharedViewState.semtune"])
    assert view["orderByKey"] == "metrics.`score`" and view["orderByAsc"] is False
    cols = view["selectedColumns"]
    assert cols[0] == "metrics.`score`"  # the objective first, then SSIM and PSNR
    for col in ("metrics.`ssim`", "metrics.`psnr`", "params.`loss.gamma`", "tags.`semtune.status`"):
        assert col in cols
    url = study.tracker.runs_page("http://127.0.0.1:5000/")
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?viewStateShareKey=semtune"
    )
    # the UI opens a "custom model development" experiment on its runs table, not GenAI
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_each_evaluation_logs_the_labelled_grid_people_look_at(
    client: MlflowClient, study: Study, tmp_path: Path
) -> None:
    children = _children(client, study)
    for tid in ("t0", "t1"):
        run_id = children[tid].info.run_id
        rec = study.trials[tid].recorder
        names = {f.path for f in client.list_artifacts(run_id, "images")}
        steps = sorted(rec.samples)
        assert steps == [3, 6]
        # one file per evaluation, nothing else under images/ (it used to be three)
        assert names == {f"images/step_{step:06d}.png" for step in steps}
        # and the scores per validation image of each evaluation
        scores = {f.path for f in client.list_artifacts(run_id, "scores")}
        assert scores == {f"scores/step_{step:06d}.csv" for step in steps}
        png = _download(client, run_id, "images/step_000006.png", tmp_path / tid)
        got = np.asarray(Image.open(png))
        np.testing.assert_array_equal(
            got, labelled_grid(rec.samples[6], title=f"trial {tid}, step 6")
        )


def test_finished_trials_upload_their_generator(
    client: MlflowClient, study: Study, tmp_path: Path
) -> None:
    children = _children(client, study)
    for tid in ("t0", "t1"):
        path = _download(
            client, children[tid].info.run_id, "generator/generator.pt", tmp_path / tid
        )
        ours = torch.load(study.trials[tid].run_dir / "generator.pt", weights_only=True)
        theirs = torch.load(path, weights_only=True)
        assert theirs["step"] == ours["step"]
        for k, v in ours["generator"].items():
            assert torch.equal(theirs["generator"][k], v)
    # a stopped trial's weights are not worth a download
    assert not client.list_artifacts(children["t2"].info.run_id, "generator")


def test_a_retried_trial_continues_its_own_run(study: Study, tmp_path: Path) -> None:
    side = StudyTracker(study.uri, experiment="semtune-tracking-side", study_name="retry-test")
    side.start()
    first = TrialTracker(side.trial_context(), "x1", {"loss.gamma": 2.0})
    run_id = first.start()
    first.log(1, {"loss_g": 1.0})
    # the worker dies; Tune restarts the trial from its checkpoint in a new process
    again = TrialTracker(side.trial_context(), "x1", {"loss.gamma": 2.0})
    assert again.start() == run_id
    again.log(2, {"loss_g": 0.5})
    again.close("finished")
    side.finish()
    c = MlflowClient(study.uri)
    history = c.get_metric_history(run_id, "loss_g")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]
    runs = c.search_runs([side.experiment_id], filter_string="tags.`semtune.trial` = 'x1'")
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"


def test_a_resumed_study_reopens_its_parent_run(study: Study) -> None:
    a = StudyTracker(
        study.uri, experiment="semtune-tracking-side", study_name="resume-test", study_key="/x"
    )
    first = a.start()
    b = StudyTracker(
        study.uri, experiment="semtune-tracking-side", study_name="resume-test", study_key="/x"
    )
    assert b.start(resume=True) == first
    c = StudyTracker(
        study.uri, experiment="semtune-tracking-side", study_name="resume-test", study_key="/y"
    )
    assert c.start(resume=True) != first  # another folder, another study: a new run
    for t in (b, c):
        t.finish()


def test_a_quote_in_a_study_name_or_folder_does_not_break_resume(study: Study) -> None:
    # the names go into MLflow filter strings, which have no escape for '
    name, key = "bob's gamma", "/home/bob/o'brien/out"
    a = StudyTracker(study.uri, experiment="semtune-tracking-side", study_name=name, study_key=key)
    first = a.start()
    trial = TrialTracker(a.trial_context(), "t'1", {"loss.gamma": 1.0})
    run = trial.start()
    b = StudyTracker(study.uri, experiment="semtune-tracking-side", study_name=name, study_key=key)
    assert b.start(resume=True) == first
    again = TrialTracker(b.trial_context(), "t'1", {"loss.gamma": 1.0})
    assert again.start() == run  # the retried trial continues its own run
    again.close("finished")
    b.finish()


# -- the registry ----------------------------------------------------------------------------------


def test_champion_moves_only_to_a_better_model(client: MlflowClient, study: Study) -> None:
    (mid, r1), (worst, r2), (best, r3) = study.registrations
    assert [r1.version, r2.version, r3.version] == ["1", "2", "3"]
    assert r1.promoted and r1.previous_version is None
    assert "no 'champion' yet" in r1.message
    assert not r2.promoted and r2.previous_version == "1"
    assert "not better than version 1" in r2.message and "stays on version 1" in r2.message
    assert r3.promoted and r3.previous_version == "1"
    assert r3.value > r1.value > r2.value
    assert "moved to it" in r3.message
    champion = client.get_model_version_by_alias(DEFAULT_MODEL_NAME, "champion")
    assert champion.version == "3"
    assert champion.tags["semtune.trial"] == best


def test_champion_is_compared_only_with_models_scored_on_the_same_validation_data(
    study: Study,
) -> None:
    """A better number on other validation images (or crops, or degradation) is no evidence:
    the alias stays, and the message says why (issue 12: a test suite's model was once
    out-ranked by a demo's on different data)."""
    t = study.best_trial
    cfg = t.config.to_dict()
    other = {**cfg, "data": {**cfg["data"], "val_crops": cfg["data"]["val_crops"] + 1}}
    assert tracking.validation_fingerprint(other) != tracking.validation_fingerprint(cfg)
    # training-only settings do not change what the scores were measured on
    same = {**cfg, "data": {**cfg["data"], "crop_size": cfg["data"]["crop_size"] * 2}}
    assert tracking.validation_fingerprint(same) == tracking.validation_fingerprint(cfg)

    def register(score: float, config: dict[str, Any]) -> RegistrationResult:
        return study.tracker.register_best(
            t.run_dir / "generator.pt", {"score": score}, t.trial_id, config, model_name="val-fp"
        )

    assert register(0.1, cfg).promoted
    elsewhere = register(0.9, other)
    assert not elsewhere.promoted
    assert "scored on other validation data" in elsewhere.message
    assert "semtune.models promote 2 --alias champion --model-name val-fp" in elsewhere.message
    assert register(0.5, same).promoted  # same validation data, better: moves


def test_the_champion_moves_only_when_the_paired_interval_lies_above_zero(study: Study) -> None:
    """Re-scored beside the champion on the same images, a candidate whose advantage is within
    the interval does not take the alias, even with a better recorded number; one whose
    interval lies above 0 does (issue 12)."""
    from semtune.tracking.registration import PairedDifference

    t = study.best_trial
    cfg = t.config.to_dict()
    asked: list[str] = []

    def register(score: float, diff: PairedDifference | None) -> RegistrationResult:
        def paired(holder: str) -> PairedDifference | None:
            asked.append(holder)
            return diff

        return study.tracker.register_best(
            t.run_dir / "generator.pt",
            {"score": score},
            t.trial_id,
            cfg,
            model_name="paired",
            paired=paired,
        )

    assert register(0.1, None).promoted and asked == []  # no champion: nothing to compare
    within = register(0.9, PairedDifference("score", 0.8, -0.1, 1.7, 4))
    assert asked == ["models:/paired/1"]
    assert not within.promoted and "stays on version 1" in within.message
    assert "score +0.8000 (95% CI -0.1000..+1.7000, 4 images)" in within.message
    assert "the interval includes 0" in within.message
    client = study.tracker.client
    tag = client.get_model_version("paired", within.version).tags["semtune.vs_champion"]
    assert tag.startswith("version 1: score +0.8000")
    above = register(0.2, PairedDifference("score", 0.1, 0.02, 0.18, 4))
    assert above.promoted and "moved to it" in above.message
    assert client.get_model_version_by_alias("paired", "champion").version == above.version
    # a champion that cannot be re-scored: the recorded values decide, as before
    assert not register(0.15, None).promoted


def test_two_studies_registering_at_once_leave_the_better_model_champion(
    client: MlflowClient, study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read 'no champion yet', then the better one sets the alias and the worse one sets
    it after: without a re-check after setting, the worse model was left champion."""
    import threading

    from semtune.tracking import registration

    read_holder = registration._current_holder
    both_read = threading.Barrier(2, timeout=60)
    first_call = threading.local()

    def racing_holder(*args: Any, **kwargs: Any) -> tuple[str | None, float | None, str | None]:
        got = read_holder(*args, **kwargs)
        if not getattr(first_call, "done", False):  # the comparison, not the re-checks
            first_call.done = True
            both_read.wait()
            if threading.current_thread().name == "worse":
                time.sleep(1.5)  # sets the alias after the better one did
        return got

    monkeypatch.setattr(registration, "_current_holder", racing_holder)
    t = study.best_trial
    results: dict[str, RegistrationResult] = {}

    def register(name: str, score: float) -> None:
        results[name] = study.tracker.register_best(
            t.run_dir / "generator.pt",
            {"score": score, "ssim": 0.5},
            t.trial_id,
            t.config.to_dict(),
            model_name="race-model",
        )

    threads = [
        threading.Thread(target=register, args=(name, score), name=name)
        for name, score in (("better", 0.9), ("worse", 0.1))
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    champion = client.get_model_version_by_alias("race-model", "champion")
    assert champion.version == results["better"].version
    assert results["better"].promoted and not results["worse"].promoted
    assert "registered at the same time, was better" in results["worse"].message


def test_registered_version_carries_metrics_study_trial_and_config(
    client: MlflowClient, study: Study
) -> None:
    tid, res = study.registrations[-1]
    mv = client.get_model_version(DEFAULT_MODEL_NAME, res.version)
    t = study.trials[tid]
    assert mv.run_id == _children(client, study)[tid].info.run_id
    assert float(mv.tags["metric.score"]) == pytest.approx(res.value, rel=1e-5)
    assert len(mv.tags["metric.score"]) <= 12  # short enough for the registry page
    assert mv.tags["semtune.study"] == "tracking-test"
    assert mv.tags["semtune.trial"] == tid
    assert mv.tags["semtune.objective"] == "score"
    assert float(mv.tags["param.loss.gamma"]) == pytest.approx(t.params["loss.gamma"], rel=1e-5)
    assert json.loads(mv.tags["semtune.config"]) == t.config.to_dict()
    # the noise of its training images and F's blur travel with the version
    low, mid, high = (float(v) for v in mv.tags["train.blurred_noise"].split(" / "))
    assert 0 < low <= mid <= high
    assert float(mv.tags["train.f_sigma"]) > 0
    assert f"Best trial `{tid}`" in mv.description
    # complete: the command names this very version, nothing left to fill in
    assert f"--model models:/semtune-generator/{res.version}`" in mv.description
    assert "<" not in mv.description


def test_logged_model_is_weights_config_and_code_without_pickles(
    use_server: str, client: MlflowClient, study: Study, tmp_path: Path
) -> None:
    import mlflow.artifacts
    import mlflow.models

    local = Path(
        mlflow.artifacts.download_artifacts(
            "models:/semtune-generator@champion", dst_path=str(tmp_path)
        )
    )
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "artifacts/generator.pt" in files
    assert "code/semtune/train/state.py" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    # by content, not name: no file is a raw pickle, and every torch/zip file loads with
    # weights_only (nothing in it can run code when it is read)
    for f in files:
        head = (local / f).read_bytes()[:4]
        assert head[:1] != b"\x80", f  # pickle protocol 2+
        if head == b"PK\x03\x04":
            torch.load(local / f, weights_only=True)
    # the pyfunc flavour loads from code (a .py file shipped in code/), not a pickled object
    import yaml

    flavors = yaml.safe_load((local / "MLmodel").read_text())["flavors"]
    assert set(flavors) == {"python_function"}, flavors
    pyfunc = flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model", pyfunc
    assert "python_model" not in pyfunc, pyfunc  # what a pickled PythonModel would name
    ckpt = torch.load(local / "artifacts" / "generator.pt", weights_only=True)
    # weights, the config that rebuilds the network, and the validation metrics of these weights
    # and what the training images were like and F's blur, for `enhance --report`
    assert set(ckpt) == {
        "version",
        "config",
        "generator",
        "step",
        "metrics",
        "data_stats",
        "degradation",
    }
    assert len(ckpt["data_stats"]["blurred_noise"]) == 3
    signature = mlflow.models.Model.load(str(local)).signature
    assert [spec.shape for spec in signature.inputs.inputs] == [(-1, 1, -1, -1)]  # any size


def test_pyfunc_model_restores_any_size_like_the_generator(use_server: str, study: Study) -> None:
    import mlflow.pyfunc

    from semtune.enhance import enhance_image

    model = mlflow.pyfunc.load_model("models:/semtune-generator@champion")
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 37, 53), dtype=np.float32)  # not a multiple of anything
    y = model.predict(x)
    assert y.shape == x.shape and y.dtype == np.float32
    g, _ = load_generator(study.best_trial.run_dir / "generator.pt")
    for i in range(2):
        ref = enhance_image(g, torch.from_numpy(x[i : i + 1])).numpy()
        np.testing.assert_allclose(y[i : i + 1], ref, atol=1e-6)


def test_logged_model_loads_where_semtune_is_not_installed(
    use_server: str, study: Study, tmp_path: Path
) -> None:
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(
        "models:/semtune-generator@champion", dst_path=str(tmp_path / "model")
    )
    # a fresh interpreter that cannot import the installed semtune (editable finder removed):
    # the model must bring its own copy of the package
    script = textwrap.dedent(
        f"""
        import sys
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path = [p for p in sys.path if p not in ("", {str(Path.cwd())!r})]
        try:
            import semtune
            raise SystemExit("semtune is still importable: " + semtune.__file__)
        except ImportError:
            pass
        import numpy as np
        import mlflow.pyfunc
        m = mlflow.pyfunc.load_model({local!r})
        y = m.predict(np.full((1, 1, 20, 31), 0.5, dtype=np.float32))
        import semtune
        assert semtune.__file__.startswith({local!r}), semtune.__file__
        print("shape", y.shape)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "shape (1, 1, 20, 31)" in out.stdout


def test_runs_uris_load_a_trials_generator(
    use_server: str, client: MlflowClient, study: Study
) -> None:
    children = _children(client, study)
    # a finished trial's uploaded generator.pt, and the model logged into the best trial's run
    tid, res = study.registrations[-1]
    cases = {
        f"runs:/{children['t0'].info.run_id}/generator/generator.pt": "t0",
        f"runs:/{res.run_id}/model": tid,
    }
    for uri, source in cases.items():
        ref, _ = load_generator(study.trials[source].run_dir / "generator.pt")
        g = load_registered_generator(uri)
        for (k, a), b in zip(ref.state_dict().items(), g.state_dict().values(), strict=True):
            assert torch.equal(a, b), (uri, k)


def test_unknown_model_uri_is_a_value_error_naming_it(use_server: str, study: Study) -> None:

    with pytest.raises(ValueError, match="models:/no-such-model@champion"):
        load_registered_generator("models:/no-such-model@champion")


# -- command lines ---------------------------------------------------------------------------------


def test_models_list_shows_versions_metrics_and_aliases(
    study: Study, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models_main(["list", "--tracking-uri", study.uri]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[1].split()
    assert header[:3] == ["version", "aliases", "score"]
    table = lines[3 : lines.index("") if "" in lines else None]
    rows = {ln.split()[0]: ln.split() for ln in table if ln.strip() and not ln.startswith("(")}
    assert set(rows) == {"1", "2", "3"}
    assert rows["3"][1] == "champion" and rows["1"][1] == "-" and rows["2"][1] == "-"
    val = MlflowClient(study.uri).get_model_version(DEFAULT_MODEL_NAME, "1").tags
    for tid, res in study.registrations:
        assert rows[res.version][2] == f"{res.value:.4f}"
        assert tid in rows[res.version]
        # what the scores were measured on, and the training seed
        assert val["semtune.val_fingerprint"][:8] in rows[res.version]
        assert val["semtune.seed"] == "0" and "0" in rows[res.version]
    assert "val data: the fingerprint" in out


def test_models_promote_moves_the_alias(study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    c = MlflowClient(study.uri)
    try:
        assert models_main(["promote", "2", "--tracking-uri", study.uri]) == 0
        assert "semtune-generator@champion -> version 2 (was version 3)" in capsys.readouterr().out
        assert c.get_model_version_by_alias(DEFAULT_MODEL_NAME, "champion").version == "2"
        assert (
            models_main(["promote", "1", "--alias", "candidate", "--tracking-uri", study.uri]) == 0
        )
        assert c.get_model_version_by_alias(DEFAULT_MODEL_NAME, "candidate").version == "1"
    finally:
        c.set_registered_model_alias(DEFAULT_MODEL_NAME, "champion", "3")
        c.delete_registered_model_alias(DEFAULT_MODEL_NAME, "candidate")


def test_models_cli_errors_name_the_problem(
    study: Study,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert models_main(["promote", "99", "--tracking-uri", study.uri]) == 2
    assert "has no version 99" in capsys.readouterr().err
    assert models_main(["list", "--name", "nope", "--tracking-uri", study.uri]) == 2
    assert "semtune-generator" in capsys.readouterr().err  # lists the registered ones
    # neither flag nor variable: the local store the search writes by default, named
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert models_main(["list"]) == 2
    assert f"{tmp_path}/mlruns/mlflow.db" in capsys.readouterr().err


def test_enhance_restores_a_16bit_tiff_through_the_champion_uri(
    use_server: str, study: Study, sample_test_dir: Path, tmp_path: Path
) -> None:
    from semtune.enhance import enhance_image
    from semtune.enhance import main as enhance_main

    src = sorted(sample_test_dir.glob("*.jpg"))[0]
    gray = np.asarray(Image.open(src).convert("L"), dtype=np.uint16)[101:251, 40:243]
    img16 = gray * 257 + np.arange(gray.size, dtype=np.uint16).reshape(gray.shape) % 200
    tif = tmp_path / "in" / "frame.tif"
    tif.parent.mkdir()
    tifffile.imwrite(tif, img16)
    out = tmp_path / "out"  # the server is MLFLOW_TRACKING_URI (use_server)
    code = enhance_main(
        [
            str(tif),
            "--model",
            "models:/semtune-generator@champion",
            "-o",
            str(out),
            "--no-bar-detect",
        ]
    )
    assert code == 0
    restored = tifffile.imread(out / "frame.tif")
    assert restored.dtype == np.uint16
    assert restored.shape == img16.shape == (150, 203)
    # the champion's weights did the restoring: same result as the best trial's own file
    g, _ = load_generator(study.best_trial.run_dir / "generator.pt")
    x = torch.from_numpy(img16.astype(np.float32) / 65535)[None, None]
    ref = enhance_image(g, x)[0, 0].numpy() * 65535
    assert np.abs(restored.astype(np.float64) - ref).max() <= 1.0


def test_a_study_knows_what_it_registered_so_a_resume_does_not_register_it_twice(
    study: Study,
) -> None:
    """semtune.search --resume of a finished study asks this before registering its best."""
    t = study.best_trial
    reg = study.tracker.register_best(
        t.run_dir / "generator.pt",
        {"score": 0.0},
        t.trial_id,
        t.config.to_dict(),
        model_name="once",
    )
    assert study.tracker.registered() == ("once", reg.version, t.trial_id)
