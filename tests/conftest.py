"""Shared fixtures: the bundled sample images (never ../shared), a quiet, small CPU setup, and
a real MLflow tracking server on loopback (started on first use, shared by the whole session)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"

# Small tensors gain nothing from a second thread, and CI runs Ray trials beside the tests.
torch.set_num_threads(1)


# -- nothing outside the tmp folders ---------------------------------------------------------------

# Where a careless test would write a user's own things: the MLflow store that semtune.search
# and enhance use by default (./mlruns, in the project and in the working folder) and Ray's
# token folder. Their contents (names and modification times) must be the same after the run.
_GUARDED = (REPO_ROOT / "mlruns", Path.cwd() / "mlruns", Path.home() / ".ray")


def _snapshot(paths: tuple[Path, ...]) -> dict[str, list[tuple[str, int]] | None]:
    return {
        str(p): sorted((str(f), f.stat().st_mtime_ns) for f in p.rglob("*")) if p.exists() else None
        for p in paths
    }


_TRIPWIRE: list[Path] = []


def _quick_state() -> tuple[tuple[str, int | None], ...]:
    """Cheap enough for every test: the guarded folders, their stores and Ray's token."""
    paths = [*_GUARDED, *(p / "mlflow.db" for p in _GUARDED[:2]), _GUARDED[2] / "auth_token"]
    return tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in paths)


@pytest.fixture(scope="session", autouse=True)
def _touch_nothing_outside_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fails the run if any test wrote to ./mlruns or ~/.ray, or to the developer's
    ``$MLFLOW_TRACKING_URI``: for the session that variable points at a tripwire store in a tmp
    folder (subprocesses inherit it), which must still be absent at the end. Each test is
    checked too (``_this_test_touched_nothing``), so that a failure names the test."""
    before = _snapshot(_GUARDED)
    tripwire = tmp_path_factory.mktemp("tripwire") / "mlruns"
    _TRIPWIRE.append(tripwire)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tripwire / 'mlflow.db'}"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    after = _snapshot(_GUARDED)
    changed = [p for p in before if before[p] != after[p]]
    assert not changed, f"the tests wrote outside their tmp folders: {changed}"
    assert not tripwire.exists(), (
        "a test used $MLFLOW_TRACKING_URI (the developer's store) instead of its own"
    )


@pytest.fixture(autouse=True)
def _this_test_touched_nothing(_touch_nothing_outside_tmp: None) -> Iterator[None]:
    before = _quick_state()
    yield
    after = _quick_state()
    assert before == after, f"this test wrote outside its tmp folder: {before} -> {after}"
    if _TRIPWIRE[0].exists():
        shutil.rmtree(_TRIPWIRE[0])  # reported here, so that the next tests are judged alone
        pytest.fail("this test used $MLFLOW_TRACKING_URI (the developer's store), not its own")


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """A CLI called in this process sets torch's thread count (semtune.threads); the next test
    gets the count above back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_train_dir() -> Path:
    return SAMPLE_DIR / "train"


@pytest.fixture(scope="session")
def sample_test_dir() -> Path:
    return SAMPLE_DIR / "test"


# -- a real MLflow server ------------------------------------------------------------------------

MLFLOW_START_TIMEOUT_S = 180.0


def free_port() -> int:
    """A TCP port that nothing listens on right now (bound on 127.0.0.1, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path


@pytest.fixture(scope="session")
def mlflow_server_process(
    tmp_path_factory: pytest.TempPathFactory, repo_root: Path
) -> Iterator[ServerProcess]:
    """The MLflow server process, started with the project's own ``mlflow/start-server.sh`` (so
    the script is tested too) on a free port, its stores in a temporary folder, and stopped by
    its PID. It boots in the background (~20 s, database migrations included): request this
    fixture early (tests/tracking does, autouse) and ``mlflow_server`` where the server is
    used."""
    store = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        PORT=str(port),
        MLFLOW_STORE=str(store),
        MLFLOW=str(Path(sys.executable).with_name("mlflow")),
    )
    log_path = store / "server.log"
    with log_path.open("wb") as log:
        # its own session: the uvicorn worker it spawns is in the same process group, which
        # teardown signals by the group id of the process started here (never by name)
        proc = subprocess.Popen(
            ["bash", str(repo_root / "mlflow" / "start-server.sh")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
    finally:
        _stop_group(proc)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process: ServerProcess) -> str:
    """``http://127.0.0.1:<port>`` of a fresh tracking server (sqlite + local artifacts)."""
    srv = mlflow_server_process
    deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
    while not _healthy(srv.url):
        if srv.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start:\n{srv.log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    return srv.url


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group started above, if any
    except ProcessLookupError:
        pass
