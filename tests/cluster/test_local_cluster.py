"""Studies on a real Ray cluster on this machine: submitted as a Ray job, and by address.

The cluster (conftest.py) has two nodes of 1 CPU each, token authentication on and its
dashboard on 127.0.0.1; the MLflow server is the session's (tests/conftest.py). The job's
working folder is a temporary project: a copy of the package, the bundled training images and
a study file that exists nowhere else, so everything the study reads must come through Ray's
upload. The last test stops the cluster by PID and checks that nothing of it is left.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import ServerProcess
from mlflow.tracking import MlflowClient

from .conftest import LocalCluster, _get, alive, descendants

pytestmark = pytest.mark.slow

JOB_STUDY = "cluster-job-test"
ADDRESS_STUDY = "cluster-address-test"
MODEL = "cluster-test-model"
JOB_TIMEOUT_S = 420


def _space(study: str) -> dict[str, Any]:
    # the tiny preset reads data/sample/train relative to the working directory (its default)
    return {
        "study": study,
        "base": {"config": "tiny", "overrides": {"schedule.steps": 4, "schedule.eval_every": 2}},
        "space": {"loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0}},
        "objective": {"metric": "ssim", "mode": "max"},
        "scheduler": {"name": "none"},
        "trials": 2,
        "concurrency": 2,
        "resources": {"cpu": 1},
    }


@pytest.fixture(scope="module", autouse=True)
def _boot_mlflow(mlflow_server_process: ServerProcess) -> ServerProcess:
    """Start the MLflow server with the module: it boots while the Ray cluster starts."""
    return mlflow_server_process


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """A project folder to upload: the package, the sample images, a study file of its own."""
    wd = tmp_path_factory.mktemp("job-project")
    shutil.copytree(
        repo_root / "semtune", wd / "semtune", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(repo_root / "data" / "sample" / "train", wd / "data" / "sample" / "train")
    (wd / "spaces").mkdir()
    (wd / "spaces" / "job.yaml").write_text(yaml.safe_dump(_space(JOB_STUDY), sort_keys=False))
    (wd / "out").mkdir()  # a stale output folder: left out of the upload by DEFAULT_EXCLUDES
    (wd / "out" / "stale.pt").write_bytes(b"\0" * 1024)
    return wd


@pytest.fixture(scope="module")
def job_run(
    local_cluster: LocalCluster,
    mlflow_server: str,
    project: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("job-results") / "study"
    cmd = [sys.executable, "-m", "semtune.submit", "--address", local_cluster.dashboard_url]
    cmd += ["--space", "spaces/job.yaml", "--out", str(out), "--tracking-uri", mlflow_server]
    cmd += ["--job-id", "semtune-cluster-test", "--", "--model-name", MODEL]
    cmd += ["--progress-every", "5"]
    # the client's environment: the token file, but no RAY_AUTH_MODE (semtune.submit sets it)
    env = {k: v for k, v in local_cluster.env.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.run(
        cmd, cwd=project, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S
    )
    return {"proc": proc, "out": out, "uri": mlflow_server}


def test_the_jobs_api_answers_only_requests_with_the_cluster_token(
    local_cluster: LocalCluster,
) -> None:
    url = f"{local_cluster.dashboard_url}/api/jobs/"
    assert _get(url, None)[0] == 401
    assert _get(url, "0" * 64)[0] == 403
    assert _get(url, local_cluster.token)[0] == 200


def test_the_dashboard_listens_on_loopback_only(local_cluster: LocalCluster) -> None:
    if local_cluster.node_ip.startswith("127."):
        pytest.skip("this machine has no network address but loopback")
    with socket.create_connection(("127.0.0.1", local_cluster.dashboard_port), timeout=5):
        pass
    # the node's own address (what other machines would use) has nothing listening there
    with pytest.raises(OSError):
        socket.create_connection((local_cluster.node_ip, local_cluster.dashboard_port), timeout=5)


def test_a_study_submitted_as_a_ray_job_runs_on_both_nodes_and_finishes(
    job_run: dict[str, Any], local_cluster: LocalCluster
) -> None:
    proc = job_run["proc"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "job semtune-cluster-test: SUCCEEDED" in proc.stdout
    table = pd.read_csv(job_run["out"] / "results.csv")
    assert len(table) == 2 and set(table["status"]) == {"done"}
    assert (table["step"] == 4).all()
    assert (job_run["out"] / "best_generator.pt").is_file()
    # two 1-CPU trials at once on two 1-CPU nodes: the second node unpacked the job's files
    unpacked = [
        sorted(t.glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*/spaces/job.yaml"))
        for t in local_cluster.temp_dirs
    ]
    assert all(unpacked), unpacked


def test_a_job_reads_its_study_and_images_from_the_uploaded_copy_only(
    job_run: dict[str, Any], project: Path, local_cluster: LocalCluster
) -> None:
    assert job_run["proc"].returncode == 0
    study = json.loads((job_run["out"] / "study.json").read_text())
    clean_dir = Path(study["base_config"]["data"]["clean_dir"])
    # resolved in the job's working directory: Ray's unpacked copy on the head node
    head_files = local_cluster.temp_dirs[0].resolve()
    assert clean_dir.is_relative_to(head_files), clean_dir
    assert clean_dir.parts[-3:] == ("data", "sample", "train")
    assert not clean_dir.is_relative_to(project)
    copy = clean_dir.parents[2]
    assert (copy / "spaces" / "job.yaml").read_text() == (project / "spaces/job.yaml").read_text()
    assert not (copy / "out").exists()  # excluded from the upload


def test_a_job_logs_a_parent_run_two_trial_runs_and_registers_the_best(
    job_run: dict[str, Any],
) -> None:
    assert job_run["proc"].returncode == 0
    client = MlflowClient(job_run["uri"], registry_uri=job_run["uri"])
    exp = client.get_experiment_by_name(JOB_STUDY)
    assert exp is not None
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`semtune.role` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'",
    )
    table = pd.read_csv(job_run["out"] / "results.csv")
    assert {r.data.tags["semtune.trial"] for r in children} == set(table["trial_id"])
    assert all(r.info.status == "FINISHED" for r in children)
    best = json.loads((job_run["out"] / "best_trial.json").read_text())
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.tags["semtune.trial"] == best["trial_id"]


def test_semtune_submit_reports_a_finished_job_status(
    job_run: dict[str, Any], local_cluster: LocalCluster
) -> None:
    assert job_run["proc"].returncode == 0
    env = {k: v for k, v in local_cluster.env.items() if k != "RAY_AUTH_MODE"}
    cmd = [sys.executable, "-m", "semtune.submit", "--address", local_cluster.dashboard_url]
    proc = subprocess.run(
        [*cmd, "--status", "semtune-cluster-test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("semtune-cluster-test: SUCCEEDED")


def test_search_runs_a_study_on_the_cluster_given_its_address_with_shared_storage(
    local_cluster: LocalCluster, tmp_path: Path, repo_root: Path
) -> None:
    space = tmp_path / "space.yaml"
    data = _space(ADDRESS_STUDY)
    data["base"]["overrides"]["data.clean_dir"] = str(repo_root / "data" / "sample" / "train")
    # with its confirmation stage: the best configuration and the control retrained with two
    # seeds each, on the cluster too (issue 12)
    confirm = repo_root / "data" / "sample" / "confirm"
    data["confirm"] = {"top_k": 1, "seeds": 2, "data": [str(confirm)], "crops": 8}
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    out, shared = tmp_path / "study", tmp_path / "nfs" / "study"
    # the token file but not RAY_AUTH_MODE: an explicit address makes semtune.search turn on
    # token mode itself (Ray 2.60 does so only for `auto`)
    env = {k: v for k, v in local_cluster.env.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.run(
        [sys.executable, "-m", "semtune.search", "--space", str(space), "--out", str(out)]
        + ["--address", local_cluster.gcs_address, "--storage-path", str(shared)]
        + ["--no-tracking", "--progress-every", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and set(table["status"]) == {"done"}
    # Tune's state and the trials' checkpoints went to the storage path (what every node of
    # a multi-node cluster reaches), the results to the study folder
    assert not (out / "tune").exists()
    assert len(list((shared / "tune").glob("trial_*/checkpoint_*"))) >= 2
    assert (out / "best_generator.pt").is_file()
    assert json.loads((out / "study.json").read_text())["tune_storage"] == str(shared)
    # the confirmation ran as a second Tune experiment in the shared storage: 2 configurations
    # x 2 seeds, each scored on every confirmation image, and the study says its verdict
    assert len(list((shared / "tune_confirm").glob("trial_*/checkpoint_*"))) >= 4
    scores = pd.read_csv(out / "confirmation_scores.csv")
    images = len(list(confirm.glob("*.jpg")))
    assert len(scores) == 2 * 2 * images and scores["seed"].nunique() == 2
    assert "verdict: " in proc.stdout, proc.stdout[-2000:]
    best = json.loads((out / "best_trial.json").read_text())
    assert "search_best" in best

    # --resume keeps the study's storage path; another one is refused before Ray starts
    from semtune.tune.space import load_space
    from semtune.tune.study import StudyError, run_study

    with pytest.raises(StudyError, match="differs from the study's"):
        run_study(load_space(space), out, resume=True, storage_path=str(tmp_path / "other"))


def test_stopping_the_cluster_by_pid_leaves_none_of_its_processes(
    local_cluster: LocalCluster,
) -> None:
    pids = {p.pid for p in local_cluster.nodes}
    for p in list(pids):
        pids |= descendants(p)
    assert len(pids) > 6  # per node: ray start, raylet, agents; GCS and dashboard on the head
    # SIGTERM to each `ray start --block`: Ray ends every process it started, none is left
    # for the SIGKILL fallback
    assert local_cluster.stop() == []
    assert [p for p in pids if alive(p)] == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", local_cluster.dashboard_port), timeout=5)
