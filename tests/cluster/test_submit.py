"""``semtune.submit`` before anything reaches a cluster: the job it builds, what it uploads, and
the mistakes it refuses (each of which would otherwise fail on the cluster, or lose results)."""

from __future__ import annotations

import os
import shlex
import zipfile
from pathlib import Path

import pytest
import yaml

from semtune.submit import (
    DEFAULT_EXCLUDES,
    SubmitError,
    plan_job,
    prepare_auth,
    resolve_address,
)

URI = "http://10.0.0.5:5000"


@pytest.fixture
def project(tmp_path: Path, sample_train_dir: Path) -> Path:
    """A working folder with a study file and (a link to) training images inside it."""
    (tmp_path / "data" / "sample").mkdir(parents=True)
    (tmp_path / "data" / "sample" / "train").symlink_to(sample_train_dir)
    (tmp_path / "spaces").mkdir()
    _write_space(tmp_path / "spaces" / "s.yaml")
    return tmp_path


def _write_space(path: Path, **base_overrides: object) -> None:
    data = {
        "study": "demo",
        "base": {"config": "tiny", "overrides": dict(base_overrides)},
        "space": {"loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0}},
        "objective": {"metric": "ssim", "mode": "max"},
        "trials": 2,
    }
    path.write_text(yaml.safe_dump(data))


def test_the_job_runs_search_on_the_space_inside_the_uploaded_folder(project: Path) -> None:
    plan = plan_job(
        project / "spaces" / "s.yaml",
        working_dir=project,
        tracking_uri=URI,
        search_args=["--num-samples", "4", "--set", "schedule.steps=10"],
        now=0.0,
    )
    argv = shlex.split(plan.entrypoint)
    assert argv[:3] == ["python", "-m", "semtune.search"]
    assert argv[argv.index("--space") + 1] == "spaces/s.yaml"  # relative: read from the copy
    assert argv[argv.index("--tracking-uri") + 1] == URI
    assert argv[-4:] == ["--num-samples", "4", "--set", "schedule.steps=10"]
    # a durable folder on the cluster, named after the study, outside the job's working copy
    out = argv[argv.index("--out") + 1]
    assert out == plan.out and out.startswith("~/semtune-studies/demo-")
    assert plan.submission_id.startswith("semtune-demo-")
    assert plan.runtime_env == {"working_dir": str(project), "excludes": list(DEFAULT_EXCLUDES)}
    assert plan.metadata["semtune.out"] == out


def test_a_space_outside_the_working_folder_is_refused(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "s.yaml"
    _write_space(elsewhere)
    with pytest.raises(SubmitError, match="outside the working folder"):
        plan_job(elsewhere, working_dir=project, tracking_uri=URI)


def test_a_relative_data_folder_missing_from_the_working_folder_is_refused(project: Path) -> None:
    with pytest.raises(SubmitError, match=r"data\.clean_dir = data/other"):
        plan_job(
            project / "spaces" / "s.yaml",
            working_dir=project,
            tracking_uri=URI,
            search_args=["--set", "data.clean_dir=data/other"],
        )


def test_a_data_folder_the_upload_would_leave_out_is_refused(project: Path) -> None:
    (project / ".gitignore").write_text("/data/\n")
    with pytest.raises(SubmitError, match="left out of the upload"):
        plan_job(project / "spaces" / "s.yaml", working_dir=project, tracking_uri=URI)


def test_an_absolute_data_folder_is_accepted_with_a_note(
    project: Path, sample_train_dir: Path
) -> None:
    _write_space(project / "spaces" / "s.yaml", **{"data.clean_dir": str(sample_train_dir)})
    plan = plan_job(project / "spaces" / "s.yaml", working_dir=project, tracking_uri=URI)
    assert len(plan.notes) == 1 and "must exist on every node" in plan.notes[0]


@pytest.mark.parametrize("uri", ["", "sqlite:///tmp/mlflow.db", "/home/me/mlruns"])
def test_tracking_to_a_store_the_cluster_cannot_reach_is_refused(
    project: Path, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SubmitError, match="MLflow server that its nodes reach"):
        plan_job(project / "spaces" / "s.yaml", working_dir=project, tracking_uri=uri or None)


def test_no_tracking_needs_no_server(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plan = plan_job(project / "spaces" / "s.yaml", working_dir=project, no_tracking=True)
    assert "--no-tracking" in shlex.split(plan.entrypoint)


def test_a_relative_study_folder_is_refused(project: Path) -> None:
    with pytest.raises(SubmitError, match="absolute path on the cluster"):
        plan_job(project / "spaces" / "s.yaml", working_dir=project, tracking_uri=URI, out="res")


@pytest.mark.parametrize("flag", ["--out", "--tracking-uri", "--address", "--space"])
def test_options_of_submit_are_refused_after_the_separator(project: Path, flag: str) -> None:
    with pytest.raises(SubmitError, match=f"{flag} after '--'"):
        plan_job(
            project / "spaces" / "s.yaml",
            working_dir=project,
            tracking_uri=URI,
            search_args=[f"{flag}=x"],
        )


@pytest.mark.parametrize("args", [["-o", "/studies/x"], ["-o/studies/x"]])
def test_the_short_out_flag_is_refused_after_the_separator_like_out(
    project: Path, args: list[str]
) -> None:
    # semtune.search takes -o for --out too: after '--' it would override submit's own --out
    with pytest.raises(SubmitError, match="-o after '--'"):
        plan_job(
            project / "spaces" / "s.yaml", working_dir=project, tracking_uri=URI, search_args=args
        )


def test_the_address_comes_from_the_flag_then_rays_variables() -> None:
    assert resolve_address("http://h:8265/") == "http://h:8265"
    assert resolve_address(None, {"RAY_API_SERVER_ADDRESS": "http://a:1"}) == "http://a:1"
    assert resolve_address(None, {"RAY_ADDRESS": "http://b:2"}) == "http://b:2"
    # a GCS address in RAY_ADDRESS is for drivers, not for the jobs API
    assert resolve_address(None, {"RAY_ADDRESS": "10.0.0.1:6379"}) == "http://127.0.0.1:8265"
    with pytest.raises(SubmitError, match="dashboard URL"):
        resolve_address("ray://h:10001", {})


def test_token_auth_is_turned_on_and_a_missing_token_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        # setenv first: monkeypatch then restores the variables prepare_auth sets (a delenv of
        # an unset variable records nothing, and Ray in later tests would read them)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    with pytest.raises(SubmitError, match="no Ray token"):
        prepare_auth()
    token = tmp_path / "t"
    token.write_text("f" * 64)
    assert prepare_auth(token) == str(token)
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token)


def test_the_upload_holds_the_project_and_none_of_its_generated_files(
    repo_root: Path, tmp_path: Path
) -> None:
    # Ray's own packaging, as the job client runs it on the repository with semtune's excludes
    from ray._private.runtime_env.packaging import create_package

    from semtune.tune.jobs import _ignored

    package = tmp_path / "pkg.zip"
    create_package(
        str(repo_root),
        package,
        include_gitignore=True,
        excludes=[".git", ".venv", "venv"] + ["__pycache__", *DEFAULT_EXCLUDES],
    )
    names = set(zipfile.ZipFile(package).namelist())
    for needed in (
        "semtune/search.py",
        "semtune/configs/tiny.yaml",
        "search_spaces/gamma.yaml",
        "cluster/gamma-gpu.yaml",
        "pyproject.toml",
    ):
        assert needed in names
    images = {n for n in names if n.startswith("data/sample/train/")}
    assert len(images) >= 18
    for name in names:
        assert not name.startswith((".git/", ".venv/", "mlruns/", "out/")), name
        assert "__pycache__" not in name and not name.endswith((".pt", ".db")), name
    # semtune.submit's own check of what is uploaded agrees with Ray's packaging
    ignored = _ignored(repo_root, DEFAULT_EXCLUDES)
    assert not ignored.match_file("data/sample/train/x.png")
    assert ignored.match_file(".venv/bin/python") and ignored.match_file("mlruns/mlflow.db")


def test_the_runtime_env_file_for_ray_job_submit_excludes_what_semtune_submit_does(
    repo_root: Path,
) -> None:
    env = yaml.safe_load((repo_root / "cluster" / "runtime-env.yaml").read_text())
    assert env == {"excludes": list(DEFAULT_EXCLUDES)}


def test_a_study_run_as_a_ray_job_runs_on_the_jobs_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from semtune.tune.study import ray_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(None) == "local"  # a private Ray instance, as before
    assert ray_address("ray://h:10001") == "ray://h:10001"
    # what Ray sets for a job's entrypoint: the cluster's GCS address
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address(None) == "10.0.0.1:6379"
    # a dashboard URL there is for the jobs CLI; ray.init cannot use it
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    assert ray_address(None) == "local"


def test_the_storage_path_is_a_uri_as_given_or_an_absolute_folder(tmp_path: Path) -> None:
    from semtune.tune.study import tune_storage

    out = tmp_path / "study"
    assert tune_storage(out, None) == str(out)
    assert tune_storage(out, "s3://bucket/semtune/gamma/") == "s3://bucket/semtune/gamma"
    rel = tune_storage(out, "shared/gamma")
    assert Path(rel).is_absolute() and rel.endswith("shared/gamma")


@pytest.mark.parametrize("flag", ["--ou", "--trac=x", "--addr", "--spa"])
def test_abbreviated_options_of_submit_are_refused_after_the_separator(
    project: Path, flag: str
) -> None:
    # argparse reads --ou as --out: the check must too
    with pytest.raises(SubmitError, match="after '--'"):
        plan_job(
            project / "spaces" / "s.yaml", working_dir=project, tracking_uri=URI, search_args=[flag]
        )


def test_the_home_folder_or_root_is_never_uploaded(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(project))  # the project folder is someone's home here
    for wd in (project, Path("/")):
        with pytest.raises(SubmitError, match="keys and tokens would be uploaded"):
            plan_job(project / "spaces" / "s.yaml", working_dir=wd, tracking_uri=URI)
    monkeypatch.setenv("HOME", str(project / "data"))  # home inside the working folder
    with pytest.raises(SubmitError, match="holds your home folder"):
        plan_job(project / "spaces" / "s.yaml", working_dir=project, tracking_uri=URI)


def test_secret_files_are_left_out_of_the_upload(project: Path, tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import create_package

    secrets = [
        ".env",
        ".env.local",
        "cluster.token",
        ".ray/auth_token",
        "server.pem",
        "tls.key",
        ".ssh/id_ed25519",
        ".aws/credentials",
        ".netrc",
        ".git-credentials",
        ".kube/config",
        "sub/.env",
    ]
    for name in secrets:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("secret")
    (project / "notes.txt").write_text("kept")
    package = tmp_path / "pkg.zip"
    create_package(str(project), package, include_gitignore=True, excludes=list(DEFAULT_EXCLUDES))
    names = set(zipfile.ZipFile(package).namelist())
    assert "notes.txt" in names and "spaces/s.yaml" in names
    leaked = [n for n in names for s in secrets if n == s or n.startswith(s + "/")]
    assert not leaked, leaked
