"""The MLflow UI in headless Chromium: the study's runs and the registered model are findable.

Chromium is Debian's ``chromium`` package, installed here if missing (``apt-get``; the test is
skipped, saying why, only when that is impossible). Pages are opened as docs/mlflow.md tells a
user to: by the link the search prints, then one click (closing MLflow's Assistant panel, which
a fresh browser opens). The ordinary tests leave the tree alone; ``make screenshots`` runs
``test_screenshots_of_a_fresh_demo``, which runs the demo's study against a fresh server and
writes docs/img/mlflow-*.png from it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from semtune.grids import labelled_grid

from .cdp import Browser, find_chromium
from .conftest import Study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def chromium() -> str:
    exe = find_chromium()
    if exe:
        return exe
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed; `sudo apt-get install chromium` to run this test")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if out.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}): {out.stderr[-500:]}")
    exe = find_chromium()
    if exe is None:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return exe


async def _open(b: Browser, url: str, *needles: str) -> None:
    """Open ``url`` as a user does, and close the Assistant panel (docs/mlflow.md says so)."""
    await b.goto(url)
    await b.wait_for_text(needles[0], timeout=90)
    await b.click_selector("button[aria-label=Close]")  # the Assistant panel, if open
    await b.wait_for_text(*needles, timeout=60)
    await asyncio.sleep(0.5)


def test_ui_lists_the_study_runs_with_their_metrics(
    study: Study, chromium: str, tmp_path: Path
) -> None:
    children = {tid: f"trial_{tid}" for tid in ("t0", "t1", "t2")} | {"t3": "trial-t3"}
    url = study.tracker.runs_page(study.uri)  # the link the search prints at its end
    shot = tmp_path / "mlflow-runs.png"

    async def run() -> str:
        async with Browser(chromium, tmp_path / "profile") as b:
            await _open(b, url, "tracking-test")
            # the study's columns are there without picking them in the Columns menu
            text = await b.wait_for_text(
                *children.values(), "stopped_early", "failed", "loss.gamma", "psnr"
            )
            await asyncio.sleep(1.0)  # let the grid settle before the picture
            await b.screenshot(shot)
            return text

    text = asyncio.run(run())
    assert "tracking-test" in text  # the parent run, grouping the trials
    assert "semtune-generator" in text  # the Models column links the registered versions


def test_ui_shows_the_registered_model_and_its_champion(
    study: Study, chromium: str, tmp_path: Path
) -> None:
    url = f"{study.uri}/#/models/semtune-generator"
    shot = tmp_path / "mlflow-model.png"

    async def run() -> str:
        async with Browser(chromium, tmp_path / "profile") as b:
            await _open(b, url, "semtune-generator", "Version 3", "champion")
            await b.screenshot(shot)
            return await b.text()

    text = asyncio.run(run())
    best_tid = study.registrations[-1][0]
    assert f"Best trial `{best_tid}`" in text or f"Best trial {best_tid}" in text


def test_ui_shows_a_trials_restoration_images(study: Study, chromium: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    tid, res = study.registrations[-1]
    step = max(study.trials[tid].recorder.samples)
    path = f"images/step_{step:06d}.png"
    exp = study.tracker.experiment_id
    url = f"{study.uri}/#/experiments/{exp}/runs/{res.run_id}/artifacts/{path}"
    shot = tmp_path / "mlflow-images.png"
    grid = labelled_grid(
        study.trials[tid].recorder.samples[step], title=f"trial {tid}, step {step}"
    )
    height, width = grid.shape
    assert path in {f.path for f in MlflowClient(study.uri).list_artifacts(res.run_id, "images")}

    async def run() -> bool:
        async with Browser(chromium, tmp_path / "profile") as b:
            await _open(b, url, f"step_{step:06d}.png", "config.yaml")
            # the preview is an <img> (a blob of the downloaded file): find one of the grid's size
            shown = await b.js(
                f"""(async () => {{
                    for (let i = 0; i < 40; i++) {{
                        if ([...document.images].some(
                                im => im.naturalWidth === {width} && im.naturalHeight === {height}))
                            return true;
                        await new Promise(r => setTimeout(r, 250));
                    }}
                    return false;
                }})()"""
            )
            await asyncio.sleep(0.5)
            await b.screenshot(shot)
            return bool(shown)

    assert asyncio.run(run()), "the image grid was not displayed"


# -- make screenshots ------------------------------------------------------------------------------

SCREENSHOTS_ENV = "SEMTUNE_SCREENSHOTS"


def test_screenshots_of_a_fresh_demo(
    mlflow_server: str, chromium: str, tmp_path: Path, repo_root: Path
) -> None:
    """docs/img/mlflow-*.png from the demo's own study (`make demo`'s command, logged to a fresh
    server), taken as docs/mlflow.md walks through it. Run by `make screenshots` only."""
    if os.environ.get(SCREENSHOTS_ENV) != "1":
        pytest.skip(
            f"the docs' screenshots of a 7-minute demo: `make screenshots` sets {SCREENSHOTS_ENV}"
        )
    from mlflow.tracking import MlflowClient

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    space = repo_root / "search_spaces" / "gamma.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "semtune.search", "--space", str(space)]
        + ["--out", str(tmp_path / "demo"), "--tracking-uri", mlflow_server],
        cwd=repo_root,  # as `make demo` runs it (the study file names data/sample/train)
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    links = re.findall(r"https?://\S+viewStateShareKey=semtune", proc.stdout)
    assert links, f"the search printed no link to its runs table:\n{proc.stdout[-2000:]}"
    client = MlflowClient(mlflow_server)
    best = json.loads((tmp_path / "demo" / "best_trial.json").read_text())
    run = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`semtune.trial` = '{best['trial_id']}'",
    )[0]
    steps = sorted(f.path for f in client.list_artifacts(run.info.run_id, "images"))
    pages = {
        "mlflow-runs.png": (links[-1], ("Sort: ssim", "psnr", "loss.gamma", "stopped_early")),
        "mlflow-model.png": (f"{mlflow_server}/#/models/semtune-generator", ("champion",)),
        "mlflow-images.png": (
            f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            f"/artifacts/{steps[-1]}",
            (Path(steps[-1]).name,),
        ),
    }

    async def shoot() -> None:
        async with Browser(chromium, tmp_path / "profile", width=1600, height=900) as b:
            for name, (url, needles) in pages.items():
                await _open(b, url, *needles)
                await asyncio.sleep(2.0)  # images and the grid settle
                await b.screenshot(tmp_path / name)

    asyncio.run(shoot())
    for name in pages:
        shutil.copyfile(tmp_path / name, repo_root / "docs" / "img" / name)
