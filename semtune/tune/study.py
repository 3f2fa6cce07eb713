"""Run a study: a ``StudySpec`` on Ray Tune with Optuna, resumable, with tables and figures.

The study folder (``out``) holds everything:

- ``study.json``: the validated spec and the resolved base trainer config (what ``--resume``
  continues), ``space.yaml``: a copy of the study file;
- ``optuna.db``: Optuna's study (unless ``storage:`` names another database);
- ``tune/``: Tune's experiment state and each trial's checkpoints (or ``<storage_path>/tune``
  on shared storage, ``s3://...`` or an NFS folder, which a multi-node cluster needs);
- at the end: ``results.csv``, ``best_trial.json`` (or ``pareto_front.csv``),
  ``best_generator.pt`` and the PNG figures;
- with ``confirm:`` in the study file, the confirmation stage (``semtune.tune.confirm``): its
  Tune state in ``tune_confirm/``, ``confirmation*.csv``, ``confirmation.json`` and
  ``confirmation.png``; ``best_generator.pt`` and ``best_trial.json`` then name the confirmed
  winner.

Size: longer than ~400 lines because of ``run_study`` and the Tune experiments of the search and
the confirmation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from semtune.train.config import TrainConfig
from semtune.train.loop import Reporter, data_lines
from semtune.tune.confirm import (
    CONFIRM_DIR,
    SEED_PATH,
    candidates,
    confirmation_points,
    summarise_confirmation,
)
from semtune.tune.folder import (
    TUNE_DIR,
    StudyError,
    default_out,
    prepare_folder,
    ray_address,
    saved_storage,
    saved_tune_storage,
    storage_url,
    tune_storage,
)
from semtune.tune.keys import POINT_KEY
from semtune.tune.progress import ProgressTable
from semtune.tune.results import (
    StudyResult,
    export_generator,
    record_winner,
    results_frame,
    slim_checkpoints,
    summarise,
)
from semtune.tune.searcher import StudySearcher, close_orphans
from semtune.tune.space import SpaceSampler, StudySpec, build_sampler
from semtune.tune.trainable import (
    FAULT_INJECT_ENV,
    TrialContext,
    TrialSettings,
    run_point_trial,
    run_trial,
)

__all__ = [
    "StudyError",
    "StudyResult",
    "default_out",
    "ray_address",
    "results_frame",
    "run_study",
    "storage_url",
    "tune_storage",
]

log = logging.getLogger(__name__)

# Tune snapshots its experiment state (trial statuses, searcher) at most this often; the
# default (>= 10 s) leaves a wider window in which a killed driver forgets finished trials.
_EXPERIMENT_SNAPSHOT_S = "2"


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _trainable(
    fn: Callable[..., None],
    spec: StudySpec,
    base: TrainConfig,
    trial_reporters: Sequence[Callable[[TrialContext], Reporter]],
) -> Any:
    """``fn`` (the search's or the confirmation's trainable) with the study's shared trial
    settings and each trial's resources."""
    settings = TrialSettings(
        base=base,
        threads=spec.resources.threads,
        report_metrics=tuple(spec.columns),
        crash_once_marker=os.environ.get(FAULT_INJECT_ENV) or None,
        reporters=tuple(trial_reporters),
    )
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return tune.with_resources(tune.with_parameters(fn, settings=settings), resources)


def _run_config(
    name: str, spec: StudySpec, tune_root: str, callbacks: Sequence[tune.Callback]
) -> tune.RunConfig:
    """Where a Tune experiment of the study keeps its state, and how it retries and reports."""
    return tune.RunConfig(
        name=name,
        storage_path=tune_root,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=list(callbacks),
        verbose=0,
    )


def _build_tuner(
    spec: StudySpec,
    out: Path,
    base: TrainConfig,
    storage: str,
    tune_root: str,
    *,
    resume: bool,
    callbacks: Sequence[tune.Callback],
    trial_reporters: Sequence[Callable[[TrialContext], Reporter]],
    printer: Callable[[str], None],
    progress_interval_s: float,
) -> tune.Tuner:
    columns = spec.columns
    trainable = _trainable(run_trial, spec, base, trial_reporters)
    if resume:
        return tune.Tuner.restore(
            f"{tune_root}/{TUNE_DIR}",
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
        )

    single = not spec.multi_objective
    searcher = StudySearcher(
        space=SpaceSampler(spec.space),
        metric=spec.metrics[0] if single else spec.metrics,
        mode=spec.modes[0] if single else spec.modes,
        sampler=build_sampler(spec),
        study_name=spec.study,
        storage=optuna.storages.RDBStorage(storage),
        points_to_evaluate=[dict(p) for p in spec.enqueue] or None,
    )
    scheduler: TrialScheduler = FIFOScheduler()
    if spec.scheduler.name == "asha":
        max_t = base.schedule.steps
        grace = spec.scheduler.grace_period or 2 * base.schedule.eval_every
        # Several objectives: ASHA needs one number, the first objective (the Pareto front
        # is still computed on all of them).
        scheduler = ASHAScheduler(
            time_attr="step",
            metric=spec.metrics[0],
            mode=spec.modes[0],
            max_t=max_t,
            grace_period=min(grace, max_t),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    progress = ProgressTable(
        [p.path for p in spec.space], columns, interval_s=progress_interval_s, printer=printer
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=spec.trials,
            max_concurrent_trials=spec.concurrency,
            time_budget_s=spec.time_budget_s or None,
            trial_dirname_creator=_trial_dirname,
            # A new trial in a warm worker skips Python, torch and data start-up (~10 s per
            # trial on 2 busy cores); every trial reserves the same resources, as reuse needs.
            reuse_actors=True,
        ),
        run_config=_run_config(TUNE_DIR, spec, tune_root, [progress, *callbacks]),
    )


def _say_what_trials_measure(base: TrainConfig, printer: Callable[[str], None]) -> None:
    """Once, in the terminal, what every trial measures on the data before training and writes
    only to its own train.log: a blur that cannot be measured, or blurred images without noise,
    is worth knowing before the trials spend their hours on it."""
    try:
        lines = data_lines(base)
    except (OSError, ValueError) as exc:  # the trials will report it, each in its train.log
        printer(f"data: could not be measured here ({exc})")
        return
    for line in lines:
        printer(f"data (base config, as each trial measures it): {line}")


def run_study(
    spec: StudySpec,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    address: str | None = None,
    num_samples: int | None = None,
    cli_overrides: Sequence[str] = (),
    callbacks: Sequence[tune.Callback] = (),
    trial_reporters: Sequence[Callable[[TrialContext], Reporter]] = (),
    printer: Callable[[str], None] = print,
    progress_interval_s: float = 30.0,
    ray_init_kwargs: dict[str, Any] | None = None,
    storage_path: str | None = None,
) -> StudyResult:
    """Run (or resume) a study and write its results into ``out``.

    Args:
        spec: the validated study file (``load_space``), including any ``--set`` overrides.
        out: the study folder (default: ``./<study name>``).
        resume: continue the study in ``out`` (after Ctrl-C, a crash or SIGKILL of the driver).
        address: Ray cluster address (``auto``, ``HOST:PORT``, ``ray://host:10001``);
            default: the job's cluster when run as a Ray job, else a private local Ray instance
            (see ``ray_address``). Ignored when Ray is already initialised in this process.
        num_samples: overrides the file's trial count (new studies only).
        cli_overrides: the ``--set`` strings already applied to ``spec`` (recorded so that
            ``--resume`` can check the file against them).
        callbacks: extra Tune callbacks on the driver (e.g. experiment tracking). They are
            stored with the experiment for ``--resume``, so they must pickle.
        trial_reporters: factories of extra trainer reporters, one per trial, run inside the
            trials (e.g. per-trial tracking with image grids). They must pickle.
        printer: where progress and the final summary go.
        progress_interval_s: seconds between periodic progress tables.
        ray_init_kwargs: extra ``ray.init`` arguments for a Ray instance started here.
        storage_path: shared storage for Tune's state and checkpoints (see ``tune_storage``);
            default: the study folder. ``--resume`` uses the one the study started with.

    Raises:
        StudyError: the folder holds another study, nothing to resume, a data folder is
            missing, or the study file changed since the study started.
    """
    out = Path(out).expanduser().resolve() if out is not None else default_out(spec)
    tune_root = tune_storage(out, storage_path)
    if resume:
        storage = saved_storage(out) or storage_url(spec, out)
        saved_root = saved_tune_storage(out)
        if saved_root is not None and storage_path is None:
            tune_root = saved_root
        elif saved_root is not None and saved_root != tune_root:
            raise StudyError(
                f"--storage-path {tune_root} differs from the study's {saved_root}; resume "
                f"without --storage-path (or with the study's own)"
            )
    else:
        storage = storage_url(spec, out)
    spec, base = prepare_folder(
        spec,
        out,
        resume=resume,
        cli_overrides=cli_overrides,
        num_samples=num_samples,
        storage=storage,
        tune_root=tune_root,
    )
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", _EXPERIMENT_SNAPSHOT_S)
    # With CheckpointConfig(num_to_keep) Tune snapshots its state after every few trial
    # checkpoints, which is what a resumable study wants; its warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's newer console output prints its own banner even at verbose=0; the progress table
    # here replaces it.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # GridSampler stops its study when the grid is used up; OptunaSearch logs that as a warning.
    logging.getLogger("ray.tune.search.optuna.optuna_search").addFilter(_drop_grid_stop_warning)
    tune_logger = logging.getLogger("ray.tune")
    tune_level = tune_logger.level

    owns_ray = not ray.is_initialized()
    if owns_ray:
        # Trials write their own logs (train.log in each run); their stdout would interleave
        # with the progress table.
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        kwargs.update(ray_init_kwargs or {})
        ray.init(address=ray_address(address), **kwargs)
    tune_logger.setLevel(max(tune_level, logging.WARNING))
    try:
        res = spec.resources
        printer(
            f"{'resuming' if resume else 'study'} {spec.study!r}: {spec.trials} trials, "
            f"{spec.concurrency} at a time, {res.cpu:g} CPU"
            f"{f' + {res.gpu:g} GPU' if res.gpu else ''} each; sampler {spec.sampler.name}, "
            f"scheduler {spec.scheduler.name}; objective "
            f"{', '.join(f'{o.metric} ({o.mode})' for o in spec.objectives)}"
        )
        printer(f"study folder: {out}")
        if tune_root != str(out):
            printer(f"Tune state and checkpoints: {tune_root}/{TUNE_DIR}")
        printer(f"optuna-dashboard {storage}")
        if not resume:
            _say_what_trials_measure(base, printer)
        tuner = _build_tuner(
            spec,
            out,
            base,
            storage,
            tune_root,
            resume=resume,
            callbacks=callbacks,
            trial_reporters=trial_reporters,
            printer=printer,
            progress_interval_s=progress_interval_s,
        )
        grid = tuner.fit()
        complete = grid.num_terminated + grid.num_errors == len(grid)
        results = [grid[i] for i in range(len(grid))]
        study = optuna.load_study(study_name=spec.study, storage=storage)
        if complete:
            closed = close_orphans(study, keep=set())
            if closed:
                printer(
                    f"marked Optuna trial(s) {closed} as failed: started by a driver that was "
                    f"killed before Tune recorded them (their replacements ran instead)"
                )
        result, ranked = summarise(results, spec, study, out, complete, printer)
        if complete and spec.confirm.enabled and not ranked.empty:
            result = _confirm(
                result,
                ranked,
                spec,
                base,
                tune_root,
                callbacks=callbacks,
                trial_reporters=trial_reporters,
                printer=printer,
                progress_interval_s=progress_interval_s,
            )
        return result
    finally:
        tune_logger.setLevel(tune_level)
        if owns_ray:
            ray.shutdown()


def _drop_grid_stop_warning(record: logging.LogRecord) -> bool:
    return "Study.stop" not in record.getMessage()


def _confirm(
    result: StudyResult,
    ranked: pd.DataFrame,
    spec: StudySpec,
    base: TrainConfig,
    tune_root: str,
    *,
    callbacks: Sequence[tune.Callback],
    trial_reporters: Sequence[Callable[[TrialContext], Reporter]],
    printer: Callable[[str], None],
    progress_interval_s: float,
) -> StudyResult:
    """The confirmation stage (semtune.tune.confirm): its trials (resumed when a killed driver
    left them unfinished), its verdict, and the confirmed winner as the study's best."""
    out = result.out_dir
    cands = candidates(spec, ranked)
    points = confirmation_points(cands, spec.confirm.seeds, base.runtime.seed)
    confirm_dir = f"{tune_root}/{CONFIRM_DIR}"
    trainable = _trainable(run_point_trial, spec, base, trial_reporters)
    printer(
        f"\nconfirmation: {len(cands)} configurations x {spec.confirm.seeds} fresh seeds = "
        f"{len(points)} trials, each trained from scratch for the full schedule and scored on "
        f"{spec.confirm.crops} crops of {', '.join(spec.confirm.data)} (never used by the "
        "search): " + "; ".join(f"{c.label} ({c.role})" for c in cands)
    )
    if tune.Tuner.can_restore(confirm_dir):
        tuner = tune.Tuner.restore(
            confirm_dir, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        params = [*(p.path for p in spec.space), SEED_PATH]
        progress = ProgressTable(
            params, spec.columns, interval_s=progress_interval_s, printer=printer
        )
        tuner = tune.Tuner(
            trainable,
            param_space={POINT_KEY: tune.grid_search(points)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.concurrency,
                trial_dirname_creator=_trial_dirname,
                reuse_actors=True,
            ),
            run_config=_run_config(CONFIRM_DIR, spec, tune_root, [progress, *callbacks]),
        )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    if grid.num_terminated + grid.num_errors != len(grid):
        printer(f"confirmation interrupted: continue it with --resume --out {out}")
        return dataclasses.replace(result, complete=False)
    conf = summarise_confirmation(results, cands, base, spec, out, printer)
    if conf is None:
        return result
    # the winner's first seed (read through its checkpoint: local or s3:// storage alike)
    exported = export_generator(results, conf.winner_trial, out / "best_generator.pt")
    best_generator = exported or result.best_generator
    record_winner(out, conf, results, spec)
    printer(f"best generator (the confirmed winner, trial {conf.winner_trial}): {best_generator}")
    slim_checkpoints(results, printer, "the confirmation trials")
    return dataclasses.replace(result, best_generator=best_generator, confirmation=conf)
