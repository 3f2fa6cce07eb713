"""Training steps per second of the cpu preset with 1 thread against 2, in the same run.

Each setting runs in its own process (OpenMP reads its settings once, at start): the cpu preset
for a fixed number of steps with no evaluation in between and F started from a fixed blur (no
blind estimate), timed from the first logged step to the last. Prints both rates and their
ratio, with the load average before each.

    python bench/bench_threads.py            # 120 steps per setting, about 3 minutes
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def rate(threads: int, steps: int, policy: str) -> float:
    env = dict(os.environ, OMP_WAIT_POLICY=policy, PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "semtune.train", "--config", "cpu", "--out",
        f"{tempfile.mkdtemp(prefix='semtune-bench-threads-')}/run",
        "--set", f"runtime.threads={threads}", "--set", f"schedule.steps={steps}",
        "--set", f"schedule.eval_every={steps}", "--set", "schedule.log_every=20",
        "--set", "schedule.time_budget_s=0", "--set", "f.init=sigma",
        "--set", "f.init_sigma=1.0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    marks: list[tuple[int, float]] = []
    for line in proc.stdout:
        m = re.match(r"step (\d+)/", line)
        if m:
            marks.append((int(m.group(1)), time.monotonic()))
    proc.wait()
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) / (t1 - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--policy", default="PASSIVE", help="OMP_WAIT_POLICY of both runs")
    args = p.parse_args()
    rates = {}
    for threads in (1, 2):
        load = os.getloadavg()[0]
        rates[threads] = rate(threads, args.steps, args.policy)
        print(f"{threads} thread(s): {rates[threads]:.2f} steps/s (load before: {load:.1f})")
    print(f"1 thread / 2 threads: {rates[1] / rates[2]:.2f}x ({args.policy})")


if __name__ == "__main__":
    main()
