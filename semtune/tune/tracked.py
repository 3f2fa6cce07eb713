"""A study logged to MLflow: its parent run opened before the trials start, a child run per
trial (``semtune.tracking``), and at the end the results logged and the best generator
registered, the champion alias moving only on a paired improvement. The library under
``python -m semtune.search``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from semtune.data.unpaired import build_training_data
from semtune.tracking import (
    DEFAULT_MODEL_NAME,
    StudyTracker,
    check_server,
    load_registered_generator_file,
    resolve_tracking_uri,
    ui_hint,
)
from semtune.tracking.registration import PairedDifference
from semtune.train.loop import score_images
from semtune.train.state import load_generator_file
from semtune.tune.mlflow_status import TrialStatusCallback
from semtune.tune.results import StudyResult
from semtune.tune.spec import StudySpec
from semtune.uncertainty import bootstrap_ci

__all__ = ["finish_tracking", "paired_check", "start_tracking", "study_hooks", "ui_command"]


def start_tracking(
    spec: StudySpec,
    out: Path,
    *,
    space_file: str | Path,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    num_samples: int | None = None,
    resume: bool = False,
    on_cluster: bool = False,
    printer: Callable[[str], None] = print,
) -> StudyTracker:
    """Resolve and check the tracking store (now, not after hours of training), then open the
    study's parent run (``resume``: the run of the study in ``out``)."""
    uri = resolve_tracking_uri(tracking_uri, default_dir=Path.cwd() / "mlruns")
    check_server(uri)
    if on_cluster and not uri.startswith(("http://", "https://")):
        print(
            f"warning: trials on a Ray cluster log to {uri}; workers on other machines cannot "
            "write to it: pass --tracking-uri http://<server reachable from the workers>:5000",
            file=sys.stderr,
        )
    tracker = StudyTracker(
        uri,
        experiment=experiment or spec.study,
        study_name=spec.study,
        space_yaml=space_file,
        base_config=spec.train_config(),
        sampler=spec.sampler.name,
        objective=spec.metrics,
        mode=spec.modes,
        study_key=str(out),
        params={
            "num_samples": num_samples or spec.trials,
            "concurrency": spec.concurrency,
            "scheduler": spec.scheduler.name,
            "searched": ",".join(p.path for p in spec.space),
        },
        searched=[p.path for p in spec.space],
    )
    tracker.start(resume=resume)
    printer(f"MLflow: logging to {uri} (experiment {tracker.experiment!r})")
    return tracker


def study_hooks(tracker: StudyTracker) -> dict[str, Sequence[Any]]:
    """``run_study``'s keyword arguments that log each trial to ``tracker``: a child run per
    trial (``trial_reporters``) and its final status (``callbacks``)."""
    return {
        "trial_reporters": [tracker.reporter_factory()],
        "callbacks": [TrialStatusCallback(tracker.trial_context())],
    }


def finish_tracking(
    tracker: StudyTracker,
    result: StudyResult,
    spec: StudySpec,
    *,
    model_name: str | None = None,
    printer: Callable[[str], None] = print,
) -> None:
    """Log the study's results on its parent run and register the best generator."""
    info_file = result.out_dir / "best_trial.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    best = {
        "trial_id": info.get("trial_id"),
        "step": info.get("step", 0),
        **info.get("metrics", {}),
    }
    extra = [f for f in (result.out_dir / "pareto_front.csv", info_file) if f.is_file()]
    tracker.finish(
        result.out_dir / "results.csv",
        plots=result.plots,
        best=best if info else None,
        artifacts=extra,
        status="finished" if result.complete else "killed",
        close_open_trials=result.complete,
    )
    before = tracker.registered() if result.complete else None
    if before is not None and before[2] == str(info.get("trial_id")):
        name, version, trial = before
        printer(
            f"the study's best (trial {trial}) was registered before, as {name} version "
            f"{version}; not registered again"
        )
    elif result.complete and result.best_generator is not None and info:
        exported = torch.load(result.best_generator, map_location="cpu", weights_only=True)
        # the metrics of exactly the registered weights (the trial's best evaluation), which
        # can differ from its last evaluation in the results table
        metrics = {**info["metrics"], **exported.get("metrics", {})}
        reg = tracker.register_best(
            result.best_generator,
            metrics,
            str(info["trial_id"]),
            exported["config"],
            model_name=model_name or DEFAULT_MODEL_NAME,
            paired=paired_check(result.best_generator, spec.metrics[0], tracker.uri),
        )
        printer(reg.message)
    printer(f"MLflow UI: {ui_command(tracker.uri)}")
    base = tracker.uri if tracker.uri.startswith(("http://", "https://")) else _LOCAL_UI
    printer(f"the study's trials, sorted, with their metrics: {tracker.runs_page(base)}")


def paired_check(
    candidate: Path, metric: str, uri: str
) -> Callable[[str], PairedDifference | None]:
    """What the registry calls with the champion's model URI: the candidate and the champion
    restore the candidate's validation images (its held-out split, degraded as it was
    validated), and the per-image differences on ``metric`` get a 95% interval."""

    def check(holder_uri: str) -> PairedDifference | None:
        mine = load_generator_file(candidate)
        holder = load_registered_generator_file(holder_uri, tracking_uri=uri)
        data = build_training_data(mine.config.data)
        groups = list(data.val_groups)
        a = score_images(mine.g, data.val, groups)
        b = score_images(holder.g, data.val, groups)
        if metric not in a:
            return None  # not scored per image (ag, con, sf): compare the recorded values
        d = a[metric] - b[metric]
        ci = bootstrap_ci({"d": d}, list(range(len(d))))
        return PairedDifference(
            metric=metric,
            mean=float(d.mean()),
            ci_low=ci["d_ci_low"],
            ci_high=ci["d_ci_high"],
            images=len(d),
        )

    return check


_LOCAL_UI = "http://127.0.0.1:5000"


def ui_command(uri: str) -> str:
    """The command that opens ``uri``'s runs in a browser (the repository's server script for
    the default local store)."""
    store = Path.cwd() / "mlruns"
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    if uri != f"sqlite:///{(store / 'mlflow.db').as_posix()}":
        return str(ui_hint(uri))
    script = Path(__file__).resolve().parents[2] / "mlflow" / "start-server.sh"
    if not script.is_file():  # installed without the repository: plain mlflow server
        return str(ui_hint(uri))
    if script.parents[1] == Path.cwd().resolve():
        command = "mlflow/start-server.sh"
    else:
        command = f"MLFLOW_STORE={store} {script}"
    return f"{command}   # serves {_LOCAL_UI}"
