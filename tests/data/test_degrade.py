"""Tests for semtune.data.degrade: kernels and blurs against numpy/scipy, fog, sets, seeding."""

from __future__ import annotations

import dataclasses
import math

import kornia
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
import torch

import semtune.data.degrade as degrade_module
from semtune.data.degrade import (
    SETS,
    DegradeConfig,
    Degraded,
    defocus_blur,
    degrade,
    disk_kernel,
    fog,
    gaussian_blur,
    gaussian_kernel,
    image_generator,
    motion_blur,
    motion_kernel,
    set_psf,
)

NO_FOG = DegradeConfig(fog_depth=0.0)


def _images(batch: int = 3, height: int = 40, width: int = 52, seed: int = 0) -> torch.Tensor:
    """Smooth-plus-noise images in [0, 1], float32, shape (batch, 1, height, width)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((batch, 1, height, width))
    smooth = ndi.gaussian_filter(noise, (0, 0, 3, 3))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return torch.from_numpy(0.7 * smooth + 0.3 * noise).float()


def _numpy_gaussian(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    return g / g.sum()


def _scipy_blur(x: torch.Tensor, kernel: np.ndarray) -> np.ndarray:
    """Reference: true convolution with scipy's 'mirror' border (edge pixel not repeated)."""
    return np.stack([ndi.convolve(img[0].double().numpy(), kernel, mode="mirror") for img in x])[
        :, None
    ]


# Kernels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "sigma"), [(7, 1.0), (5, 2.0), (9, 0.7)])
def test_gaussian_kernel_matches_the_normalised_formula_of_eq_17(size: int, sigma: float) -> None:
    kernel = gaussian_kernel(size, sigma)
    assert kernel.shape == (size, size)
    np.testing.assert_allclose(kernel.numpy(), _numpy_gaussian(size, sigma), atol=1e-7)


def test_disk_kernel_weighs_equally_the_pixels_within_the_radius() -> None:
    kernel = disk_kernel(5).numpy()
    assert kernel.shape == (11, 11)
    r = np.arange(-5, 6)
    inside = r[:, None] ** 2 + r[None, :] ** 2 <= 25
    # 81 lattice points within radius 5 (Gauss circle problem), against pi * 25 = 78.5.
    assert inside.sum() == 81
    np.testing.assert_allclose(kernel[inside], 1 / 81, rtol=1e-6)
    assert np.all(kernel[~inside] == 0)
    assert math.isclose(kernel.sum(), 1.0, rel_tol=1e-6)


def test_disk_kernel_with_fractional_radius_keeps_pixels_whose_centre_is_inside() -> None:
    kernel = disk_kernel(2.5).numpy()
    # centres within 2.5: |x|,|y| <= 2 except the four corners (2, 2) at distance 2.83.
    assert kernel.shape == (5, 5)
    assert np.count_nonzero(kernel) == 21
    assert kernel[0, 0] == 0 and kernel[0, 2] > 0


def test_motion_kernel_at_angle_0_is_a_centred_row_of_one_over_length() -> None:
    kernel = motion_kernel(10, 0.0).numpy()
    assert kernel.shape == (11, 11)
    # an even length centred on a pixel covers half of each end pixel
    expected_row = np.array([0.5] + [1.0] * 9 + [0.5]) / 10
    np.testing.assert_allclose(kernel[5], expected_row, atol=1e-7)
    assert np.all(np.delete(kernel, 5, axis=0) == 0)

    odd = motion_kernel(5, 0.0).numpy()
    np.testing.assert_allclose(odd, np.pad(np.full((1, 5), 0.2), ((2, 2), (0, 0))), atol=1e-7)


def test_motion_kernel_at_angle_90_is_a_column() -> None:
    kernel = motion_kernel(7, 90.0).numpy()
    np.testing.assert_allclose(kernel[:, 3], np.full(7, 1 / 7), atol=1e-6)
    np.testing.assert_allclose(np.delete(kernel, 3, axis=1), 0.0, atol=1e-6)


@pytest.mark.parametrize("angle", [30.0, 45.0, 135.0])
def test_motion_kernel_of_odd_length_follows_kornia_rotation_convention(angle: float) -> None:
    expected = kornia.filters.get_motion_kernel2d(7, angle, 0.0, mode="bilinear")[0]
    np.testing.assert_allclose(motion_kernel(7, angle).numpy(), expected.numpy(), atol=1e-6)


def test_sequential_hybrid_psf_is_the_full_convolution_of_the_three_kernels() -> None:
    (psf,) = set_psf("C", DegradeConfig(hybrid="sequence"))
    expected = scipy.signal.convolve2d(
        scipy.signal.convolve2d(_numpy_gaussian(7, 1.0), motion_kernel(10).double().numpy()),
        disk_kernel(5).double().numpy(),
    )
    assert psf.shape == (27, 27)
    np.testing.assert_allclose(psf.numpy(), expected, atol=1e-7)


# Blurs ---------------------------------------------------------------------------------------


def test_gaussian_blur_matches_scipy_convolution_with_mirror_borders() -> None:
    x = _images()
    expected = _scipy_blur(x, _numpy_gaussian(7, 1.0))
    np.testing.assert_allclose(gaussian_blur(x).numpy(), expected, atol=1e-6)


def test_reflect_border_is_scipy_mirror_not_scipy_reflect() -> None:
    x = _images()
    kernel = _numpy_gaussian(7, 1.0)
    ours = gaussian_blur(x).numpy()[:, 0]
    scipy_reflect = np.stack([ndi.convolve(img[0].numpy(), kernel, mode="reflect") for img in x])
    # scipy's 'reflect' repeats the edge pixel: it differs at the border, agrees inside.
    assert np.abs(ours - scipy_reflect)[:, 0, :].max() > 1e-3
    np.testing.assert_allclose(ours[:, 3:-3, 3:-3], scipy_reflect[:, 3:-3, 3:-3], atol=1e-6)


# (10, 0): separable passes; (10, 30): FFT; (5, 30) and (4, 120): direct 2-D convolution.
@pytest.mark.parametrize(("length", "angle"), [(10, 0.0), (10, 30.0), (5, 30.0), (4, 120.0)])
def test_motion_blur_matches_scipy_convolution(length: int, angle: float) -> None:
    x = _images()
    expected = _scipy_blur(x, motion_kernel(length, angle).double().numpy())
    np.testing.assert_allclose(motion_blur(x, length, angle).numpy(), expected, atol=1e-6)


def test_defocus_blur_matches_scipy_convolution() -> None:
    x = _images()
    expected = _scipy_blur(x, disk_kernel(5).double().numpy())
    np.testing.assert_allclose(defocus_blur(x, 5).numpy(), expected, atol=1e-6)


def test_large_psf_by_fft_matches_scipy_convolution() -> None:
    x = _images(height=48, width=61)
    out = degrade(x, "C", seed=0, config=dataclasses.replace(NO_FOG, hybrid="sequence"))
    expected = _scipy_blur(x, out.psfs[0, 0].double().numpy())
    np.testing.assert_allclose(out.blurred.numpy(), expected, atol=1e-5)


def test_blur_of_an_image_thinner_than_the_psf_radius_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        defocus_blur(torch.rand(1, 1, 5, 40))


def test_blurs_refuse_tensors_that_are_not_single_channel_batches() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        gaussian_blur(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        degrade(torch.rand(20, 20), "A", seed=0)


# Fog -----------------------------------------------------------------------------------------


def test_fog_with_a_constant_beta_is_the_scattering_formula_of_eq_18() -> None:
    x = _images()
    config = DegradeConfig(fog_beta=(2.0, 2.0), fog_depth=0.3, fog_airlight=0.7)
    t = math.exp(-2.0 * 0.3)
    out = fog(x, generator=torch.Generator().manual_seed(0), config=config)
    np.testing.assert_allclose(out.numpy(), x.numpy() * t + 0.7 * (1 - t), atol=1e-6)


def test_fog_transmission_varies_smoothly_within_the_beta_range() -> None:
    # Fogging a black image with airlight 1 reveals 1 - t.
    config = DegradeConfig(fog_airlight=1.0, fog_depth=0.5, fog_beta=(1.0, 3.0), fog_scale=16)
    out = fog(torch.zeros(2, 1, 64, 64), generator=torch.Generator().manual_seed(3), config=config)
    t = 1.0 - out.numpy()
    assert t.min() >= math.exp(-3.0 * 0.5) - 1e-6 and t.max() <= math.exp(-1.0 * 0.5) + 1e-6
    assert t.std() > 0.02
    # smooth: neighbouring pixels differ by a small part of the range
    assert np.abs(np.diff(t, axis=-1)).max() < 0.1 * (t.max() - t.min())


def test_fog_field_is_the_bicubic_interpolation_of_uniform_nodes_fog_scale_apart() -> None:
    config = DegradeConfig(fog_airlight=1.0, fog_depth=0.4, fog_beta=(1.0, 2.0), fog_scale=8)
    out = fog(torch.zeros(1, 1, 20, 30), generator=torch.Generator().manual_seed(4), config=config)
    # nodes at 0, 8, 16, 24 px down and 0, 8, ..., 32 px across
    nodes = torch.rand(1, 1, 4, 5, generator=torch.Generator().manual_seed(4))
    u = torch.nn.functional.interpolate(nodes, size=(25, 33), mode="bicubic", align_corners=True)
    beta = 1.0 + u[..., :20, :30].clamp(0, 1)
    torch.testing.assert_close(out, 1 - torch.exp(-beta * 0.4), atol=1e-6, rtol=0)


def test_fog_pulls_every_pixel_towards_the_airlight_and_lowers_contrast() -> None:
    x = _images()
    config = DegradeConfig(fog_depth=0.2, fog_airlight=0.6)
    out = fog(x, generator=torch.Generator().manual_seed(1), config=config)
    assert torch.all((out - 0.6).abs() <= (x - 0.6).abs() + 1e-6)
    assert torch.all(out.std(dim=(1, 2, 3)) < x.std(dim=(1, 2, 3)))


def test_fog_of_zero_depth_leaves_images_unchanged() -> None:
    x = _images()
    out = fog(x, generator=torch.Generator().manual_seed(0), config=NO_FOG)
    torch.testing.assert_close(out, x)


def test_fog_takes_one_generator_per_image() -> None:
    x = _images()
    gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    alone = fog(x[1:2], generator=torch.Generator().manual_seed(6), config=DegradeConfig())
    torch.testing.assert_close(fog(x, generator=gens, config=DegradeConfig())[1:2], alone)
    with pytest.raises(ValueError, match="one per image"):
        fog(x, generator=gens[:2], config=DegradeConfig())


# Sets ----------------------------------------------------------------------------------------


def test_set_a_is_the_gaussian_blur_and_draws_nothing() -> None:
    x = _images()
    out = degrade(x, "A", seed=0)
    torch.testing.assert_close(out.blurred, gaussian_blur(x))
    torch.testing.assert_close(degrade(x, "A", seed=123).blurred, out.blurred)
    assert out.psfs.shape == (3, 1, 7, 7)
    torch.testing.assert_close(out.psfs[1, 0], gaussian_kernel(7, 1.0))


@pytest.mark.parametrize("set_name", ["B", "C"])
def test_same_seed_gives_same_set_and_another_seed_another(set_name: str) -> None:
    x = _images()
    first = degrade(x, set_name, seed=7)
    again = degrade(x, set_name, seed=7)
    other = degrade(x, set_name, seed=8)
    torch.testing.assert_close(first.blurred, again.blurred, rtol=0, atol=0)
    torch.testing.assert_close(first.psfs, again.psfs, rtol=0, atol=0)
    assert not torch.equal(first.blurred, other.blurred)


@pytest.mark.parametrize("hybrid", ["sequence", "random"])
def test_an_image_degrades_the_same_whatever_else_is_in_the_batch(hybrid: str) -> None:
    x = _images(batch=5)
    config = DegradeConfig(hybrid=hybrid)  # type: ignore[arg-type]
    whole = degrade(x, "C", seed=11, config=config)
    part = degrade(x[2:4], "C", seed=11, config=config, index_offset=2)
    torch.testing.assert_close(part.blurred, whole.blurred[2:4])
    torch.testing.assert_close(part.psfs, whole.psfs[2:4])


@pytest.mark.parametrize("set_name", ["A", "C"])
def test_processing_in_chunks_changes_nothing(
    set_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _images(batch=7)
    whole = degrade(x, set_name, seed=5)
    monkeypatch.setattr(degrade_module, "_CHUNK_PIXELS", 2 * 40 * 52)  # chunks of 2 images
    chunked = degrade(x, set_name, seed=5)
    torch.testing.assert_close(chunked.blurred, whole.blurred, rtol=0, atol=0)
    torch.testing.assert_close(chunked.psfs, whole.psfs, rtol=0, atol=0)


@pytest.mark.parametrize("set_name", SETS)
def test_degrade_and_fog_leave_their_input_untouched(set_name: str) -> None:
    x = _images()
    before = x.clone()
    degrade(x, set_name, seed=0)
    fog(x, generator=torch.Generator().manual_seed(0), config=DegradeConfig(fog_depth=0.5))
    torch.testing.assert_close(x, before, rtol=0, atol=0)


@pytest.mark.parametrize("set_name", SETS)
def test_every_set_stays_in_the_unit_range(set_name: str) -> None:
    x = torch.cat([_images(batch=2), torch.zeros(1, 1, 40, 52), torch.ones(1, 1, 40, 52)])
    config = DegradeConfig(fog_depth=1.0, fog_airlight=1.0)
    out = degrade(x, set_name, seed=0, config=config)
    assert isinstance(out, Degraded)
    assert out.blurred.shape == x.shape and out.blurred.dtype == x.dtype
    assert out.blurred.min() >= 0.0 and out.blurred.max() <= 1.0


def test_fogged_sets_lose_contrast_against_set_a() -> None:
    x = _images()
    a = degrade(x, "A", seed=0).blurred
    b = degrade(x, "B", seed=0, config=DegradeConfig(fog_depth=0.3)).blurred
    assert torch.all(b.std(dim=(1, 2, 3)) < a.std(dim=(1, 2, 3)))


def test_random_hybrid_draws_each_blur_of_the_pool_and_reports_its_psf() -> None:
    x = _images(batch=24, height=24, width=24)
    config = dataclasses.replace(NO_FOG, hybrid="random")
    out = degrade(x, "C", seed=2, config=config)
    choices = torch.stack(set_psf("C", config))
    assert choices.shape == (3, 11, 11)
    picked = [int(torch.argmax((choices == psf[0]).all(-1).all(-1).int())) for psf in out.psfs]
    assert sorted(set(picked)) == [0, 1, 2]
    for i in (0, 1, 2):
        image = x[i : i + 1]
        expected = _scipy_blur(image, out.psfs[i, 0].double().numpy())
        np.testing.assert_allclose(out.blurred[i : i + 1].numpy(), expected, atol=1e-5)


def test_psfs_sum_to_one_and_share_one_size_per_set() -> None:
    x = _images()
    for set_name, hybrid, size in [("A", "random", 7), ("C", "sequence", 27), ("C", "random", 11)]:
        out = degrade(x, set_name, seed=0, config=DegradeConfig(hybrid=hybrid))  # type: ignore[arg-type]
        assert out.psfs.shape == (3, 1, size, size)
        torch.testing.assert_close(out.psfs.sum(dim=(2, 3)), torch.ones(3, 1))


def test_hybrid_chains_compose_their_blurs() -> None:
    config = DegradeConfig(hybrid="random", hybrid_kernels=("gaussian+motion",))
    (psf,) = set_psf("C", config)
    expected = scipy.signal.convolve2d(_numpy_gaussian(7, 1.0), motion_kernel(10).double().numpy())
    np.testing.assert_allclose(psf.numpy(), expected, atol=1e-7)


def test_unknown_set_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"'D'.*\('A', 'B', 'C', 'A\+n'"):
        degrade(_images(), "D", seed=0)


def test_image_generators_differ_across_seeds_and_indices() -> None:
    draws = {
        (s, i): torch.rand(4, generator=image_generator(s, i)).tolist()
        for s in (0, 1)
        for i in (0, 1)
    }
    assert len({tuple(v) for v in draws.values()}) == 4
    assert torch.rand(4, generator=image_generator(1, 0)).tolist() == draws[(1, 0)]
    with pytest.raises(ValueError, match="seed"):
        image_generator(-1, 0)


# Config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gaussian_kernel", 6),
        ("gaussian_kernel", 0),
        ("gaussian_sigma", 0.0),
        ("motion_length", 0),
        ("motion_length", 2.5),
        ("motion_angle", float("nan")),
        ("defocus_radius", -1.0),
        ("fog_airlight", 1.5),
        ("fog_depth", -0.1),
        ("fog_beta", (2.5, 1.5)),
        ("fog_beta", (1.0,)),
        ("fog_scale", 0),
        ("hybrid", "parallel"),
        ("hybrid_kernels", ()),
        ("hybrid_kernels", ("gaussian", "box")),
        ("hybrid_kernels", ("gaussian+box",)),
    ],
)
def test_config_rejects_out_of_range_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DegradeConfig(**{field: value})  # type: ignore[arg-type]


def test_default_config_is_valid_and_frozen() -> None:
    config = DegradeConfig()
    assert (config.gaussian_kernel, config.gaussian_sigma) == (7, 1.0)
    assert (config.motion_length, config.motion_angle, config.defocus_radius) == (10, 0.0, 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.fog_depth = 1.0  # type: ignore[misc]
