"""The MLflow UI in headless Chromium: the study's runs and the registered model are findable.

Chromium is Debian's ``chromium`` package, installed here if missing (``apt-get``; the test is
skipped, saying why, only when that is impossible). The screenshots are the README's
walkthrough (docs/img/mlflow-*.png): they are written there when missing or when
``SEMTUNE_UPDATE_SCREENSHOTS=1`` (so that an ordinary test run leaves the tree unchanged), and
always into the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from .cdp import Browser, find_chromium
from .conftest import Study

pytestmark = pytest.mark.slow

UPDATE_ENV = "SEMTUNE_UPDATE_SCREENSHOTS"


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


def _keep(shot: Path, repo_root: Path) -> None:
    target = repo_root / "docs" / "img" / shot.name
    if os.environ.get(UPDATE_ENV) == "1" or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


async def _open(b: Browser, base: str, url: str, *needles: str) -> None:
    """Open ``url`` in the training-run layout, without the assistant panel and sidebar.

    The layout switch ("Model training") navigates, so it is flipped first on the home page;
    the choice sticks for the rest of the browser's session.
    """
    await b.goto(f"{base}/#/")
    await b.wait_for_text("Model training", timeout=90)
    await b.click_text("Model training")
    await asyncio.sleep(0.5)
    await b.goto(url)
    await b.wait_for_text(*needles, timeout=90)
    await b.click_selector("button[aria-label=Close]")  # the assistant panel
    await b.click_selector("button[aria-label='Toggle sidebar']")
    await asyncio.sleep(0.5)


async def _show_columns(b: Browser, names: list[str]) -> list[str]:
    """Tick ``names`` in the table's Columns menu; return those it did not offer."""
    missing = list(names)
    for _ in range(3):
        if not await b.js("!!document.querySelector('[class*=tree-treenode]')"):
            await b.click_text("Columns")
            await asyncio.sleep(0.5)
        # the groups (Attributes, Metrics, Parameters, Tags) start collapsed
        await b.click_selector("[class*=tree-switcher_close]")
        await asyncio.sleep(0.3)
        for name in list(missing):
            clicked = await b.js(
                f"""(() => {{
                    const n = [...document.querySelectorAll('[class*=tree-treenode]')]
                        .find(e => e.textContent.trim() === {json.dumps(name)});
                    if (!n) return false;
                    (n.querySelector('[class*=tree-checkbox]') || n).click();
                    return true;
                }})()"""
            )
            if clicked:
                missing.remove(name)
                await asyncio.sleep(0.2)
        if not missing:
            break
    await b.call(
        "Input.dispatchKeyEvent",
        type="keyDown",
        key="Escape",
        code="Escape",
        windowsVirtualKeyCode=27,
    )
    return missing


def test_ui_lists_the_study_runs_with_their_metrics(
    study: Study, chromium: str, tmp_path: Path, repo_root: Path
) -> None:
    children = {tid: f"trial_{tid}" for tid in ("t0", "t1", "t2")} | {"t3": "trial-t3"}
    query = urllib.parse.urlencode({"orderByKey": "metrics.`score`", "orderByAsc": "false"})
    url = f"{study.uri}/#/experiments/{study.tracker.experiment_id}/runs?{query}"
    shot = tmp_path / "mlflow-runs.png"

    async def run() -> str:
        async with Browser(chromium, tmp_path / "profile") as b:
            await _open(b, study.uri, url, "tracking-test", "Columns")
            missing = await _show_columns(
                b,
                [
                    "Dataset",
                    "Source",
                    "score",
                    "ssim",
                    "psnr",
                    "loss.gamma",
                    "semtune.edge_operator",
                    "semtune.status",
                ],
            )
            assert not missing, f"the Columns menu did not offer {missing}"
            text = await b.wait_for_text(*children.values(), "stopped_early", "failed")
            await asyncio.sleep(1.0)  # let the grid settle before the picture
            await b.screenshot(shot)
            return text

    text = asyncio.run(run())
    assert "tracking-test" in text  # the parent run, grouping the trials
    assert "semtune-generator" in text  # the Models column links the registered versions
    _keep(shot, repo_root)


def test_ui_shows_the_registered_model_and_its_champion(
    study: Study, chromium: str, tmp_path: Path, repo_root: Path
) -> None:
    url = f"{study.uri}/#/models/semtune-generator"
    shot = tmp_path / "mlflow-model.png"

    async def run() -> str:
        async with Browser(chromium, tmp_path / "profile") as b:
            await _open(b, study.uri, url, "semtune-generator", "Version 3", "champion")
            await b.screenshot(shot)
            return await b.text()

    text = asyncio.run(run())
    best_tid = study.registrations[-1][0]
    assert f"Best trial `{best_tid}`" in text or f"Best trial {best_tid}" in text
    _keep(shot, repo_root)


def test_ui_shows_a_trials_restoration_images(
    study: Study, chromium: str, tmp_path: Path, repo_root: Path
) -> None:
    from mlflow.tracking import MlflowClient

    tid, res = study.registrations[-1]
    step = max(study.trials[tid].recorder.samples)
    path = f"images/step_{step:06d}.png"
    exp = study.tracker.experiment_id
    url = f"{study.uri}/#/experiments/{exp}/runs/{res.run_id}/artifacts/{path}"
    shot = tmp_path / "mlflow-images.png"
    n, _, h, w3 = study.trials[tid].recorder.samples[step].shape
    height, width = n * h + (n - 1) * 2, w3 + 4  # image_grid's layout, gap 2
    assert path in {f.path for f in MlflowClient(study.uri).list_artifacts(res.run_id, "images")}

    async def run() -> bool:
        async with Browser(chromium, tmp_path / "profile") as b:
            await _open(b, study.uri, url, f"step_{step:06d}.png", "config.yaml")
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
    _keep(shot, repo_root)
