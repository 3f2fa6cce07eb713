"""A study whose driver is killed with SIGKILL resumes: finished trials are not run again,
the interrupted trial continues from its checkpoint, and the trial count comes out right."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

TRIALS = 2
STEPS = 40
EVAL_EVERY = 5


def _descendants(pid: int) -> set[int]:
    """PIDs of every process below ``pid`` (from /proc; Ray's agents outlive a killed driver)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill(pids: set[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _rows(trial_dir: Path) -> list[dict[str, float]]:
    f = trial_dir / "result.json"
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _sigkill_driver_when(
    cmd: list[str], tmp_path: Path, env: dict[str, str], ready: Any, what: str, timeout: float
) -> None:
    """Start the study's driver, wait until ``ready()``, then SIGKILL it and every process
    below it (Ray's agents outlive a killed driver), as a crash would."""
    log = (tmp_path / "first.log").open("w")
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            family |= _descendants(driver.pid)
            if ready():
                break
            assert driver.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail(f"{what} in time")
        time.sleep(1)
        family |= _descendants(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
        time.sleep(2)
        _kill({p for p in family if Path(f"/proc/{p}").exists()})
        log.close()


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="resume-test", storage=storage).trials
    except Exception:  # the database is created by the driver a few seconds in
        return []


def test_a_study_killed_with_sigkill_resumes_without_repeating_finished_trials(
    tmp_path: Path, sample_train_dir: Path
) -> None:
    space = tmp_path / "resume-test.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "study": "resume-test",
                "base": {
                    "config": "tiny",
                    "overrides": {
                        "data.clean_dir": str(sample_train_dir),
                        "schedule.steps": STEPS,
                        "schedule.eval_every": EVAL_EVERY,
                        "schedule.log_every": EVAL_EVERY,
                    },
                },
                "space": {"loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0}},
                "objective": {"metric": "ssim", "mode": "max"},
                "sampler": {"name": "random", "seed": 0},
                "scheduler": "none",
                "trials": TRIALS,
                "concurrency": 1,  # one at a time: at the kill, one finished and one half done
                "resources": {"cpu": 1},
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "out"
    storage = f"sqlite:///{out / 'optuna.db'}"
    store = tmp_path / "mlruns" / "mlflow.db"  # its own MLflow store, never ./mlruns
    cmd = [sys.executable, "-m", "semtune.search", "--space", str(space), "--out", str(out)]
    cmd += ["--tracking-uri", f"sqlite:///{store}"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("SEMTUNE_FAULT_INJECT_CRASH_ONCE", None)

    # Kill once one trial is complete and the next has two results in the study folder (they
    # are copied there with Tune's state snapshot, taken every 2 s and after every second
    # checkpoint of a trial, so the snapshot knows a checkpoint of it).
    def one_done_one_running() -> bool:
        done = {
            t.user_attrs["tune_trial_id"] for t in _trials(storage) if t.state.name == "COMPLETE"
        }
        running = [
            d
            for d in (out / "tune").glob("trial_*")
            if d.name.removeprefix("trial_") not in done and len(_rows(d)) >= 2
        ]
        return bool(done and running)

    _sigkill_driver_when(
        cmd,
        tmp_path,
        env,
        one_done_one_running,
        "the study did not reach a finished and a running trial",
        240,
    )

    finished_before = {
        t.user_attrs["tune_trial_id"] for t in _trials(storage) if t.state.name == "COMPLETE"
    }
    rows_before = {
        d.name.removeprefix("trial_"): len(_rows(d)) for d in (out / "tune").glob("trial_*")
    }
    assert finished_before and len(finished_before) < TRIALS

    resumed = subprocess.run(
        [*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    assert store.exists()
    table = pd.read_csv(out / "results.csv")
    assert len(table) == TRIALS and set(table["status"]) == {"done"}
    trials = _trials(storage)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == TRIALS
    assert not [t for t in trials if t.state.name == "RUNNING"]
    # The trials that had finished were not run again: Tune recorded nothing new for them.
    for d in (out / "tune").glob("trial_*"):
        tid = d.name.removeprefix("trial_")
        rows = _rows(d)
        if tid in finished_before:
            assert len(rows) == rows_before[tid], f"finished trial {tid} reported again"
            assert all(r["resumed_from"] == 0 for r in rows)
    # The interrupted trial continued from a checkpoint, not from step 0.
    interrupted = [tid for tid, n in rows_before.items() if tid not in finished_before and n >= 2]
    assert interrupted, (rows_before, finished_before)
    for tid in interrupted:
        later = [r for r in _rows(out / "tune" / f"trial_{tid}")[rows_before[tid] :]]
        assert later and later[0]["resumed_from"] >= EVAL_EVERY, later
        assert later[-1]["step"] == STEPS
    # Each optuna trial's value is the last SSIM its Tune trial reported.
    by_id = {t.user_attrs["tune_trial_id"]: t.value for t in complete}
    for _, row in table.iterrows():
        assert by_id[row["trial_id"]] == pytest.approx(row["ssim"])


def test_a_study_killed_during_its_confirmation_resumes_it(
    tmp_path: Path, sample_train_dir: Path, sample_test_dir: Path
) -> None:
    """The search is complete; of the confirmation's two trials (one configuration, two
    seeds, one at a time) one has finished and one is half done when the driver is killed:
    --resume does not train the search or the finished one again, continues the other from its
    checkpoint, and says the verdict."""
    space = tmp_path / "confirm-resume.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "study": "confirm-resume",
                "base": {
                    "config": "tiny",
                    "overrides": {
                        "data.clean_dir": str(sample_train_dir),
                        "schedule.steps": STEPS,
                        "schedule.eval_every": EVAL_EVERY,
                        "schedule.log_every": EVAL_EVERY,
                    },
                },
                "space": {"loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0}},
                "objective": {"metric": "ssim", "mode": "max"},
                "sampler": {"name": "random", "seed": 0},
                "scheduler": "none",
                "trials": 1,
                "concurrency": 1,
                "resources": {"cpu": 1},
                "confirm": {
                    "top_k": 1,
                    "seeds": 2,
                    "control": "none",
                    "data": str(sample_test_dir),
                    "crops": 12,
                },
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "semtune.search", "--space", str(space), "--out", str(out)]
    cmd += ["--no-tracking"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("SEMTUNE_FAULT_INJECT_CRASH_ONCE", None)

    def confirm_trials() -> dict[str, list[dict[str, float]]]:
        return {d.name: _rows(d) for d in (out / "tune_confirm").glob("trial_*")}

    def one_done_one_running() -> bool:
        trials = confirm_trials()
        done = [n for n, rows in trials.items() if rows and rows[-1]["step"] == STEPS]
        return any(n not in done and len(rows) >= 2 for n, rows in trials.items()) and bool(done)

    _sigkill_driver_when(
        cmd,
        tmp_path,
        env,
        one_done_one_running,
        "the confirmation did not reach a finished and a running trial",
        300,
    )
    assert not (out / "confirmation.csv").exists()
    search_rows = {d.name: len(_rows(d)) for d in (out / "tune").glob("trial_*")}
    before = {n: len(rows) for n, rows in confirm_trials().items()}

    resumed = subprocess.run(
        [*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "verdict: " in resumed.stdout
    summary = pd.read_csv(out / "confirmation.csv")
    assert summary["seeds"].tolist() == [2]
    # the search was not trained again, nor the finished confirmation trial
    assert {d.name: len(_rows(d)) for d in (out / "tune").glob("trial_*")} == search_rows
    after = confirm_trials()
    assert set(after) == set(before)
    for name, rows in after.items():
        if before[name] and _rows_done(rows[: before[name]]):
            assert len(rows) == before[name], f"finished confirmation trial {name} ran again"
        else:  # the interrupted one: continued from a checkpoint, not from step 0
            later = rows[before[name] :]
            assert later and later[0]["resumed_from"] >= EVAL_EVERY and later[-1]["step"] == STEPS


def _rows_done(rows: list[dict[str, float]]) -> bool:
    return bool(rows) and rows[-1]["step"] == STEPS
