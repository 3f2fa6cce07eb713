"""A real Ray cluster on this machine: a head and a second node, token authentication on.

Each node is a ``ray start --block`` process of its own (1 CPU each, so that two trials need
both nodes), with a short temporary folder of its own (Ray's socket paths must stay under
107 characters), free ports for everything that has a fixed default (GCS, dashboard, Ray
client, dashboard agent), the dashboard bound to 127.0.0.1, and ``RAY_AUTH_MODE=token`` with a
token file made for the test. Stopping sends SIGTERM to the ``ray start`` processes (Ray then
stops what it started) and SIGKILL to any process of the recorded process trees still alive,
by PID: never ``ray stop``, which ends every Ray process on the machine by name.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import free_port

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def descendants(pid: int) -> set[int]:
    """The PIDs of every process below ``pid`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, already exited, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class LocalCluster:
    """A running two-node cluster; ``env`` is what a client needs (token, PATH)."""

    gcs_address: str
    dashboard_url: str
    node_ip: str
    dashboard_port: int
    token: str
    env: dict[str, str]
    temp_dirs: list[Path]
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    stopped: list[int] | None = None

    def stop(self) -> list[int]:
        """Stop both nodes by PID; returns the PIDs of the trees that are still alive."""
        if self.stopped is not None:
            return self.stopped
        trees: dict[int, set[int]] = {p.pid: descendants(p.pid) for p in self.nodes}
        for proc in reversed(self.nodes):  # the worker node first, then the head
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        pids = set().union(*trees.values()) if trees else set()
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = sorted(p for p in pids if alive(p))
        for pid in left:  # what Ray did not end within the timeout, by its recorded PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stopped = left
        return left

    def log_tail(self) -> str:
        return "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in self.logs if p.is_file())


def _get(url: str, token: str | None, timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def alive_nodes(dashboard_url: str, token: str) -> int:
    """How many nodes the cluster reports alive (Ray's state API, with the token)."""
    try:
        status, body = _get(f"{dashboard_url}/api/v0/nodes?limit=10", token)
    except OSError:
        return 0
    if status != 200:
        return 0
    nodes = json.loads(body)["data"]["result"]["result"]
    return sum(1 for n in nodes if n.get("state") == "ALIVE")


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    ray = str(Path(sys.executable).with_name("ray"))
    with log.open("wb") as fh:
        return subprocess.Popen(
            [ray, "start", "--block", "--disable-usage-stats", *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C of the test run does not reach Ray directly
        )


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    """A head (1 CPU) and a second node (1 CPU) on this machine, token auth on."""
    with two_node_cluster(cpus=1) as cluster:
        yield cluster


@contextmanager
def two_node_cluster(cpus: int, gpus: int = 0) -> Iterator[LocalCluster]:
    """A head and a second node, each with ``cpus`` logical CPUs and ``gpus`` logical GPUs
    (Ray's own accounting: no GPU needs to exist), on this machine, token auth on; stopped by
    PID when the block ends."""
    root = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp"))  # short: Ray's socket paths
    token = secrets.token_hex(32)
    token_file = root / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(
        # the cluster runs the job's `python` from this environment
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_file),
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    head_tmp, worker_tmp = root / "h", root / "w"
    gcs_port, dash_port = free_port(), free_port()
    cluster = LocalCluster(
        gcs_address="",
        dashboard_url=f"http://127.0.0.1:{dash_port}",
        node_ip="",
        dashboard_port=dash_port,
        token=token,
        env=env,
        temp_dirs=[head_tmp, worker_tmp],
        logs=[root / "head.log", root / "worker.log"],
    )
    try:
        head = _start_node(
            [
                "--head",
                f"--port={gcs_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash_port}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--num-cpus={cpus}",
                f"--num-gpus={gpus}",
                f"--temp-dir={head_tmp}",
            ],
            env,
            cluster.logs[0],
        )
        cluster.nodes.append(head)
        address_file = head_tmp / "ray_current_cluster"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (address_file.is_file() and alive_nodes(cluster.dashboard_url, token) >= 1):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the head node did not start:\n{cluster.log_tail()}")
            time.sleep(1.0)
        cluster.gcs_address = address_file.read_text().strip()
        cluster.node_ip = cluster.gcs_address.rsplit(":", 1)[0]
        worker = _start_node(
            [
                f"--address={cluster.gcs_address}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--num-cpus={cpus}",
                f"--num-gpus={gpus}",
                f"--temp-dir={worker_tmp}",
            ],
            env,
            cluster.logs[1],
        )
        cluster.nodes.append(worker)
        while alive_nodes(cluster.dashboard_url, token) < 2:
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the second node did not join:\n{cluster.log_tail()}")
            time.sleep(1.0)
        # alive is not yet schedulable: the scheduler's resource view lags a few seconds
        # behind, and a study started in between runs on the head alone
        ray = str(Path(sys.executable).with_name("ray"))
        want = f"/{2 * cpus:.1f} CPU"
        while (
            want
            not in subprocess.run(
                [ray, "status", f"--address={cluster.gcs_address}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"the cluster never offered {2 * cpus} CPUs:\n{cluster.log_tail()}")
            time.sleep(1.0)
        yield cluster
    finally:
        left = cluster.stop()
        if left:
            print(f"local cluster: killed PIDs {left} that outlived SIGTERM", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
