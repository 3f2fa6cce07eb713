"""The pictures a study logs: bare and labelled grids of blurred | restored | clean samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semtune.grids import _row_scores, image_grid, labelled_grid
from semtune.metrics import psnr


def test_image_grid_of_a_hand_computed_sample() -> None:
    samples = torch.tensor([0.0, 0.5, 1.0]).reshape(1, 1, 1, 3)  # blurred | restored | clean
    np.testing.assert_array_equal(image_grid(samples, gap=1), [[0, 255, 128, 255, 255]])


def test_image_grid_puts_panels_side_by_side_and_samples_in_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 5, 12), dtype=np.float32)
    grid = image_grid(torch.from_numpy(x), gap=2)
    as8 = np.rint(x * 255).astype(np.uint8)
    white_col = np.full((5, 2), 255, np.uint8)
    rows = [
        np.hstack([as8[i, 0, :, 0:4], white_col, as8[i, 0, :, 4:8], white_col, as8[i, 0, :, 8:12]])
        for i in range(3)
    ]
    white_row = np.full((2, 16), 255, np.uint8)
    expected = np.vstack([rows[0], white_row, rows[1], white_row, rows[2]])
    np.testing.assert_array_equal(grid, expected)


def test_image_grid_rejects_a_batch_that_is_not_three_panels() -> None:
    with pytest.raises(ValueError, match=r"\(n, 1, H, 3W\), got \(2, 1, 4, 4\)"):
        image_grid(torch.zeros(2, 1, 4, 4))


def _samples(n: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 1, side, side, generator=g)
    blurred = torch.nn.functional.avg_pool2d(clean, 3, 1, 1)
    restored = (clean + blurred) / 2
    return torch.cat([blurred, restored, clean], dim=-1)


def test_labelled_grid_magnifies_small_crops_to_256_px_by_whole_pixels() -> None:
    samples = _samples(2, 64)  # 64 px crops: 4x
    grid = labelled_grid(samples, gap=4)
    line, zoom, side = 22, 4, 256
    assert grid.shape == (line + 2 * (line + side) + 4, 3 * side + 2 * 4)
    as8 = np.rint(samples[:, 0].numpy() * 255).astype(np.uint8)
    for i in range(2):
        top = line + i * (line + side + 4) + line
        for j in range(3):
            panel = grid[top : top + side, j * (side + 4) : j * (side + 4) + side]
            expected = np.kron(as8[i, :, j * 64 : (j + 1) * 64], np.ones((zoom, zoom), np.uint8))
            np.testing.assert_array_equal(panel, expected)


def test_labelled_grid_keeps_large_crops_at_their_size_and_writes_the_labels() -> None:
    samples = _samples(1, 300)
    grid = labelled_grid(samples, title="trial t0, step 6")
    assert grid.shape == (2 * 22 + 22 + 300, 3 * 300 + 2 * 4)
    # the title, the panel names and the row's scores are drawn (dark text on white bands)
    for band in (grid[:22], grid[22:44], grid[44:66]):
        assert (band < 128).any()
    assert (grid[:66, :] == 255).mean() > 0.8


def test_row_scores_compare_blurred_and_restored_with_clean() -> None:
    samples = _samples(3, 32, seed=1)
    w = 32
    scores = _row_scores(samples)
    want_b = psnr(samples[..., :w], samples[..., 2 * w :], reduction="none")
    want_r = psnr(samples[..., w : 2 * w], samples[..., 2 * w :], reduction="none")
    for i, (s_b, s_r, p_b, p_r) in enumerate(scores):
        assert p_b == pytest.approx(float(want_b[i]))
        assert p_r == pytest.approx(float(want_r[i]))
        assert p_r > p_b and s_r > s_b  # restored is halfway to clean


def test_labelled_grid_rejects_a_batch_that_is_not_three_panels() -> None:
    with pytest.raises(ValueError, match=r"\(n, 1, H, 3W\)"):
        labelled_grid(torch.zeros(2, 1, 4, 4))
