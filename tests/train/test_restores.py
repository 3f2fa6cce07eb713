"""What issues 7 and 11 learned, guarded: the default small preset restores from its first
evaluation, on blurred *and noisy* held-out images.

One short run of the shipped ``cpu`` preset (400 steps instead of 3000) on the bundled images,
validated on the images it holds out, degraded as set A+n. Measured (docs/restoration.md): F
starts from the spectral estimate of the blur (0.93 px for set A+n's 1.0) and, learning its
kernel from D_blur alone with the blurred images' own noise added, stays near it; SSIM and PSNR
on the held-out images are above the noisy blurred input's at step 200 (+0.016 SSIM,
+0.4 dB) and PSNR climbs to step 400. Before issue 7, F's kernel did not move and G ended 5 dB
below its input; before issue 11, the preset ended 1.75 dB *below* its input on A+n.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from semtune.train.config import load_train_config
from semtune.train.loop import TrainResult, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_run(sample_train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """400 steps of the shipped preset on the bundled NFFA images (about 2 minutes)."""
    cfg = load_train_config(
        "cpu",
        [
            f"data.clean_dir={sample_train_dir}",
            "schedule.steps=400",
            "schedule.eval_every=200",
            "schedule.time_budget_s=0",
        ],
    )
    return train(cfg, tmp_path_factory.mktemp("short") / "run", printer=None)


def test_a_short_cpu_preset_run_moves_the_held_out_scores_the_right_way(
    short_run: TrainResult,
) -> None:
    m = pd.read_csv(short_run.out_dir / "metrics.csv")
    first, last = m.iloc[0], m.iloc[-1]
    assert list(m["step"]) == [200, 400]
    # F starts at the data's blur (set A+n: a Gaussian of 1 px) and holds it
    assert 0.75 < first["f_kernel_sigma"] < 1.25
    assert abs(last["f_kernel_sigma"] - first["f_kernel_sigma"]) < 0.15
    # better than its input in both metrics from the first evaluation, and PSNR is climbing
    for row in (first, last):
        assert row["ssim"] > row["blurry_ssim"] and row["psnr"] > row["blurry_psnr"]
    assert last["psnr"] > first["psnr"]


# A loss on noise-free set A larger than this must be flagged (the report's own limit for its
# noise-free self-check is -0.5 dB; the self-check and set A draw different crops and blur with
# F's learned kernel or set A's own, hence the margin).
_MARGIN_DB = 0.65


def test_report_flags_a_poor_fit_where_the_model_lowers_psnr_on_both_collections(
    short_run: TrainResult, sample_test_dir: Path, repo_root: Path, tmp_path: Path
) -> None:
    """The NFFA-trained model, reported on held-out NFFA images and on another instrument's:
    an image is flagged a poor fit wherever the model lowers the PSNR of set A made from that
    image (measured with ground truth by semtune.scoring), and no held-out NFFA image on which
    it clearly gains is. (This short run is weaker than the shipped preset, which the report
    flags a poor fit on two of these six NFFA images, by its noise-free self-check at -0.51 and
    -0.57 dB: docs/restoration.md.)"""
    from semtune.enhance import main
    from semtune.evaluate import generator_method
    from semtune.scoring import load_scoring_data, score

    method = generator_method(short_run.generator, "cpu")
    nasa = repo_root / "data" / "sample" / "nasa"
    for folder in (sample_test_dir, nasa):
        out = tmp_path / folder.name
        code = main([str(folder), "--model", str(short_run.generator), "-o", str(out), "--report"])
        assert code == 0
        report = pd.read_csv(out / "report" / "report.csv").fillna("")
        for _, row in report.iterrows():
            single = tmp_path / "one" / folder.name / str(row["image"])
            single.parent.mkdir(parents=True, exist_ok=True)
            single.write_bytes((folder / str(row["image"])).read_bytes())
            data = load_scoring_data([single.parent], ["A"], crop_size=128, n_crops=8, seed=0)
            table, _ = score(data, {"model": method})
            gain = float(
                table[table.method == "model"].psnr.iloc[0]
                - table[table.method == "blurry"].psnr.iloc[0]
            )
            single.unlink()
            flagged = "poor fit: on crops" in str(row["flags"])
            if gain < -_MARGIN_DB:  # it lowers PSNR there: the report must say so
                assert flagged, (row["image"], gain)
            if folder == sample_test_dir and gain > _MARGIN_DB:
                # images like its training data where it clearly helps: no false alarm
                assert not flagged, (row["image"], gain)
