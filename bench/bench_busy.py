"""The CLIs on a busy machine: semtune's thread defaults against torch's, in the same run.

"before" is what torch did before semtune chose: OpenMP threads spin at barriers
(OMP_WAIT_POLICY=ACTIVE) and there is one per logical CPU (OMP_NUM_THREADS=os.cpu_count()).
"after" is semtune's defaults: neither variable set, so the package sets the passive wait policy
and each command its thread count from the CPUs the process may use (semtune.threads). Each
command runs whole, as a user runs it (start-up included), timed by the wall clock:

  (a) python -m semtune.train --config tiny --out TMP
  (b) python -m semtune.enhance IMG1 IMG2 -o TMP --model tiny/generator.pt   (2 bundled images)

first on the machine as it is ("idle", the load average printed), then with a busy-loop process
on every logical CPU ("busy"; started here and stopped by PID). Each setting runs --repeats
times, interleaved; the median is printed with the before/after ratio. A run stopped at --cap
seconds counts as that long (shown as >), so a ratio with one is a lower bound.

    python bench/bench_busy.py               # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "data" / "sample" / "test").glob("*.jpg"))[:2]
TIMEOUT_S = 300.0


def _env(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["PYTHONUNBUFFERED"] = "1"
    if mode == "before":
        env.update(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS=str(os.cpu_count() or 1))
    elif mode == "1 thread":  # semtune's passive policy, one thread (--one-thread)
        env.update(OMP_NUM_THREADS="1")
    return env


def _run(cmd: list[str], mode: str, cap_s: float = TIMEOUT_S) -> tuple[float, str]:
    """Seconds the command took (``cap_s`` if it was stopped there: a lower bound), and its
    thread line (``threads: N (...)``)."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=_env(mode), capture_output=True, text=True, timeout=cap_s, cwd=REPO
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        return cap_s, ""
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("threads: ")]
    return seconds, said[0] if said else ""


def _commands(work: Path, model: Path, n: int) -> dict[str, list[str]]:
    py = [sys.executable, "-m"]
    return {
        "train --config tiny": [
            *py, "semtune.train", "--config", "tiny", "-o", str(work / f"t{n}"),
        ],
        "enhance, 2 images": [
            *py, "semtune.enhance", *map(str, SAMPLES), "-o", str(work / f"e{n}"),
            "--model", str(model),
        ],
    }  # fmt: skip


def _measure(
    work: Path, model: Path, repeats: int, label: str, cap_s: float, modes: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[float]]] = {}
    threads: dict[tuple[str, str], str] = {}
    n = 0
    for _ in range(repeats):
        for mode in modes:
            n += 1
            for name, cmd in _commands(work / label, model, n).items():
                seconds, said = _run(cmd, mode, cap_s)
                times.setdefault(name, {}).setdefault(mode, []).append(seconds)
                threads[(name, mode)] = said
    out: dict[str, dict[str, float]] = {}
    for name, by_mode in times.items():
        out[name] = {mode: statistics.median(v) for mode, v in by_mode.items()}
        before, after = out[name]["before"], out[name]["after"]
        runs = ", ".join(
            f"{mode} " + " ".join(f"{'>' if s >= cap_s else ''}{s:.1f}" for s in v)
            for mode, v in by_mode.items()
        )
        one = f"   1 thread {out[name]['1 thread']:5.1f} s" if "1 thread" in out[name] else ""
        print(
            f"{label:5} {name:20} before {before:6.1f} s   after {after:6.1f} s{one}   "
            f"before/after {'>=' if before >= cap_s else ''}{before / after:.2f}x   "
            f"(runs: {runs}; after: "
            f"{threads[(name, 'after')] or 'no thread line'})",
            flush=True,
        )
    return out


def _hog(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` busy-loop processes, one per logical CPU (what another user's job does)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2, help="runs per setting (median shown)")
    p.add_argument("--no-idle", action="store_true", help="measure the busy machine only")
    p.add_argument(
        "--cap",
        type=float,
        default=90.0,
        help="seconds after which a run is stopped and counted as taking that long (a lower "
        "bound, shown as >); keeps the benchmark to minutes when spinning threads stall",
    )
    p.add_argument(
        "--one-thread",
        action="store_true",
        help="also time semtune's passive policy with one thread (OMP_NUM_THREADS=1)",
    )
    args = p.parse_args()
    cpus = os.cpu_count() or 1
    modes = ("before", "after", "1 thread") if args.one_thread else ("before", "after")
    print(
        f"{cpus} logical CPUs; before = OMP_WAIT_POLICY=ACTIVE OMP_NUM_THREADS={cpus}; "
        f"after = semtune's defaults; images: {', '.join(s.name for s in SAMPLES)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="semtune-bench-busy-") as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        _run([sys.executable, "-m", "semtune.train", "--config", "tiny", "-o", str(model_dir)], "")
        model = model_dir / "generator.pt"
        if not args.no_idle:
            print(f"idle: load average {os.getloadavg()[0]:.1f} before", flush=True)
            _measure(work, model, args.repeats, "idle", args.cap, modes)
        hogs = _hog(cpus)
        try:
            time.sleep(2)  # the hogs are running
            print(f"busy: {cpus} busy-loop processes, load average {os.getloadavg()[0]:.1f}")
            _measure(work, model, args.repeats, "busy", args.cap, modes)
            print(f"busy: load average {os.getloadavg()[0]:.1f} at the end", flush=True)
        finally:
            for h in hogs:
                h.kill()
            for h in hogs:
                h.wait()


if __name__ == "__main__":
    main()
