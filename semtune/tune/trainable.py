"""The trainer as a Ray Tune function trainable.

One trial = one ``semtune.train.loop.train`` run. At every evaluation the trial reports the
validation metrics to Tune together with a checkpoint: a snapshot of the run folder
(``last.pt``, ``generator.pt``, ``metrics.csv``) plus ``trial.json``. A restarted trial (a crash
retried by ``FailureConfig``, or a study resumed after its driver died) copies that snapshot back
and continues exactly where the checkpoint left off. A NaN/Inf loss ends the trial with a final
result flagged ``nonfinite_loss``: the searcher records it as a failed trial and the study goes on
(no retry: the same state would diverge again).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray import tune
from torch import Tensor

from semtune.atomic import write_text_atomically
from semtune.data.unpaired import TrainingData, build_training_data
from semtune.train.config import DataConfig, TrainConfig
from semtune.train.loop import Reporter, train
from semtune.train.step import NonFiniteLossError
from semtune.tune.keys import (
    CANDIDATE_KEY,
    FINISHED_KEY,
    NONFINITE_KEY,
    POINT_KEY,
    RESUMED_FROM_KEY,
)

__all__ = [
    "FAULT_INJECT_ENV",
    "RUN_FILES",
    "TRIAL_STATE_FILE",
    "TrialContext",
    "TrialSettings",
    "run_point_trial",
    "run_trial",
]

# Test hook: the path of a marker file. The first trial to reach a checkpoint while the file
# does not exist creates it and kills its own worker process (SIGKILL) right after reporting,
# so Tune must retry it from that checkpoint; with the prefix "enospc:" it fails with "No space
# left on device" instead, as a full disk would. The driver reads the variable and hands it to
# the trials (workers may not share the driver's environment).
FAULT_INJECT_ENV = "SEMTUNE_FAULT_INJECT_CRASH_ONCE"
RUN_FILES = ("last.pt", "generator.pt", "metrics.csv", "train.log", "val_scores.csv")
TRIAL_STATE_FILE = "trial.json"


@dataclass(frozen=True)
class TrialContext:
    """What an extra per-trial reporter (e.g. MLflow child runs) is built from."""

    trial_id: str
    trial_name: str
    params: dict[str, Any]
    config: TrainConfig
    run_dir: Path


@dataclass(frozen=True)
class TrialSettings:
    """Everything a trial needs besides its sampled parameters (shipped once via Ray).

    Attributes:
        base: the resolved base trainer config (data paths absolute).
        threads: torch threads per trial, its CPU share (used when the config says 0 = auto).
        report_metrics: metric names set to NaN in the final result of a diverged trial, so
            that every result carries the keys Tune's strict metric check expects.
        crash_once_marker: see ``FAULT_INJECT_ENV`` (tests only).
        reporters: factories of extra trainer reporters, one per trial (a hook for tracking).
    """

    base: TrainConfig
    threads: int
    report_metrics: tuple[str, ...]
    crash_once_marker: str | None = None
    reporters: tuple[Callable[[TrialContext], Reporter], ...] = ()

    def trial_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The base config with the trial's ``{config.path: value}`` parameters applied."""
        cfg = self.base.with_values(params, source=f"trial parameters {dict(params)}", strict=False)
        if cfg.runtime.threads == 0:
            cfg = replace(cfg, runtime=replace(cfg.runtime, threads=self.threads))
        return cfg


class _TuneReporter:
    """Adapts the trainer's Reporter protocol to ``tune.report`` with checkpoints."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        resumed_from: int,
        crash_once_marker: str | None,
        extra: Sequence[Reporter],
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.resumed_from = resumed_from
        self.crash_once_marker = crash_once_marker
        self.extra = list(extra)

    def log(self, step: int, losses: dict[str, float]) -> None:
        for r in self.extra:
            r.log(step, losses)

    def evaluate(
        self, step: int, metrics: dict[str, float], checkpoint: Path, samples: Tensor
    ) -> None:
        sched = self.cfg.schedule
        # The trainer stops at `steps` or at its time budget; it evaluates right before
        # stopping, so this evaluation is the last one when either holds.
        finished = step >= sched.steps or (
            sched.time_budget_s > 0 and metrics.get("train_seconds", 0.0) >= sched.time_budget_s
        )
        result = {k: float(v) for k, v in metrics.items()}
        result.update(
            {
                "step": float(step),
                FINISHED_KEY: float(finished),
                NONFINITE_KEY: 0.0,
                RESUMED_FROM_KEY: float(self.resumed_from),
            }
        )
        # The other reporters (MLflow) first: the scheduler may stop the trial inside
        # tune.report, and what they had not logged by then would be lost.
        for r in self.extra:
            r.evaluate(step, metrics, checkpoint, samples)
        with tempfile.TemporaryDirectory(dir=self.run_dir.parent, prefix=".ckpt-") as tmp:
            snapshot = Path(tmp)
            for name in RUN_FILES:
                src = self.run_dir / name
                if src.exists():
                    _link_or_copy(src, snapshot / name)
            state = {"step": step, "finished": finished, "resumed_from": self.resumed_from}
            write_text_atomically(snapshot / TRIAL_STATE_FILE, json.dumps(state))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(snapshot))
        marker = self.crash_once_marker or ""
        disk_full = marker.startswith("enospc:")
        if disk_full:
            marker = marker.removeprefix("enospc:")
        if marker and not finished and not os.path.exists(marker):
            Path(marker).write_text(f"crashed once after the checkpoint at step {step}\n")
            if disk_full:  # as torch.save would fail on the next checkpoint of a full disk
                raise OSError(errno.ENOSPC, "No space left on device", str(self.run_dir))
            # the worker process dies as a crash or the OOM killer would end it: no exception,
            # no cleanup, no last report
            os.kill(os.getpid(), signal.SIGKILL)


def _link_or_copy(src: Path, dst: Path) -> None:
    # The trainer replaces its files atomically (write + rename), so a hard link is a stable
    # snapshot and costs no copy; Tune copies it into the trial's storage.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _restore_run_dir(checkpoint: tune.Checkpoint, run_dir: Path) -> dict[str, Any]:
    """Copy a reported snapshot back into ``run_dir``; returns its ``trial.json``."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    with checkpoint.as_directory() as d:
        src = Path(d)
        for name in RUN_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, run_dir / name)
        return dict(json.loads((src / TRIAL_STATE_FILE).read_text()))


# The last training data built in this worker: trials of a study usually share the data
# section, and Tune reuses workers between trials (reading and degrading the images is seconds).
_DATA_CACHE: dict[DataConfig, TrainingData] = {}


def _data(cfg: TrainConfig) -> TrainingData:
    if cfg.data not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[cfg.data] = build_training_data(cfg.data)
    return _DATA_CACHE[cfg.data]


def run_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """Tune function trainable: train one configuration, reporting every evaluation.

    Args:
        config: the sampled parameters, keyed by trainer config path (``{"loss.gamma": 5.0}``).
        settings: the base config and options shared by all trials of the study.
    """
    ctx = tune.get_context()
    cfg = settings.trial_config(config)
    # Scratch space in the trial's working directory (named by trial, as a reused worker may
    # stay in one directory); the durable copy of the run folder is the reported checkpoint, so
    # a restart on another node or after the driver died restores from there.
    run_dir = Path.cwd() / f"run_{ctx.get_trial_id()}"
    resume: Path | None = None
    resumed_from = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        state = _restore_run_dir(checkpoint, run_dir)
        if state.get("finished"):
            return  # finished before the driver could record it: nothing left to train
        resume = run_dir / "last.pt"
        resumed_from = int(state["step"])
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # leftovers of a session that died early
        run_dir.mkdir(parents=True)
    trial_ctx = TrialContext(
        trial_id=ctx.get_trial_id(),
        trial_name=ctx.get_trial_name(),
        params=dict(config),
        config=cfg,
        run_dir=run_dir,
    )
    reporter = _TuneReporter(
        cfg,
        run_dir,
        resumed_from,
        settings.crash_once_marker,
        [make(trial_ctx) for make in settings.reporters],
    )
    log_path = run_dir / "train.log"

    def printer(line: str) -> None:
        # Unix time first: train.log travels with the checkpoints and is read by benchmarks.
        with log_path.open("a") as fh:
            fh.write(f"{time.time():.3f} {line}\n")

    # where Ray placed the trial (tests/cluster/test_simulated_gpus.py reads this line)
    printer(
        f"placement: node {ray.get_runtime_context().get_node_id()}, pid {os.getpid()}, "
        f"GPU ids {[str(i) for i in ray.get_gpu_ids()]}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
    )
    try:
        train(cfg, run_dir, reporter=reporter, resume=resume, data=_data(cfg), printer=printer)
    except NonFiniteLossError as exc:
        printer(f"stopped: {exc}")
        result: dict[str, float] = {m: math.nan for m in settings.report_metrics}
        result.update(
            {
                "step": float(exc.step),
                FINISHED_KEY: 1.0,
                NONFINITE_KEY: 1.0,
                RESUMED_FROM_KEY: float(resumed_from),
            }
        )
        tune.report(result)


def run_point_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """The confirmation's trainable (``semtune.tune.confirm``): ``config[POINT_KEY]`` holds the
    trial's parameters (one grid point: a configuration and a seed)."""
    point = {k: v for k, v in config[POINT_KEY].items() if k != CANDIDATE_KEY}
    run_trial(point, settings)
