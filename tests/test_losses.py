"""Losses and edge operators, checked against scipy/numpy/kornia references and hand values."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
from scipy import ndimage

from semtune.losses import (
    EDGE_OPERATORS,
    cycle_loss,
    edge_loss,
    edge_magnitude,
    identity_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)

EPS = 1e-6

# Textbook kernels, written out by hand (x-direction; y is the transpose).
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
SCHARR_X = np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], dtype=float)
PREWITT_X = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=float)
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float)
# Kirsch compass kernels N, NE, E, SE, S, SW, W, NW: the 45-degree rotations of N.
KIRSCH = [
    np.array(k, dtype=float)
    for k in (
        [[5, 5, 5], [-3, 0, -3], [-3, -3, -3]],
        [[-3, 5, 5], [-3, 0, 5], [-3, -3, -3]],
        [[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]],
        [[-3, -3, -3], [-3, 0, 5], [-3, 5, 5]],
        [[-3, -3, -3], [-3, 0, -3], [5, 5, 5]],
        [[-3, -3, -3], [5, 0, -3], [5, 5, -3]],
        [[5, -3, -3], [5, 0, -3], [5, -3, -3]],
        [[5, 5, -3], [5, 0, -3], [-3, -3, -3]],
    )
]


def _hand_image() -> np.ndarray:
    """A small image with a vertical step, a diagonal line, a ramp and a bright corner pixel."""
    img = np.zeros((7, 9))
    img[:, 5:] = 0.8  # vertical step between columns 4 and 5
    for i in range(4):
        img[i + 3, i] = 0.5  # diagonal line
    img[0, :4] = np.linspace(0.1, 0.4, 4)  # ramp along the top border
    img[6, 8] = 1.0  # corner pixel: replicate padding must not invent an edge beyond it
    return img


def _correlate(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    # 'nearest' is scipy's name for replicate padding.
    return ndimage.correlate(img, k, mode="nearest")


def _reference(img: np.ndarray, operator: str) -> np.ndarray:
    pairs = {"sobel": SOBEL_X, "scharr": SCHARR_X, "prewitt": PREWITT_X}
    if operator in pairs:
        kx = pairs[operator]
        return np.sqrt(_correlate(img, kx) ** 2 + _correlate(img, kx.T) ** 2 + EPS)
    if operator == "kirsch":
        return np.max([_correlate(img, k) for k in KIRSCH], axis=0)
    assert operator == "laplacian"
    return np.abs(_correlate(img, LAPLACIAN))


def _t(img: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.as_tensor(img, dtype=dtype)[None, None]


def test_kirsch_kernels_written_out_are_rotations_of_the_north_kernel() -> None:
    # Guards the hand-written table above: 90-degree rotations of N and of NE give the rest.
    for start in (0, 1):
        for quarter in range(4):
            rotated = np.rot90(KIRSCH[start], -quarter)  # clockwise
            np.testing.assert_array_equal(rotated, KIRSCH[(start + 2 * quarter) % 8])


def test_every_named_operator_has_a_reference() -> None:
    assert sorted(EDGE_OPERATORS) == ["kirsch", "laplacian", "prewitt", "scharr", "sobel"]


@pytest.mark.parametrize("operator", sorted(EDGE_OPERATORS))
def test_edge_magnitude_matches_scipy_correlation_with_hand_kernels(operator: str) -> None:
    img = _hand_image()
    got = edge_magnitude(_t(img), operator)[0, 0].numpy()
    np.testing.assert_allclose(got, _reference(img, operator), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("operator", sorted(EDGE_OPERATORS))
def test_edge_magnitude_in_float32_on_a_batch(operator: str) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.random((3, 2, 12, 10))
    got = edge_magnitude(torch.as_tensor(imgs, dtype=torch.float32), operator)
    assert got.shape == imgs.shape and got.dtype == torch.float32
    for b in range(3):
        for c in range(2):
            ref = _reference(imgs[b, c], operator)
            np.testing.assert_allclose(got[b, c].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_sobel_on_a_vertical_step_is_four_at_the_two_edge_columns() -> None:
    # gx = (1 + 2 + 1) * step on the columns either side of the step, 0 elsewhere.
    img = np.zeros((5, 6))
    img[:, 3:] = 1.0
    got = edge_magnitude(_t(img), "sobel")[0, 0].numpy()
    expected = np.full((5, 6), np.sqrt(EPS))
    expected[:, 2:4] = np.sqrt(16 + EPS)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_flat_image_has_no_edges_at_its_borders() -> None:
    img = torch.full((1, 1, 6, 6), 0.7, dtype=torch.float64)
    for operator in EDGE_OPERATORS:
        mag = edge_magnitude(img, operator)
        assert mag.max() <= np.sqrt(EPS) + 1e-12, operator


def test_sobel_agrees_with_kornia() -> None:
    x = torch.rand(2, 1, 16, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = kornia.filters.sobel(x, normalized=False, eps=EPS)
    torch.testing.assert_close(edge_magnitude(x, "sobel"), ref)


def test_laplacian_agrees_with_scipy_laplace() -> None:
    img = _hand_image()
    got = edge_magnitude(_t(img), "laplacian")[0, 0].numpy()
    np.testing.assert_allclose(got, np.abs(ndimage.laplace(img, mode="nearest")), atol=1e-12)


@pytest.mark.parametrize("operator", sorted(EDGE_OPERATORS))
def test_edge_magnitude_gradcheck(operator: str) -> None:
    # Random inputs: no ties between Kirsch directions, no zero Laplacian response.
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: edge_magnitude(t, operator), (x,))


def test_sobel_gradient_is_finite_on_a_flat_image() -> None:
    x = torch.full((1, 1, 5, 5), 0.3, dtype=torch.float64, requires_grad=True)
    edge_magnitude(x, "sobel").sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_unknown_edge_operator_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"'canny'.*\['kirsch', 'laplacian', 'prewitt'"):
        edge_magnitude(torch.rand(1, 1, 8, 8), "canny")


@pytest.mark.parametrize(
    ("x", "error"),
    [
        (np.zeros((1, 1, 8, 8)), TypeError),
        (torch.zeros(1, 8, 8), ValueError),
        (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), TypeError),
    ],
    ids=["numpy", "3d", "uint8"],
)
def test_edge_magnitude_rejects_bad_inputs(x: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="got"):
        edge_magnitude(x, "sobel")  # type: ignore[arg-type]


@pytest.mark.parametrize("operator", sorted(EDGE_OPERATORS))
def test_edge_loss_is_mse_between_reference_magnitudes(operator: str) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((9, 8)), rng.random((9, 8))
    expected = np.mean((_reference(a, operator) - _reference(b, operator)) ** 2)
    got = edge_loss(_t(a), _t(b), operator)
    assert got.ndim == 0
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    assert float(edge_loss(_t(a), _t(a), operator)) == 0.0


def test_edge_loss_default_operator_is_sobel() -> None:
    a, b = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    assert torch.equal(edge_loss(a, b), edge_loss(a, b, "sobel"))


def test_lsgan_losses_on_hand_made_predictions() -> None:
    real = torch.tensor([[1.0, 0.5], [0.0, 2.0]])  # (D - 1)^2: 0, 0.25, 1, 1 -> mean 0.5625
    fake = torch.tensor([0.0, 0.5, -1.0])  # D^2: 0, 0.25, 1 -> mean 5/12
    assert float(lsgan_d_loss(real, fake)) == pytest.approx(0.5 * (0.5625 + 5 / 12))
    assert float(lsgan_g_loss(fake)) == pytest.approx((1 + 0.25 + 4) / 3)  # (D - 1)^2
    perfect = lsgan_d_loss(torch.ones(4), torch.zeros(4))
    assert float(perfect) == 0.0
    assert float(lsgan_g_loss(torch.ones(2, 1, 6, 6))) == 0.0


def test_identity_loss_is_the_mean_squared_error() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 1, 5, 6)), rng.random((2, 1, 5, 6))
    got = identity_loss(torch.as_tensor(a), torch.as_tensor(b))
    assert float(got) == pytest.approx(np.mean((a - b) ** 2), rel=1e-12)


def test_cycle_loss_is_zero_for_a_perfect_reconstruction() -> None:
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    assert float(cycle_loss(x, x)) == pytest.approx(0.0, abs=1e-12)


def test_cycle_loss_on_flat_images_uses_the_papers_constants() -> None:
    # Flat images: sigma = 0 everywhere, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1), C1 = 1e-4
    # (the paper's value), whatever the window or border handling.
    a, b = 0.2, 0.6
    rec = torch.full((1, 1, 24, 24), a, dtype=torch.float64)
    real = torch.full((1, 1, 24, 24), b, dtype=torch.float64)
    expected = 1 - (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
    assert float(cycle_loss(rec, real)) == pytest.approx(expected, rel=1e-9)


def test_cycle_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(5)
    rec = torch.rand(1, 1, 12, 12, dtype=torch.float64, generator=g).requires_grad_(True)
    real = torch.rand(1, 1, 12, 12, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda r: cycle_loss(r, real), (rec,))


@pytest.mark.parametrize("loss", [cycle_loss, identity_loss, edge_loss])
def test_image_losses_refuse_mismatched_shapes(loss: object) -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(1, 1, 16, 16\) and \(1, 1, 16, 24\)"):
        loss(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 24))  # type: ignore[operator]
