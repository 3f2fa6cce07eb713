"""The trial side: each trial (a Ray worker, possibly on another machine) holds a
``TrialTracker``, which implements the trainer's ``Reporter`` protocol (``log``/``evaluate``) and
writes the trial's nested child run: its parameters, metrics per training step, an image grid per
evaluation, its per-image scores and its final status. Trials talk to the server only through
their own ``MlflowClient``, so several of them can log from threads or processes at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from semtune.tracking.store import open_client, quoted
from semtune.tracking.tags import (
    MAX_TAG,
    RUN_STATUS,
    TAG_EDGE,
    TAG_ERROR,
    TAG_IMAGES_LOST,
    TAG_PRESET,
    TAG_ROLE,
    TAG_STATUS,
    TAG_STUDY,
    TAG_TRIAL,
    TRIAL_GENERATOR_PATH,
    TrialStatus,
    as_text,
)

if TYPE_CHECKING:
    from torch import Tensor

    from semtune.train.config import TrainConfig

__all__ = [
    "TrialTracker",
    "TrialTrackerFactory",
    "find_child_run",
    "log_metrics",
    "log_params",
    "mark_trial",
    "set_status",
]

log = logging.getLogger("semtune.tracking")

LOG_BATCH_METRICS = 1000  # MLflow's limit per log_batch request
LOSS_FLUSH_S = 10.0  # training losses are sent at most this often (see TrialTracker.log)


def find_child_run(client: MlflowClient, experiment_id: str, parent: str, trial_id: str) -> Any:
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.{MLFLOW_PARENT_RUN_ID} = {quoted(parent)} and tags.`{TAG_TRIAL}` = "
            f"{quoted(trial_id)}"
        ),
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(str(k), as_text(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])


def set_status(client: MlflowClient, run_id: str, status: str, error: str | None) -> None:
    if status not in RUN_STATUS:
        raise ValueError(f"unknown trial status {status!r} (valid: {', '.join(RUN_STATUS)})")
    tags = [RunTag(TAG_STATUS, status)]
    if error:
        tags.append(RunTag(TAG_ERROR, error[:MAX_TAG]))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status=RUN_STATUS[status])


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
    client = open_client(context["uri"])
    run = find_child_run(client, context["experiment_id"], context["parent_run_id"], trial_id)
    if run is None or (run.info.status != "RUNNING" and not force):
        return False
    set_status(client, run.info.run_id, status, error)
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
        config: TrainConfig | None = None,
        run_name: str | None = None,
        log_generator: bool = False,
    ) -> None:
        """Describe the trial; its run is created (or reopened) by ``start``.

        Args:
            context: ``StudyTracker.trial_context()``.
            trial_id: the study's id for this trial (Tune's trial id).
            params: its sampled hyperparameters keyed by config path (``loss.gamma``).
            config: its full trainer config: logged as ``config.yaml``, gives the
                edge-operator/preset tags and the last step.
            run_name: the child run's name (default ``trial-<trial_id>``).
            log_generator: upload the trial's ``generator.pt`` (``generator/generator.pt``)
                when it finishes; off by default: 13 MB per trial at the ``cpu`` preset, 257 MB
                at ``paper`` (the best trial's generator is registered anyway).
        """
        self.context = dict(context)
        self.trial_id = str(trial_id)
        self.params = dict(params)
        self.config = config
        self.run_name = run_name or f"trial-{trial_id}"
        self.log_generator = log_generator
        self.client = open_client(self.context["uri"])
        self.run_id: str | None = None
        self.closed = False
        self._pending: list[Metric] = []
        self._pending_images: list[tuple[int, Any]] = []  # (step, grid) not yet uploaded
        self._loss_step = -1
        self._last_step = 0
        self._last_flush = -float("inf")
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
        cfg = self.config
        edge = self.params.get("loss.edge_operator") or (cfg and cfg.loss.edge_operator)
        if edge:
            tags[TAG_EDGE] = str(edge)
        if cfg and cfg.preset:
            tags[TAG_PRESET] = cfg.preset
        return tags

    def start(self) -> str:
        """Create the child run, or reopen it if this trial logged before (a retried or resumed
        trial continues its own run)."""
        ctx = self.context
        existing = find_child_run(
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
        log_params(self.client, self.run_id, self.params)
        if self.config is not None:
            text = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
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
            batch = self._pending[:LOG_BATCH_METRICS]
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
        self._last_flush = time.monotonic()
        return True

    def log(self, step: int, losses: dict[str, float]) -> None:
        """Training losses at ``step`` (the trainer calls this every ``log_every`` steps).

        Sent at most every ``LOSS_FLUSH_S`` seconds, and always with the next evaluation, so
        that nothing is queued when the trial reports to Tune (where the scheduler may stop it):
        a hundred trials writing every few steps saturated the tracking server
        (bench/bench_scale.py)."""
        self._queue(losses, step)
        self._loss_step = step
        self._last_step = max(self._last_step, step)
        if time.monotonic() - self._last_flush >= LOSS_FLUSH_S:
            self.flush()

    def evaluate(
        self, step: int, metrics: dict[str, float], checkpoint: Path, samples: Tensor
    ) -> None:
        """Validation metrics at ``step`` and the image grid ``images/step_<step>.png``."""
        from semtune.grids import labelled_grid  # torch: imported where samples exist

        grid = labelled_grid(samples, title=f"trial {self.trial_id}, step {int(step)}")
        self.evaluate_grid(step, metrics, checkpoint, grid)

    def evaluate_grid(
        self, step: int, metrics: dict[str, float], checkpoint: Path, grid: np.ndarray
    ) -> None:
        """``evaluate`` with the picture already drawn (``semtune.grids.labelled_grid``): what
        a stand-in trainer without torch reports (bench/bench_scale.py)."""
        # the trainer copies the latest losses into the metrics; they are already logged at
        # this step if log() ran, and a (key, step) pair is written once
        skip = {"step"} | (
            {k for k in metrics if k.startswith("loss_")} if step == self._loss_step else set()
        )
        self._queue(metrics, step, skip)
        self._last_step = max(self._last_step, step)
        self.flush()
        self._pending_images.append((int(step), grid))
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
        if self.config is None:
            return False
        steps, budget = self.config.schedule.steps, self.config.schedule.time_budget_s
        return step >= steps or (budget > 0 and float(metrics.get("train_seconds", 0.0)) >= budget)

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
        set_status(self.client, run_id, status, error)
        self.closed = True


class TrialInfo(Protocol):
    """What a trial tells its tracker (``semtune.tune.trainable.TrialContext`` is one)."""

    @property
    def trial_id(self) -> str: ...
    @property
    def trial_name(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def config(self) -> TrainConfig: ...


class TrialTrackerFactory:
    """Picklable factory for ``semtune.tune``'s ``trial_reporters``: builds and starts a
    ``TrialTracker`` from the trial's context (an object with ``trial_id``, ``trial_name``,
    ``params`` and ``config``)."""

    def __init__(self, context: Mapping[str, Any], *, log_generator: bool = False) -> None:
        self.context = dict(context)
        self.log_generator = log_generator

    def __call__(self, trial: TrialInfo) -> TrialTracker:
        name = trial.trial_name or f"trial-{trial.trial_id}"
        tracker = TrialTracker(
            self.context,
            trial.trial_id,
            trial.params,
            config=trial.config,
            run_name=name,
            log_generator=self.log_generator,
        )
        tracker.start()
        return tracker
