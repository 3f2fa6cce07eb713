"""The driver side: ``StudyTracker``, held by ``semtune.search``. It checks nothing itself (the
search calls ``check_server`` first), opens the study's parent run, hands a small picklable
context to every trial (``semtune.tracking.trial``), logs the study's results at the end, and
registers the best generator (``semtune.tracking.registry``), moving the ``champion`` alias only
to a better model scored on the same data.

Size: longer than ~400 lines because of ``StudyTracker`` alone, more than half of it docstrings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from semtune.tracking.provenance import data_fingerprint, data_folders, git_commit
from semtune.tracking.registration import PairedCheck, RegistrationResult, register_version
from semtune.tracking.store import (
    CHAMPION,
    DEFAULT_MODEL_NAME,
    TrackingError,
    open_client,
    quoted,
    sqlite_path,
)
from semtune.tracking.tags import (
    MAX_TAG,
    RUN_STATUS,
    TAG_BEST_TRIAL,
    TAG_DATA,
    TAG_EDGE,
    TAG_ERROR,
    TAG_MODE,
    TAG_OBJECTIVE,
    TAG_PRESET,
    TAG_REGISTERED,
    TAG_ROLE,
    TAG_SAMPLER,
    TAG_STATUS,
    TAG_STUDY,
    TAG_STUDY_KEY,
    TAG_TRIAL,
    TrialStatus,
    as_text,
)
from semtune.tracking.trial import (
    TrialTrackerFactory,
    find_child_run,
    log_metrics,
    log_params,
    mark_trial,
    set_status,
)

if TYPE_CHECKING:
    from semtune.train.config import TrainConfig

__all__ = ["VIEW_KEY", "StudyTracker", "table_view"]


def _ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    artifact_location = None
    db = sqlite_path(uri)
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
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
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
        base_config: TrainConfig | None = None,
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
            base_config: the resolved base trainer config, logged as YAML; its
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
        self.base_config = base_config
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
        self.extra_tags = {k: as_text(v) for k, v in (tags or {}).items()}
        self.extra_params = dict(params or {})
        self.client = open_client(uri)
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
        self.client.set_tag(self.run_id, TAG_ERROR, f"{type(exc).__name__}: {exc}"[:MAX_TAG])
        self.client.set_terminated(self.run_id, status=status)

    def _tags(self) -> dict[str, str]:
        cfg = self.base_config
        tags = {TAG_STUDY: self.study_name}
        if cfg is not None:
            tags[TAG_PRESET] = cfg.preset
            tags[TAG_DATA] = data_fingerprint(data_folders(cfg.to_dict()))
            tags[TAG_EDGE] = cfg.loss.edge_operator
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
            f"{SHARED_VIEW_PREFIX}{VIEW_KEY}",
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
        log_params(self.client, self.run_id, params)
        if self.space_yaml is not None and self.space_yaml.is_file():
            self.client.log_artifact(self.run_id, str(self.space_yaml), "study")
        if self.base_config is not None:
            text = yaml.safe_dump(self.base_config.to_dict(), sort_keys=False)
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
        filt = f"tags.`{TAG_ROLE}` = 'study' and tags.`{TAG_STUDY}` = {quoted(self.study_name)}"
        if self.study_key:
            filt += f" and tags.`{TAG_STUDY_KEY}` = {quoted(self.study_key)}"
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
        run = find_child_run(self.client, experiment_id, run_id, trial_id)
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
            log_metrics(self.client, run_id, metrics, step=int(metrics.get("step", 0)))
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
        self.client.set_terminated(run_id, status=RUN_STATUS[status])

    def _close_open_trials(self) -> None:
        experiment_id, run_id = self._require_started()
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.{MLFLOW_PARENT_RUN_ID} = {quoted(run_id)} and attributes.status = 'RUNNING'"
            ),
        )
        for run in runs:
            set_status(self.client, run.info.run_id, "stopped_early", None)

    def registered(self) -> tuple[str, str, str] | None:
        """``(model name, version, trial)`` this study registered before, if it did: a resumed
        study that had finished registers nothing twice."""
        _, run_id = self._require_started()
        tag = self.client.get_run(run_id).data.tags.get(TAG_REGISTERED)
        if not tag or "/" not in tag:
            return None
        name, version = tag.rsplit("/", 1)
        try:
            mv = self.client.get_model_version(name, version)
        except MlflowException:
            return None
        return name, version, mv.tags.get(TAG_TRIAL, "")

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
        paired: PairedCheck | None = None,
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
            paired: scores this generator and the alias's holder on the same images; then the
                alias moves only if the paired difference's 95% interval lies above 0
                (``semtune.tracking.registration``).

        Returns:
            What happened; ``.message`` is meant to be printed.
        """
        experiment_id, parent = self._require_started()
        objective = objective or self.objectives[0]
        if mode is None:
            known = objective in self.objectives
            mode = self.modes[self.objectives.index(objective)] if known else "max"
        return register_version(
            self.client,
            self.uri,
            generator_path,
            metrics,
            trial_id,
            config,
            run_id=self.trial_run_id(trial_id) or parent,
            parent_run_id=parent,
            study=self.study_name,
            study_tags=self._common_tags,
            model_name=model_name,
            objective=objective,
            mode=mode,
            alias=alias,
            paired=paired,
        )
