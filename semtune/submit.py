"""``python -m semtune.submit``: run a study on a Ray cluster as a Ray job, and follow it.

A thin layer over Ray's Jobs SDK (``ray.job_submission.JobSubmissionClient``) that does what a
study needs and ``ray job submit`` leaves to the user:

- uploads the project folder (``--working-dir``, default ``.``) without generated files (Ray
  already skips ``.git``, ``.venv``, ``__pycache__`` and what ``.gitignore`` lists; this adds
  study outputs, MLflow stores, checkpoints and caches), so the package, the search-space file
  and data given by relative paths reach the cluster, and nothing is read from this machine;
- checks before submitting that the space file is inside that folder, that its relative data
  folders are there and uploaded, and that MLflow is a server the cluster reaches (not a
  local sqlite file);
- writes the study folder to a durable place on the cluster (``--out``, default
  ``~/semtune-studies/<study>-<time>`` on the node that runs the job), never into the job's
  temporary copy of the working folder;
- turns Ray's token authentication on for the client (``RAY_AUTH_MODE=token``) and says where
  the token comes from; streams the job's output until it ends, and exits 0 only if it
  succeeded.

Everything after ``--`` goes to ``python -m semtune.search`` unchanged. See docs/cluster.md.

The library under it is ``semtune.tune.jobs``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semtune.cli import add_out, add_tracking_uri, parser
from semtune.tune.jobs import (
    DEFAULT_ADDRESS,
    DEFAULT_EXCLUDES,
    DEFAULT_OUT_ROOT,
    TERMINAL,
    JobPlan,
    SubmitError,
    connect,
    follow,
    plan_job,
    prepare_auth,
    resolve_address,
    wait,
)

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

# the library's names, re-exported: semtune.tune.jobs is where they live
__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_EXCLUDES",
    "JobPlan",
    "SubmitError",
    "build_parser",
    "follow",
    "main",
    "plan_job",
    "prepare_auth",
    "resolve_address",
]

_EPILOG = """\
examples:
  python -m semtune.submit --space search_spaces/gamma.yaml \\
      --tracking-uri http://10.0.0.5:5000 -- --num-samples 21
  python -m semtune.submit --address http://127.0.0.1:8265 --space my-gamma.yaml \\
      --out /mnt/shared/studies/gamma --tracking-uri http://10.0.0.5:5000 \\
      -- --storage-path s3://my-bucket/semtune/gamma
  python -m semtune.submit --follow semtune-gamma-20261122-101500     # reattach to its output
  python -m semtune.submit --status semtune-gamma-20261122-101500
  python -m semtune.submit --stop semtune-gamma-20261122-101500
  python -m semtune.submit --list

The address is the cluster's dashboard (jobs API), reached through an SSH tunnel
(`ray dashboard cluster/aws-gpu.yaml`) or `kubectl port-forward`; it needs the cluster's token:
RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH (or --token-file), else ~/.ray/auth_token. See
docs/cluster.md.
"""


def _report(client: JobSubmissionClient, job_id: str, status: str) -> int:
    info = client.get_job_info(job_id)
    out = (info.metadata or {}).get("semtune.out")
    print(f"\njob {job_id}: {status}" + (f" ({info.message})" if info.message else ""))
    if status == "SUCCEEDED" and out:
        print(
            f"study folder on the cluster: {out} (fetch it: `ray rsync-down CLUSTER.yaml {out} "
            "./studies/`, or read it from the shared storage; docs/cluster.md)"
        )
    return 0 if status == "SUCCEEDED" else 1


def build_parser() -> argparse.ArgumentParser:
    """The command's parser, for the arguments before ``--`` (also read by
    ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.submit",
        "Run a study (python -m semtune.search) on a Ray cluster as a Ray job: upload the "
        "project folder, start the study, stream its output. Arguments after '--' go to "
        "semtune.search.",
        _EPILOG,
        usage="%(prog)s --space FILE [options] [-- SEARCH_OPTIONS ...]\n"
        "       %(prog)s --follow JOB_ID | --status JOB_ID | --stop JOB_ID [options]\n"
        "       %(prog)s --list [options]",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--space", type=Path, metavar="FILE", help="the study file to run (inside --working-dir)"
    )
    what.add_argument("--follow", metavar="JOB_ID", help="stream a submitted job's output")
    what.add_argument("--status", metavar="JOB_ID", help="print a job's status")
    what.add_argument("--stop", metavar="JOB_ID", help="stop a job (its trials end)")
    what.add_argument("--list", action="store_true", help="list the cluster's jobs")
    p.add_argument(
        "--address",
        default=None,
        metavar="URL",
        help=f"the cluster's dashboard URL (default: $RAY_API_SERVER_ADDRESS, an http "
        f"$RAY_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--token-file", default=None, metavar="FILE", help="file with the cluster's Ray token"
    )
    p.add_argument(
        "--working-dir",
        default=".",
        metavar="DIR",
        help="project folder uploaded to the cluster (default: the current folder)",
    )
    add_out(
        p,
        f"study folder on the cluster, absolute or ~/... (default: "
        f"{DEFAULT_OUT_ROOT}/<study>-<time> on the node that runs the job)",
        type=str,
    )
    add_tracking_uri(
        p,
        "MLflow tracking server that the cluster's nodes reach, http://HOST:5000 (default: "
        "$MLFLOW_TRACKING_URI; the local ./mlruns/mlflow.db of other commands is refused: the "
        "nodes cannot write to a file on this machine)",
    )
    p.add_argument("--no-tracking", action="store_true", help="run the study without MLflow")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="more files left out of the upload (.gitignore syntax; repeatable)",
    )
    p.add_argument(
        "--job-id",
        default=None,
        metavar="JOB_ID",
        help="the job's id (default: semtune-<study>-<time>)",
    )
    p.add_argument(
        "--python",
        default="python",
        metavar="EXE",
        help="Python executable on the cluster",
    )
    p.add_argument(
        "--no-follow",
        action="store_true",
        help="return once the job is submitted (follow it later with --follow)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    search_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, search_args = argv[:cut], argv[cut + 1 :]
    p = build_parser()
    args = p.parse_args(argv)
    if search_args and args.space is None:
        p.error("arguments after '--' go with --space")

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        address = resolve_address(args.address)
        token = prepare_auth(args.token_file)
        if args.space is not None:
            plan = plan_job(
                args.space,
                working_dir=args.working_dir,
                out=args.out,
                tracking_uri=args.tracking_uri,
                no_tracking=args.no_tracking,
                search_args=search_args,
                excludes=[*DEFAULT_EXCLUDES, *args.exclude],
                submission_id=args.job_id,
                python=args.python,
            )
            for note in plan.notes:
                print(f"note: {note}", file=sys.stderr)
        client = connect(address)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.list:
        for job in sorted(client.list_jobs(), key=lambda j: j.start_time or 0):
            print(f"{job.submission_id or job.job_id}  {job.status}  {job.entrypoint}")
        return 0
    if args.status:
        info = client.get_job_info(args.status)
        print(f"{args.status}: {info.status}" + (f" ({info.message})" if info.message else ""))
        return 0
    if args.stop:
        client.stop_job(args.stop)
        status = wait(client, args.stop, 60.0)
        print(f"{args.stop}: {status}")
        return 0 if status in TERMINAL else 1
    if args.follow:
        job_id = args.follow
    else:
        print(f"submitting to {address} (token: {token})")
        print(f"  {plan.entrypoint}")
        print(f"  working folder {plan.runtime_env['working_dir']} -> the job's working directory")
        job_id = client.submit_job(
            entrypoint=plan.entrypoint,
            submission_id=plan.submission_id,
            runtime_env=plan.runtime_env,
            metadata=plan.metadata,
        )
        print(f"job {job_id} submitted; study folder on the cluster: {plan.out}")
        if args.no_follow:
            print(f"follow it: python -m semtune.submit --address {address} --follow {job_id}")
            return 0
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running on the cluster. Follow it again: "
            f"--follow {job_id}; stop it: --stop {job_id}",
            file=sys.stderr,
        )
        return 130
    return _report(client, job_id, status)


if __name__ == "__main__":
    sys.exit(main())
