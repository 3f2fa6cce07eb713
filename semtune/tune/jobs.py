"""Studies as Ray jobs: the library under ``python -m semtune.submit``.

``plan_job`` checks a study for a cluster and builds its job (what is uploaded and the secrets
that never are, relative data folders that must travel with it, an MLflow server the nodes
reach, a durable study folder); ``resolve_address`` and ``prepare_auth`` find the jobs API and
Ray's token; ``connect``, ``follow`` and ``wait`` talk to Ray's Jobs SDK. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_EXCLUDES",
    "DEFAULT_OUT_ROOT",
    "TERMINAL",
    "JobPlan",
    "SubmitError",
    "connect",
    "follow",
    "plan_job",
    "prepare_auth",
    "resolve_address",
    "wait",
]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# On top of Ray's own (.git, .venv, venv, __pycache__) and .gitignore / .rayignore: what a
# study leaves in the project folder and no job needs (gitwildmatch patterns, as .gitignore).
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "/out/",
    "/studies/",
    "/runs/",
    "/mlruns/",
    "/mlartifacts/",
    "*.pt",
    "*.ckpt",
    "*.db",
    "*.sqlite",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    # secrets: never uploaded, whatever the folder (a job's files are readable on every node)
    ".env",
    ".env.*",
    "*.token",
    "auth_token",
    "*.pem",
    "*.key",
    "*.p12",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".git-credentials",
    ".aws/",
    ".ssh/",
    ".ray/",
    ".kube/",
    ".gnupg/",
    ".docker/config.json",
)
DEFAULT_OUT_ROOT = "~/semtune-studies"
_TOKEN_FILE = Path("~/.ray/auth_token")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# search flags that this command sets itself (from its own options)
_OWN_FLAGS = ("--space", "--out", "-o", "--tracking-uri", "--no-tracking", "--address")


class SubmitError(RuntimeError):
    """The job cannot be submitted as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class JobPlan:
    """A study job, ready for ``JobSubmissionClient.submit_job``.

    Attributes:
        submission_id: the job's id (``semtune-<study>-<time>`` unless given).
        entrypoint: the shell command the cluster runs in the unpacked working folder.
        runtime_env: ``working_dir`` (absolute, uploaded by the client) and ``excludes``.
        metadata: shown by ``ray job list`` and the dashboard.
        out: the study folder on the cluster, as passed to ``--out``.
        notes: things the user should know (printed before submitting).
    """

    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    out: str
    notes: tuple[str, ...] = field(default=())


def resolve_address(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The jobs API to submit to: ``--address``, else Ray's variables, else the local default.

    Args:
        flag: ``--address`` (``http://127.0.0.1:8265``).
        env: the environment (default ``os.environ``): ``RAY_API_SERVER_ADDRESS``, or
            ``RAY_ADDRESS`` when it is an ``http(s)://`` dashboard URL.

    Returns:
        The dashboard URL.

    Raises:
        SubmitError: the address is not an ``http(s)://`` URL (a ``ray://`` or ``HOST:6379``
            address is for ``semtune.search --address``, not for jobs).
    """
    env = os.environ if env is None else env
    address = flag or env.get("RAY_API_SERVER_ADDRESS") or ""
    if not address:
        ray_address = env.get("RAY_ADDRESS", "")
        address = ray_address if ray_address.startswith(("http://", "https://")) else ""
    address = (address or DEFAULT_ADDRESS).rstrip("/")
    if not address.startswith(("http://", "https://")):
        raise SubmitError(
            f"--address {address}: expected the cluster's dashboard URL, http://HOST:8265 "
            "(ray:// and HOST:6379 addresses are for `python -m semtune.search --address`)"
        )
    return address


def prepare_auth(token_file: str | Path | None = None) -> str:
    """Turn Ray's token authentication on for this process; returns where the token comes from.

    Must run before ``ray`` is imported: Ray reads ``RAY_AUTH_MODE`` and the token once.

    Args:
        token_file: a file holding the cluster's token (sets ``RAY_AUTH_TOKEN_PATH``).

    Returns:
        ``RAY_AUTH_TOKEN``, the token file's path, or ``disabled`` when the user set
        ``RAY_AUTH_MODE=disabled`` themselves.

    Raises:
        SubmitError: no token anywhere, or the named file is missing or empty.
    """
    if token_file is not None:
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(Path(token_file).expanduser())
    mode = os.environ.setdefault("RAY_AUTH_MODE", "token")
    if mode.lower() != "token":
        return mode.lower()
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named).expanduser() if named else _TOKEN_FILE.expanduser()
    if path.is_file() and path.read_text().strip():
        return str(path)
    where = f"{path} (RAY_AUTH_TOKEN_PATH)" if named else f"{path}, RAY_AUTH_TOKEN_PATH"
    raise SubmitError(
        f"no Ray token for the cluster: looked at RAY_AUTH_TOKEN, {where}. Copy the cluster's "
        "token (`ray get-auth-token` on its head node, or its Kubernetes Secret) into a file "
        "readable only by you and pass --token-file FILE (docs/cluster.md)"
    )


def _flag_given(args: Sequence[str], flag: str) -> bool:
    """Whether ``flag`` is among ``args``, also as argparse would read it: ``--flag=value`` or
    abbreviated (``--ou`` for ``--out``); a short flag also with its value attached (``-oDIR``)."""
    for a in args:
        if len(flag) == 2 and a.startswith(flag) and not a.startswith("--"):
            return True
        name = a.split("=", 1)[0]
        if name == flag or (name.startswith("--") and len(name) > 3 and flag.startswith(name)):
            return True
    return False


def _set_overrides(search_args: Sequence[str]) -> list[str]:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    known, _ = p.parse_known_args(list(search_args))
    return list(known.overrides)


def _ignored(working_dir: Path, excludes: Sequence[str]) -> Any:
    """A matcher for what Ray leaves out of the upload (its defaults, ignore files, excludes)."""
    # the matcher Ray's own packaging uses, so that both agree on every pattern. Ray has no
    # public API for "what would the runtime env upload" (checked against Ray 2.60); the
    # vendored pathspec is what its packaging calls, and tests/cluster/test_submit.py checks
    # the two agree on this repository.
    from ray._private.thirdparty.pathspec import PathSpec

    defaults = os.environ.get(
        "RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", ".git,.venv,venv,__pycache__"
    )
    lines = [x.strip() for x in defaults.split(",") if x.strip()] + list(excludes)
    ignore_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") == "1"
    for name in (".rayignore",) if ignore_gitignore else (".gitignore", ".rayignore"):
        f = working_dir / name
        if f.is_file():
            lines += f.read_text().splitlines()
    return PathSpec.from_lines("gitwildmatch", lines)


def _is_tracking_reachable(uri: str) -> bool:
    # The cluster's nodes write to it: a server (http, a database) works, a file here does not.
    return "://" in uri and not uri.startswith(("sqlite:", "file:"))


def plan_job(
    space: str | Path,
    *,
    working_dir: str | Path = ".",
    out: str | None = None,
    tracking_uri: str | None = None,
    no_tracking: bool = False,
    search_args: Sequence[str] = (),
    excludes: Sequence[str] = DEFAULT_EXCLUDES,
    submission_id: str | None = None,
    python: str = "python",
    now: float | None = None,
) -> JobPlan:
    """Check a study for running on a cluster and build its job.

    Args:
        space: the study file; must be inside ``working_dir`` (it travels with it).
        working_dir: the folder uploaded as the job's working directory.
        out: the study folder on the cluster (absolute, ``~/...`` or shared storage);
            default ``~/semtune-studies/<study>-<time>``.
        tracking_uri: the MLflow server the cluster logs to; default ``MLFLOW_TRACKING_URI``.
        no_tracking: run without MLflow.
        search_args: extra ``semtune.search`` arguments (``--num-samples``, ``--set``,
            ``--storage-path``, ``--resume``, ...).
        excludes: gitwildmatch patterns left out of the upload, on top of Ray's defaults and
            the folder's ``.gitignore`` / ``.rayignore``.
        submission_id: the job id; default ``semtune-<study>-<time>``.
        python: the Python executable on the cluster.
        now: the time used in default names (tests).

    Returns:
        The job to submit.

    Raises:
        SubmitError: the space is outside the working folder or invalid, a relative data
            folder is missing or not uploaded, MLflow is not a server, or ``search_args``
            repeats an option of this command.
    """
    from semtune.config import ConfigError
    from semtune.tune.space import load_space

    wd = Path(working_dir).expanduser().resolve()
    if not wd.is_dir():
        raise SubmitError(f"--working-dir {working_dir}: not a folder")
    home = Path.home().resolve()
    if home.is_relative_to(wd) or wd == Path(wd.anchor):
        what = "the root folder" if wd == Path(wd.anchor) else "or holds your home folder"
        raise SubmitError(
            f"--working-dir {working_dir} is {what}, whose keys and tokens would be uploaded "
            "to the cluster: pass the project folder"
        )
    space_path = Path(space).expanduser().resolve()
    if not space_path.is_file():
        raise SubmitError(f"--space {space}: no such file")
    if not space_path.is_relative_to(wd):
        raise SubmitError(
            f"--space {space} is outside the working folder {wd}, which is all the cluster "
            "receives: move the file into it or pass --working-dir"
        )
    for flag in _OWN_FLAGS:
        if _flag_given(search_args, flag):
            raise SubmitError(
                f"{flag} after '--': give it as an option of semtune.submit (before '--')"
            )
    overrides = _set_overrides(search_args)
    try:
        spec = load_space(space_path, overrides)
    except ConfigError as exc:
        raise SubmitError(str(exc)) from None

    notes: list[str] = []
    ignored = _ignored(wd, excludes)
    data = spec.train_config().data
    for name in ("clean_dir", "blurred_dir", "val_dir"):
        value = getattr(data, name)
        if value is None:
            continue
        path = Path(value).expanduser()
        if path.is_absolute():
            notes.append(
                f"data.{name} = {path}: an absolute path, read on the cluster: it must exist "
                "on every node (shared storage or the same files on each)"
            )
            continue
        # the job runs in the unpacked working folder: relative paths are taken from there
        # (lexically: a symlinked folder inside it is uploaded with its files)
        local = Path(os.path.normpath(wd / path))
        if not local.is_dir() or not local.is_relative_to(wd):
            raise SubmitError(
                f"data.{name} = {value}: not a folder inside the working folder {wd} (relative "
                "data paths are read from the uploaded copy); put the images there or use an "
                "absolute path that exists on every node"
            )
        rel = local.relative_to(wd).as_posix()
        if ignored.match_file(rel + "/") or ignored.match_file(f"{rel}/x.png"):
            raise SubmitError(
                f"data.{name} = {value} is left out of the upload (.gitignore, .rayignore or "
                "--exclude): the study could not read it on the cluster"
            )

    if no_tracking:
        tracking: list[str] = ["--no-tracking"]
    else:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
        if not _is_tracking_reachable(uri):
            got = f" ({uri} is a file on this machine)" if uri else ""
            raise SubmitError(
                "a study on a cluster logs to an MLflow server that its nodes reach over the "
                f"network{got}: pass --tracking-uri http://HOST:5000 (mlflow/start-server.sh "
                "with HOST=<private address>, docs/cluster.md) or --no-tracking"
            )
        tracking = ["--tracking-uri", uri]

    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    out = out or f"{DEFAULT_OUT_ROOT}/{spec.study}-{stamp}"
    if not (out.startswith(("/", "~")) or "://" in out):
        raise SubmitError(
            f"--out {out}: give an absolute path on the cluster (or ~/...): a relative one "
            "would land in the job's temporary copy of the working folder"
        )
    rel_space = space_path.relative_to(wd).as_posix()
    command = [python, "-m", "semtune.search", "--space", rel_space, "--out", out]
    command += [*tracking, *search_args]
    return JobPlan(
        submission_id=submission_id or f"semtune-{spec.study}-{stamp}",
        entrypoint=shlex.join(command),
        runtime_env={"working_dir": str(wd), "excludes": list(excludes)},
        metadata={"semtune.study": spec.study, "semtune.space": rel_space, "semtune.out": out},
        out=out,
        notes=tuple(notes),
    )


def connect(address: str) -> JobSubmissionClient:
    """A ``JobSubmissionClient`` for the jobs API at ``address``; SubmitError if refused."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise SubmitError(f"{address} refused the token: {exc}") from None
    except (ConnectionError, RuntimeError) as exc:
        raise SubmitError(
            f"cannot reach the Ray jobs API at {address} ({exc}); start the tunnel first "
            "(`ray dashboard cluster/aws-gpu.yaml`, or `kubectl port-forward "
            "svc/<cluster>-head-svc 8265:8265`)"
        ) from None


def _status(client: JobSubmissionClient, job_id: str) -> str:
    status = client.get_job_status(job_id)
    return str(getattr(status, "value", status))


def wait(client: JobSubmissionClient, job_id: str, timeout_s: float) -> str:
    """The job's status once it ends, or after ``timeout_s``."""
    status = _status(client, job_id)
    deadline = time.monotonic() + timeout_s
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _status(client, job_id)
    return status


def follow(client: JobSubmissionClient, job_id: str) -> str:
    """Stream a job's output to stdout until it ends; returns its final status (``SUCCEEDED``,
    ``FAILED`` or ``STOPPED``)."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)  # chunks are raw output: lines may span two of them
            sys.stdout.flush()

    asyncio.run(tail())
    # the log stream closes when the job ends; its status can lag by a moment
    return wait(client, job_id, 30.0)
