"""Tests for semtune.data.datasets: crops and paired synthetic test sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semtune.data.datasets import PairedSet, make_paired_set, random_crops, tiled_crops
from semtune.data.degrade import DegradeConfig, degrade
from semtune.io import read_image


def _numbered(shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Images whose pixels all hold distinct values, so a crop reveals where it came from."""
    images, start = [], 0
    for h, w in shapes:
        images.append(torch.arange(start, start + h * w, dtype=torch.float64).view(1, h, w))
        start += h * w
    return images


def _locate(crop: torch.Tensor, images: list[torch.Tensor]) -> tuple[int, int, int]:
    """(image index, top, left) of a crop cut from one of the numbered images."""
    first = crop[0, 0, 0]
    for index, image in enumerate(images):
        hits = (image[0] == first).nonzero()
        if len(hits):
            top, left = (int(v) for v in hits[0])
            return index, top, left
    raise AssertionError("crop not found")


def test_random_crops_cut_each_crop_from_the_images_in_turn() -> None:
    images = _numbered([(30, 40), (25, 25), (40, 33)])
    crops = random_crops(images, 16, 7, seed=0)
    assert crops.shape == (7, 1, 16, 16) and crops.dtype == torch.float64
    for j, crop in enumerate(crops):
        index, top, left = _locate(crop, images)
        assert index == j % 3
        torch.testing.assert_close(crop, images[index][:, top : top + 16, left : left + 16])


def test_random_crops_are_deterministic_for_a_seed() -> None:
    images = _numbered([(60, 70), (50, 50)])
    first = random_crops(images, 20, 6, seed=4)
    torch.testing.assert_close(random_crops(images, 20, 6, seed=4), first, rtol=0, atol=0)
    assert not torch.equal(random_crops(images, 20, 6, seed=5), first)


def test_random_crops_reach_every_position_including_the_far_edges() -> None:
    images = _numbered([(18, 18)])
    positions = {_locate(c, images)[1:] for c in random_crops(images, 16, 200, seed=0)}
    assert positions == {(t, left) for t in range(3) for left in range(3)}


def test_random_crops_name_the_image_that_is_too_small() -> None:
    images = _numbered([(30, 30), (30, 30), (30, 12)])
    with pytest.raises(ValueError, match="image 2"):
        random_crops(images, 16, 4, seed=0)


def test_random_crops_refuse_images_that_are_not_single_channel() -> None:
    with pytest.raises(ValueError, match=r"image 0 must be a \(1, H, W\)"):
        random_crops([torch.rand(3, 20, 20)], 8, 1, seed=0)


def test_tiled_crops_cover_the_grid_row_major_and_drop_the_remainder() -> None:
    images = _numbered([(35, 50), (20, 20)])
    tiles = tiled_crops(images, 16)
    # 35x50 -> 2 x 3 tiles (rows 0, 16; cols 0, 16, 32); 20x20 -> 1 tile
    assert tiles.shape == (7, 1, 16, 16)
    expected = [(0, t, left) for t in (0, 16) for left in (0, 16, 32)] + [(1, 0, 0)]
    assert [_locate(t, images) for t in tiles] == expected
    arr = images[0].numpy()
    np.testing.assert_array_equal(tiles[4].numpy(), arr[:, 16:32, 16:32])


def test_tiled_crops_with_a_smaller_stride_overlap() -> None:
    images = _numbered([(24, 24)])
    tiles = tiled_crops(images, 16, stride=4)
    assert [_locate(t, images)[1:] for t in tiles] == [(t, s) for t in (0, 4, 8) for s in (0, 4, 8)]


def test_tiled_crops_name_the_image_that_is_too_small() -> None:
    with pytest.raises(ValueError, match="image 1"):
        tiled_crops(_numbered([(30, 30), (10, 30)]), 16)


def test_paired_set_pairs_the_clean_crops_with_their_degradation() -> None:
    clean = random_crops(_unit_images(), 32, 5, seed=0)
    paired = make_paired_set(clean, "C", seed=3)
    expected = degrade(clean, "C", seed=3)
    assert isinstance(paired, PairedSet) and paired.set_name == "C" and len(paired) == 5
    assert paired.clean is clean
    torch.testing.assert_close(paired.blurred, expected.blurred, rtol=0, atol=0)
    torch.testing.assert_close(paired.psfs, expected.psfs, rtol=0, atol=0)
    pair = paired[2]
    torch.testing.assert_close(pair[0], clean[2])
    torch.testing.assert_close(pair[1], expected.blurred[2])


def test_paired_set_is_deterministic_and_its_prefix_is_a_smaller_set() -> None:
    clean = random_crops(_unit_images(), 32, 6, seed=0)
    config = DegradeConfig(hybrid="random")
    whole = make_paired_set(clean, "C", seed=9, config=config)
    again = make_paired_set(clean, "C", seed=9, config=config)
    prefix = make_paired_set(clean[:3], "C", seed=9, config=config)
    torch.testing.assert_close(again.blurred, whole.blurred, rtol=0, atol=0)
    torch.testing.assert_close(prefix.blurred, whole.blurred[:3])


def test_paired_set_refuses_mismatched_tensors() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        PairedSet("A", torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 9), torch.zeros(2, 1, 7, 7))
    with pytest.raises(ValueError, match="unknown set"):
        PairedSet("Z", torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 7, 7))


def test_paired_set_from_tiles_of_a_real_sem_image(sample_test_dir: Path) -> None:
    image = read_image(sorted(sample_test_dir.glob("*.jpg"))[0]).data  # bar cropped
    tiles = tiled_crops([image], 256)
    rows, cols = image.shape[-2] // 256, image.shape[-1] // 256
    assert tiles.shape == (rows * cols, 1, 256, 256) and rows * cols >= 4
    paired = make_paired_set(tiles, "B", seed=0)
    assert paired.blurred.min() >= 0 and paired.blurred.max() <= 1
    # blur and fog both change the image, but it stays recognisably the same
    diff = (paired.blurred - tiles).abs().mean(dim=(1, 2, 3))
    assert torch.all(diff > 1e-3) and torch.all(diff < 0.2)


def _unit_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(1, 48, 64, generator=generator) for _ in range(3)]
