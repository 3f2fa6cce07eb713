"""Classical baselines against hand-checkable cases, numpy transcriptions and scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.restoration
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio

from semtune import baselines
from semtune.baselines import (
    METHODS,
    ORACLE_METHODS,
    blind_deconv,
    cls_filter,
    discrepancy_weight,
    estimate_psf,
    image_noise,
    restore,
    richardson_lucy,
    wiener,
)


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


# Set A's blur: 7x7 Gaussian, sigma 1.
SET_A_KERNEL = gaussian_kernel(1.0, 7)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return ndimage.convolve(image, kernel, mode="reflect")


def psf_width(psf: np.ndarray) -> float:
    """Standard deviation of a centred PSF along its columns."""
    r = np.arange(psf.shape[1]) - psf.shape[1] // 2
    return float(np.sqrt((psf * r[None, :] ** 2).sum()))


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(reference, image, data_range=1.0))


def _by_discrepancy(
    method: object, name: str, image: np.ndarray, psf: np.ndarray, floor: float
) -> np.ndarray:
    """What ``restore`` does: the weight from the image's own noise, never below ``floor``."""
    weight = discrepancy_weight(
        lambda w: method(image, psf, **{name: w}),  # type: ignore[operator]
        image,
        psf,
        image_noise(image),
        floor=floor,
    )
    return method(image, psf, **{name: weight})  # type: ignore[operator]


@pytest.fixture(scope="module")
def real_crop(sample_train_dir: Path) -> np.ndarray:
    """128x128 centre crop of a real SEM image, gray in [0, 1], data bar cut off."""
    path = sorted(sample_train_dir.glob("*.jpg"))[0]
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.float64)[:-80] / 255.0
    h, w = gray.shape
    return gray[h // 2 - 64 : h // 2 + 64, w // 2 - 64 : w // 2 + 64]


@pytest.fixture(scope="module")
def step_image() -> np.ndarray:
    """Piecewise-constant rectangles: ideal step edges with no blur of their own."""
    rng = np.random.default_rng(0)
    image = np.full((128, 128), 0.1)
    for _ in range(25):
        y, x = rng.integers(0, 128, 2)
        h, w = rng.integers(8, 40, 2)
        image[y : y + h, x : x + w] = rng.uniform(0.1, 0.9)
    return image


def reference_filter(image: np.ndarray, psf: np.ndarray, weight: float, reg: np.ndarray):
    """conj(H) Y / (|H|^2 + weight |R|^2) on the symmetric-padded image, from the textbook.

    Full complex DFT, kernels placed on the grid by explicit modular offsets (no roll, no rfft).
    """
    pad = 2 * max(psf.shape)
    padded = np.pad(image, pad, mode="symmetric")
    shape = padded.shape

    def transfer(kernel: np.ndarray) -> np.ndarray:
        grid = np.zeros(shape)
        cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
        for i in range(kernel.shape[0]):
            for j in range(kernel.shape[1]):
                grid[(i - cy) % shape[0], (j - cx) % shape[1]] += kernel[i, j]
        return np.fft.fft2(grid)

    h, p = transfer(psf / psf.sum()), transfer(reg)
    restored = np.fft.ifft2(
        np.conj(h) * np.fft.fft2(padded) / (np.abs(h) ** 2 + weight * np.abs(p) ** 2)
    )
    return restored.real[pad:-pad, pad:-pad]


LAPLACIAN = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
DELTA = np.ones((1, 1))


# ---------------------------------------------------------------------------- Wiener


def test_wiener_with_true_kernel_beats_blurred_input(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop, SET_A_KERNEL)
    restored = wiener(blurred, SET_A_KERNEL)
    assert psnr(real_crop, restored) > psnr(real_crop, blurred) + 2.0


def test_wiener_balance_is_a_constant_noise_to_signal_ratio() -> None:
    # With a delta PSF, H = 1 everywhere: the filter is 1 / (1 + balance) at every frequency
    # (a Laplacian regulariser would instead smooth the random image).
    image = np.random.default_rng(1).uniform(size=(20, 24))
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    np.testing.assert_allclose(wiener(image, delta, balance=0.25), image / 1.25, atol=1e-12)


def test_wiener_matches_textbook_formula_with_off_centre_psf() -> None:
    rng = np.random.default_rng(2)
    image = rng.uniform(size=(21, 26))
    psf = rng.uniform(size=(5, 3))
    expected = reference_filter(image, psf, 0.03, DELTA)
    np.testing.assert_allclose(wiener(image, psf, balance=0.03), expected, atol=1e-10)


# ---------------------------------------------------------------------------- CLS


def test_cls_with_zero_gamma_and_delta_psf_is_identity() -> None:
    image = np.random.default_rng(3).uniform(size=(17, 30))
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    np.testing.assert_allclose(cls_filter(image, delta, gamma=0.0), image, atol=1e-12)


def test_cls_matches_textbook_formula_with_off_centre_psf() -> None:
    rng = np.random.default_rng(4)
    image = rng.uniform(size=(23, 19))
    psf = rng.uniform(size=(3, 5))
    expected = reference_filter(image, psf, 0.05, LAPLACIAN)
    np.testing.assert_allclose(cls_filter(image, psf, gamma=0.05), expected, atol=1e-10)


def test_cls_matches_skimage_wiener_with_its_default_laplacian(real_crop: np.ndarray) -> None:
    # scikit-image's Wiener-Hunt filter regularises with the same 5-point Laplacian by default.
    blurred = blur(real_crop[:64, :64], SET_A_KERNEL)
    pad = 2 * 7
    expected = skimage.restoration.wiener(
        np.pad(blurred, pad, mode="symmetric"), SET_A_KERNEL, 2e-3, clip=False
    )[pad:-pad, pad:-pad]
    np.testing.assert_allclose(cls_filter(blurred, SET_A_KERNEL, gamma=2e-3), expected, atol=1e-9)


def test_cls_with_true_kernel_beats_blurred_input(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop, SET_A_KERNEL)
    assert psnr(real_crop, cls_filter(blurred, SET_A_KERNEL)) > psnr(real_crop, blurred) + 2.0


# ---------------------------------------------------------------------------- Richardson-Lucy


def test_richardson_lucy_matches_skimage_on_symmetric_padded_image(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop[:64, :64], SET_A_KERNEL)
    pad = 2 * 7
    expected = skimage.restoration.richardson_lucy(
        np.pad(blurred, pad, mode="symmetric"), SET_A_KERNEL, num_iter=12, clip=False
    )[pad:-pad, pad:-pad]
    np.testing.assert_allclose(richardson_lucy(blurred, SET_A_KERNEL, iterations=12), expected)


def test_richardson_lucy_with_true_kernel_beats_blurred_input(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop, SET_A_KERNEL)
    restored = richardson_lucy(blurred, SET_A_KERNEL)
    assert restored.min() >= 0.0
    assert psnr(real_crop, restored) > psnr(real_crop, blurred) + 2.0


def test_richardson_lucy_rejects_negative_images() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        richardson_lucy(np.full((8, 8), -0.1), SET_A_KERNEL)


# ---------------------------------------------------------------------------- PSF estimate


@pytest.mark.parametrize("sigma", [0.8, 1.2, 2.0])
def test_estimate_psf_recovers_gaussian_sigma_of_blurred_step_edges(
    step_image: np.ndarray, sigma: float
) -> None:
    psf = estimate_psf(blur(step_image, gaussian_kernel(sigma, 15)))
    assert psf_width(psf) == pytest.approx(sigma, rel=0.3)


def test_estimate_psf_width_grows_with_blur_on_a_real_crop(real_crop: np.ndarray) -> None:
    sigmas = (0.8, 1.2, 2.0)
    widths = [psf_width(estimate_psf(blur(real_crop, gaussian_kernel(s, 15)))) for s in sigmas]
    assert widths[0] < widths[1] < widths[2]
    # The crop's own edge width adds to the blur; still within 30 % at these widths.
    np.testing.assert_allclose(widths, sigmas, rtol=0.3)


def test_estimate_psf_is_a_normalised_symmetric_kernel_of_the_requested_size(
    real_crop: np.ndarray,
) -> None:
    psf = estimate_psf(blur(real_crop, SET_A_KERNEL), size=11)
    assert psf.shape == (11, 11)
    assert psf.min() >= 0.0
    assert psf.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(psf, psf.T, atol=1e-15)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-15)


def test_estimate_psf_of_a_flat_image_is_a_delta() -> None:
    psf = estimate_psf(np.full((32, 32), 0.4), size=5)
    expected = np.zeros((5, 5))
    expected[2, 2] = 1.0
    np.testing.assert_array_equal(psf, expected)


@pytest.mark.parametrize("size", [0, 4, 14])
def test_estimate_psf_rejects_even_or_empty_size(size: int) -> None:
    with pytest.raises(ValueError, match="odd"):
        estimate_psf(np.zeros((16, 16)), size=size)


def test_estimate_psf_rejects_non_2d_input() -> None:
    with pytest.raises(ValueError, match=r"\(1, 16, 16\)"):
        estimate_psf(np.zeros((1, 16, 16)))


# ---------------------------------------------------------------------------- blind deconvolution


def test_blind_deconv_improves_a_blurred_real_crop(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop, SET_A_KERNEL)
    restored = blind_deconv(blurred)
    assert restored.shape == blurred.shape
    assert restored.min() >= 0.0
    assert psnr(real_crop, restored) > psnr(real_crop, blurred) + 1.0


def test_blind_deconv_leaves_a_constant_image_unchanged() -> None:
    # x = y is a fixed point of every Richardson-Lucy update when y is constant.
    image = np.full((24, 20), 0.3)
    np.testing.assert_allclose(blind_deconv(image, psf_size=5), image, rtol=1e-9)


def test_blind_psf_update_stays_non_negative_and_normalised(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop[:64, :64], SET_A_KERNEL)
    flat = np.full((9, 9), 1.0 / 81)
    _, psf = baselines._blind_richardson_lucy(blurred, 5, flat)
    assert psf.shape == (9, 9)
    assert psf.min() >= 0.0
    assert psf.sum() == pytest.approx(1.0)
    assert not np.allclose(psf, flat)


def test_blind_deconv_from_a_given_start_uses_that_support(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop[:48, :48], SET_A_KERNEL)
    restored = blind_deconv(blurred, iterations=2, init_psf=np.ones((7, 7)))
    assert restored.shape == (48, 48)
    with pytest.raises(ValueError, match="square"):
        blind_deconv(blurred, init_psf=np.ones((7, 5)))


# ---------------------------------------------------------------------------- restore()


def test_restore_rejects_unknown_name_listing_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid names") as info:
        restore("deconvwnr", torch.zeros(1, 1, 16, 16))
    for name in METHODS + ORACLE_METHODS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ORACLE_METHODS)
def test_restore_oracle_without_psf_names_the_method(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        restore(name, torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize(
    "shape", [(1, 16, 16), (2, 3, 16, 16), (2, 1, 16)], ids=["3d", "3-channel", "short"]
)
def test_restore_rejects_non_bx1xhxw_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="Bx1xHxW"):
        restore("wiener", torch.zeros(shape))


def test_restore_rejects_values_outside_unit_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        restore("cls", torch.full((1, 1, 16, 16), 1.5))


def test_restore_rejects_psf_batch_of_wrong_size() -> None:
    with pytest.raises(ValueError, match="psf shape"):
        restore("wiener_oracle", torch.zeros(3, 1, 16, 16), psf=torch.ones(2, 1, 7, 7))


@pytest.mark.parametrize("name", METHODS)
def test_restore_runs_each_image_with_its_own_psf_estimate(
    real_crop: np.ndarray, name: str
) -> None:
    images = np.stack([blur(real_crop[:40, :56], SET_A_KERNEL), real_crop[40:80, 8:64]])
    batch = torch.from_numpy(images)[:, None].float()
    out = restore(name, batch)
    assert out.shape == (2, 1, 40, 56)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    runners = {
        "wiener": lambda b: _by_discrepancy(wiener, "balance", b, estimate_psf(b), 1e-2),
        "blind_deconv": blind_deconv,
        "richardson_lucy": lambda b: richardson_lucy(b, estimate_psf(b), noise=image_noise(b)),
        "cls": lambda b: _by_discrepancy(cls_filter, "gamma", b, estimate_psf(b), 1e-3),
    }
    for i in range(2):
        single = batch[i, 0].double().numpy()
        expected = np.clip(runners[name](single), 0.0, 1.0)
        np.testing.assert_allclose(out[i, 0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("name", ORACLE_METHODS)
def test_restore_oracle_broadcasts_a_single_psf_over_the_batch(
    real_crop: np.ndarray, name: str
) -> None:
    images = np.stack(
        [blur(real_crop[:32, :32], SET_A_KERNEL), blur(real_crop[32:64, :32], SET_A_KERNEL)]
    )
    batch = torch.from_numpy(images)[:, None].double()
    kernel = torch.from_numpy(SET_A_KERNEL)[None, None]
    shared = restore(name, batch, psf=kernel)
    per_image = restore(name, batch, psf=kernel.expand(2, 1, 7, 7))
    assert shared.dtype == torch.float64
    torch.testing.assert_close(shared, per_image)
    functions = {
        "wiener_oracle": lambda b, k: _by_discrepancy(wiener, "balance", b, k, 1e-2),
        "richardson_lucy_oracle": lambda b, k: richardson_lucy(b, k, noise=image_noise(b)),
        "cls_oracle": lambda b, k: _by_discrepancy(cls_filter, "gamma", b, k, 1e-3),
    }
    expected = np.clip(functions[name](images[1], SET_A_KERNEL), 0.0, 1.0)
    np.testing.assert_allclose(shared[1, 0].numpy(), expected, atol=1e-12)


def _noisy_blurred(real_crop: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(blur(real_crop, SET_A_KERNEL) + rng.normal(0, sigma, real_crop.shape), 0, 1)


def test_discrepancy_keeps_the_default_on_a_noise_free_image(real_crop: np.ndarray) -> None:
    blurred = blur(real_crop, SET_A_KERNEL)
    weight = discrepancy_weight(
        lambda w: wiener(blurred, SET_A_KERNEL, balance=w),
        blurred,
        SET_A_KERNEL,
        image_noise(blurred),
        floor=1e-2,
    )
    assert weight == 1e-2


def test_discrepancy_raises_regularisation_until_the_residual_is_the_noise(
    real_crop: np.ndarray,
) -> None:
    noisy = _noisy_blurred(real_crop, 0.03)
    noise = image_noise(noisy)
    assert noise == pytest.approx(0.03, rel=0.15)
    weight = discrepancy_weight(
        lambda w: cls_filter(noisy, SET_A_KERNEL, gamma=w), noisy, SET_A_KERNEL, noise, floor=1e-3
    )
    assert weight > 1e-3
    residual = noisy - blur(cls_filter(noisy, SET_A_KERNEL, gamma=weight), SET_A_KERNEL)
    assert float(np.sqrt(np.mean(residual**2))) == pytest.approx(noise, rel=0.1)


def test_richardson_lucy_stops_once_the_residual_reaches_the_noise(real_crop: np.ndarray) -> None:
    noisy = _noisy_blurred(real_crop, 0.005)

    def rms_residual(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean((noisy - blur(x, SET_A_KERNEL)) ** 2)))

    for noise in (0.005, 0.0052, 0.006):
        assert rms_residual(richardson_lucy(noisy, SET_A_KERNEL, noise=noise)) <= noise
    # without a noise floor it runs all its iterations and fits further (the noise too)
    full = richardson_lucy(noisy, SET_A_KERNEL, iterations=30, noise=0.0)
    assert rms_residual(full) < rms_residual(richardson_lucy(noisy, SET_A_KERNEL, noise=0.006))


@pytest.mark.parametrize("name", ["wiener_oracle", "cls_oracle", "richardson_lucy_oracle"])
def test_noise_aware_regularisation_beats_the_noise_free_defaults_on_noisy_blur(
    real_crop: np.ndarray, name: str
) -> None:
    noisy = _noisy_blurred(real_crop, 0.03)
    kernel = torch.from_numpy(SET_A_KERNEL)[None, None]
    aware = restore(name, torch.from_numpy(noisy)[None, None], psf=kernel)[0, 0].numpy()
    plain = {"wiener_oracle": wiener, "cls_oracle": cls_filter}.get(name, richardson_lucy)
    fixed = np.clip(plain(noisy, SET_A_KERNEL), 0, 1)
    assert psnr(real_crop, aware) > psnr(real_crop, fixed) + 0.5
