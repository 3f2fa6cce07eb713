"""A study on a simulated multi-GPU cluster: fractional-GPU placement, seen from inside each trial.

No GPU exists here, but Ray accounts for logical ones: two local nodes declare 4 GPUs each
(``ray start --num-gpus 4``), and a study asks for ``resources: {cpu: 1, gpu: 0.5}``. Ray then
gives each trial one GPU id through ``CUDA_VISIBLE_DEVICES``, as on a real cluster; each trial
writes where it was placed into its ``train.log`` (``placement: ...``), and the trainer says in
one line that the assigned GPU is not usable and it trains on the CPU. What a real GPU adds
(kernels running on the device that id names) needs a GPU to prove; docs/cluster.md says so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import two_node_cluster

pytestmark = pytest.mark.slow

NODES, GPUS_PER_NODE, TRIALS = 2, 4, 20
PLACEMENT = re.compile(
    r"^(?P<t>[\d.]+) placement: node (?P<node>\w+), pid \d+, GPU ids \[(?P<ids>[^\]]*)\], "
    r"CUDA_VISIBLE_DEVICES=(?P<cvd>\S*)$"
)


def _trial_logs(out: Path) -> list[str]:
    """Each trial's train.log, from its latest checkpoint (the run folder's durable copy)."""
    logs = []
    for trial in sorted((out / "tune").glob("trial_*")):
        ckpts = sorted(trial.glob("checkpoint_*"))
        assert ckpts, f"{trial.name} reported no checkpoint"
        logs.append((ckpts[-1] / "train.log").read_text())
    return logs


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = peak = 0
    for _, change in events:  # an end sorts before a start at the same instant
        now += change
        peak = max(peak, now)
    return peak


def test_half_gpu_trials_get_one_device_each_two_per_gpu_all_gpus_used(
    tmp_path: Path, repo_root: Path
) -> None:
    space = tmp_path / "gpu.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "study": "simulated-gpus",
                "base": {
                    "config": "tiny",
                    "overrides": {
                        "data.clean_dir": str(repo_root / "data" / "sample" / "train"),
                        # long enough for the second node's workers to start (torch import)
                        # before the head's trials end and Tune hands the waiting trials to
                        # those reused actors instead (at 24 steps, one full-suite run in
                        # several left a simulated GPU unused)
                        "schedule.steps": 40,
                        "schedule.eval_every": 20,
                    },
                },
                "space": {"loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0}},
                "objective": {"metric": "ssim", "mode": "max"},
                "scheduler": {"name": "none"},
                "trials": TRIALS,
                "concurrency": TRIALS,  # more trials than the 16 half-GPU slots: ids are reused
                "resources": {"cpu": 1, "gpu": 0.5},
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "study"
    # 8 logical CPUs per node: CPUs are not what limits this study, the GPUs are
    with two_node_cluster(cpus=8, gpus=GPUS_PER_NODE) as cluster:
        env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
        proc = subprocess.run(
            [sys.executable, "-m", "semtune.search", "--space", str(space), "--out", str(out)]
            + ["--address", cluster.gcs_address, "--no-tracking", "--progress-every", "30"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = pd.read_csv(out / "results.csv")
    assert len(table) == TRIALS and set(table["status"]) == {"done"}

    by_gpu: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for log in _trial_logs(out):
        lines = log.splitlines()
        found = [m for m in map(PLACEMENT.match, lines) if m]
        assert len(found) == 1, log[:2000]
        m = found[0]
        # exactly one device visible, the one Ray assigned
        ids = [i.strip(" '") for i in m["ids"].split(",") if i.strip()]
        assert len(ids) == 1 and m["cvd"] == ids[0], m.group(0)
        # and one clear line saying the run is on the CPU instead
        fallback = [line for line in lines if "training on the CPU" in line]
        assert len(fallback) == 1 and f"CUDA_VISIBLE_DEVICES={ids[0]}" in fallback[0], log[:2000]
        times = [float(line.split(" ", 1)[0]) for line in lines if line[:1].isdigit()]
        by_gpu[(m["node"], ids[0])].append((float(m["t"]), max(times)))

    # every GPU of both nodes used, never more than two trials on one at a time, and at least
    # one GPU really shared by two trials at once
    nodes = {node for node, _ in by_gpu}
    assert len(nodes) == NODES
    assert sorted(by_gpu) == sorted((n, str(i)) for n in nodes for i in range(GPUS_PER_NODE))
    peaks = {gpu: _max_overlap(spans) for gpu, spans in by_gpu.items()}
    assert max(peaks.values()) == 2, peaks
    assert sum(len(s) for s in by_gpu.values()) == TRIALS
