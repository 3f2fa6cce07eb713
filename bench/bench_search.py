"""What the study platform costs and buys, each against a reference measured in the same run.

1. ``overhead``: one trial through ``python -m semtune.search`` against the same config trained
   by ``python -m semtune.train`` in a plain process, both on 1 CPU thread. Ratios of training
   throughput (steps per second of the trainer's own clock, checkpoint reporting included) and
   of end-to-end time, and the time from command to the first training step for both.
   Goal: the platform costs at most 5% of throughput.
2. ``parallel``: the same two 1-CPU trials run 2 at a time against one after another, through
   the study. Goal: at least 1.7x faster on 2 cores.
3. ``search``: on ``search_spaces/gamma.yaml``'s settings (its confirmation stage left out), a
   dense grid of gamma (the reference) against TPE + ASHA: the trial-steps TPE + ASHA spends
   before a trial is statistically indistinguishable from the grid's best (the paired
   difference of their last evaluations, image by image on the same validation crops, has a
   95% interval that reaches 0 or above), and before one lands within 0.005 SSIM of it,
   against the grid's total. Long (the grid alone trains 21 trials). The tables go beside the
   JSON (``search_grid.csv``, ``search_tpe<seed>.csv``).

    python bench/bench_search.py overhead parallel          # ~5 minutes on 2 cores
    python bench/bench_search.py search --grid-points 21    # ~40 minutes on 2 cores

Results go to stdout and ``bench/results/search/*.json``. Machine load from other processes
skews all of these: run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "search"
PY = sys.executable


def _space_file(tmp: Path, name: str, overrides: dict[str, Any], **fields: Any) -> Path:
    data: dict[str, Any] = {
        "study": name,
        "base": {"config": "cpu", "overrides": overrides},
        "space": {"loss.gamma": {"distribution": "grid", "values": [10.0]}},
        "objective": {"metric": "ssim", "mode": "max"},
        "sampler": "grid",
        "scheduler": "none",
        "concurrency": 1,
        "resources": {"cpu": 1},
    }
    data.update(fields)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _last_checkpoint(trial_dir: Path) -> Path:
    return sorted(trial_dir.glob("checkpoint_*"))[-1]


def bench_overhead(steps: int, tmp: Path) -> dict[str, Any]:
    """One trial via semtune.search vs python -m semtune.train, same config, 1 thread."""
    overrides = {
        "schedule.steps": steps,
        "schedule.eval_every": max(1, steps // 4),
        "schedule.log_every": 1,
        "schedule.time_budget_s": 0,
        "runtime.threads": 1,
    }
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}

    # Plain trainer: the time each progress line arrives on stdout.
    sets = [f"--set={k}={v}" for k, v in overrides.items()]
    t_plain = time.time()
    proc = subprocess.Popen(
        [PY, "-m", "semtune.train", "--config", "cpu", *sets, "--out", str(tmp / "plain")],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first_line = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first_line is None and line.startswith("step "):
            first_line = time.time()
    proc.wait()
    plain_wall = time.time() - t_plain
    if proc.returncode != 0:
        raise SystemExit(f"semtune.train failed ({proc.returncode})")
    plain_rows = _csv_rows(tmp / "plain" / "metrics.csv")
    plain_rate = steps / plain_rows[-1]["train_seconds"]

    # The same through the study (one trial, 1 CPU).
    space = _space_file(tmp, "overhead", overrides, trials=1)
    out = tmp / "study-overhead"
    (tmp / "mlruns").mkdir(exist_ok=True)
    t0 = time.time()
    subprocess.run(
        # tracked as a user's study is (a local MLflow store), in the benchmark's own folder:
        # never the repository's ./mlruns
        [PY, "-m", "semtune.search", "--space", str(space), "--out", str(out)]
        + ["--tracking-uri", f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    study_wall = time.time() - t0
    trial = next((out / "tune").glob("trial_*"))
    ckpt = _last_checkpoint(trial)
    study_rows = _csv_rows(ckpt / "metrics.csv")
    study_rate = steps / study_rows[-1]["train_seconds"]
    log_lines = (ckpt / "train.log").read_text().splitlines()
    study_first = float(log_lines[0].split(" ", 1)[0])
    return {
        "steps": steps,
        "plain_steps_per_s": plain_rate,
        "study_steps_per_s": study_rate,
        "throughput_ratio": study_rate / plain_rate,
        "plain_wall_s": plain_wall,
        "study_wall_s": study_wall,
        "plain_command_to_first_step_s": (first_line or float("nan")) - t_plain,
        "study_command_to_first_step_s": study_first - t0,
    }


def _csv_rows(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(fh)
        ]


def bench_parallel(steps: int, tmp: Path) -> dict[str, Any]:
    """Two 1-CPU trials, 2 at a time vs one after another (shared local Ray)."""
    import ray

    from semtune.tune.space import load_space
    from semtune.tune.study import run_study

    overrides = {
        "schedule.steps": steps,
        "schedule.eval_every": max(1, steps // 4),
        "schedule.time_budget_s": 0,
    }
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    walls: dict[int, float] = {}
    rates: dict[int, float] = {}
    try:
        for concurrency in (1, 2):
            space = _space_file(
                tmp,
                f"parallel{concurrency}",
                overrides,
                space={"loss.gamma": {"distribution": "grid", "values": [5.0, 10.0]}},
                concurrency=concurrency,
            )
            t0 = time.monotonic()
            result = run_study(
                load_space(space), tmp / f"parallel{concurrency}", printer=lambda _: None
            )
            walls[concurrency] = time.monotonic() - t0
            assert set(result.table["status"]) == {"done"}, result.table
            rates[concurrency] = float(
                (result.table["step"] / result.table["train_seconds"]).mean()
            )
    finally:
        ray.shutdown()
    return {
        "steps": steps,
        "sequential_wall_s": walls[1],
        "concurrent_wall_s": walls[2],
        "speedup": walls[1] / walls[2],
        # The trainer's own clock inside each trial (start-up excluded): what 2 trials side by
        # side cost each other in compute.
        "sequential_trial_steps_per_s": rates[1],
        "concurrent_trial_steps_per_s": rates[2],
        "throughput_speedup": 2 * rates[2] / rates[1],
    }


def _paired(study: Path, trial_id: str, best: dict[str, dict[str, float]]) -> tuple[float, float]:
    """95% interval of the mean per-image SSIM difference, a trial (its latest checkpoint's
    scores) minus the grid's best: ``semtune.compare``, as ``python -m semtune.compare`` runs it."""
    from semtune.compare import compare, read_scores

    c = compare(best, read_scores(study / "tune" / f"trial_{trial_id}"), "ssim")
    return c.ci_low, c.ci_high


def bench_search(grid_points: int, seeds: int, tmp: Path) -> dict[str, Any]:
    """Trial-steps for TPE + ASHA (gamma.yaml) to reach a trial indistinguishable from a dense
    grid's best (and one within 0.005 SSIM of it), against the grid's own cost."""
    import ray

    from semtune.tune.space import ConfirmSpec, Param, SamplerSpec, SchedulerSpec, load_space
    from semtune.tune.study import run_study

    # the search alone: the confirmation stage would cost the same for both
    gamma = dataclasses.replace(
        load_space(REPO_ROOT / "search_spaces" / "gamma.yaml"), confirm=ConfirmSpec()
    )
    values = tuple(float(v) for v in np.linspace(0.0, 20.0, grid_points))
    grid = dataclasses.replace(
        gamma,
        study="gamma-grid",
        space=(Param(path="loss.gamma", distribution="grid", values=values),),
        sampler=SamplerSpec(name="grid", seed=0),
        scheduler=SchedulerSpec(name="none"),
        trials=len(values),
    )
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        g = run_study(grid, tmp / "grid", printer=lambda _: None).table
        g.to_csv(RESULTS / "search_grid.csv", index=False)
        grid_best = float(g["ssim"].max())
        grid_cost = int(g["step"].sum())
        best_id = str(g.loc[g["ssim"].idxmax(), "trial_id"])
        from semtune.compare import read_scores

        best_scores = read_scores(tmp / "grid" / "tune" / f"trial_{best_id}")
        same_as_best = [
            _paired(tmp / "grid", str(tid), best_scores) for tid in g["trial_id"] if tid != best_id
        ]
        runs = []
        for seed in range(seeds):
            spec = dataclasses.replace(
                gamma,
                study=f"gamma-tpe-{seed}",
                sampler=dataclasses.replace(gamma.sampler, seed=seed),
            )
            t = run_study(spec, tmp / f"tpe{seed}", printer=lambda _: None).table
            # Trials in the order Optuna created them; cost = steps each actually trained.
            t = t.sort_values("number")
            t.to_csv(RESULTS / f"search_tpe{seed}.csv", index=False)
            cost, hit, same = 0, None, None
            for _, row in t.iterrows():
                cost += int(row["step"])
                if hit is None and row["ssim"] >= grid_best - 0.005:
                    hit = cost
                paired = _paired(tmp / f"tpe{seed}", str(row["trial_id"]), best_scores)
                if same is None and paired[1] >= 0:
                    same = cost
            runs.append(
                {
                    "seed": seed,
                    "steps_to_indistinguishable": same,
                    "ratio_to_grid_indistinguishable": same / grid_cost if same else None,
                    "steps_to_within_0.005": hit,
                    "ratio_to_grid_within_0.005": hit / grid_cost if hit else None,
                    "total_steps": cost,
                    "best_ssim": float(t["ssim"].max()),
                }
            )
    finally:
        ray.shutdown()
    return {
        "grid_points": len(values),
        "grid_best_ssim": grid_best,
        "grid_best_gamma": float(g.loc[g["ssim"].idxmax(), "loss.gamma"]),
        "grid_best_ssim_ci": [
            float(g.loc[g["ssim"].idxmax(), "ssim_ci_low"]),
            float(g.loc[g["ssim"].idxmax(), "ssim_ci_high"]),
        ],
        "grid_trials_indistinguishable_from_best": sum(1 for c in same_as_best if c[1] >= 0),
        "grid_paired_differences_to_best": same_as_best,
        "grid_steps": grid_cost,
        "grid_ssim_spread": float(g["ssim"].max() - g["ssim"].min()),
        "tpe_asha": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", nargs="+", choices=("overhead", "parallel", "search"))
    p.add_argument("--steps", type=int, default=120, help="steps per trial (overhead, parallel)")
    p.add_argument("--grid-points", type=int, default=21, help="search: gammas in the grid")
    p.add_argument("--seeds", type=int, default=1, help="search: TPE + ASHA studies to run")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for which in args.which:
        with tempfile.TemporaryDirectory(prefix=f"bench-{which}-") as d:
            tmp = Path(d)
            if which == "overhead":
                r = bench_overhead(args.steps, tmp)
            elif which == "parallel":
                r = bench_parallel(args.steps, tmp)
            else:
                r = bench_search(args.grid_points, args.seeds, tmp)
        r["load_average"] = os.getloadavg()
        (RESULTS / f"{which}.json").write_text(json.dumps(r, indent=2))
        print(f"{which}: {json.dumps(r, indent=2)}")


if __name__ == "__main__":
    main()
