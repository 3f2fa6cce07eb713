"""MLflow tracking for studies: a parent run per study, a child run per trial, the model registry.

Two sides, matching where the code runs:

* the driver (``semtune.search``) holds a ``StudyTracker``: it checks the server before anything
  starts, opens the study's parent run, hands a small picklable context to every trial, logs the
  study's results at the end, and registers the best generator (``register_best``), moving the
  ``champion`` alias only to a better model;
* each trial (a Ray worker, possibly on another machine) holds a ``TrialTracker``, which
  implements the trainer's ``Reporter`` protocol (``log``/``evaluate``) and writes the trial's
  nested child run: its parameters, metrics per training step, an image grid per evaluation and
  its final status. Trials talk to the server only through ``MlflowClient`` (no global state),
  so several of them can log from threads or processes at once.

Registered models are MLflow pyfunc models logged "from code": their files are the generator's
``generator.pt`` (weights + the config that rebuilds the network, read with
``weights_only=True``) and a copy of the ``semtune`` package; nothing is unpickled when they are
loaded, and their input signature accepts any image size. ``load_registered_generator`` turns
a ``models:/`` or ``runs:/`` URI back into a plain ``nn.Module`` for ``semtune.enhance``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import math
import os
import random
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

import mlflow.artifacts
import mlflow.models
import mlflow.pyfunc
import numpy as np
import torch
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as _tracking_utils
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from torch import Tensor, nn

from .grids import labelled_grid

if TYPE_CHECKING:
    from semtune.train.state import GeneratorFile

__all__ = [
    "DEFAULT_MODEL_NAME",
    "GeneratorModel",
    "ModelVersionInfo",
    "RegistrationResult",
    "StudyTracker",
    "TrackingError",
    "TrialStatus",
    "TrialTracker",
    "TrialTrackerFactory",
    "check_server",
    "data_fingerprint",
    "default_tracking_uri",
    "git_commit",
    "list_model_versions",
    "load_registered_generator",
    "load_registered_generator_file",
    "training_data_tags",
    "mark_trial",
    "promote",
    "resolve_tracking_uri",
    "ui_hint",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "semtune-generator"
CHAMPION = "champion"
DB_FILE = "mlflow.db"
_TRACKING_ENV = "MLFLOW_TRACKING_URI"

# Tag names: the MLflow UI's run table and compare view can show and filter on any of these.
TAG_STUDY = "semtune.study"
TAG_STUDY_KEY = "semtune.study_key"
TAG_ROLE = "semtune.role"
TAG_TRIAL = "semtune.trial"
TAG_STATUS = "semtune.status"
TAG_ERROR = "semtune.error"
TAG_EDGE = "semtune.edge_operator"
TAG_PRESET = "semtune.preset"
TAG_DATA = "semtune.data_fingerprint"
# what the objective was measured on (the images and how they were held out and degraded): two
# versions' scores are compared only when it is the same (issue 12)
TAG_VAL = "semtune.val_fingerprint"
TAG_SAMPLER = "semtune.sampler"
TAG_OBJECTIVE = "semtune.objective"
TAG_IMAGES_LOST = "semtune.images_not_uploaded"
TAG_MODE = "semtune.mode"
TAG_BEST_TRIAL = "semtune.best_trial"
TAG_CONFIG = "semtune.config"
METRIC_TAG_PREFIX = "metric."
PARAM_TAG_PREFIX = "param."

GENERATOR_ARTIFACT = "generator"  # name of generator.pt inside the pyfunc model
TRIAL_GENERATOR_PATH = "generator"  # run artifact folder of a finished trial's generator.pt

TrialStatus = Literal["finished", "stopped_early", "failed", "killed"]
# semtune's trial outcome -> MLflow's run status. The UI draws FAILED and KILLED with the same
# red cross, so a trial the scheduler stopped early (a normal end, by design) is FINISHED, told
# apart by its tag semtune.status=stopped_early (issue 15); KILLED is left to a user's Ctrl-C.
_RUN_STATUS: dict[str, str] = {
    "finished": "FINISHED",
    "stopped_early": "FINISHED",
    "killed": "KILLED",
    "failed": "FAILED",
}
_TAGGED_METRICS = ("score", "ssim", "psnr", "ssim_gain", "psnr_gain")
_MAX_TAG = 5000  # model version tag values are limited to 5000 characters
_LOG_BATCH_METRICS = 1000  # MLflow's limit per log_batch request


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
            return _normalise_uri(candidate)
    return f"sqlite:///{(Path(default_dir).expanduser().resolve() / DB_FILE).as_posix()}"


def default_tracking_uri() -> str:
    """The tracking URI when nothing names one: ``MLFLOW_TRACKING_URI``, else the local store
    ``./mlruns/mlflow.db`` that ``semtune.search`` writes and ``mlflow/start-server.sh`` serves."""
    return resolve_tracking_uri(None, default_dir=Path.cwd() / "mlruns")


def _normalise_uri(text: str) -> str:
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


def _sqlite_path(uri: str) -> Path | None:
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
        path = _sqlite_path(uri)
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
def _tracking_uri(uri: str) -> Iterator[None]:
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
# busy timeout (5 s), then MLflow raises "database is locked". Such calls are retried with
# jittered backoff for up to this long (the write did not happen, so a retry is safe).
_LOCKED_WAIT_S = 120.0
_LOCKED = ("database is locked", "database is busy", "database table is locked")


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in _LOCKED)


def _patiently(call: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
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
        return functools.partial(_patiently, attr, name)


def _quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow filter: single quotes, or double quotes when
    it holds a ``'`` (a study named ``bob's gamma``); MLflow's filters have no escape."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r}: a name with both ' and \" cannot be searched in MLflow")


def _client(uri: str) -> MlflowClient:
    # the constructor opens the store (a sqlite store reads its tables): patient too
    client = _patiently(MlflowClient, "open", tracking_uri=uri, registry_uri=uri)
    return cast(MlflowClient, _PatientClient(client))


# -- provenance tags ------------------------------------------------------------------------------


def git_commit(path: str | Path | None = None) -> str | None:
    """``HEAD``'s commit of the repository holding ``path`` (default: semtune's), ``-dirty`` if
    the working tree has changes; None outside a repository or before the first commit."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def data_fingerprint(folders: Iterable[str | Path | None]) -> str:
    """A short hash of the files in ``folders`` (names, sizes, contents), to tell data sets apart.

    Missing folders count as such (``missing:<path>``) rather than raising: on a cluster the
    driver may not see the workers' data.

    Returns:
        12 hex characters.
    """
    h = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        root = Path(folder)
        if not root.is_dir():
            h.update(f"missing:{root.name}\n".encode())
            continue
        for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.relative_to(root).as_posix()}:{f.stat().st_size}\n".encode())
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()[:12]


# data settings that do not change the validation crops (training crops and augmentation)
_TRAIN_ONLY_DATA = ("crop_size", "augment", "synthetic_set", "domains")


def validation_fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of what a run's validation scores were measured on: the data folders'
    contents and the settings that choose and degrade the held-out crops (``val_set``,
    ``val_crops``, ``val_crop_size``, ``val_fraction``, ``seed``, ``degrade``, ...)."""
    data = dict(config.get("data", {})) if isinstance(config, Mapping) else {}
    settings = {k: v for k, v in sorted(data.items()) if k not in _TRAIN_ONLY_DATA}
    h = hashlib.sha256(data_fingerprint(_data_folders(config)).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def _data_folders(config: Mapping[str, Any]) -> list[str | None]:
    data = config.get("data", {}) if isinstance(config, Mapping) else {}
    return [data.get("clean_dir"), data.get("blurred_dir"), data.get("val_dir")]


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def _short(value: Any) -> str:
    """A number as people read it on a page (6 significant digits); anything else as is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, str) and not any(c.isdigit() for c in value):
        return value  # "nan", "inf" spelled out stay as they were
    return f"{number:.6g}"


def _str(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


# -- the study (driver side) ----------------------------------------------------------------------


def _ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    artifact_location = None
    db = _sqlite_path(uri)
    if db is not None:
        # without a server, MLflow would put artifacts in ./mlruns of whatever the working
        # directory is (each Ray worker has its own): keep them beside the database instead
        artifact_location = (db.parent / "artifacts").as_uri()
    try:
        # the UI opens a "custom model development" experiment on its training-runs table
        # (instead of the GenAI overview of traces)
        tags = {"mlflow.experimentKind": "custom_model_development"}
        return str(client.create_experiment(name, artifact_location=artifact_location, tags=tags))
    except MlflowException as exc:  # another driver created it in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise TrackingError(f"cannot create experiment {name!r} at {uri}: {exc}") from exc
        return str(exp.experiment_id)


# The runs table of MLflow's UI shows no metric column until they are picked by hand ("Show more
# columns"). A view state stored as the experiment tag mlflow.sharedViewState.<key> is what the
# UI's own "Share" button writes; the link ...#/experiments/<id>/runs?viewStateShareKey=<key>
# opens the table with it (issue 15).
_SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "semtune"
# (the gains would repeat SSIM/PSNR: every trial of a study is scored on the same blurred crops)
_TABLE_METRICS = ("ssim", "psnr")


def table_view(
    objectives: Sequence[str], modes: Sequence[str], searched: Sequence[str]
) -> dict[str, Any]:
    """The runs-table state of a study: sorted by its first objective, with the objective(s),
    SSIM, PSNR, the searched parameters and each trial's status as columns."""
    metrics = list(dict.fromkeys([*objectives, *_TABLE_METRICS]))
    columns = [
        *(f"metrics.`{m}`" for m in metrics),
        *(f"params.`{p}`" for p in searched),
        f"tags.`{TAG_STATUS}`",
        "attributes.`Models`",
    ]
    return {
        "orderByKey": f"metrics.`{objectives[0]}`",
        "orderByAsc": modes[0] == "min",
        "selectedColumns": columns,
    }


def _find_child_run(client: MlflowClient, experiment_id: str, parent: str, trial_id: str) -> Any:
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.{MLFLOW_PARENT_RUN_ID} = {_quoted(parent)} and tags.`{TAG_TRIAL}` = "
            f"{_quoted(trial_id)}"
        ),
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


@dataclass(frozen=True)
class RegistrationResult:
    """What ``StudyTracker.register_best`` did; ``message`` says it in a sentence."""

    name: str
    version: str
    model_uri: str
    run_id: str
    alias: str
    promoted: bool
    objective: str
    value: float
    previous_version: str | None
    previous_value: float | None
    message: str


class StudyTracker:
    """The study's parent run, from the driver; see the module docstring.

    Example::

        uri = resolve_tracking_uri(args.tracking_uri, default_dir=out)
        check_server(uri)
        tracker = StudyTracker(uri, experiment="gamma", study_name="gamma", ...)
        tracker.start(resume=args.resume)
        run_study(..., trial_reporters=[tracker.reporter_factory()])
        tracker.finish(results_csv=..., plots=[...], best=best_row, best_trial=trial_id)
        print(tracker.register_best(out / "best_generator.pt", metrics, trial_id, cfg).message)
    """

    def __init__(
        self,
        uri: str,
        *,
        experiment: str,
        study_name: str,
        space_yaml: str | Path | None = None,
        base_config: Mapping[str, Any] | None = None,
        sampler: str | None = None,
        objective: str | Sequence[str] = "score",
        mode: str | Sequence[str] = "max",
        study_key: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        searched: Sequence[str] = (),
    ) -> None:
        """Describe the study; nothing is sent before ``start``.

        Args:
            uri: tracking URI (``resolve_tracking_uri``).
            experiment: MLflow experiment name (created if missing).
            study_name: the study's name (run name of the parent run and tag on every run).
            space_yaml: the study file, logged as an artifact.
            base_config: the resolved base trainer config (plain dict), logged as YAML; its
                preset and data folders fill the ``preset`` and ``data_fingerprint`` tags.
            sampler: sampler name (param and tag).
            objective: metric name(s) the study optimises; the first decides the champion.
            mode: ``max``/``min`` per objective.
            study_key: identifies this study instance (e.g. its output folder) so that
                ``start(resume=True)`` reopens the right parent run.
            tags: extra tags for the parent run and every trial run.
            params: extra params for the parent run (trial count, scheduler, ...).
            searched: the config paths the study searches (``loss.gamma``, ...): columns of
                the runs table that ``runs_page`` opens.
        """
        self.uri = uri
        self.searched = list(searched)
        self.experiment = experiment
        self.study_name = study_name
        self.space_yaml = Path(space_yaml) if space_yaml is not None else None
        self.base_config = dict(base_config or {})
        self.sampler = sampler
        self.objectives = [objective] if isinstance(objective, str) else list(objective)
        modes = [mode] if isinstance(mode, str) else list(mode)
        if len(modes) == 1:
            modes *= len(self.objectives)
        if not self.objectives or len(modes) != len(self.objectives):
            raise ValueError(f"need one mode per objective, got {self.objectives} and {modes}")
        for m in modes:
            if m not in ("max", "min"):
                raise ValueError(f"mode must be 'max' or 'min', got {m!r}")
        self.modes = modes
        self.study_key = study_key
        self.extra_tags = {k: _str(v) for k, v in (tags or {}).items()}
        self.extra_params = dict(params or {})
        self.client = _client(uri)
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self._common_tags: dict[str, str] = {}

    # context manager: a crash of the driver marks the study FAILED instead of leaving it RUNNING
    def __enter__(self) -> StudyTracker:
        if self.run_id is None:
            self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.run_id is None or exc is None:
            return
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        self.client.set_tag(self.run_id, TAG_ERROR, f"{type(exc).__name__}: {exc}"[:_MAX_TAG])
        self.client.set_terminated(self.run_id, status=status)

    def _tags(self) -> dict[str, str]:
        cfg = self.base_config
        tags = {TAG_STUDY: self.study_name}
        if cfg.get("preset"):
            tags[TAG_PRESET] = str(cfg["preset"])
        if cfg:
            tags[TAG_DATA] = data_fingerprint(_data_folders(cfg))
            edge = cfg.get("loss", {}).get("edge_operator")
            if edge:
                tags[TAG_EDGE] = str(edge)
        if commit := git_commit():
            tags[MLFLOW_GIT_COMMIT] = commit
        tags.update(self.extra_tags)
        return tags

    def start(self, *, resume: bool = False, run_id: str | None = None) -> str:
        """Open the study's parent run (creating the experiment if needed).

        Args:
            resume: reopen this study's latest parent run (same study name and ``study_key``)
                instead of creating one, e.g. for ``semtune.search --resume``.
            run_id: reopen exactly this run.

        Returns:
            The parent run's id.
        """
        self.experiment_id = _ensure_experiment(self.client, self.experiment, self.uri)
        self.client.set_experiment_tag(
            self.experiment_id,
            f"{_SHARED_VIEW_PREFIX}{VIEW_KEY}",
            json.dumps(table_view(self.objectives, self.modes, self.searched)),
        )
        self._common_tags = self._tags()
        if run_id is None and resume:
            run_id = self._previous_run()
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return run_id
        run_tags = {**self._common_tags, TAG_ROLE: "study", MLFLOW_RUN_NAME: self.study_name}
        run_tags[TAG_OBJECTIVE] = ",".join(self.objectives)
        run_tags[TAG_MODE] = ",".join(self.modes)
        if self.sampler:
            run_tags[TAG_SAMPLER] = self.sampler
        if self.study_key:
            run_tags[TAG_STUDY_KEY] = self.study_key
        run = self.client.create_run(self.experiment_id, tags=run_tags, run_name=self.study_name)
        self.run_id = run.info.run_id
        params = {"study": self.study_name, "objective": ",".join(self.objectives)}
        params["mode"] = ",".join(self.modes)
        if self.sampler:
            params["sampler"] = self.sampler
        if self.space_yaml is not None:
            params["space"] = self.space_yaml.name
        params.update(self.extra_params)
        _log_params(self.client, self.run_id, params)
        if self.space_yaml is not None and self.space_yaml.is_file():
            self.client.log_artifact(self.run_id, str(self.space_yaml), "study")
        if self.base_config:
            text = yaml.safe_dump(self.base_config, sort_keys=False)
            self.client.log_text(self.run_id, text, "study/base_config.yaml")
        return self.run_id

    def runs_page(self, base_url: str) -> str:
        """The experiment's runs table in the MLflow UI at ``base_url``, opened on the study's
        columns (objectives, SSIM, PSNR, searched parameters, status) sorted by the objective."""
        _, _ = self._require_started()
        return (
            f"{base_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs"
            f"?viewStateShareKey={VIEW_KEY}"
        )

    def _previous_run(self) -> str | None:
        assert self.experiment_id is not None
        filt = f"tags.`{TAG_ROLE}` = 'study' and tags.`{TAG_STUDY}` = {_quoted(self.study_name)}"
        if self.study_key:
            filt += f" and tags.`{TAG_STUDY_KEY}` = {_quoted(self.study_key)}"
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=filt,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].info.run_id if runs else None

    def _require_started(self) -> tuple[str, str]:
        if self.run_id is None or self.experiment_id is None:
            raise RuntimeError("StudyTracker.start() has not been called")
        return self.experiment_id, self.run_id

    def trial_context(self) -> dict[str, Any]:
        """What a trial needs to log its child run: plain, picklable, small."""
        experiment_id, run_id = self._require_started()
        return {
            "uri": self.uri,
            "experiment_id": experiment_id,
            "parent_run_id": run_id,
            "study": self.study_name,
            "tags": dict(self._common_tags),
        }

    def reporter_factory(self, *, log_generator: bool = False) -> TrialTrackerFactory:
        """A picklable ``TrialContext -> TrialTracker`` for ``run_study(trial_reporters=...)``;
        ``log_generator`` as in ``TrialTracker``."""
        return TrialTrackerFactory(self.trial_context(), log_generator=log_generator)

    def end_trial(self, trial_id: str, status: TrialStatus, error: str | None = None) -> bool:
        """Set a trial's run status from the driver (e.g. a Tune callback when ASHA stops it)."""
        return mark_trial(self.trial_context(), trial_id, status, error=error)

    def trial_run_id(self, trial_id: str) -> str | None:
        """The child run of ``trial_id`` in this study, if it logged one."""
        experiment_id, run_id = self._require_started()
        run = _find_child_run(self.client, experiment_id, run_id, trial_id)
        return run.info.run_id if run is not None else None

    def finish(
        self,
        results_csv: str | Path | None = None,
        plots: Sequence[str | Path] = (),
        best: Mapping[str, Any] | None = None,
        *,
        best_trial: str | None = None,
        artifacts: Sequence[str | Path] = (),
        status: Literal["finished", "failed", "killed"] = "finished",
        close_open_trials: bool = True,
    ) -> None:
        """Log the study's results on the parent run and end it.

        Args:
            results_csv: the results table (artifact ``results/``).
            plots: PNGs (artifact ``plots/``).
            best: the best trial's metrics; numeric entries are logged as the parent run's
                metrics under the same names (so the runs table lines up), ``trial_id`` (if
                present) as the ``semtune.best_trial`` tag.
            best_trial: the best trial's id (overrides ``best["trial_id"]``).
            artifacts: further files (e.g. a Pareto front CSV), artifact ``results/``.
            status: the study's outcome.
            close_open_trials: mark child runs still RUNNING as stopped early (FINISHED with
                tag ``semtune.status=stopped_early``): a trial that the scheduler stopped
                never reaches its final evaluation.
        """
        _, run_id = self._require_started()
        best = dict(best or {})
        best_trial = best_trial or (str(best["trial_id"]) if best.get("trial_id") else None)
        metrics = {
            k: float(v)
            for k, v in best.items()
            if isinstance(v, int | float | np.number) and not isinstance(v, bool)
        }
        if metrics:
            _log_metrics(self.client, run_id, metrics, step=int(metrics.get("step", 0)))
        if best_trial:
            self.client.set_tag(run_id, TAG_BEST_TRIAL, best_trial)
            if child := self.trial_run_id(best_trial):
                self.client.set_tag(run_id, "semtune.best_run_id", child)
        if results_csv is not None:
            self.client.log_artifact(run_id, str(results_csv), "results")
        for f in artifacts:
            self.client.log_artifact(run_id, str(f), "results")
        for p in plots:
            self.client.log_artifact(run_id, str(p), "plots")
        if close_open_trials:
            self._close_open_trials()
        self.client.set_terminated(run_id, status=_RUN_STATUS[status])

    def _close_open_trials(self) -> None:
        experiment_id, run_id = self._require_started()
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.{MLFLOW_PARENT_RUN_ID} = {_quoted(run_id)} and attributes.status = 'RUNNING'"
            ),
        )
        for run in runs:
            _set_status(self.client, run.info.run_id, "stopped_early", None)

    def register_best(
        self,
        generator_path: str | Path,
        metrics: Mapping[str, Any],
        trial_id: str,
        config: Mapping[str, Any],
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        objective: str | None = None,
        mode: str | None = None,
        alias: str = CHAMPION,
    ) -> RegistrationResult:
        """Register the best trial's generator; move ``alias`` to it only if it is better.

        The model is logged into the trial's child run (or the parent run if the trial has
        none), registered as a new version of ``model_name`` with a description and tags
        holding its headline metrics (``metric.<name>``: the objective, score, SSIM, PSNR and
        their gains), hyperparameters, study, trial and config, and compared on
        ``objective`` with the version that holds ``alias`` now.

        Args:
            generator_path: the trial's ``generator.pt`` (weights + config).
            metrics: its metrics (at least ``objective``).
            trial_id: the study's id of the trial.
            config: its full trainer config (plain dict).
            model_name: registered model name.
            objective: metric deciding the alias (default: the study's first objective).
            mode: ``max`` or ``min`` (default: the study's).
            alias: the alias to move.

        Returns:
            What happened; ``.message`` is meant to be printed.
        """
        # a direct database store (sqlite:///, postgresql://) resolves the logged model of
        # a new version through MLflow's global URI: point it at this study's store
        with _tracking_uri(self.uri):
            experiment_id, parent = self._require_started()
            objective = objective or self.objectives[0]
            if mode is None:
                known = objective in self.objectives
                mode = self.modes[self.objectives.index(objective)] if known else "max"
            if mode not in ("max", "min"):
                raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
            if objective not in metrics:
                raise ValueError(
                    f"metrics have no {objective!r} (the objective): {sorted(metrics)}"
                )
            # compared at the precision the tags keep (6 significant digits), as every other
            # version's value is read back from its tag
            value = float(_short(float(metrics[objective])))
            run_id = self.trial_run_id(trial_id) or parent
            info = log_generator_model(self.uri, run_id, generator_path)
            numeric = {
                k: float(v)
                for k, v in metrics.items()
                if isinstance(v, int | float | np.number) and not isinstance(v, bool)
            }
            # a few headline metrics (the registry page shows every tag of every version)
            tagged = [k for k in numeric if k == objective or k in _TAGGED_METRICS]
            # 6 significant digits: the registry page cuts longer values (the exact ones are
            # the trial run's metrics and params)
            tags = {f"{METRIC_TAG_PREFIX}{k}": _short(numeric[k]) for k in tagged}
            run = self.client.get_run(run_id)
            tags.update(
                {
                    f"{PARAM_TAG_PREFIX}{k}": _short(v)
                    for k, v in run.data.params.items()
                    if "." in k
                }
            )
            tags.update(
                {
                    TAG_STUDY: self.study_name,
                    TAG_TRIAL: str(trial_id),
                    TAG_OBJECTIVE: objective,
                    TAG_CONFIG: json.dumps(dict(config), separators=(",", ":"))[:_MAX_TAG],
                }
            )
            for key in (TAG_PRESET, TAG_DATA, TAG_EDGE, MLFLOW_GIT_COMMIT):
                if v := run.data.tags.get(key) or self._common_tags.get(key):
                    tags[key] = v
            if TAG_EDGE not in tags and (edge := config.get("loss", {}).get("edge_operator")):
                tags[TAG_EDGE] = str(edge)
            tags.update(training_data_tags(generator_path))
            val_fp = validation_fingerprint(config)
            tags[TAG_VAL] = val_fp
            try:
                self.client.get_registered_model(model_name)
            except MlflowException:
                try:
                    self.client.create_registered_model(
                        model_name,
                        description="SEM image restoration generators (CycleGAN + edge loss) "
                        "registered by semtune studies. Restore images with `python -m "
                        f"semtune.enhance IMAGES --model models:/{model_name}@{alias} -o OUT`.",
                    )
                except MlflowException:  # created concurrently
                    pass
            mv = self.client.create_model_version(
                model_name,
                source=info["model_uri"],
                run_id=run_id,
                tags=tags,
                model_id=info["model_id"],
            )
            version = str(mv.version)
            # written once the version number is known, so its "Use:" line is complete
            self.client.update_model_version(
                model_name,
                version,
                description=_version_description(
                    model_name,
                    version,
                    self.study_name,
                    trial_id,
                    objective,
                    mode,
                    numeric,
                    config,
                    run_id,
                ),
            )
            prev_version, prev_value, prev_fp = _current_holder(
                self.client, model_name, alias, objective
            )
            if prev_version is None:
                better, why = True, f"there was no {alias!r} yet"
            elif prev_fp != val_fp:
                better = False
                why = (
                    f"version {prev_version} (the current {alias!r}) was scored on other "
                    f"validation data ({TAG_VAL} {prev_fp or 'not recorded'}, this one {val_fp}),"
                    " so the two scores say nothing about each other; promote by hand if wanted:"
                    f" python -m semtune.models promote {version} --alias {alias} --model-name "
                    f"{model_name}"
                )
            elif prev_value is None:
                better = False
                why = (
                    f"version {prev_version} (the current {alias!r}) has no {objective!r} to "
                    "compare with; promote by hand if wanted: python -m semtune.models promote "
                    f"{version} --alias {alias} --model-name {model_name}"
                )
            else:
                better = value > prev_value if mode == "max" else value < prev_value
                rel = "better than" if better else "not better than"
                why = (
                    f"{objective}={value:.6g} is {rel} version {prev_version}'s {prev_value:.6g} "
                    f"({mode})"
                )
            if math.isnan(value):
                better, why = False, f"{objective} is NaN"
            if better:
                self.client.set_registered_model_alias(model_name, alias, version)
            # MLflow has no compare-and-set: a study registering at the same time may have
            # read the same holder and set the alias after us; settle on the best of the
            # versions registered since (every registrant does, so they agree)
            holder = _settle_alias(
                self.client, model_name, alias, objective, mode, since=prev_version, val=val_fp
            )
            if better and holder != version:
                better = False
                why += f"; then version {holder}, registered at the same time, was better"
            if better:
                message = (
                    f"registered {model_name} version {version}; alias {alias!r} moved to it: {why}"
                )
            else:
                message = (
                    f"registered {model_name} version {version}; alias {alias!r} stays on version "
                    f"{holder}: {why}"
                )
            self.client.set_tag(parent, "semtune.registered_version", f"{model_name}/{version}")
            log.info(message)
            return RegistrationResult(
                name=model_name,
                version=version,
                model_uri=f"models:/{model_name}/{version}",
                run_id=run_id,
                alias=alias,
                promoted=better,
                objective=objective,
                value=value,
                previous_version=prev_version,
                previous_value=prev_value,
                message=message,
            )


def _settle_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    objective: str,
    mode: str,
    *,
    since: str | None,
    val: str,
    rounds: int = 5,
) -> str | None:
    """Move ``alias`` to the best version on ``objective`` among its holder and the versions
    registered after ``since`` by studies with that objective and validation data ``val``;
    return the holder at the end.

    Two registrants that both compared with the old holder and set the alias one after the
    other leave the later one, better or not; each re-reads after setting, so whichever looks
    last puts the best one there. A holder without a value (promoted by hand) is left alone."""
    sign = 1.0 if mode == "max" else -1.0
    holder: str | None = None
    for _ in range(rounds):
        holder, holder_value, holder_val = _current_holder(client, name, alias, objective)
        if holder is not None and (holder_value is None or holder_val != val):
            return holder
        best, best_value = holder, holder_value
        low = int(since) if since is not None else 0
        for mv in client.search_model_versions(f"name={_quoted(name)}"):
            if int(mv.version) <= low or mv.tags.get(TAG_OBJECTIVE) != objective:
                continue
            if mv.tags.get(TAG_VAL) != val:
                continue
            try:
                value = float(mv.tags.get(f"{METRIC_TAG_PREFIX}{objective}", "nan"))
            except ValueError:
                continue
            if math.isnan(value):
                continue
            if best_value is None or sign * value > sign * best_value:
                best, best_value = str(mv.version), value
        if best is None or best == holder:
            return holder
        client.set_registered_model_alias(name, alias, best)
        time.sleep(0.2)  # let a concurrent registrant's set land, then look again
    return holder


def _current_holder(
    client: MlflowClient, name: str, alias: str, objective: str
) -> tuple[str | None, float | None, str | None]:
    """The version holding ``alias``, its ``objective`` and its validation fingerprint."""
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None, None
    raw: str | float | None = mv.tags.get(f"{METRIC_TAG_PREFIX}{objective}")
    if raw is None and mv.run_id:
        # a version registered by hand: fall back to its run's latest metric
        try:
            raw = client.get_run(mv.run_id).data.metrics.get(objective)
        except MlflowException:
            raw = None
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        value = None
    return str(mv.version), value, mv.tags.get(TAG_VAL)


def _version_description(
    name: str,
    version: str,
    study: str,
    trial_id: str,
    objective: str,
    mode: str,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    run_id: str,
) -> str:
    shown = [
        k for k in ("ssim", "psnr", "ssim_gain", "psnr_gain", "score", "ag", "sf") if k in metrics
    ]
    lines = [
        f"Best trial `{trial_id}` of study `{study}` (objective: {objective}, {mode}).",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {metrics[k]:.4f} |" for k in shown),
        "",
    ]
    loss, model = config.get("loss", {}), config.get("model", {})
    if loss:
        lines.append(
            "Loss: λ_cycle={lambda_cycle}, λ_identity={lambda_identity}, γ={gamma}, edge "
            "operator {edge_operator}.".format(
                **{
                    k: loss.get(k, "?")
                    for k in ("lambda_cycle", "lambda_identity", "gamma", "edge_operator")
                }
            )
        )
    if model:
        lines.append(f"Generator: {model.get('generator', '?')}, width {model.get('width', '?')}.")
    lines += [
        f"Trial run: `{run_id}`; its full trainer config is the run's artifact `config.yaml` "
        "(the `semtune.config` tag holds the same as JSON, cut short on this page).",
        "",
        f"Use: `python -m semtune.enhance IMAGES -o OUT --model models:/{name}/{version}`",
        f"Promote: `python -m semtune.models promote {version} --model-name {name}` moves the "
        "`champion` alias here (MLflow's *Promote model* button copies the version into another "
        "registered model instead).",
    ]
    return "\n".join(lines)


# -- the trials (worker side) ---------------------------------------------------------------------


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(str(k), _str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def _log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int
) -> None:
    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])


def _set_status(client: MlflowClient, run_id: str, status: str, error: str | None) -> None:
    if status not in _RUN_STATUS:
        raise ValueError(f"unknown trial status {status!r} (valid: {', '.join(_RUN_STATUS)})")
    tags = [RunTag(TAG_STATUS, status)]
    if error:
        tags.append(RunTag(TAG_ERROR, error[:_MAX_TAG]))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status=_RUN_STATUS[status])


def mark_trial(
    context: Mapping[str, Any],
    trial_id: str,
    status: TrialStatus,
    *,
    error: str | None = None,
    force: bool = False,
) -> bool:
    """Set the status of ``trial_id``'s child run from anywhere that has the study's context.

    Meant for a driver-side Tune callback: a trial stopped by ASHA is ended by Ray before its
    own tracker can close its run. Runs that already ended keep their status unless ``force``.

    Returns:
        True if a run was updated.
    """
    client = _client(context["uri"])
    run = _find_child_run(client, context["experiment_id"], context["parent_run_id"], trial_id)
    if run is None or (run.info.status != "RUNNING" and not force):
        return False
    _set_status(client, run.info.run_id, status, error)
    return True


class TrialTracker:
    """One trial's child run; a trainer ``Reporter`` (pass it as ``train(..., reporter=)``).

    Metrics are written with ``log_batch`` at every call, step = training step. A write that
    fails (server restarting, sqlite busy) is kept and sent with the next one, so points are
    not lost while the server comes back; ``close`` sends what is left.

    Use as a context manager, or call ``start`` and ``close``: an exception inside the block
    marks the run FAILED with the error as a tag. With ``config`` given, the run closes itself
    as finished at the evaluation of the last scheduled step (where Ray may end the process).
    """

    def __init__(
        self,
        context: Mapping[str, Any],
        trial_id: str,
        params: Mapping[str, Any],
        *,
        config: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        log_generator: bool = False,
    ) -> None:
        """Describe the trial; its run is created (or reopened) by ``start``.

        Args:
            context: ``StudyTracker.trial_context()``.
            trial_id: the study's id for this trial (Tune's trial id).
            params: its sampled hyperparameters keyed by config path (``loss.gamma``).
            config: its full trainer config (plain dict): logged as ``config.yaml``, gives the
                edge-operator/preset tags and the last step.
            run_name: the child run's name (default ``trial-<trial_id>``).
            log_generator: upload the trial's ``generator.pt`` (``generator/generator.pt``)
                when it finishes; off by default: 13 MB per trial at the ``cpu`` preset, 257 MB
                at ``paper`` (the best trial's generator is registered anyway).
        """
        self.context = dict(context)
        self.trial_id = str(trial_id)
        self.params = dict(params)
        self.config = dict(config) if config is not None else None
        self.run_name = run_name or f"trial-{trial_id}"
        self.log_generator = log_generator
        self.client = _client(self.context["uri"])
        self.run_id: str | None = None
        self.closed = False
        self._pending: list[Metric] = []
        self._pending_images: list[tuple[int, Any]] = []  # (step, grid) not yet uploaded
        self._loss_step = -1
        self._last_step = 0
        self._generator: Path | None = None

    def __enter__(self) -> TrialTracker:
        if self.run_id is None:
            self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.closed or self.run_id is None:
            return
        if exc is None:
            self.close("finished")
        elif isinstance(exc, KeyboardInterrupt):
            self.close("killed", error="interrupted")
        else:
            self.close("failed", error=f"{type(exc).__name__}: {exc}")

    def _tags(self) -> dict[str, str]:
        tags = dict(self.context.get("tags", {}))
        tags.update({TAG_ROLE: "trial", TAG_TRIAL: self.trial_id, TAG_STUDY: self.context["study"]})
        tags[MLFLOW_PARENT_RUN_ID] = self.context["parent_run_id"]
        cfg = self.config or {}
        edge = self.params.get("loss.edge_operator") or cfg.get("loss", {}).get("edge_operator")
        if edge:
            tags[TAG_EDGE] = str(edge)
        if cfg.get("preset"):
            tags[TAG_PRESET] = str(cfg["preset"])
        return tags

    def start(self) -> str:
        """Create the child run, or reopen it if this trial logged before (a retried or resumed
        trial continues its own run)."""
        ctx = self.context
        existing = _find_child_run(
            self.client, ctx["experiment_id"], ctx["parent_run_id"], self.trial_id
        )
        if existing is not None:
            self.run_id = existing.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, TAG_STATUS, "running")
            return self.run_id
        run = self.client.create_run(
            ctx["experiment_id"],
            run_name=self.run_name,
            tags={**self._tags(), TAG_STATUS: "running"},
        )
        self.run_id = run.info.run_id
        _log_params(self.client, self.run_id, self.params)
        if self.config is not None:
            text = yaml.safe_dump(self.config, sort_keys=False)
            self.client.log_text(self.run_id, text, "config.yaml")
        return self.run_id

    def _run(self) -> str:
        if self.run_id is None:
            self.start()
        assert self.run_id is not None
        return self.run_id

    def _queue(self, metrics: Mapping[str, float], step: int, skip: Iterable[str] = ()) -> None:
        ts = int(time.time() * 1000)
        skipped = set(skip)
        for k, v in metrics.items():
            if k not in skipped:
                self._pending.append(Metric(k, float(v), ts, int(step)))

    def flush(self) -> bool:
        """Send the queued metric points; False (and the points kept) if the server refused."""
        run_id = self._run()
        while self._pending:
            batch = self._pending[:_LOG_BATCH_METRICS]
            try:
                self.client.log_batch(run_id, metrics=batch)
            except Exception as exc:  # noqa: BLE001 (transport errors of any kind: retry later)
                log.warning(
                    "MLflow: %d metric points kept for the next attempt: %s",
                    len(self._pending),
                    exc,
                )
                return False
            del self._pending[: len(batch)]
        return True

    def log(self, step: int, losses: dict[str, float]) -> None:
        """Training losses at ``step`` (the trainer calls this every ``log_every`` steps)."""
        self._queue(losses, step)
        self._loss_step = step
        self._last_step = max(self._last_step, step)
        self.flush()

    def evaluate(
        self, step: int, metrics: dict[str, float], checkpoint: Path, samples: Tensor
    ) -> None:
        """Validation metrics at ``step`` and the image grid ``images/step_<step>.png``."""
        # the trainer copies the latest losses into the metrics; they are already logged at
        # this step if log() ran, and a (key, step) pair is written once
        skip = {"step"} | (
            {k for k in metrics if k.startswith("loss_")} if step == self._loss_step else set()
        )
        self._queue(metrics, step, skip)
        self._last_step = max(self._last_step, step)
        self.flush()
        title = f"trial {self.trial_id}, step {int(step)}"
        self._pending_images.append((int(step), labelled_grid(samples, title=title)))
        self._flush_images()
        scores = Path(checkpoint).parent / "val_scores.csv"  # semtune.train.loop.VAL_SCORES_FILE
        if scores.is_file():
            # per validation image, so that two trials or models compare image by image
            try:
                self.client.log_text(
                    self._run(), scores.read_text(), f"scores/step_{int(step):06d}.csv"
                )
            except Exception as exc:  # noqa: BLE001 (a lost table must not stop training)
                log.warning("MLflow: per-image scores of step %d not uploaded: %s", step, exc)
        self._generator = Path(checkpoint).parent / "generator.pt"
        if self.config is not None and self._is_last(step, metrics):
            try:
                self.close("finished")
            except Exception as exc:  # noqa: BLE001 (the training itself went well)
                log.error("MLflow: run of trial %s not closed: %s", self.trial_id, exc)

    def _flush_images(self) -> bool:
        """Upload the queued image grids; False (and they are kept) if the store refused."""
        run_id = self._run()
        while self._pending_images:
            step, grid = self._pending_images[0]
            try:
                # once per evaluation: one file, named by its step (issue 15: it was three)
                self.client.log_image(run_id, grid, artifact_file=f"images/step_{step:06d}.png")
            except Exception as exc:  # noqa: BLE001 (a lost picture must not stop training)
                log.warning(
                    "MLflow: %d image grid(s) kept for the next attempt: %s",
                    len(self._pending_images),
                    exc,
                )
                return False
            del self._pending_images[0]
        return True

    def _is_last(self, step: int, metrics: Mapping[str, float]) -> bool:
        sched = (self.config or {}).get("schedule", {})
        steps, budget = sched.get("steps"), float(sched.get("time_budget_s", 0) or 0)
        return (steps is not None and step >= int(steps)) or (
            budget > 0 and float(metrics.get("train_seconds", 0.0)) >= budget
        )

    def close(self, status: TrialStatus = "finished", *, error: str | None = None) -> None:
        """Send what is queued, upload the generator if finished, and set the run's status:
        ``finished`` (FINISHED), ``stopped_early`` by the scheduler (FINISHED, tag
        ``semtune.status=stopped_early``), ``failed`` (FAILED, error tag), ``killed``."""
        if self.closed:
            return
        run_id = self._run()
        if not self.flush():
            time.sleep(1.0)
            if not self.flush():
                log.error(
                    "MLflow: %d metric points of trial %s could not be sent",
                    len(self._pending),
                    self.trial_id,
                )
        if not self._flush_images():
            time.sleep(1.0)
            if not self._flush_images():
                lost = len(self._pending_images)
                log.error("MLflow: %d image grids of trial %s not uploaded", lost, self.trial_id)
                try:  # said on the run itself, not only in a log
                    self.client.set_tag(run_id, TAG_IMAGES_LOST, str(lost))
                except Exception:  # noqa: BLE001
                    pass
        if status == "finished" and self.log_generator and self._generator is not None:
            if self._generator.is_file():
                try:
                    self.client.log_artifact(run_id, str(self._generator), TRIAL_GENERATOR_PATH)
                except Exception as exc:  # noqa: BLE001
                    log.warning(
                        "MLflow: generator of trial %s not uploaded: %s", self.trial_id, exc
                    )
        _set_status(self.client, run_id, status, error)
        self.closed = True


class TrialTrackerFactory:
    """Picklable factory for ``semtune.tune``'s ``trial_reporters``: builds and starts a
    ``TrialTracker`` from the trial's context (an object with ``trial_id``, ``trial_name``,
    ``params`` and ``config``)."""

    def __init__(self, context: Mapping[str, Any], *, log_generator: bool = False) -> None:
        self.context = dict(context)
        self.log_generator = log_generator

    def __call__(self, trial: Any) -> TrialTracker:
        config = trial.config.to_dict() if hasattr(trial.config, "to_dict") else trial.config
        name = getattr(trial, "trial_name", None) or f"trial-{trial.trial_id}"
        tracker = TrialTracker(
            self.context,
            trial.trial_id,
            trial.params,
            config=config,
            run_name=name,
            log_generator=self.log_generator,
        )
        tracker.start()
        return tracker


# -- the model format ----------------------------------------------------------------------------

_MODEL_CODE = '''"""semtune generator as an MLflow pyfunc model, logged from code (no pickle).

The weights and the config that rebuilds the network are the artifact "generator"
(generator.pt, read with torch.load(weights_only=True)); the semtune package that defines the
network ships with the model (code/semtune).
"""

import mlflow

from semtune.tracking import GeneratorModel

mlflow.models.set_model(GeneratorModel())
'''

# What the copied semtune package needs to rebuild and run a generator (pinned to this process's
# versions); training-only dependencies (Ray, Optuna) are left out.
_REQUIREMENTS = (
    "torch",
    "kornia",
    "numpy",
    "scipy",
    "pillow",
    "scikit-image",
    "tifffile",
    "pyyaml",
    "tqdm",
    "mlflow",
)


def _requirements() -> list[str]:
    reqs = []
    for name in _REQUIREMENTS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        reqs.append(f"{name}=={version.split('+')[0]}")
    return reqs


def _signature() -> ModelSignature:
    # -1 everywhere but the channel: any batch, any height, any width
    spec = TensorSpec(np.dtype("float32"), (-1, 1, -1, -1))
    return ModelSignature(inputs=Schema([spec]), outputs=Schema([spec]))


class GeneratorModel(PythonModel):
    """pyfunc wrapper of a semtune generator: ``predict`` restores (B, 1, H, W) float32 arrays
    in [0, 1] of any size (tiled, like ``python -m semtune.enhance``)."""

    def __init__(self) -> None:
        self.generator: nn.Module | None = None

    def load_context(self, context: PythonModelContext) -> None:
        from semtune.train.state import load_generator

        self.generator, _ = load_generator(context.artifacts[GENERATOR_ARTIFACT], "cpu")

    # np.ndarray is the one hint MLflow takes without deriving a schema from it (the explicit
    # signature, any size, is the contract) and without converting the input
    def predict(
        self,
        context: PythonModelContext,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        from semtune.inference import enhance_image

        if self.generator is None:
            raise RuntimeError("GeneratorModel used before load_context")
        x = np.asarray(model_input, dtype=np.float32)
        squeeze = x.ndim == 2
        if squeeze:
            x = x[None, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) or (H, W) float32 in [0, 1], got {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x))
        out = torch.cat([enhance_image(self.generator, t[i : i + 1]) for i in range(len(t))])
        y = out.cpu().numpy().astype(np.float32)
        return y[0, 0] if squeeze else y


def log_generator_model(
    uri: str, run_id: str, generator_path: str | Path, name: str = "model"
) -> dict[str, str]:
    """Log ``generator_path`` as a pyfunc model (from code, no pickle) into run ``run_id``.

    Returns:
        ``{"model_id", "model_uri"}`` of the logged model (``models:/m-...``).
    """
    import semtune
    from semtune.train.state import load_generator

    generator_path = Path(generator_path)
    load_generator(generator_path, "cpu")  # a broken file fails here, not on the user's machine
    package = Path(semtune.__file__).resolve().parent
    client = _client(uri)
    run = client.get_run(run_id)
    # created here rather than by Model.log, which would file it under the default experiment
    # (it looks at the fluent "active" experiment, not at the run's)
    model = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params={k: v for k, v in run.data.params.items()},
        tags={
            TAG_STUDY: run.data.tags.get(TAG_STUDY, ""),
            TAG_TRIAL: run.data.tags.get(TAG_TRIAL, ""),
        },
    )
    with tempfile.TemporaryDirectory(prefix="semtune-model-") as tmp, warnings.catch_warnings():
        # the signature is given, so MLflow's notes about type hints and input examples are moot
        warnings.simplefilter("ignore", UserWarning)
        code = Path(tmp) / "semtune_generator_model.py"
        code.write_text(_MODEL_CODE)
        with _tracking_uri(uri):
            info = mlflow.models.Model.log(
                artifact_path=None,
                name=name,
                flavor=mlflow.pyfunc,
                flavor_name="pyfunc.ModelFromCode",
                run_id=run_id,
                model_id=model.model_id,
                python_model=str(code),
                artifacts={GENERATOR_ARTIFACT: str(generator_path)},
                code_paths=[str(package)],
                signature=_signature(),
                pip_requirements=_requirements(),
                await_registration_for=0,
            )
    return {"model_id": str(info.model_id), "model_uri": f"models:/{info.model_id}"}


# -- loading and managing registered models -------------------------------------------------------


def _find_generator_file(local: Path) -> Path:
    if local.is_file():
        return local
    mlmodel = local / "MLmodel"
    if mlmodel.is_file():
        conf = yaml.safe_load(mlmodel.read_text()) or {}
        art = conf.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        entry = art.get(GENERATOR_ARTIFACT)
        if entry and (local / entry["path"]).is_file():
            return local / entry["path"]
    found = sorted(local.rglob("generator.pt"))
    if not found:
        raise ValueError(f"{local}: no generator.pt in the downloaded artifacts")
    return found[0]


# what a model knows of its training images, as registry tags (semtune.enhance --report reads
# the same facts from generator.pt)
TRAIN_TAG_PREFIX = "train."


def training_data_tags(generator_path: str | Path) -> dict[str, str]:
    """Registry tags with the noise and blur measured on a generator's training images.

    ``train.blurred_noise`` / ``train.clean_noise``: the 10/50/90 % noise stds of the two
    training domains; ``train.blur_sigma``: the blur measured between them (px);
    ``train.f_sigma``: F's learned blur (px); ``train.fingerprint``: the data's fingerprint.
    Empty for files written before these were recorded.
    """
    from semtune.train.state import load_generator_file

    try:
        file = load_generator_file(generator_path)
    except (FileNotFoundError, ValueError):
        return {}
    stats, tags = file.data_stats, {}
    for key in ("blurred_noise", "clean_noise"):
        if isinstance(stats.get(key), list | tuple):
            tags[f"{TRAIN_TAG_PREFIX}{key}"] = " / ".join(f"{v:.4f}" for v in stats[key])
    if isinstance(stats.get("blur_sigma"), float) and math.isfinite(stats["blur_sigma"]):
        tags[f"{TRAIN_TAG_PREFIX}blur_sigma"] = f"{stats['blur_sigma']:.3f}"
    if isinstance(file.degradation.get("sigma"), float):
        tags[f"{TRAIN_TAG_PREFIX}f_sigma"] = f"{file.degradation['sigma']:.3f}"
    if stats.get("fingerprint"):
        tags[f"{TRAIN_TAG_PREFIX}fingerprint"] = str(stats["fingerprint"])
    return tags


def load_registered_generator(uri: str, device: torch.device | str = "cpu") -> nn.Module:
    """A generator (eval mode) from an MLflow URI (see ``load_registered_generator_file``)."""
    return load_registered_generator_file(uri, device).g


def load_registered_generator_file(
    uri: str, device: torch.device | str = "cpu", *, tracking_uri: str | None = None
) -> GeneratorFile:
    """A generator and what it carries from an MLflow URI, as ``semtune.enhance`` uses it.

    Args:
        uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-<id>`` or
            ``runs:/RUN_ID/PATH`` where PATH is a logged model or a ``generator.pt`` (a trial
            run's ``generator/generator.pt``).
        device: where to put the network.
        tracking_uri: the store or server to read (a path works too); default
            ``default_tracking_uri()``. Reading never creates a store: a local one that does
            not exist is an error.

    Raises:
        ValueError: the URI does not resolve (no such store; unknown model, alias or run; no
            generator in it); the message names the store searched and how to name another.
    """
    from semtune.train.state import load_generator_file

    if not uri.startswith(("models:/", "runs:/")):
        raise ValueError(f"expected a models:/ or runs:/ URI, got {uri!r}")
    store = _normalise_uri(tracking_uri) if tracking_uri else default_tracking_uri()
    hint = (
        "name the store or server that holds your models with --tracking-uri or "
        "MLFLOW_TRACKING_URI (semtune.search writes ./mlruns/mlflow.db in the folder it ran in)"
    )
    local_db = _sqlite_path(store)
    if local_db is not None and not local_db.is_file():
        raise ValueError(f"{uri}: there is no MLflow store at {local_db}; {hint}")
    with tempfile.TemporaryDirectory(prefix="semtune-dl-") as tmp, _tracking_uri(store):
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except MlflowException as exc:
            raise ValueError(f"{uri}: not found in {store}: {exc.message}; {hint}") from exc
        return load_generator_file(_find_generator_file(local), device)


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version as ``list_model_versions`` reports it."""

    version: str
    aliases: tuple[str, ...]
    created: str
    study: str
    trial: str
    run_id: str
    metrics: dict[str, float]


def list_model_versions(uri: str, name: str = DEFAULT_MODEL_NAME) -> list[ModelVersionInfo]:
    """Registered versions of ``name`` (newest first) with their aliases and tagged metrics.

    Raises:
        ValueError: no registered model ``name`` (the message lists the ones there are).
    """
    client = _client(uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        names = [m.name for m in client.search_registered_models(max_results=100)]
        raise ValueError(
            f"no registered model {name!r} at {uri} (registered: {', '.join(names) or 'none'})"
        ) from exc
    versions = client.search_model_versions(f"name = {_quoted(name)}", max_results=1000)
    # search results do not carry aliases; the registered model has them all
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = {}
        for k, v in mv.tags.items():
            if k.startswith(METRIC_TAG_PREFIX):
                try:
                    metrics[k.removeprefix(METRIC_TAG_PREFIX)] = float(v)
                except ValueError:
                    pass
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000))
        out.append(
            ModelVersionInfo(
                version=str(mv.version),
                aliases=tuple(sorted(aliases.get(str(mv.version), []))),
                created=created,
                study=mv.tags.get(TAG_STUDY, ""),
                trial=mv.tags.get(TAG_TRIAL, ""),
                run_id=mv.run_id or "",
                metrics=metrics,
            )
        )
    return out


def promote(
    uri: str, version: str | int, *, name: str = DEFAULT_MODEL_NAME, alias: str = CHAMPION
) -> str | None:
    """Point ``alias`` at ``version`` of ``name`` (what the UI's "add alias" does).

    Returns:
        The version that held the alias before (None if none).

    Raises:
        ValueError: no such model or version.
    """
    client = _client(uri)
    version = str(version)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version} at {uri}: {exc.message}") from exc
    try:
        before: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        before = None
    client.set_registered_model_alias(name, alias, version)
    return before
