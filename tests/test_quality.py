"""No-reference measures, each checked against a hand-made case with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from semtune.data.degrade import gaussian_blur
from semtune.quality import (
    blur_sigma,
    compare,
    flat_mask,
    flat_texture,
    line_noise_sigma,
    noise_sigma,
    overshoot,
)


def _smooth(seed: int = 0, size: int = 256) -> torch.Tensor:
    """Slowly varying content in [0.2, 0.8]: what noise estimators should see through."""
    g = torch.Generator().manual_seed(seed)
    x = gaussian_blur(torch.rand(2, 1, size, size, generator=g), 31, 8.0)
    x = (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), True))
    return 0.2 + 0.6 * x


def _disks(size: int = 256) -> torch.Tensor:
    """Sharp-edged disks on a background: strong edges of known (zero) blur."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.full((size, size), 0.3)
    for cy, cx, r in ((60, 70, 30), (170, 90, 40), (110, 190, 35), (200, 200, 25)):
        x[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.8
    return x[None, None]


@pytest.mark.parametrize("sigma", [0.003, 0.01, 0.03])
def test_noise_sigma_finds_the_noise_added_to_smooth_content(sigma: float) -> None:
    g = torch.Generator().manual_seed(1)
    clean = _smooth()
    x = clean + sigma * torch.randn(2, 1, 256, 256, generator=g)
    est = noise_sigma(x)
    assert est.shape == (2,)
    realised = (x - clean).flatten(1).std(1)  # the noise actually drawn
    assert torch.allclose(est, realised, rtol=0.06)


def test_noise_sigma_is_not_fooled_by_edges() -> None:
    # Immerkaer's mask on all pixels reads strong edges as noise; on the low-gradient ones not.
    g = torch.Generator().manual_seed(2)
    x = _disks() + 0.005 * torch.randn(1, 1, 256, 256, generator=g)
    mask = torch.tensor([[1.0, -2, 1], [-2, 4, -2], [1, -2, 1]])[None, None]
    plain = torch.nn.functional.conv2d(x, mask).abs().mean() * math.sqrt(math.pi / 2) / 6
    assert float(plain) > 0.0065  # biased up by the disks' rims
    assert float(noise_sigma(x)[0]) == pytest.approx(0.005, rel=0.1)


def test_line_noise_sigma_reads_row_offsets_only() -> None:
    g = torch.Generator().manual_seed(3)
    base = _smooth() + 0.005 * torch.randn(2, 1, 256, 256, generator=g)
    assert float(line_noise_sigma(base).max()) < 0.002
    rows = 0.01 * torch.randn(2, 1, 256, 1, generator=g)
    got = line_noise_sigma(base + rows)
    assert torch.allclose(got, torch.full((2,), 0.01), rtol=0.25)
    # row offsets are invisible to the pixel-noise estimate (its mask's rows sum to zero)
    assert torch.allclose(noise_sigma(base + rows), noise_sigma(base), rtol=0.02)


def test_flat_mask_keeps_the_requested_share_of_the_flattest_pixels() -> None:
    x = _disks()
    mask = flat_mask(x, 0.3)
    assert float(mask.float().mean()) == pytest.approx(0.3, abs=0.01)
    # no pixel within 2 px of a disk's rim is "flat"
    edges = (
        torch.nn.functional.max_pool2d(x, 5, 1, 2) - -torch.nn.functional.max_pool2d(-x, 5, 1, 2)
    ) > 0.1
    assert not bool((mask & edges).any())


def test_flat_texture_ratio_reads_added_grain_and_is_one_for_the_identity() -> None:
    g = torch.Generator().manual_seed(4)
    x = _smooth() + 0.01 * torch.randn(2, 1, 256, 256, generator=g)
    same = compare(x, x)
    for key in ("flat_texture_ratio", "edge_ratio"):
        assert torch.allclose(same[key], torch.ones(2))
    assert float(same["overshoot"].max()) == 0 and float(same["lowfreq_error"].max()) == 0
    # on flat content, white noise of std s reads s * |h| for the band-pass kernel h
    delta = torch.zeros(1, 1, 65, 65)
    delta[..., 32, 32] = 1.0
    h = gaussian_blur(delta, 5, 0.7) - gaussian_blur(delta, 19, 3.0)
    flat = torch.full((2, 1, 256, 256), 0.5) + 0.01 * torch.randn(2, 1, 256, 256, generator=g)
    expected = 0.01 * float(h.pow(2).sum().sqrt())
    got = flat_texture(flat, torch.ones_like(flat, dtype=torch.bool))
    assert torch.allclose(got, torch.full((2,), expected), rtol=0.05)


def test_overshoot_sees_an_unsharp_mask_halo_and_not_a_blur() -> None:
    x = _disks()
    blurred = gaussian_blur(x, 7, 1.0)
    assert float(overshoot(x, blurred)[0]) < 1e-4  # a blur stays inside the local range
    sharpened = (x + 1.5 * (x - gaussian_blur(x, 9, 1.5))).clamp(0, 1)
    assert float(overshoot(x, sharpened)[0]) > 0.02


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_blur_sigma_measures_a_known_gaussian_blur(sigma: float) -> None:
    x = gaussian_blur(_disks(), 2 * math.ceil(4 * sigma) + 1, sigma)
    g = torch.Generator().manual_seed(5)
    noisy = x + 0.005 * torch.randn(x.shape, generator=g)
    assert blur_sigma(noisy[0, 0].double().numpy()) == pytest.approx(sigma, abs=0.25)


def test_blur_sigma_says_unknown_without_edges() -> None:
    assert math.isnan(blur_sigma(np.full((64, 64), 0.5)))
    g = np.random.default_rng(0)
    smooth = gaussian_blur(torch.from_numpy(g.random((1, 1, 64, 64))).float(), 31, 10.0)
    assert math.isnan(blur_sigma(np.full((64, 64), 0.3) + 0 * smooth[0, 0].numpy()))


@pytest.mark.parametrize(
    "bad", [torch.rand(1, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 1, 8, 8)]
)
def test_inputs_are_checked_with_the_shape_received(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="got|Got"):
        noise_sigma(bad)
