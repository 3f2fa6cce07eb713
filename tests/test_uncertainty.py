"""Confidence intervals over validation images (semtune.uncertainty)."""

from __future__ import annotations

import math

import pytest
import torch

from semtune.uncertainty import bootstrap_ci, per_group_means


def test_per_group_means_average_each_images_crops() -> None:
    values = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    assert per_group_means(values, [0, 0, 1, 1, 1]).tolist() == [2.0, 20.0]
    with pytest.raises(ValueError, match="5 values but 2 group labels"):
        per_group_means(values, [0, 1])


def test_the_interval_resamples_images_not_crops() -> None:
    # two images, 50 crops each, one scoring 0 and one 1: the evidence is two images, so the
    # interval spans both (resampling the 100 crops would give about 0.5 +- 0.1)
    values = torch.cat([torch.zeros(50), torch.ones(50)])
    ci = bootstrap_ci({"ssim": values}, [0] * 50 + [1] * 50)
    assert ci["val_images"] == 2
    assert ci["ssim_ci_low"] == 0.0 and ci["ssim_ci_high"] == 1.0


def test_the_interval_holds_the_mean_and_is_reproducible() -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(60, generator=gen)
    groups = [j % 6 for j in range(60)]  # round robin, as random_crops takes them
    a, b = bootstrap_ci({"psnr": values}, groups), bootstrap_ci({"psnr": values}, groups)
    assert a == b
    mean = float(per_group_means(values, groups).mean())
    assert a["psnr_ci_low"] < mean < a["psnr_ci_high"]


def test_one_image_has_no_interval() -> None:
    ci = bootstrap_ci({"ssim": torch.rand(8)}, [0] * 8)
    assert ci["val_images"] == 1
    assert math.isnan(ci["ssim_ci_low"]) and math.isnan(ci["ssim_ci_high"])
