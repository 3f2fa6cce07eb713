"""A real MLflow server on loopback and a small study logged to it (shared by this folder).

The server (``mlflow_server`` in tests/conftest.py, shared by the session) is started with the
project's own ``mlflow/start-server.sh`` on a free port and stopped by its PID.
The study is simulated in-process without Ray (the search drives the same objects): a parent
run, four tiny training runs logging at once from threads -- two that finish, one stopped
early by the "scheduler", one that fails -- then ``finish`` and three registrations.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from conftest import ServerProcess, free_port  # noqa: F401 (free_port: for the tests here)
from torch import Tensor

from semtune.tracking import (
    RegistrationResult,
    StudyTracker,
    TrialTracker,
    TrialTrackerFactory,
    check_server,
)

if TYPE_CHECKING:
    from semtune.train.config import TrainConfig
    from semtune.train.loop import TrainResult


@pytest.fixture(scope="session", autouse=True)
def _booting_server(mlflow_server_process: ServerProcess) -> ServerProcess:
    """Start the server (tests/conftest.py) when this folder's first test starts: it boots
    (~20 s) while the tests that need no server run."""
    return mlflow_server_process


# -- the simulated study ---------------------------------------------------------------------------


class Stopped(Exception):
    """What the fake scheduler raises to end a trial the way ASHA does (no close of the run)."""


class Recorder:
    """Wraps a reporter and remembers every (metric, step) -> value it was given."""

    def __init__(
        self, inner: Any, *, stop_after_eval: int | None = None, fail_at_log: int | None = None
    ) -> None:
        self.inner = inner
        self.points: dict[tuple[str, int], float] = {}
        self.samples: dict[int, Tensor] = {}
        self.stop_after_eval = stop_after_eval
        self.fail_at_log = fail_at_log

    def log(self, step: int, losses: dict[str, float]) -> None:
        if self.fail_at_log is not None and step >= self.fail_at_log:
            raise RuntimeError(f"injected failure at step {step}")
        self.points.update({(k, step): float(v) for k, v in losses.items()})
        self.inner.log(step, losses)

    def evaluate(
        self, step: int, metrics: dict[str, float], checkpoint: Path, samples: Tensor
    ) -> None:
        self.points.update({(k, step): float(v) for k, v in metrics.items() if k != "step"})
        self.samples[step] = samples.clone()
        self.inner.evaluate(step, metrics, checkpoint, samples)
        if self.stop_after_eval is not None and step >= self.stop_after_eval:
            raise Stopped(f"stopped by the scheduler at step {step}")


@dataclass
class Trial:
    trial_id: str
    params: dict[str, Any]
    config: TrainConfig
    run_dir: Path
    recorder: Recorder | None = None
    tracker: TrialTracker | None = None
    result: TrainResult | None = None
    error: BaseException | None = None


@dataclass
class Study:
    uri: str
    tracker: StudyTracker
    trials: dict[str, Trial]
    results_csv: Path
    plot: Path
    space_yaml: Path
    registrations: list[tuple[str, RegistrationResult]] = field(default_factory=list)

    @property
    def best_trial(self) -> Trial:
        return self.trials[self.registrations[-1][0]]


def trial_config(train_dir: Path, *overrides: str) -> TrainConfig:
    from semtune.train.config import load_train_config

    return load_train_config(
        "tiny",
        [
            f"data.clean_dir={train_dir}",
            "schedule.log_every=1",  # a point per step: many points to count
            "runtime.device=cpu",
            "runtime.threads=1",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def study(
    mlflow_server: str, sample_train_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Study:
    from semtune.data.unpaired import build_training_data
    from semtune.train.loop import train

    root = tmp_path_factory.mktemp("study")
    uri = mlflow_server
    check_server(uri)
    space = root / "space.yaml"
    space.write_text("study: tracking-test\nspace:\n  loss.gamma: {uniform: [0, 20]}\n")
    base = trial_config(sample_train_dir)
    tracker = StudyTracker(
        uri,
        experiment="semtune-tracking-test",
        study_name="tracking-test",
        space_yaml=space,
        base_config=base,
        sampler="tpe",
        objective="score",
        mode="max",
        params={"num_samples": 4},
        searched=["loss.gamma"],
    )
    tracker.start()
    # what the search does: ship a picklable factory to the workers
    factory = pickle.loads(pickle.dumps(tracker.reporter_factory(log_generator=True)))
    assert isinstance(factory, TrialTrackerFactory)

    specs = {
        "t0": ({"loss.gamma": 0.0, "loss.edge_operator": "sobel"}, {}),
        "t1": ({"loss.gamma": 10.0, "loss.edge_operator": "kirsch"}, {}),
        "t2": ({"loss.gamma": 5.0, "loss.edge_operator": "sobel"}, {"stop_after_eval": 3}),
        "t3": ({"loss.gamma": 1.0, "loss.edge_operator": "scharr"}, {"fail_at_log": 2}),
    }
    data = build_training_data(base.data)
    trials: dict[str, Trial] = {}

    def run(trial_id: str) -> None:
        params, faults = specs[trial_id]
        t = trials[trial_id]
        try:
            if "fail_at_log" in faults:
                # the context-manager form: an exception marks the run FAILED
                with TrialTracker(tracker.trial_context(), trial_id, params, config=t.config) as tt:
                    t.tracker = tt
                    t.recorder = Recorder(tt, **faults)
                    train(t.config, t.run_dir, reporter=t.recorder, data=data, printer=None)
            else:
                ctx = SimpleNamespace(
                    trial_id=trial_id,
                    trial_name=f"trial_{trial_id}",
                    params=params,
                    config=t.config,
                )
                t.tracker = factory(ctx)
                t.recorder = Recorder(t.tracker, **faults)
                t.result = train(t.config, t.run_dir, reporter=t.recorder, data=data, printer=None)
        except BaseException as exc:  # noqa: BLE001 (kept for the tests to look at)
            t.error = exc

    for trial_id, (params, _) in specs.items():
        cfg = trial_config(sample_train_dir, *(f"{k}={v}" for k, v in params.items()))
        trials[trial_id] = Trial(trial_id, params, cfg, root / trial_id)
    threads = [threading.Thread(target=run, args=(tid,)) for tid in specs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for tid in ("t0", "t1"):
        assert trials[tid].error is None, f"trial {tid} failed: {trials[tid].error!r}"
    assert isinstance(trials["t2"].error, Stopped)
    assert isinstance(trials["t3"].error, RuntimeError)
    # the driver learns that the scheduler stopped t2 (a Tune callback in the real search)
    assert tracker.end_trial("t2", "stopped_early")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    best_of = {
        tid: _best_metrics(trials[tid]) for tid in ("t0", "t1", "t2")
    }  # t2 stopped at step 3: its best is its only evaluation
    table = pd.DataFrame(
        [{"trial_id": tid, **trials[tid].params, **m} for tid, m in best_of.items()]
    )
    results_csv = root / "results.csv"
    table.to_csv(results_csv, index=False)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(table["loss.gamma"], table["score"], "o")
    plot = root / "score_vs_gamma.png"
    fig.savefig(plot)
    plt.close(fig)

    ranked = sorted(best_of, key=lambda tid: best_of[tid]["score"])
    worst, middle, best = ranked
    scores = [best_of[t]["score"] for t in ranked]
    assert scores[0] < scores[1] < scores[2], f"tied scores, cannot test the champion: {scores}"
    tracker.finish(results_csv, [plot], {**best_of[best], "trial_id": best})
    s = Study(uri, tracker, trials, results_csv, plot, space)
    # registered in an order that exercises both outcomes: first (no champion yet), worse, better
    for tid in (middle, worst, best):
        t = trials[tid]
        res = tracker.register_best(
            t.run_dir / "generator.pt", best_of[tid], tid, t.config.to_dict()
        )
        s.registrations.append((tid, res))
    return s


def _best_metrics(t: Trial) -> dict[str, float]:
    """The metrics of the evaluation that produced the trial's generator.pt (best score)."""
    assert t.recorder is not None
    steps = sorted(t.recorder.samples)
    evals = [{k: v for (k, s), v in t.recorder.points.items() if s == step} for step in steps]
    best = max(evals, key=lambda m: m["score"])
    return {k: v for k, v in best.items() if not k.startswith("loss_")}
