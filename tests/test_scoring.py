"""semtune.scoring directly: the crops every method is scored on, and the table it makes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from semtune.metric_names import IMAGE_METRICS
from semtune.scoring import COLUMNS, load_scoring_data, score


def test_every_method_is_scored_on_the_same_crops_and_the_input_is_a_row(
    sample_test_dir: Path,
) -> None:
    data = load_scoring_data([sample_test_dir], ["A", "A+n"], crop_size=64, n_crops=6, seed=3)
    again = load_scoring_data([sample_test_dir], ["A", "A+n"], crop_size=64, n_crops=6, seed=3)
    assert data.crops.shape == (6, 1, 64, 64) and len(data.files) == 6
    for name in ("A", "A+n"):  # deterministic for a seed: every method sees the same inputs
        assert (data.sets[name].blurred == again.sets[name].blurred).all()
    table, examples = score(
        data,
        {"identity": lambda x, _: x, "truth": lambda _, paired: paired.clean},
    )
    assert list(table.columns) == COLUMNS == ["set", "method", *IMAGE_METRICS]
    rows = {(r.set, r.method): r for r in table.itertuples()}
    for name in ("A", "A+n"):
        blurry, identity, truth = (rows[name, m] for m in ("blurry", "identity", "truth"))
        # restoring nothing scores exactly what the input scores
        assert identity.ssim == pytest.approx(blurry.ssim)
        assert identity.psnr == pytest.approx(blurry.psnr)
        # the clean crops themselves: a perfect SSIM, and the ground-truth row's sharpness
        assert truth.ssim == pytest.approx(1.0, abs=1e-6)
        gt = rows[name, "ground_truth"]
        assert math.isnan(gt.ssim) and truth.ag == pytest.approx(gt.ag)
        assert set(examples[name]) == {"ground_truth", "blurry", "identity", "truth"}
    # blur lowers the average gradient; the noise of A+n raises it again (why AG rewards grain)
    assert rows["A", "blurry"].ag < rows["A", "ground_truth"].ag < rows["A+n", "blurry"].ag
    # noise makes the noisy set's input score lower than the noise-free one's
    assert rows["A+n", "blurry"].psnr < rows["A", "blurry"].psnr
