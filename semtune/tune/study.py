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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from semtune.atomic import write_atomically, write_text_atomically
from semtune.config import to_dict
from semtune.train.config import TrainConfig
from semtune.train.loop import Reporter
from semtune.tune.budget import Budget, at_equal_budget, trial_histories
from semtune.tune.confirm import (
    CONFIRM_DIR,
    SEED_PATH,
    Confirmation,
    ConfirmationError,
    candidates,
    check_confirmation_images,
    confirmation_points,
    control_params,
    summarise_confirmation,
)
from semtune.tune.keys import POINT_KEY, RESUMED_FROM_KEY
from semtune.tune.progress import ProgressTable, describe_status, short_name
from semtune.tune.report import pareto_mask, write_plots
from semtune.tune.searcher import TUNE_TRIAL_ATTR, StudySearcher, close_orphans
from semtune.tune.space import SpaceSampler, StudySpec, build_sampler, load_space, spec_to_dict
from semtune.tune.trainable import (
    FAULT_INJECT_ENV,
    TrialContext,
    TrialSettings,
    run_point_trial,
    run_trial,
)
from semtune.uncertainty import CI_BOUNDS, gain_name

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

TUNE_DIR = "tune"
STUDY_FILE = "study.json"
# Tune snapshots its experiment state (trial statuses, searcher) at most this often; the
# default (>= 10 s) leaves a wider window in which a killed driver forgets finished trials.
_EXPERIMENT_SNAPSHOT_S = "2"


class StudyError(RuntimeError):
    """The study cannot start or resume as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class StudyResult:
    """What a finished (or interrupted) study leaves behind.

    Attributes:
        out_dir: the study folder.
        table: one row per trial (``results.csv``).
        best: the best trial's row, or the Pareto front's rows for several objectives.
        best_generator: ``best_generator.pt`` (None when no trial produced a score).
        plots: the PNG files written.
        complete: whether every trial ended (False after an interruption: ``--resume``),
            the confirmation's included.
        confirmation: the confirmation stage's outcome, when the study file asks for one.
    """

    out_dir: Path
    table: pd.DataFrame
    best: pd.DataFrame
    best_generator: Path | None
    plots: list[Path]
    complete: bool
    confirmation: Confirmation | None = None


def default_out(spec: StudySpec) -> Path:
    """The study folder when none is given: the study's name in the working directory."""
    return Path.cwd() / spec.study


def storage_url(spec: StudySpec, out: Path) -> str:
    """Optuna's storage: the file's ``storage:`` URL, else ``sqlite:///<out>/optuna.db``."""
    return spec.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"


def _absolute_data_paths(cfg: TrainConfig) -> TrainConfig:
    # Trials run in their own working directories (and maybe on other machines with the same
    # layout): relative data paths are taken from the driver's working directory, now.
    changes: dict[str, Any] = {}
    for name in ("clean_dir", "blurred_dir", "val_dir"):
        value = getattr(cfg.data, name)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        if not path.is_dir():
            raise StudyError(
                f"data.{name}: {path} is not a folder (relative paths are taken from the "
                f"working directory, {Path.cwd()})"
            )
        changes[name] = str(path)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))


def tune_storage(out: Path, storage_path: str | None) -> str:
    """Where Tune keeps the study's experiment state and checkpoints (``<it>/tune``).

    Args:
        out: the study folder (the default).
        storage_path: ``--storage-path``: a URI that every node of a cluster reaches
            (``s3://bucket/studies/gamma``, ``gs://...``) or a folder on shared storage (NFS)
            mounted at the same path on every node. One per study, like ``out``.

    Returns:
        The URI as given, or an absolute folder.
    """
    if not storage_path:
        return str(out)
    if "://" in storage_path:
        return storage_path.rstrip("/")
    return str(Path(storage_path).expanduser().resolve())


def ray_address(address: str | None) -> str:
    """The Ray cluster a study runs on: ``address``, else the job's cluster, else a private one.

    Args:
        address: ``--address`` as given (``auto``, ``HOST:PORT``, ``ray://HOST:10001``) or None.

    Returns:
        ``address`` when given; inside a Ray job (``ray job submit``, ``semtune.submit``), the
        cluster's GCS address that Ray puts in ``RAY_ADDRESS`` for the job's entrypoint; else
        ``"local"``, a private Ray instance for this process.
    """
    if address:
        return address
    env = os.environ.get("RAY_ADDRESS", "")
    # A dashboard URL there (http://...:8265) is meant for the jobs CLI, not for ray.init.
    if env and not env.startswith(("http://", "https://")):
        return env
    return "local"


def _compare(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def _prepare(
    spec: StudySpec,
    out: Path,
    *,
    resume: bool,
    cli_overrides: Sequence[str],
    num_samples: int | None,
    storage: str,
    tune_root: str,
) -> tuple[StudySpec, dict[str, Any]]:
    """Check the folder and return the spec and base config the study runs with."""
    tune_dir = f"{tune_root}/{TUNE_DIR}"
    study_file = out / STUDY_FILE
    if resume:
        if not (study_file.is_file() and tune.Tuner.can_restore(tune_dir)):
            raise StudyError(
                f"{out}: no study to resume here (expected {STUDY_FILE} and Tune's state in "
                f"{tune_dir}); run without --resume to start one"
            )
        if cli_overrides or num_samples is not None:
            raise StudyError(
                "--resume continues the study as it started; --set and --num-samples cannot "
                "change it (start a new study in another --out instead)"
            )
        saved = json.loads(study_file.read_text())
        file_spec = load_space(spec.source, saved["cli_overrides"])
        file_spec = dataclasses.replace(file_spec, trials=saved["spec"]["trials"])
        now = {k: v for k, v in spec_to_dict(file_spec).items() if k != "source"}
        was = {k: v for k, v in saved["spec"].items() if k != "source"}
        diff = _compare(was, now)
        if diff:
            raise StudyError(
                f"{spec.source} differs from the file the study in {out} started with "
                f"(changed: {', '.join(diff)}); resume with the original file or start a new "
                f"study in another --out"
            )
        return file_spec, saved["base_config"]

    for where, taken in (
        (out, study_file.exists() or (out / "optuna.db").exists()),
        (tune_dir, tune.Tuner.can_restore(tune_dir)),
        (f"{tune_root}/{CONFIRM_DIR}", tune.Tuner.can_restore(f"{tune_root}/{CONFIRM_DIR}")),
    ):
        if taken:
            raise StudyError(
                f"{where} already holds a study; add --resume to continue it, or choose "
                f"another --out{' or --storage-path' if tune_root != str(out) else ''}"
            )
    # A shared database (storage: in the file) may hold the name from another folder's study.
    if spec.storage and spec.study in optuna.study.get_all_study_names(storage):
        raise StudyError(
            f"Optuna study {spec.study!r} already exists in {storage}; add --resume to continue "
            f"it, or rename the study"
        )
    if num_samples is not None:
        if num_samples < 1:
            raise StudyError(f"--num-samples must be >= 1, got {num_samples}")
        spec = dataclasses.replace(spec, trials=num_samples)
        if spec.sampler.name == "grid":
            size = math.prod(len(p.values) for p in spec.space)
            if num_samples > size:
                raise StudyError(f"--num-samples {num_samples}: the grid has only {size} points")
    cfg = _absolute_data_paths(spec.train_config())
    base: dict[str, Any] = to_dict(cfg)
    if spec.confirm.enabled:  # a confirmation that cannot run fails now, not after the search
        try:
            check_confirmation_images(spec, base)
            control_params(spec)
        except ConfirmationError as exc:
            raise StudyError(f"{spec.source}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "spec": spec_to_dict(spec),
        "cli_overrides": list(cli_overrides),
        "base_config": base,
        "storage": storage,
        "tune_storage": tune_root,
    }
    write_text_atomically(study_file, json.dumps(record, indent=2))
    src = Path(spec.source)
    if src.is_file():
        shutil.copyfile(src, out / "space.yaml")
    return spec, base


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _build_tuner(
    spec: StudySpec,
    out: Path,
    base: dict[str, Any],
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
    settings = TrialSettings(
        base=base,
        threads=spec.resources.threads,
        report_metrics=tuple(columns),
        crash_once_marker=os.environ.get(FAULT_INJECT_ENV) or None,
        reporters=tuple(trial_reporters),
    )
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)
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
        sched = base["schedule"]
        max_t = int(sched["steps"])
        grace = spec.scheduler.grace_period or 2 * int(sched["eval_every"])
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
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=tune_root,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[progress, *callbacks],
            verbose=0,
        ),
    )


def results_frame(results: Any, spec: StudySpec, study: optuna.Study) -> pd.DataFrame:
    """One row per trial: Optuna number and state, status, parameters, step and metrics."""
    by_tune_id = {t.user_attrs.get(TUNE_TRIAL_ATTR): t for t in study.get_trials(deepcopy=False)}
    params = [p.path for p in spec.space]
    metrics = spec.columns
    rows = []
    for r in results:
        last = dict(r.metrics or {})
        trial_id = last.get("trial_id") or Path(r.path).name.removeprefix("trial_")
        ot = by_tune_id.get(trial_id)
        status = describe_status("TERMINATED", last, r.error is not None)
        row: dict[str, Any] = {
            "number": ot.number if ot is not None else -1,
            "trial_id": trial_id,
            "status": status,
            "optuna_state": ot.state.name if ot is not None else "",
        }
        for p in params:
            row[p] = r.config.get(p) if r.config else None
        row["step"] = int(last.get("step", 0))
        for m in metrics:
            row[m] = float(last[m]) if m in last else math.nan
        for m in metrics:  # 95% intervals over the validation images (semtune.uncertainty)
            for bound in CI_BOUNDS:
                if f"{m}{bound}" in last:
                    row[f"{m}{bound}"] = float(last[f"{m}{bound}"])
        row["train_seconds"] = float(last.get("train_seconds", math.nan))
        row[RESUMED_FROM_KEY] = int(last.get(RESUMED_FROM_KEY, 0))
        row["error"] = "" if r.error is None else str(r.error).strip().splitlines()[-1][:200]
        row["path"] = r.path
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values("number", kind="stable").reset_index(drop=True)
    return table


def _best(
    table: pd.DataFrame, spec: StudySpec, histories: Mapping[str, pd.DataFrame] | None = None
) -> tuple[pd.DataFrame, Budget | None, pd.DataFrame]:
    """The best trial (or Pareto front), ranked at an equal budget (semtune.tune.budget), and
    every trial scored at that budget, best first (what the confirmation takes its top from)."""
    columns = spec.columns
    bounds = [c for c in table.columns if c.endswith(CI_BOUNDS)]
    scored, budget = at_equal_budget(table, histories or {}, columns, carry=bounds)
    if scored.empty:
        return scored, budget, scored
    obj = spec.objectives[0]
    ranked = scored.sort_values(obj.metric, ascending=obj.mode == "min", kind="stable")
    return _rank(scored, spec), budget, ranked


def _rank(scored: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    if spec.multi_objective:
        mask = pareto_mask(scored[spec.metrics].to_numpy(), spec.modes)
        front = scored[mask]
        obj = spec.objectives[0]
        return front.sort_values(obj.metric, ascending=obj.mode == "min")
    obj = spec.objectives[0]
    idx = scored[obj.metric].idxmax() if obj.mode == "max" else scored[obj.metric].idxmin()
    return scored.loc[[idx]]


def _export_generator(results: Any, trial_id: str, dest: Path) -> Path | None:
    for r in results:
        rid = (r.metrics or {}).get("trial_id")
        if rid != trial_id or r.checkpoint is None:
            continue
        with r.checkpoint.as_directory() as d:
            src = Path(d) / "generator.pt"
            if src.is_file():
                shutil.copyfile(src, dest)
                return dest
    return None


# What only continuing a trial needs: the trainer's state (networks, optimizers, RNG), ~55 MB
# at the cpu preset. Once a study is complete no trial continues, so each trial that ended
# without an error keeps only its latest snapshot's generator, metrics and state file.
_TRAINING_STATE = "last.pt"


def _slim_checkpoints(
    results: Any, printer: Callable[[str], None], what: str = "the finished trials"
) -> None:
    """Drop what no one will read from a complete study's checkpoints (local storage only).

    Kept: every trial's latest snapshot minus the training state (its ``generator.pt`` is the
    trial's best evaluation, what the export and the registry take), and everything of trials
    that failed (``--resume`` retries them from their checkpoint). Tune's own bookkeeping of
    the checkpoints (``num_to_keep``) is untouched: the folders stay, only files go.
    """
    before = after = 0
    for r in results:
        if r.error is not None or r.checkpoint is None or not Path(r.path).is_dir():
            continue
        latest = Path(r.checkpoint.path).resolve()
        for ckpt in sorted(Path(r.path).glob("checkpoint_*")):
            for f in ckpt.iterdir():
                if not f.is_file():
                    continue
                size = f.stat().st_size
                before += size
                if f.name == _TRAINING_STATE or (ckpt.resolve() != latest and f.suffix == ".pt"):
                    f.unlink()
                else:
                    after += size
    if before > after:
        printer(
            f"checkpoints of {what}: {before / 2**20:.0f} MB -> {after / 2**20:.0f} "
            "MB (kept each trial's latest generator.pt and metrics; dropped the training state "
            "that only continuing a trial needs)"
        )


def _table_text(table: pd.DataFrame, spec: StudySpec) -> str:
    params = [p.path for p in spec.space]
    cols = ["number", "trial_id", "status", *params, "step"]
    cols += spec.columns
    view = table[[c for c in cols if c in table]].rename(
        columns={p: short_name(p, params) for p in params}
    )
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return view.to_string(index=False, float_format=lambda v: f"{v:.4g}")


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
        saved_storage = _saved_storage(out)
        storage = saved_storage or storage_url(spec, out)
        saved_root = _saved_tune_storage(out)
        if saved_root is not None and storage_path is None:
            tune_root = saved_root
        elif saved_root is not None and saved_root != tune_root:
            raise StudyError(
                f"--storage-path {tune_root} differs from the study's {saved_root}; resume "
                f"without --storage-path (or with the study's own)"
            )
    else:
        storage = storage_url(spec, out)
    spec, base = _prepare(
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
        results = tuner.fit()
        complete = results.num_terminated + results.num_errors == len(results)
        study = optuna.load_study(study_name=spec.study, storage=storage)
        if complete:
            closed = close_orphans(study, keep=set())
            if closed:
                printer(
                    f"marked Optuna trial(s) {closed} as failed: started by a driver that was "
                    f"killed before Tune recorded them (their replacements ran instead)"
                )
        result, ranked = _summarise(results, spec, study, out, complete, printer)
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


def _saved_tune_storage(out: Path) -> str | None:
    f = out / STUDY_FILE
    if not f.is_file():
        return None
    return str(json.loads(f.read_text()).get("tune_storage") or "") or None


def _saved_storage(out: Path) -> str | None:
    f = out / STUDY_FILE
    if not f.is_file():
        return None
    return str(json.loads(f.read_text()).get("storage") or "") or None


def _summarise(
    results: Any,
    spec: StudySpec,
    study: optuna.Study,
    out: Path,
    complete: bool,
    printer: Callable[[str], None],
) -> tuple[StudyResult, pd.DataFrame]:
    table = results_frame(results, spec, study)
    write_atomically(out / "results.csv", lambda tmp: table.to_csv(tmp, index=False))
    printer(f"\nresults ({len(table)} trials, {out / 'results.csv'}):")
    printer(_table_text(table, spec))
    columns = spec.columns
    bounds = [f"{m}{b}" for m in columns for b in CI_BOUNDS]
    best, budget, ranked = _best(table, spec, trial_histories(results, [*columns, *bounds]))
    best_generator: Path | None = None
    if best.empty:
        printer("no trial produced a score: nothing to export")
    else:
        top = best.iloc[0]
        params = {p.path: top[p.path] for p in spec.space if p.path in best}
        metrics = {m: float(top[m]) for m in spec.columns}
        ci95 = {
            m: [float(top[f"{m}_ci_low"]), float(top[f"{m}_ci_high"])]
            for m in metrics
            if f"{m}_ci_low" in top.index and pd.notna(top[f"{m}_ci_low"])
        }
        best_generator = _export_generator(results, str(top["trial_id"]), out / "best_generator.pt")
        info = {
            "trial_id": top["trial_id"],
            "number": int(top["number"]),
            "params": {k: _plain(v) for k, v in params.items()},
            "metrics": metrics,
            # 95% intervals by a bootstrap over the validation images (semtune.uncertainty)
            "ci95": ci95,
            "step": int(top["step"]),
            "budget": {
                "step": budget.step if budget else None,
                "trials": budget.trials if budget else 0,
                "furthest_step": budget.top_step if budget else None,
                "rule": "trials ranked by their evaluation at the highest step that at least "
                "two scored trials reached (equal budget); metrics are the best trial's there",
            },
            "generator": str(best_generator) if best_generator else None,
            "note": "best_generator.pt is the trial's best evaluation by the trainer's "
            "validation score (generator.pt of its run)",
        }
        write_text_atomically(out / "best_trial.json", json.dumps(info, indent=2))
        if spec.multi_objective:
            write_atomically(out / "pareto_front.csv", lambda tmp: best.to_csv(tmp, index=False))
            printer(f"\nPareto front ({len(best)} trials, {out / 'pareto_front.csv'}):")
            printer(_table_text(best, spec))
            printer(f"exported: the front's best {spec.metrics[0]} (trial {top['trial_id']})")
            if budget is not None:
                printer(f"compared {budget.describe()}")
        else:
            obj = spec.objectives[0]
            printer(
                f"\nbest trial {top['trial_id']} (#{int(top['number'])}): {obj.metric} = "
                f"{float(top[obj.metric]):.4f}"
                + _gain_interval(obj.metric, metrics, ci95)
                + " with "
                + ", ".join(f"{k} = {_plain(v)}" for k, v in params.items())
                + (f"; compared {budget.describe()}" if budget is not None else "")
            )
        if best_generator is not None:
            printer(f"best generator: {best_generator}")
    if complete:
        _slim_checkpoints(results, printer)
    plots, notes = write_plots(table, spec, study, out)
    for note in notes:
        printer(note)
    if plots:
        printer("figures: " + ", ".join(str(p.name) for p in plots))
    if not complete:
        printer(f"study interrupted: continue it with --resume --out {out}")
    result = StudyResult(
        out_dir=out,
        table=table,
        best=best,
        best_generator=best_generator,
        plots=plots,
        complete=complete,
    )
    return result, ranked


def _gain_interval(metric: str, metrics: dict[str, float], ci95: dict[str, list[float]]) -> str:
    """ " (gain +0.0179, 95% CI +0.0121 to +0.0235 over the validation images)" for the
    objective: the gain's interval is what tells trials apart (the images are common to all)."""
    gain = gain_name(metric)
    if gain not in ci95 or gain not in metrics:
        return ""
    low, high = ci95[gain]
    return (
        f" (gain over the input {metrics[gain]:+.4f}, 95% CI {low:+.4f} to {high:+.4f} over "
        "the validation images)"
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def _confirm(
    result: StudyResult,
    ranked: pd.DataFrame,
    spec: StudySpec,
    base: dict[str, Any],
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
    points = confirmation_points(cands, spec.confirm.seeds, int(base["runtime"]["seed"]))
    confirm_dir = f"{tune_root}/{CONFIRM_DIR}"
    settings = TrialSettings(
        base=base,
        threads=spec.resources.threads,
        report_metrics=tuple(spec.columns),
        crash_once_marker=os.environ.get(FAULT_INJECT_ENV) or None,
        reporters=tuple(trial_reporters),
    )
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    trainable = tune.with_resources(
        tune.with_parameters(run_point_trial, settings=settings), resources
    )
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
            run_config=tune.RunConfig(
                name=CONFIRM_DIR,
                storage_path=tune_root,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[progress, *callbacks],
                verbose=0,
            ),
        )
    results = tuner.fit()
    if results.num_terminated + results.num_errors != len(results):
        printer(f"confirmation interrupted: continue it with --resume --out {out}")
        return dataclasses.replace(result, complete=False)
    conf = summarise_confirmation(results, cands, base, spec, out, printer)
    if conf is None:
        return result
    best_generator = result.best_generator
    if conf.winner_generator is not None:
        best_generator = out / "best_generator.pt"
        shutil.copyfile(conf.winner_generator, best_generator)
    _record_winner(out, conf, results, spec)
    printer(f"best generator (the confirmed winner, trial {conf.winner_trial}): {best_generator}")
    _slim_checkpoints(results, printer, "the confirmation trials")
    return dataclasses.replace(result, best_generator=best_generator, confirmation=conf)


def _record_winner(out: Path, conf: Confirmation, results: Any, spec: StudySpec) -> None:
    """best_trial.json names the confirmed winner (the search's best is kept under
    ``search_best``): what MLflow registers."""
    path = out / "best_trial.json"
    searched = json.loads(path.read_text()) if path.is_file() else {}
    last: dict[str, Any] = {}
    for r in results:
        if str((r.metrics or {}).get("trial_id")) == conf.winner_trial:
            last = dict(r.metrics or {})
    winner = conf.summary[conf.summary["candidate"] == conf.winner].iloc[0]
    info = {
        "trial_id": conf.winner_trial,
        "number": -1,
        "params": {p.path: _plain(winner[p.path]) for p in spec.space if p.path in winner},
        "metrics": {m: float(last[m]) for m in spec.columns if m in last},
        "step": int(last.get("step", 0)),
        "confirmation": {
            "verdict": conf.verdict,
            "comparisons": conf.comparisons,
            "file": "confirmation.json",
        },
        "generator": str(out / "best_generator.pt"),
        "note": "the confirmed winner's first seed (semtune.tune.confirm); its metrics are its "
        "own validation's, the confirmation's are in confirmation.csv",
        "search_best": searched,
    }
    write_text_atomically(path, json.dumps(info, indent=2, default=str))
