"""What is measured on the training folders: the blur between them (from their spectra) and
their noise, against blurs and noise made by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semtune.data.degrade import gaussian_blur
from semtune.data.estimate import estimate_degradation, noise_levels, spectral_blur
from semtune.io import read_folder


@pytest.fixture(scope="module")
def images(sample_train_dir: Path) -> list[torch.Tensor]:
    return [im.data[:, :384, :384] for im in read_folder(sample_train_dir).images[:10]]


@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.5])
def test_spectral_blur_recovers_a_known_gaussian(images: list[torch.Tensor], sigma: float) -> None:
    blurred = [gaussian_blur(x[None], 2 * round(4 * sigma) + 1, sigma)[0] for x in images]
    assert spectral_blur(blurred, images) == pytest.approx(sigma, abs=0.12)


def test_spectral_blur_sees_through_noise_where_edge_widths_do_not(
    images: list[torch.Tensor],
) -> None:
    g = torch.Generator().manual_seed(0)
    noisy = [
        (gaussian_blur(x[None], 7, 1.0)[0] + 0.015 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        for x in images
    ]
    est = estimate_degradation(noisy, images)
    assert est.sigma == pytest.approx(1.0, abs=0.2)  # from the spectra
    assert est.sigma_blurred < 1.0  # the edge widths alone read the noise as sharpness


def test_no_blur_reads_zero_and_tiny_images_cannot_be_compared(
    images: list[torch.Tensor],
) -> None:
    assert spectral_blur(images, images) == pytest.approx(0.0, abs=1e-6)
    tiny = [x[:, :40, :40] for x in images]
    assert spectral_blur(tiny, tiny) is None


def test_noise_levels_are_one_per_image(images: list[torch.Tensor]) -> None:
    g = torch.Generator().manual_seed(1)
    flat = [
        torch.full((1, 128, 128), 0.5) + s * torch.randn(1, 128, 128, generator=g)
        for s in (0.005, 0.02)
    ]
    levels = noise_levels(flat)
    assert levels.shape == (2,)
    assert levels.tolist() == pytest.approx([0.005, 0.02], rel=0.08)


def test_noise_free_blurred_images_are_warned_about_and_real_ones_are_not(
    images: list[torch.Tensor],
) -> None:
    """Set A's blur leaves real micrographs almost noise-free; the real images themselves, and
    set A+n made from them, keep noise a model must learn to live with."""
    from semtune.data.degrade import degrade
    from semtune.data.estimate import NOISE_FREE_BELOW, noise_free_warning

    batch = torch.stack(images)
    set_a = list(degrade(batch, "A", seed=0).blurred)
    set_an = list(degrade(batch, "A+n", seed=0).blurred)
    assert float(noise_levels(set_a).median()) < NOISE_FREE_BELOW
    warning = noise_free_warning(noise_levels(set_a))
    assert warning is not None and "almost no pixel noise" in warning
    assert noise_free_warning(noise_levels(images)) is None
    assert noise_free_warning(noise_levels(set_an)) is None
