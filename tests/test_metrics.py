"""semtune.metrics against independent references: scikit-image for SSIM and PSNR, NumPy
transcriptions of eq. 1-5 for AG, CON and SF, and cases small enough to compute by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from semtune import metrics
from semtune.metrics import (
    SSIM,
    all_metrics,
    average_gradient,
    contrast,
    psnr,
    spatial_frequency,
    ssim,
    ssim_map,
)

# ---------------------------------------------------------------------------------------------
# References


def sk_ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, k1=0.01, k2=0.02, full=False):
    """scikit-image SSIM with the paper's settings on one (C, H, W) image (channel mean)."""
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        data_range=1.0,
        K1=k1,
        K2=k2,
        channel_axis=0,
        full=full,
    )


def np_sharpness(img: np.ndarray) -> tuple[float, float, float]:
    """AG, CON, SF of one (C, H, W) image in [0, 1], transcribed from eq. 1-5 with loops over
    neighbour pairs, on the 0-255 scale."""
    f = img.astype(np.float64) * 255.0
    c, m, n = f.shape
    ag_terms, deltas, rf, cf = [], [], 0.0, 0.0
    for ch in range(c):
        for x in range(m):
            for y in range(n):
                if x + 1 < m and y + 1 < n:
                    gx = f[ch, x + 1, y] - f[ch, x, y]
                    gy = f[ch, x, y + 1] - f[ch, x, y]
                    ag_terms.append(math.sqrt((gx * gx + gy * gy) / 2))
                if y >= 1:  # eq. 4: f(x, y) - f(x, y - 1), horizontal neighbours
                    d = f[ch, x, y] - f[ch, x, y - 1]
                    rf += d * d
                    deltas.append(d)
                if x >= 1:  # eq. 5: f(x, y) - f(x - 1, y), vertical neighbours
                    d = f[ch, x, y] - f[ch, x - 1, y]
                    cf += d * d
                    deltas.append(d)
    # eq. 2 with P(delta) the empirical distribution of the neighbour differences
    values, counts = np.unique(np.asarray(deltas), return_counts=True)
    con = float(np.sum(values**2 * counts / counts.sum()))
    sf = math.sqrt(rf / (c * m * n) + cf / (c * m * n))
    return float(np.mean(ag_terms)), con, sf


def smooth_pair(shape: tuple[int, ...], seed: int, noise: float = 0.05) -> tuple[np.ndarray, ...]:
    """A smooth random image in [0, 1] and a noisy, blurred copy of it (float64)."""
    rng = np.random.default_rng(seed)
    axes = (0,) * (len(shape) - 2) + (1.5, 1.5)
    a = gaussian_filter(rng.random(shape), axes)
    a = (a - a.min()) / (a.max() - a.min())
    b = gaussian_filter(a, (0,) * (len(shape) - 2) + (1.0, 1.0))
    b = np.clip(b + noise * rng.standard_normal(shape), 0, 1)
    return a, b


@pytest.fixture(scope="module")
def sem_crops(sample_train_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real SEM content: 6 crops 48x72 from one bar-cropped sample image and their blur."""
    path = sorted(sample_train_dir.glob("*.jpg"))[0]
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float64)[:-80] / 255.0
    rng = np.random.default_rng(1)
    crops = []
    for _ in range(6):
        r, c = rng.integers(img.shape[0] - 48), rng.integers(img.shape[1] - 72)
        crops.append(img[r : r + 48, c : c + 72])
    clean = np.stack(crops)[:, None]
    blurred = gaussian_filter(clean, (0, 0, 1.0, 1.0), truncate=3.0)
    return blurred, clean


def t32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).float()


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).double()


# ---------------------------------------------------------------------------------------------
# SSIM


@pytest.mark.parametrize(
    "shape",
    [
        (3, 1, 64, 64),
        (2, 1, 37, 53),  # width not a multiple of the 8-column blocks
        (2, 3, 30, 17),  # several channels: mean over channels, as scikit-image
        (2, 1, 11, 11),  # a single valid window
        (1, 1, 12, 90),  # fewer rows than one 16-row output block needs
    ],
)
def test_ssim_matches_skimage_with_paper_window_and_constants(shape):
    a, b = smooth_pair(shape, seed=sum(shape))
    ref = np.array([sk_ssim(a[i], b[i]) for i in range(shape[0])])
    np.testing.assert_allclose(ssim(t64(a), t64(b)).numpy(), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ssim(t32(a), t32(b)).numpy(), ref, rtol=0, atol=1e-4)


def test_ssim_matches_skimage_on_real_sem_crops(sem_crops):
    blurred, clean = sem_crops
    ref = np.array([sk_ssim(blurred[i], clean[i]) for i in range(len(clean))])
    assert ref.min() < 0.95  # the blur changes the crops enough to make the comparison count
    np.testing.assert_allclose(ssim(t32(blurred), t32(clean)).numpy(), ref, rtol=0, atol=1e-4)


def test_ssim_window_sigma_and_constants_are_honoured():
    # scikit-image derives its window from sigma (radius int(3.5 sigma + 0.5)): sigma 1 -> 9x9.
    a, b = smooth_pair((2, 1, 40, 40), seed=3)
    ref = np.array([sk_ssim(a[i], b[i], sigma=1.0, k1=0.01, k2=0.03) for i in range(2)])
    got = ssim(t64(a), t64(b), window_size=9, sigma=1.0, c1=1e-4, c2=9e-4)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-10)


def test_ssim_map_is_skimage_full_map_without_border():
    a, b = smooth_pair((1, 1, 33, 41), seed=5)
    _, full = sk_ssim(a[0], b[0], full=True)
    got = ssim_map(t64(a), t64(b))
    assert got.shape == (1, 1, 23, 31)
    np.testing.assert_allclose(got[0].numpy(), full[:, 5:-5, 5:-5], rtol=0, atol=1e-10)


def test_ssim_of_identical_images_is_one():
    a, _ = smooth_pair((2, 1, 32, 32), seed=7)
    np.testing.assert_allclose(ssim(t32(a), t32(a)).numpy(), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ssim(t64(a), t64(a)).numpy(), 1.0, rtol=0, atol=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term():
    # No structure: sigma = 0, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) exactly.
    x = torch.full((1, 1, 20, 20), 0.2, dtype=torch.float64)
    y = torch.full((1, 1, 20, 20), 0.6, dtype=torch.float64)
    expected = (2 * 0.2 * 0.6 + 1e-4) / (0.2**2 + 0.6**2 + 1e-4)
    assert float(ssim(x, y)) == pytest.approx(expected, abs=1e-12)


def test_ssim_is_symmetric_and_reduction_mean_is_batch_mean():
    a, b = smooth_pair((3, 1, 24, 24), seed=9)
    x, y = t32(a), t32(b)
    torch.testing.assert_close(ssim(x, y), ssim(y, x))
    torch.testing.assert_close(ssim(x, y, reduction="mean"), ssim(x, y).mean())


def test_metrics_do_not_mix_images_across_chunks(monkeypatch):
    a, b = smooth_pair((5, 2, 24, 40), seed=11)
    x, y = t32(a), t32(b)
    one_chunk = all_metrics(x, y)
    monkeypatch.setattr(metrics, "_CHUNK_PIXELS", 2 * 2 * 24 * 40)  # chunks of 2, 2, 1
    chunked = all_metrics(x, y)
    singles = [all_metrics(x[i : i + 1], y[i : i + 1]) for i in range(5)]
    for k, v in one_chunk.items():
        torch.testing.assert_close(chunked[k], v, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(torch.cat([s[k] for s in singles]), v, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ssim(x, y), one_chunk["ssim"], rtol=1e-6, atol=1e-6)


def test_ssim_gradient_matches_finite_differences():
    a, b = smooth_pair((2, 1, 12, 17), seed=13)
    x = t64(a).requires_grad_(True)
    y = t64(b)
    assert torch.autograd.gradcheck(lambda x: ssim(x, y), (x,), eps=1e-6, atol=1e-6)


def test_ssim_is_the_same_with_and_without_autograd():
    # Without autograd the formula runs in place; with it, out of place.
    a, b = smooth_pair((2, 1, 40, 48), seed=17)
    x = t32(a).requires_grad_(True)
    with_grad = ssim(x, t32(b))
    with torch.no_grad():
        without = ssim(x, t32(b))
    torch.testing.assert_close(with_grad.detach(), without, rtol=0, atol=1e-6)
    (1 - with_grad.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_psnr_and_sharpness_are_the_same_with_and_without_autograd():
    a, b = smooth_pair((2, 1, 20, 28), seed=18)
    x = t32(a).requires_grad_(True)
    y = t32(b)
    funcs = (lambda x: psnr(x, y), average_gradient, contrast, spatial_frequency)
    for f in funcs:
        with_grad = f(x)
        with torch.no_grad():
            without = f(x)
        torch.testing.assert_close(with_grad.detach(), without, rtol=1e-6, atol=1e-6)
        with_grad.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None


def test_ssim_module_calls_the_function_with_its_arguments():
    a, b = smooth_pair((2, 1, 30, 30), seed=19)
    module = SSIM(window_size=9, sigma=1.0, c2=9e-4, reduction="mean")
    expected = ssim(t32(a), t32(b), window_size=9, sigma=1.0, c2=9e-4, reduction="mean")
    torch.testing.assert_close(module(t32(a), t32(b)), expected)


def test_ssim_keeps_float64_and_computes_half_inputs_in_float32():
    a, b = smooth_pair((1, 1, 20, 20), seed=23)
    assert ssim(t64(a), t64(b)).dtype == torch.float64
    half = ssim(t32(a).half(), t32(b).half())
    assert half.dtype == torch.float32
    assert float(half) == pytest.approx(float(ssim(t32(a), t32(b))), abs=2e-3)


# ---------------------------------------------------------------------------------------------
# PSNR


def test_psnr_matches_skimage():
    a, b = smooth_pair((3, 1, 32, 40), seed=29)
    ref = [peak_signal_noise_ratio(a[i], b[i], data_range=1.0) for i in range(3)]
    np.testing.assert_allclose(psnr(t64(a), t64(b)).numpy(), ref, rtol=1e-12)
    x, y = t32(a).numpy(), t32(b).numpy()
    ref32 = [peak_signal_noise_ratio(x[i], y[i], data_range=1.0) for i in range(3)]
    np.testing.assert_allclose(psnr(t32(a), t32(b)).numpy(), ref32, rtol=0, atol=1e-4)


def test_psnr_of_a_known_error_and_another_peak():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    y = torch.full_like(x, 0.1)  # MSE 0.01 -> 20 dB
    assert float(psnr(x, y)) == pytest.approx(20.0, abs=1e-12)
    assert float(psnr(x * 255, y * 255, max_val=255.0)) == pytest.approx(20.0, abs=1e-12)


def test_psnr_of_identical_images_is_inf_not_nan():
    a, b = smooth_pair((2, 1, 16, 16), seed=31)
    x = t32(np.stack([a[0], a[1]]))
    y = t32(np.stack([a[0], b[1]]))  # first pair identical
    out = psnr(x, y)
    assert math.isinf(float(out[0])) and float(out[0]) > 0
    assert math.isfinite(float(out[1]))
    assert math.isinf(float(psnr(x, y, reduction="mean")))


# ---------------------------------------------------------------------------------------------
# AG, CON, SF


def test_sharpness_metrics_match_the_numpy_transcription(sem_crops):
    blurred, clean = sem_crops
    rng = np.random.default_rng(37)
    batches = [blurred[:3, :, :20, :23], clean[:2, :, :17, :30], rng.random((2, 2, 9, 13))]
    for batch in batches:
        ref = np.array([np_sharpness(img) for img in batch])
        for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            x = torch.from_numpy(batch).to(dtype)
            np.testing.assert_allclose(average_gradient(x).numpy(), ref[:, 0], rtol=rtol)
            np.testing.assert_allclose(contrast(x).numpy(), ref[:, 1], rtol=rtol)
            np.testing.assert_allclose(spatial_frequency(x).numpy(), ref[:, 2], rtol=rtol)


def test_sharpness_metrics_of_a_constant_image_are_zero():
    x = torch.full((2, 1, 10, 12), 0.37)
    for f in (average_gradient, contrast, spatial_frequency):
        torch.testing.assert_close(f(x), torch.zeros(2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("h, w, step", [(8, 8, 1.0), (6, 10, 0.5)])
def test_sharpness_metrics_of_a_vertical_step_edge(h, w, step):
    # Left half 0, right half `step`: one column of horizontal differences of 255 * step.
    x = torch.zeros(1, 1, h, w, dtype=torch.float64)
    x[..., w // 2 :] = step
    d = 255.0 * step
    # AG: the H-1 pixels left of the edge (of the (H-1)(W-1) averaged) see sqrt(d^2 / 2).
    assert float(average_gradient(x)) == pytest.approx(d / math.sqrt(2) / (w - 1), rel=1e-12)
    # CON: H differences of d among the H(W-1) + (H-1)W neighbour pairs.
    assert float(contrast(x)) == pytest.approx(h * d * d / (h * (w - 1) + (h - 1) * w), rel=1e-12)
    # SF: RF^2 = H d^2 / (H W), CF = 0.
    assert float(spatial_frequency(x)) == pytest.approx(d / math.sqrt(w), rel=1e-12)
    # Turned by 90 degrees (a horizontal edge, the difference now between vertical neighbours
    # of a W x H image) the values are the same: the metrics treat both directions alike.
    xt = x.transpose(2, 3)
    for f in (average_gradient, contrast, spatial_frequency):
        assert float(f(xt)) == pytest.approx(float(f(x)), rel=1e-12)


def test_sharpness_metrics_of_a_horizontal_ramp():
    # f = a * column: every horizontal difference is a, every vertical one 0.
    h, w, a = 5, 7, 0.01
    x = (a * torch.arange(w, dtype=torch.float64)).expand(1, 1, h, w)
    d = 255.0 * a
    assert float(average_gradient(x)) == pytest.approx(d / math.sqrt(2), rel=1e-12)
    pairs = h * (w - 1) + (h - 1) * w
    assert float(contrast(x)) == pytest.approx(h * (w - 1) * d * d / pairs, rel=1e-12)
    assert float(spatial_frequency(x)) == pytest.approx(d * math.sqrt((w - 1) / w), rel=1e-12)


def test_sharpness_metrics_grow_with_sharpness(sem_crops):
    blurred, clean = sem_crops
    for f in (average_gradient, contrast, spatial_frequency):
        assert (f(t32(clean)) > f(t32(blurred))).all()


# ---------------------------------------------------------------------------------------------
# all_metrics and argument checks


def test_all_metrics_equals_the_single_functions(monkeypatch):
    a, b = smooth_pair((5, 1, 30, 36), seed=41)
    x, y = t32(a), t32(b)
    monkeypatch.setattr(metrics, "_CHUNK_PIXELS", 2 * 30 * 36)  # chunks of 2, 2, 1
    out = all_metrics(x, y)
    assert list(out) == ["ssim", "psnr", "ag", "con", "sf"]
    expected = {
        "ssim": ssim(x, y),
        "psnr": psnr(x, y),
        "ag": average_gradient(x),
        "con": contrast(x),
        "sf": spatial_frequency(x),
    }
    for k, v in expected.items():
        assert out[k].shape == (5,)
        torch.testing.assert_close(out[k], v, rtol=1e-6, atol=1e-6)
    no_ref = all_metrics(x, None)
    assert list(no_ref) == ["ag", "con", "sf"]
    torch.testing.assert_close(no_ref["con"], expected["con"])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ssim(torch.rand(1, 16, 16), torch.rand(1, 16, 16)), ValueError, r"\(B, C, H, W\)"),
        (
            lambda: ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 15)),
            ValueError,
            "same shape",
        ),
        (lambda: ssim(*[torch.ones(1, 1, 16, 16, dtype=torch.uint8)] * 2), TypeError, "uint8"),
        (lambda: ssim(torch.rand(1, 1, 10, 16), torch.rand(1, 1, 10, 16)), ValueError, "H=10"),
        (lambda: ssim(*[torch.rand(1, 1, 16, 16)] * 2, window_size=10), ValueError, "odd"),
        (lambda: ssim(*[torch.rand(1, 1, 16, 16)] * 2, sigma=0.0), ValueError, "sigma"),
        (lambda: ssim(*[torch.rand(1, 1, 16, 16)] * 2, reduction="sum"), ValueError, "'sum'"),
        (lambda: psnr(*[torch.rand(1, 1, 4, 4)] * 2, max_val=0), ValueError, "max_val"),
        (lambda: psnr(np.zeros((1, 1, 4, 4)), torch.rand(1, 1, 4, 4)), TypeError, "ndarray"),
        (lambda: contrast(torch.rand(1, 1, 1, 8)), ValueError, "H=1"),
        (
            lambda: all_metrics(torch.rand(1, 1, 16, 16), torch.rand(2, 1, 16, 16)),
            ValueError,
            "clean",
        ),
        (lambda: SSIM(reduction="max"), ValueError, "'max'"),
    ],
)
def test_invalid_arguments_raise_and_say_what_was_received(call, error, match):
    with pytest.raises(error, match=match):
        call()
