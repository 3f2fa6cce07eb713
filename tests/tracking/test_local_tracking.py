"""Tracking pieces that need no server: URIs, the fail-fast check, image grids, fingerprints,
and the default local sqlite store under concurrent writers."""

from __future__ import annotations

import http.server
import multiprocessing as mp
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from semtune.tracking import (
    StudyTracker,
    TrackingError,
    TrialTracker,
    check_server,
    data_fingerprint,
    resolve_tracking_uri,
)

from .conftest import free_port

# -- where to log ----------------------------------------------------------------------------------


def test_tracking_uri_flag_wins_over_environment_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri("http://10.0.0.5:5000", default_dir=tmp_path) == (
        "http://10.0.0.5:5000"
    )
    assert resolve_tracking_uri(None, default_dir=tmp_path) == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None, default_dir=tmp_path) == (
        f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    )


def test_local_paths_become_absolute_sqlite_uris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray workers run in other directories: a relative store would split the study
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("runs", default_dir=tmp_path) == (
        f"sqlite:///{tmp_path.resolve()}/runs/mlflow.db"
    )
    assert resolve_tracking_uri("x/store.db", default_dir=tmp_path) == (
        f"sqlite:///{tmp_path.resolve()}/x/store.db"
    )
    assert resolve_tracking_uri("sqlite:///rel.db", default_dir=tmp_path) == (
        f"sqlite:///{tmp_path.resolve()}/rel.db"
    )
    assert (
        resolve_tracking_uri("sqlite:////abs/a.db", default_dir=tmp_path) == "sqlite:////abs/a.db"
    )


def test_check_server_fails_fast_naming_the_uri_when_nothing_listens() -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there
    with pytest.raises(TrackingError, match=f"{uri} does not answer") as err:
        check_server(uri, timeout=5)
    assert "mlflow/start-server.sh" in str(err.value)


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b"nothing here")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_http_server() -> Iterator[str]:
    srv = http.server.HTTPServer(("127.0.0.1", 0), _NotMlflow)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_check_server_rejects_a_web_server_that_is_not_mlflow(other_http_server: str) -> None:
    with pytest.raises(TrackingError, match="is this an MLflow tracking server"):
        check_server(other_http_server, timeout=5)


def test_check_server_creates_the_folder_of_a_local_store(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "mlflow.db"
    check_server(f"sqlite:///{db}")
    assert db.parent.is_dir()


def test_check_server_rejects_a_store_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrackingError, match="cannot create"):
        check_server(f"sqlite:///{blocker}/sub/mlflow.db")


# -- data fingerprints -----------------------------------------------------------------------------


def test_data_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "x.tif").write_bytes(b"\x00\x01\x02")
        (d / "y.tif").write_bytes(b"\x03")
    assert data_fingerprint([a]) == data_fingerprint([b])
    (b / "y.tif").write_bytes(b"\x04")  # same size, other content
    assert data_fingerprint([a]) != data_fingerprint([b])
    (b / "y.tif").write_bytes(b"\x03")
    (b / "y.tif").rename(b / "z.tif")
    assert data_fingerprint([a]) != data_fingerprint([b])
    assert len(data_fingerprint([a])) == 12


def test_data_fingerprint_of_a_missing_folder_is_stable(tmp_path: Path) -> None:
    assert data_fingerprint([tmp_path / "gone"]) == data_fingerprint([tmp_path / "gone"])
    assert data_fingerprint([tmp_path / "gone"]) != data_fingerprint([tmp_path])


# -- the default local store -----------------------------------------------------------------------

STEPS = 30
KEYS = ("loss_g", "loss_d", "loss_cycle", "loss_edge")


def _worker(context: dict, trial_id: str) -> None:
    tracker = TrialTracker(context, trial_id, {"loss.gamma": float(trial_id[-1])})
    tracker.start()
    for step in range(1, STEPS + 1):
        tracker.log(step, {k: step + i / 10 + int(trial_id[-1]) for i, k in enumerate(KEYS)})
    tracker.close("finished")


def test_local_sqlite_store_loses_nothing_with_concurrent_trial_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without a server, Ray's trial processes write to one sqlite file at once
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store, in tmp_path
    uri = resolve_tracking_uri(None, default_dir=tmp_path / "study")
    check_server(uri)
    study = StudyTracker(uri, experiment="local", study_name="local-test")
    study.start()
    ctx = study.trial_context()
    spawn = mp.get_context("spawn")
    procs = [spawn.Process(target=_worker, args=(ctx, f"p{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    study.finish()
    client = MlflowClient(uri)
    for i in range(2):
        run_id = study.trial_run_id(f"p{i}")
        assert run_id is not None
        for j, key in enumerate(KEYS):
            hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            assert hist == [(s, s + j / 10 + i) for s in range(1, STEPS + 1)]
    # artifacts sit beside the database, not in whatever directory a worker ran in
    exp = client.get_experiment(study.experiment_id)
    assert exp.artifact_location == (tmp_path / "study" / "artifacts").resolve().as_uri()


EVALS = 4


def _busy_worker(context: dict, trial_id: str, ready: Path) -> None:
    """A trial that logs losses every step and an evaluation with its image grid every few."""
    import torch

    (ready / trial_id).touch()  # about to open the store and create its run
    tracker = TrialTracker(context, trial_id, {"loss.gamma": 1.0})
    tracker.start()
    n = int(trial_id[-1])
    for step in range(1, STEPS + 1):
        tracker.log(step, {k: step + i / 10 + n for i, k in enumerate(KEYS)})
        if step % (STEPS // EVALS) == 0 and step // (STEPS // EVALS) <= EVALS:
            grid = torch.full((2, 1, 16, 48), step / STEPS)
            tracker.evaluate(step, {"ssim": step / 100 + n}, Path("unused.pt"), grid)
    tracker.close("finished")


def test_eight_trials_of_two_studies_on_one_sqlite_store_lose_no_point_and_no_image(
    tmp_path: Path,
) -> None:
    """Every trial process writes the same sqlite file: 'database is locked' must be waited
    out, never a failed trial, a lost metric point or a lost picture."""
    uri = resolve_tracking_uri(str(tmp_path / "store"), default_dir=tmp_path)
    studies = []
    for name in ("one", "two"):
        st = StudyTracker(uri, experiment=f"busy-{name}", study_name=f"busy-{name}")
        st.start()
        studies.append(st)
    ready = tmp_path / "ready"
    ready.mkdir()
    spawn = mp.get_context("spawn")
    procs = [
        spawn.Process(
            target=_busy_worker, args=(st.trial_context(), f"{st.study_name}-t{i}", ready)
        )
        for st in studies
        for i in range(4)
    ]
    # another writer holds the store while the trials create their runs, 7 s past the last
    # one's start (sqlite makes a writer wait 5 s, then MLflow raises "database is locked")
    db = sqlite3.connect(uri.removeprefix("sqlite:///"), isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + 240
        while len(list(ready.iterdir())) < len(procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(7)
    finally:
        db.execute("COMMIT")
        db.close()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    client = MlflowClient(uri)
    for st in studies:
        st.finish()
        for i in range(4):
            run_id = st.trial_run_id(f"{st.study_name}-t{i}")
            assert run_id is not None
            run = client.get_run(run_id)
            assert run.info.status == "FINISHED"
            for j, key in enumerate(KEYS):
                hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
                assert hist == [(s, s + j / 10 + i) for s in range(1, STEPS + 1)], key
            assert len(client.get_metric_history(run_id, "ssim")) == EVALS
            images = [f.path for f in client.list_artifacts(run_id, "images")]
            assert len([p for p in images if "/step_" in p]) == EVALS, images


def test_trial_tracker_keeps_points_while_the_server_is_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store, in tmp_path
    uri = resolve_tracking_uri(None, default_dir=tmp_path)
    study = StudyTracker(uri, experiment="flaky", study_name="flaky")
    study.start()
    tracker = TrialTracker(study.trial_context(), "t", {})
    tracker.start()
    real = tracker.client.log_batch
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("server restarting")
        return real(*args, **kwargs)

    tracker.client.log_batch = flaky  # type: ignore[method-assign]
    tracker.log(1, {"loss_g": 1.0})  # refused: kept
    tracker.log(2, {"loss_g": 2.0})  # refused: kept
    tracker.log(3, {"loss_g": 3.0})  # all three sent
    tracker.client.log_batch = real  # type: ignore[method-assign]
    tracker.close("finished")
    hist = MlflowClient(uri).get_metric_history(tracker.run_id, "loss_g")
    assert sorted((m.step, m.value) for m in hist) == [(1, 1.0), (2, 2.0), (3, 3.0)]


# -- the server script -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "args"),
    [
        ("0.0.0.0", []),
        ("::", []),
        ("0", []),  # what the literal check let through: uvicorn binds every interface
        ("::0", []),
        ("127.0.0.1", ["--host", "0"]),  # extra arguments reach `mlflow server`
        ("127.0.0.1", ["--host=0x0"]),
        ("127.0.0.1", ["-h", "[::]"]),
    ],
)
def test_start_script_refuses_to_bind_every_interface(
    repo_root: Path, tmp_path: Path, host: str, args: list[str]
) -> None:
    env = {**os.environ, "HOST": host, "MLFLOW": "/bin/true", "MLFLOW_STORE": str(tmp_path)}
    env.pop("SEMTUNE_MLFLOW_ALLOW_ANY_HOST", None)
    out = subprocess.run(
        ["bash", str(repo_root / "mlflow" / "start-server.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refusing to bind" in out.stderr and "SSH tunnel" in out.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_start_script_binds_loopback_addresses(repo_root: Path, tmp_path: Path, host: str) -> None:
    env = {**os.environ, "HOST": host, "MLFLOW": "/bin/true", "MLFLOW_STORE": str(tmp_path)}
    out = subprocess.run(
        ["bash", str(repo_root / "mlflow" / "start-server.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


def test_start_script_passes_the_documented_settings_to_mlflow(
    repo_root: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "mlflow"
    fake.write_text(
        '#!/bin/sh\necho "$@"\nenv | grep -E "^MLFLOW_(SERVER_ENABLE_JOB|DISABLE_TEL)"\n'
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "MLFLOW": str(fake),
        "MLFLOW_STORE": str(tmp_path / "store"),
        "PORT": "5123",
    }
    for k in ("HOST", "BACKEND_STORE_URI", "ARTIFACTS_DESTINATION", "WORKERS"):
        env.pop(k, None)
    out = subprocess.run(
        ["bash", str(repo_root / "mlflow" / "start-server.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    store = tmp_path / "store"
    args = out.stdout.splitlines()[-3]
    assert args.split() == [
        "server", "--host", "127.0.0.1", "--port", "5123", "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
        "--serve-artifacts", "--artifacts-destination", str(store / "artifacts"),
    ]  # fmt: skip
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in out.stdout
    assert "MLFLOW_DISABLE_TELEMETRY=true" in out.stdout


def test_a_server_out_of_database_connections_is_waited_out_like_a_locked_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench/bench_scale.py: at 64 concurrent trials the server's connection pool ran out and
    its BAD_REQUEST failed 11 trials; the write did not happen, so semtune retries it."""
    from mlflow.exceptions import MlflowException

    from semtune.tracking import store

    monkeypatch.setattr(store.time, "sleep", lambda _: None)
    calls: list[int] = []

    def busy_then_ok() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException(
                "BAD_REQUEST: QueuePool limit of size 5 overflow 10 reached, connection timed "
                "out, timeout 30.00"
            )
        return "written"

    assert store.patiently(busy_then_ok, "log_batch") == "written" and len(calls) == 3
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):  # others: at once
        store.patiently(
            lambda: (_ for _ in ()).throw(MlflowException("RESOURCE_DOES_NOT_EXIST")), "x"
        )
