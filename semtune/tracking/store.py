"""Where a study logs: tracking URIs, the server check before anything starts, and an
``MlflowClient`` that waits out a busy store (a locked sqlite file, a server out of database
connections).

Everything else in ``semtune.tracking`` talks to MLflow through ``open_client`` (no global
state), except the model APIs that read MLflow's global URI, which run inside
``use_tracking_uri``.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import mlflow
from mlflow.tracking import MlflowClient

# MLflow has no public reader of the global URI as set (``mlflow.get_tracking_uri()`` resolves
# the default when it is unset, so restoring it would pin the default): checked against MLflow
# 3.17, used only to put back exactly what ``use_tracking_uri`` found.
from mlflow.tracking._tracking_service import utils as _tracking_utils

__all__ = [
    "CHAMPION",
    "DB_FILE",
    "DEFAULT_MODEL_NAME",
    "TrackingError",
    "check_server",
    "default_tracking_uri",
    "normalise_uri",
    "open_client",
    "patiently",
    "quoted",
    "resolve_tracking_uri",
    "sqlite_path",
    "ui_hint",
    "use_tracking_uri",
]

log = logging.getLogger("semtune.tracking")

# Against a tracking server MLflow prints two "View run ... / View experiment ..." lines each
# time a run ends: with a hundred trials that buries the study's own table and summary, which
# print the one link that matters (the runs table). A user's own setting wins.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

DEFAULT_MODEL_NAME = "semtune-generator"
CHAMPION = "champion"
DB_FILE = "mlflow.db"
_TRACKING_ENV = "MLFLOW_TRACKING_URI"


class TrackingError(RuntimeError):
    """The tracking server or store cannot be used; the message names the URI and what to do."""


# -- where to log ---------------------------------------------------------------------------------


def resolve_tracking_uri(flag: str | None, *, default_dir: str | Path) -> str:
    """The tracking URI a study logs to: ``flag``, else ``MLFLOW_TRACKING_URI``, else a local store.

    Args:
        flag: ``--tracking-uri`` as given (``http://127.0.0.1:5000``, ``sqlite:///abs/file.db``,
            ``postgresql://...``) or a local path: a ``*.db`` file or a folder that gets
            ``mlflow.db`` inside it. Empty or None to fall back.
        default_dir: folder of the local store used when neither the flag nor the environment
            names one (``sqlite:///<default_dir>/mlflow.db``).

    Returns:
        A URI MLflow accepts; local paths are made absolute so that Ray workers, whose working
        directory differs, write to the same file.
    """
    for candidate in (flag, os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate:
            return normalise_uri(candidate)
    return f"sqlite:///{(Path(default_dir).expanduser().resolve() / DB_FILE).as_posix()}"


def default_tracking_uri() -> str:
    """The tracking URI when nothing names one: ``MLFLOW_TRACKING_URI``, else the local store
    ``./mlruns/mlflow.db`` that ``semtune.search`` writes and ``mlflow/start-server.sh`` serves."""
    return resolve_tracking_uri(None, default_dir=Path.cwd() / "mlruns")


def normalise_uri(text: str) -> str:
    text = text.strip()
    if "://" in text or text.startswith(("sqlite:", "file:", "databricks")):
        if text.startswith("sqlite:///") and not text.startswith("sqlite:////"):
            rel = text.removeprefix("sqlite:///")
            if rel and rel != ":memory:":
                return f"sqlite:///{Path(rel).expanduser().resolve().as_posix()}"
        return text
    path = Path(text).expanduser().resolve()
    if path.suffix != ".db":
        path = path / DB_FILE
    return f"sqlite:///{path.as_posix()}"


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest)


def check_server(uri: str, timeout: float = 10.0) -> None:
    """Fail fast if ``uri`` cannot take a study's logs (before any trial runs for hours).

    An ``http(s)`` server must answer ``GET /health`` and the REST API (credentials from
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``); a ``sqlite`` or
    ``file`` store must be in a writable folder (created if missing); any other SQLAlchemy URL
    must accept a connection.

    Raises:
        TrackingError: naming the URI, what failed and how to start a server.
    """
    if uri.startswith(("http://", "https://")):
        _check_http(uri.rstrip("/"), timeout)
    elif uri.startswith("sqlite:"):
        path = sqlite_path(uri)
        if path is not None:
            _check_writable(uri, path.parent, path)
    elif uri.startswith("file:") or "://" not in uri:
        _check_writable(uri, Path(uri.removeprefix("file://").removeprefix("file:")), None)
    elif uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql", "mssql"):
        _check_database(uri, timeout)
    # databricks, uc and other plugin schemes: checked by MLflow itself on first use


def _hint(uri: str) -> str:
    return (
        f"start one with `mlflow/start-server.sh` (or `{ui_hint(uri)}`), or pass another "
        "--tracking-uri / MLFLOW_TRACKING_URI; see docs/mlflow.md"
    )


def _auth_headers() -> dict[str, str]:
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, pw = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and pw:
        cred = base64.b64encode(f"{user}:{pw}".encode()).decode()
        return {"Authorization": f"Basic {cred}"}
    return {}


def _get(url: str, timeout: float) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=_auth_headers())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
            return resp.status, resp.read(2048).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2048).decode(errors="replace")


def _check_http(base: str, timeout: float) -> None:
    try:
        status, body = _get(f"{base}/health", timeout)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {base} does not answer ({reason}); " + _hint(base)
        ) from exc
    if status != 200:
        raise TrackingError(
            f"{base}/health answered HTTP {status} ({body.strip()[:200]!r}): is this an MLflow "
            "tracking server? " + _hint(base)
        )
    status, body = _get(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", timeout)
    if status in (401, 403):
        raise TrackingError(
            f"MLflow tracking server {base} refused the request (HTTP {status}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
        )
    if status != 200:
        raise TrackingError(
            f"{base} answers /health but not the MLflow REST API (HTTP {status}: "
            f"{body.strip()[:200]!r}); is the URI the server's root?"
        )


def _check_writable(uri: str, folder: Path, file: Path | None) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"tracking store {uri}: cannot create {folder} ({exc})") from exc
    if not os.access(folder, os.W_OK) or (
        file is not None and file.exists() and not os.access(file, os.W_OK)
    ):
        raise TrackingError(f"tracking store {uri}: {file or folder} is not writable")


def _check_database(uri: str, timeout: float) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, pool_pre_ping=True)
        with engine.connect():
            pass
    except Exception as exc:  # drivers raise their own types; all mean "cannot log here"
        raise TrackingError(f"tracking database {uri} does not accept a connection: {exc}") from exc


def ui_hint(uri: str, port: int = 5000) -> str:
    """The command that shows ``uri``'s runs in a browser (a server for a local store)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return (
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 "
        f"--port {port} --workers 1 --backend-store-uri {uri}  # serves http://127.0.0.1:{port}"
    )


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent model APIs (which read the global URI) at ``uri`` for a moment.

    Restores exactly what was there: the global (often unset) and ``MLFLOW_TRACKING_URI``
    (``set_tracking_uri`` writes the variable, and unsetting the global deletes it).
    """
    before = _tracking_utils._tracking_uri
    env = os.environ.get(_TRACKING_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None = unset, as it was
        if env is None:
            os.environ.pop(_TRACKING_ENV, None)
        else:
            os.environ[_TRACKING_ENV] = env


# A sqlite store is one file that every trial process writes: a writer waits up to sqlite's
# busy timeout (5 s), then MLflow raises "database is locked". A tracking server runs out of
# database connections when many trials write at once (bench/bench_scale.py: at 64 concurrent
# trials its SQLAlchemy pool, 5 + 10 overflow, timed out after 30 s and answered BAD_REQUEST,
# which failed 11 trials). Such calls are retried with jittered backoff for up to this long
# (the write did not happen, so a retry is safe).
_LOCKED_WAIT_S = 120.0
_LOCKED = (
    "database is locked",
    "database is busy",
    "database table is locked",
    "queuepool limit",  # the server's connection pool: "QueuePool limit of size 5 overflow 10"
)


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in _LOCKED)


def patiently(call: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried with jittered backoff while the store is locked."""
    delay, deadline = 0.1, time.monotonic() + _LOCKED_WAIT_S
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not _is_locked(exc) or time.monotonic() > deadline:
                raise
            log.info("MLflow store busy (%s); retrying in %.1f s", what, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)


class _PatientClient:
    """An ``MlflowClient`` whose calls wait out a busy store (see ``_LOCKED_WAIT_S``)."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return functools.partial(patiently, attr, name)


def quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow filter: single quotes, or double quotes when
    it holds a ``'`` (a study named ``bob's gamma``); MLflow's filters have no escape."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r}: a name with both ' and \" cannot be searched in MLflow")


def open_client(uri: str) -> MlflowClient:
    # the constructor opens the store (a sqlite store reads its tables): patient too
    client = patiently(MlflowClient, "open", tracking_uri=uri, registry_uri=uri)
    return cast(MlflowClient, _PatientClient(client))


# -- provenance tags ------------------------------------------------------------------------------
