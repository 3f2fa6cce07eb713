"""The paper's losses (eq. 9-16): LSGAN, SSIM cycle, MSE identity, and the edge loss.

Edge operators (``EDGE_OPERATORS``, picked by name; the paper uses Sobel, its supplement Kirsch):

- ``sobel``, ``scharr``, ``prewitt``: a pair of 3x3 gradient kernels, magnitude
  ``sqrt(gx**2 + gy**2 + eps)``. ``eps`` (1e-6, kornia's choice) keeps the gradient of the
  square root finite where the image is flat (it is 0/0 there otherwise); it lifts the magnitude
  of a flat region to ``sqrt(eps) = 1e-3``, the same for both sides of the edge loss.
- ``kirsch``: the 8 compass kernels (45-degree rotations of [[5, 5, 5], [-3, 0, -3],
  [-3, -3, -3]]), magnitude = the maximum of the 8 directional responses, the usual definition.
  The 8 kernels sum to zero, so the maximum is >= 0; it is piecewise linear, so its gradient is
  finite without an ``eps``.
- ``laplacian``: the 4-neighbour kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] (scipy's
  ``ndimage.laplace``), magnitude ``|response|``.

Kernels are the textbook, unnormalised ones (the paper prints Sobel that way), so their scales
differ: on a unit ramp Sobel gives 8, Prewitt 6, Scharr 32 and Kirsch 24, and the edge loss
scales with the square of that. ``gamma`` is therefore not comparable across operators.

Kernels are applied as correlations (like ``F.conv2d``, kornia and ``scipy.ndimage.correlate``)
on a replicate-padded image: a border pixel sees its own value repeated outside, so the image
border is not read as an edge (zero padding would put a false step there), and a gradient
running into the border still shows as a one-sided difference (reflect padding would zero the
normal component at the border).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch import Tensor

from semtune.metrics import ssim

__all__ = [
    "EDGE_OPERATORS",
    "cycle_loss",
    "edge_loss",
    "edge_magnitude",
    "identity_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
]

_EPS = 1e-6

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SCHARR_X = ((-3.0, 0.0, 3.0), (-10.0, 0.0, 10.0), (-3.0, 0.0, 3.0))
_PREWITT_X = ((-1.0, 0.0, 1.0), (-1.0, 0.0, 1.0), (-1.0, 0.0, 1.0))
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def _transpose(k: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    return tuple(zip(*k, strict=True))


def _kirsch_kernels() -> tuple[tuple[tuple[float, ...], ...], ...]:
    # Walk the 8 outer cells clockwise from the top-left; each 45-degree step shifts the
    # ring of weights by one cell.
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    north = [5.0, 5.0, 5.0, -3.0, -3.0, -3.0, -3.0, -3.0]
    kernels = []
    for r in range(8):
        k = [[0.0] * 3 for _ in range(3)]
        for idx, (i, j) in enumerate(ring):
            k[i][j] = north[(idx - r) % 8]
        kernels.append(tuple(tuple(row) for row in k))
    return tuple(kernels)


_KIRSCH = _kirsch_kernels()


def _correlate(x: Tensor, kernels: tuple[tuple[tuple[float, ...], ...], ...]) -> Tensor:
    """Correlate each channel of ``x`` (B, C, H, W) with K 3x3 kernels -> (B, C, K, H, W)."""
    b, c, h, w = x.shape
    weight = torch.tensor(kernels, dtype=x.dtype, device=x.device).unsqueeze(1)  # (K, 1, 3, 3)
    flat = nnf.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return nnf.conv2d(flat, weight).reshape(b, c, len(kernels), h, w)


def _gradient_pair(kernel_x: tuple[tuple[float, ...], ...]) -> Callable[..., Tensor]:
    kernels = (kernel_x, _transpose(kernel_x))

    def magnitude(x: Tensor, eps: float = _EPS) -> Tensor:
        g = _correlate(x, kernels)
        return torch.sqrt(g.square().sum(dim=2) + eps)

    return magnitude


def _kirsch(x: Tensor, eps: float = _EPS) -> Tensor:
    del eps  # the maximum is piecewise linear: no square root to keep finite
    return _correlate(x, _KIRSCH).amax(dim=2)


def _laplacian(x: Tensor, eps: float = _EPS) -> Tensor:
    del eps  # |r| has a finite (sub)gradient everywhere
    return _correlate(x, (_LAPLACIAN,)).squeeze(2).abs()


# Name -> magnitude function ``(x (B, C, H, W), eps) -> (B, C, H, W)``, all >= 0.
EDGE_OPERATORS: dict[str, Callable[..., Tensor]] = {
    "sobel": _gradient_pair(_SOBEL_X),
    "kirsch": _kirsch,
    "scharr": _gradient_pair(_SCHARR_X),
    "prewitt": _gradient_pair(_PREWITT_X),
    "laplacian": _laplacian,
}


def _check_image(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _check_pair(a: object, b: object, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
    a, b = _check_image(names[0], a), _check_image(names[1], b)
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    return a, b


def edge_magnitude(x: Tensor, operator: str = "sobel", *, eps: float = _EPS) -> Tensor:
    """Edge strength of each pixel under a named operator (see the module docstring).

    Args:
        x: (B, C, H, W) float images (C = 1 for SEM), in [0, 1].
        operator: a key of ``EDGE_OPERATORS``.
        eps: added under the square root of the gradient-pair operators (ignored by the others).

    Returns:
        (B, C, H, W) magnitudes, >= 0.

    Raises:
        ValueError: an unknown operator (the message lists the valid names) or a non-4-D input.
        TypeError: a non-tensor or non-float input.
    """
    try:
        fn = EDGE_OPERATORS[operator]
    except KeyError:
        raise ValueError(
            f"unknown edge operator {operator!r}; valid names: {sorted(EDGE_OPERATORS)}"
        ) from None
    return fn(_check_image("x", x), eps)


def lsgan_d_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """Least-squares discriminator loss ``0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2))``.

    Args:
        real_pred: discriminator scores on real images, any shape.
        fake_pred: scores on generated images (detached from the generator), any shape.

    Returns:
        Scalar loss.
    """
    return 0.5 * ((real_pred - 1).square().mean() + fake_pred.square().mean())


def lsgan_g_loss(fake_pred: Tensor) -> Tensor:
    """Least-squares generator loss ``mean((D(fake) - 1)^2)``.

    Args:
        fake_pred: discriminator scores on generated images, any shape.

    Returns:
        Scalar loss.
    """
    return (fake_pred - 1).square().mean()


def cycle_loss(rec: Tensor, real: Tensor) -> Tensor:
    """SSIM cycle-consistency loss ``1 - SSIM(rec, real)`` (eq. 11, one direction).

    Args:
        rec: (B, C, H, W) reconstruction, e.g. F(G(a)), in [0, 1].
        real: (B, C, H, W) the original, in [0, 1].

    Returns:
        Scalar loss in [0, 2].
    """
    rec, real = _check_pair(rec, real, ("rec", "real"))
    return 1 - ssim(rec, real, reduction="mean")


def identity_loss(same: Tensor, real: Tensor) -> Tensor:
    """Identity loss ``MSE(same, real)`` (eq. 12, one term), e.g. ``same = G(b)``.

    Args:
        same: (B, C, H, W) a generator's output on an image of its target domain.
        real: (B, C, H, W) that image.

    Returns:
        Scalar loss.
    """
    same, real = _check_pair(same, real, ("same", "real"))
    return nnf.mse_loss(same, real)


def edge_loss(a: Tensor, b: Tensor, operator: str = "sobel") -> Tensor:
    """Edge loss ``MSE(e(a), e(b))`` with ``e`` the named edge magnitude (eq. 13, one term).

    Args:
        a: (B, C, H, W) e.g. F(G(a)), in [0, 1].
        b: (B, C, H, W) e.g. F(a), in [0, 1].
        operator: a key of ``EDGE_OPERATORS``.

    Returns:
        Scalar loss.
    """
    a, b = _check_pair(a, b, ("a", "b"))
    return nnf.mse_loss(edge_magnitude(a, operator), edge_magnitude(b, operator))
