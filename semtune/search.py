"""``python -m semtune.search``: a hyperparameter study of the trainer on Ray Tune + Optuna."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semtune.cli import add_model_name, add_out, add_set, add_tracking_uri, parser

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  python -m semtune.search --space search_spaces/gamma.yaml
  python -m semtune.search --space search_spaces/full.yaml --out studies/full --num-samples 20
  python -m semtune.search --space search_spaces/gamma.yaml --set schedule.steps=100
  python -m semtune.search --space search_spaces/gamma.yaml --resume    # after Ctrl-C or a kill
  python -m semtune.search --space search_spaces/gamma.yaml --address auto   # on a cluster
  python -m semtune.submit --space search_spaces/gamma.yaml --tracking-uri http://HOST:5000
                                             # ... or as a Ray job (docs/cluster.md)
  optuna-dashboard sqlite:///gamma/optuna.db                             # watch it in a browser
  mlflow/start-server.sh     # the MLflow UI on http://127.0.0.1:5000 (runs, images, registry)

The study folder holds results.csv, best_trial.json (pareto_front.csv), best_generator.pt
(for python -m semtune.evaluate / semtune.enhance), the PNG figures, optuna.db and Tune's
state (tune/). Every study is also logged to MLflow (a parent run, one child run per trial)
and its best generator registered as a model version; see docs/search.md for the search-space
format and docs/mlflow.md for tracking.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (also read by ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.search",
        "Run a hyperparameter study of the CycleGAN trainer: Optuna picks the trials, Ray Tune "
        "runs them (locally, or on a cluster with --address).",
        _EPILOG,
    )
    p.add_argument(
        "--space",
        required=True,
        type=Path,
        metavar="FILE",
        help="study file (YAML): base config, searched config paths, objective, sampler, "
        "trials, resources; e.g. search_spaces/gamma.yaml",
    )
    add_out(
        p,
        "study folder (default: ./<study name> in the working directory); holds the "
        "results, figures, best_generator.pt, optuna.db and Tune's state",
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        metavar="N",
        help="number of trials, overriding the file's 'trials' (new studies only)",
    )
    add_set(
        p,
        "override the base trainer config of every trial by its path, e.g. --set "
        "schedule.steps=100 (repeatable; new studies only)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study in --out after Ctrl-C, a crash or a killed driver: finished "
        "trials are kept, interrupted ones continue from their last checkpoint",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to run on: 'auto' (a cluster started with `ray start` on this "
        "machine), HOST:6379 or ray://HOST:10001; default: the job's cluster when run by "
        "`ray job submit` / semtune.submit, else a private local Ray instance (docs/cluster.md)",
    )
    p.add_argument(
        "--storage-path",
        default=None,
        metavar="URI",
        help="where Tune keeps the trials' checkpoints: shared storage that every node of a "
        "multi-node cluster reaches, s3://bucket/studies/NAME or an NFS folder mounted on "
        "every node (one per study, like --out); default: the study folder",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between progress tables (also printed whenever a trial changes status)",
    )
    add_tracking_uri(p)
    p.add_argument(
        "--experiment",
        default=None,
        metavar="NAME",
        help="MLflow experiment name (default: the study's name)",
    )
    add_model_name(
        p,
        "registered model that receives the best generator; its 'champion' alias moves only "
        "to a better model",
    )
    p.add_argument(
        "--no-tracking",
        action="store_true",
        help="do not log to MLflow (results stay in the study folder only)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    # Before Ray and Tune are imported: no usage reporting, no Tune console output of its own.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if args.address not in (None, "local", "auto"):
        # Ray 2.60 sends its token to a cluster named by address only with RAY_AUTH_MODE=token
        # (it switches token mode on by itself only for `auto`); every cluster of ours needs it.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    from semtune.config import ConfigError
    from semtune.tune.space import load_space
    from semtune.tune.study import StudyError, default_out, run_study

    try:
        spec = load_space(args.space, args.overrides)
    except ConfigError as exc:
        p.error(str(exc))
    out = args.out.expanduser().resolve() if args.out is not None else default_out(spec)
    _warn_cluster_paths(args, out)
    tracker = None
    kwargs: dict[str, Any] = {}  # run_study's hooks that log each trial
    if not args.no_tracking:
        from semtune.tracking import TrackingError
        from semtune.tune.tracked import start_tracking, study_hooks

        try:
            tracker = start_tracking(
                spec,
                out,
                space_file=args.space,
                tracking_uri=args.tracking_uri,
                experiment=args.experiment,
                num_samples=args.num_samples,
                resume=args.resume,
                on_cluster=bool(args.address or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ),
            )
        except (TrackingError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        kwargs = dict(study_hooks(tracker))
    try:
        # with tracking, a crash or Ctrl-C marks the study's run FAILED/KILLED
        with tracker if tracker is not None else contextlib.nullcontext():
            result = run_study(
                spec,
                out,
                resume=args.resume,
                address=args.address,
                num_samples=args.num_samples,
                cli_overrides=args.overrides,
                progress_interval_s=args.progress_every,
                storage_path=args.storage_path,
                **kwargs,
            )
            if tracker is not None:
                from semtune.tune.tracked import finish_tracking

                finish_tracking(tracker, result, spec, model_name=args.model_name)
    except (StudyError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nstudy folder: {result.out_dir}")
    if not result.complete:
        return 1
    return 0 if result.best_generator is not None else 3


def _warn_cluster_paths(args: argparse.Namespace, out: Path) -> None:
    """Say when the study folder would be lost or unreachable on a cluster."""
    # Ray puts the job's config here for the entrypoint of `ray job submit`.
    in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    if in_job and out.is_relative_to(Path.cwd()):
        print(
            f"warning: the study folder {out} is inside the job's working directory, a "
            "temporary copy that Ray deletes later: pass --out /absolute/path (e.g. "
            "~/studies/NAME, or shared storage) to keep the results",
            file=sys.stderr,
        )
    if (args.address or "").startswith("ray://"):
        print(
            "note: with ray:// the study's Tune and Optuna state is written on the head node: "
            f"{out} must be a folder the head node reaches at the same path (shared storage); "
            "`python -m semtune.submit` (a Ray job) needs no shared folder",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
