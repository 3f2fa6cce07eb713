"""Does the study driver keep up with many trials reporting at once? (issue 16)

A stand-in trainable reports exactly what a real trial reports, through the same code: training
losses every ``--log-every`` steps and, every ``--eval-every`` steps, the validation metrics,
an image grid of the real size (``TrialTracker.evaluate_grid``, MLflow ``log_image``), the
per-image scores and a Tune checkpoint of a realistic size (``--checkpoint-mb``: the ``cpu``
preset's generator.pt is 13 MB). Training itself is a sleep of ``--step-seconds`` per step,
so the machine's cores go to the driver, the MLflow server and the reporting. The study is the
real driver stack: ``StudySearcher`` (Optuna TPE), ASHA, semtune's live table and trial-status
callback, a ``StudyTracker`` and one ``TrialTracker`` per trial against an MLflow *server*
(``mlflow server``, sqlite behind it, on loopback), on a local Ray with as many logical CPUs as
concurrent trials.

Printed per concurrency: wall time against the ideal (every trial's sleeps, back to back),
results per second, the driver's CPU seconds per result (this process: Tune's loop, the
searcher, ASHA, the table, the callback), the trial-side time of each MLflow write (the point
is in the server when it returns), and the metric points lost (Tune results without their point
in MLflow, and training-loss points missing; must be 0).

    python bench/bench_scale.py                       # 8 and 32 concurrent trials
    python bench/bench_scale.py --trials 8 32 64 --steps 60

Each stand-in trial is a Ray worker process (about 0.2 GB: Ray, MLflow, no torch), so the
concurrency a machine can hold is bounded by its memory; the figures and the arithmetic for a
real cluster are in docs/cluster.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from semtune.tracking.study import StudyTracker  # noqa: E402
from semtune.tracking.trial import TrialTracker  # noqa: E402
from semtune.tune.mlflow_status import TrialStatusCallback  # noqa: E402
from semtune.tune.progress import ProgressTable  # noqa: E402
from semtune.tune.searcher import StudySearcher  # noqa: E402
from semtune.tune.space import Param, SpaceSampler  # noqa: E402

LOSSES = ("loss_g", "loss_gan", "loss_cycle", "loss_identity", "loss_edge", "loss_d")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(folder: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", str(workers)]
    cmd += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(folder / "artifacts")]
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    raise RuntimeError(
        f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stand_in(config: dict[str, Any], *, context: dict[str, Any], opts: dict[str, Any]) -> None:
    """One trial: sleeps for training, reports like the real trainable and trainer."""
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    steps, gamma = int(opts["steps"]), float(config["loss.gamma"])
    tracker = TrialTracker(context, trial_id, dict(config))  # closed below, after the last step
    tracker.start()
    rng = random.Random(trial_id)
    grid = np.random.default_rng(0).integers(0, 255, opts["grid_shape"], dtype=np.uint8)
    blob = os.urandom(int(opts["checkpoint_mb"] * 2**20))
    writes: list[float] = []
    quality = 0.70 - 0.0004 * (gamma - 12.0) ** 2  # a smooth optimum for the sampler to find
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        for step in range(1, steps + 1):
            time.sleep(opts["step_seconds"])
            if step % opts["log_every"] == 0:
                t0 = time.perf_counter()
                tracker.log(step, {k: rng.random() for k in LOSSES})
                writes.append(time.perf_counter() - t0)
            if step % opts["eval_every"] == 0:
                ssim = quality * (1 - math.exp(-step / steps)) + rng.gauss(0, 0.002)
                metrics = {"ssim": ssim, "psnr": 30 + 10 * ssim, "step": float(step)}
                folder = work / f"step_{step}"
                folder.mkdir()
                (folder / "generator.pt").write_bytes(blob)
                (folder / "val_scores.csv").write_text("step,image,ssim\n" + f"{step},a,{ssim}\n")
                t0 = time.perf_counter()
                tracker.evaluate_grid(step, metrics, folder / "generator.pt", grid)
                writes.append(time.perf_counter() - t0)
                metrics.update(writes_ms=json.dumps([round(w * 1000, 1) for w in writes]))
                metrics.update(rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
                writes.clear()
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))
                shutil.rmtree(work / f"step_{step - opts['eval_every']}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tracker.close("finished")


def run(n: int, url: str, folder: Path, opts: dict[str, Any]) -> dict[str, Any]:
    ray.init(
        num_cpus=n,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
    )
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    try:
        tracker = StudyTracker(
            url, experiment=f"scale-{n}", study_name=f"scale-{n}", objective="ssim"
        )
        tracker.start()
        context = tracker.trial_context()
        searcher = StudySearcher(
            space=SpaceSampler(
                [Param(path="loss.gamma", distribution="uniform", low=0.0, high=20.0)]
            ),
            metric="ssim",
            mode="max",
            sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
            study_name=f"scale-{n}",
            storage=optuna.storages.RDBStorage(f"sqlite:///{folder / f'optuna-{n}.db'}"),
        )
        steps = opts["steps"]
        scheduler = ASHAScheduler(
            time_attr="step",
            metric="ssim",
            mode="max",
            max_t=steps,
            grace_period=max(opts["eval_every"], steps // 4),
            reduction_factor=2,
        )
        table = ProgressTable(
            ["loss.gamma"], ["ssim", "psnr"], interval_s=30, printer=lambda _: None
        )
        trainable = tune.with_resources(
            tune.with_parameters(stand_in, context=context, opts=opts), {"cpu": 1}
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=n, max_concurrent_trials=n
            ),
            run_config=tune.RunConfig(
                name=f"scale-{n}",
                storage_path=str(folder / "tune"),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[table, TrialStatusCallback(context)],
                verbose=0,
            ),
        )
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, t_start = time.monotonic(), time.time()
        results = tuner.fit()
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        tracker.finish()
    finally:
        ray.shutdown()
    driver_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    # what each trial reported to Tune, against what MLflow holds for it
    client = tracker.client
    reported = lost = lost_losses = 0
    writes: list[float] = []
    for r in results:
        df = r.metrics_dataframe
        if df is None or df.empty or "step" not in df:
            continue
        trial_id = str(df["trial_id"].iloc[-1])
        n_evals = len(df)
        reported += n_evals
        last_step = int(df["step"].max())
        for cell in df["writes_ms"]:
            writes += json.loads(cell)
        run_id = tracker.trial_run_id(trial_id)
        points = len(client.get_metric_history(run_id, "ssim")) if run_id else 0
        lost += max(0, n_evals - points)
        want = last_step // opts["log_every"]
        got = len(client.get_metric_history(run_id, "loss_g")) if run_id else 0
        lost_losses += max(0, want - got)
    trials_run = len(results)
    frames = [
        r.metrics_dataframe
        for r in results
        if r.metrics_dataframe is not None and "step" in r.metrics_dataframe
    ]
    failed = sum(r.error is not None for r in results)
    # every trial starts at once (concurrency = trials): a free driver takes the longest one
    ideal = max(int(df["step"].max()) for df in frames) * opts["step_seconds"]
    stamps = sorted(float(t) for df in frames for t in df["timestamp"])
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else math.nan
    rss = [float(df["rss_mb"].max()) for df in frames]
    writes.sort()
    return {
        "trials": trials_run,
        "failed": failed,
        "wall_s": wall,
        "ideal_s": ideal,
        "results": reported,
        "results_per_s": reported / wall,
        # between the first and the last result: the rate once the trials run (start-up
        # of the workers, ~5 s of CPU each, is outside it)
        "sustained_per_s": (len(stamps) - 1) / span if span and span > 0 else math.nan,
        "first_result_s": stamps[0] - t_start if stamps else math.nan,
        "worker_rss_mb": statistics.median(rss) if rss else math.nan,
        "driver_cpu_ms_per_result": 1000 * driver_cpu / max(reported, 1),
        "write_ms_p50": statistics.median(writes) if writes else math.nan,
        "write_ms_p95": writes[int(0.95 * (len(writes) - 1))] if writes else math.nan,
        "lost_eval_points": lost,
        "lost_loss_points": lost_losses,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, nargs="+", default=[8, 32], help="concurrent trials")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--step-seconds", type=float, default=0.5)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--checkpoint-mb", type=float, default=13.0)
    p.add_argument("--server-workers", type=int, default=2)
    args = p.parse_args()
    opts = {
        "steps": args.steps,
        "step_seconds": args.step_seconds,
        "eval_every": args.eval_every,
        "log_every": args.log_every,
        "checkpoint_mb": args.checkpoint_mb,
        # the cpu preset's labelled grid: 4 rows of 3 panels of 256 px with labels
        "grid_shape": (4 * 256 + 3 * 24 + 40, 3 * 256 + 2 * 4),
    }
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    proc, url = _start_server(folder, args.server_workers)
    print(
        f"MLflow server {url} ({args.server_workers} workers, sqlite); {os.cpu_count()} CPUs; "
        f"load {os.getloadavg()[0]:.1f}; per trial {args.steps} steps of {args.step_seconds} s, "
        f"losses every {args.log_every}, an evaluation (metrics, grid, scores, "
        f"{args.checkpoint_mb:g} MB checkpoint) every {args.eval_every}"
    )
    try:
        for n in args.trials:
            r = run(n, url, folder, opts)
            print(
                f"{n:4d} concurrent: {r['trials']} trials ({r['failed']} failed), "
                f"{r['wall_s']:.0f} s (ideal "
                f"{r['ideal_s']:.0f} s, x{r['wall_s'] / r['ideal_s']:.2f}), {r['results']} "
                f"evaluations, {r['results_per_s']:.2f} results/s ({r['sustained_per_s']:.2f} "
                f"between the first and last, the first at {r['first_result_s']:.0f} s), driver "
                f"{r['driver_cpu_ms_per_result']:.0f} ms CPU per result, MLflow writes "
                f"p50 {r['write_ms_p50']:.0f} ms p95 {r['write_ms_p95']:.0f} ms, lost points: "
                f"{r['lost_eval_points']} evaluations, {r['lost_loss_points']} losses; worker "
                f"peak RSS {r['worker_rss_mb']:.0f} MB; load "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
