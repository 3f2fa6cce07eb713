"""Image quality metrics of the paper (Methods, eq. 1-8): SSIM, PSNR, AG, CON, SF.

All functions take ``(B, C, H, W)`` float tensors in [0, 1] and return one value per image,
shape ``(B,)``; a multi-channel image is averaged over its channels (SEM images have one).
float64 inputs are computed in float64, anything else in float32.

Full-reference:

- ``ssim``: eq. 6 with the standard product in the denominator (the paper prints a "+"), a
  ``window_size`` x ``window_size`` Gaussian window (11, sigma 1.5) and the paper's constants
  C1 = 1e-4, C2 = 4e-4 (not the usual 1e-4 / 9e-4). Statistics are the population (biased)
  moments under the window, taken over the *valid* region only (no padding), and the per-image
  value is the mean of the SSIM map over that region. This is what
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, K1=0.01, K2=0.02)`` computes (scikit-image
  filters with reflect padding, then crops ``(win - 1) // 2`` pixels per side before averaging,
  which keeps exactly the valid region). Differentiable: it is used as a loss.
- ``psnr``: eq. 7-8, ``10 log10(max_val**2 / MSE)`` with ``max_val = 1``. Identical images give
  ``MSE = 0`` and the function returns ``+inf`` (as scikit-image does), never NaN; a ``"mean"``
  over a batch that contains one is ``+inf`` too.

No-reference sharpness (larger is sharper), reported on the 0-255 gray scale like the paper's
tables (the image is multiplied by 255). With ``f`` the image, ``dh = f[:, 1:] - f[:, :-1]`` the
differences of horizontal neighbours (same row, next column; ``H x (W-1)`` of them) and
``dv = f[1:, :] - f[:-1, :]`` those of vertical neighbours (same column, next row; ``(H-1) x W``):

- ``average_gradient`` (AG, eq. 1): mean of ``sqrt((dh**2 + dv**2) / 2)`` (forward differences)
  over the ``(H-1) x (W-1)`` pixels that have both a right and a lower neighbour. Eq. 1 prints a
  ``1 / (m n)`` normalisation of a sum that would need a row and a column outside the image; the
  usual reading, taken here, averages over the pixels where both differences exist.
- ``contrast`` (CON, eq. 2): ``sum over delta of delta**2 P(delta)``, delta running over the
  gray-level differences of all 4-connected neighbour pairs (every horizontal and every vertical
  pair, each pair once) and ``P`` their empirical distribution; that is the pooled mean of
  ``dh**2`` and ``dv**2``: ``(sum dh**2 + sum dv**2) / (H (W-1) + (H-1) W)``.
- ``spatial_frequency`` (SF, eq. 3-5): ``sqrt(RF**2 + CF**2)`` with ``RF**2 = sum dh**2 / (m n)``
  (row frequency: horizontal neighbours) and ``CF**2 = sum dv**2 / (m n)`` (column frequency:
  vertical neighbours), normalised by the pixel count ``m n = H W`` as printed: the first column
  (for RF) and the first row (for CF) have no left / upper neighbour and add nothing (the sums
  run over the existing pairs, the normaliser is not reduced).

So ``SF**2 = CON * (2 - 1/H - 1/W)``. In the paper's Tables 2-4 ``SF**2 / CON`` lies between
1.78 and 2.0 (median 1.96, over rounded two-decimal values), which supports this reading of
eq. 2 (a 4-neighbour CON; one with diagonal neighbours too would give about 1.3). The
magnitudes match as well: sample SEM crops 256 x 256 give AG 7.6, CON 198, SF 17.5 (the paper's
ground truth in Table 2: 7.37, 98.6, 13.9), and blurred as the paper's set A AG 3.1, CON 42,
SF 8.1 (its "Blurry": 3.69, 30.7, 7.78). AG has a square root: its gradient is infinite where
the image is flat; AG, CON and SF are metrics, not losses (though differentiable elsewhere).

Speed (CPU): whole batches, no per-image Python loop. The batch is cut into chunks of about
``_CHUNK_PIXELS`` pixels so that intermediates stay in cache while the number of torch calls
(each a parallel region) stays small. SSIM's Gaussian window is separable; both 1-D passes read
a row of ``W`` pixels as ``W / 8`` blocks of 8 channels, a channels-last tensor without a copy,
so that oneDNN runs them with 8-wide vector kernels (a one-channel ``conv2d`` with a
``1 x 11`` kernel, and kornia's SSIM, are several times slower):

- vertical: a depthwise convolution along the rows (each column of a block is a channel; every
  channel gets the same window): 11 multiply-adds per output, output in row-major order;
- horizontal (polyphase): output block ``j`` reads input blocks ``j .. j + nb - 1``, an ordinary
  8 -> 8 channel convolution with a ``1 x nb`` kernel (``nb = 3`` for an 11-tap window).

The four blurred planes are ``x``, ``y``, ``x**2 + y**2`` (only the sum of the two variances
enters SSIM) and ``x * y``, blurred together. Without autograd, the temporaries of each chunk
live in one scratch buffer reused across chunks (``out=`` / in-place calls).

The blocked convolutions and the in-place SSIM formula are in ``semtune.ssim_kernel``.

Size: about 500 lines, of which the argument checks, the chunking and the one-pass
``all_metrics`` (measured in bench/bench_metrics.py) are half; the public functions come last.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from semtune.ssim_kernel import BLOCK, region, ssim_valid_map

__all__ = [
    "SSIM",
    "all_metrics",
    "average_gradient",
    "contrast",
    "psnr",
    "spatial_frequency",
    "ssim",
    "ssim_map",
]

Reduction = Literal["none", "mean"]
_REDUCTIONS = ("none", "mean")

# Pixels per chunk (summed over the chunk's images and channels). Measured on 256 x 256 images
# on a 2-core machine, 1 or 2 threads: 8 images per chunk beat 2-4 (more calls, each with a fixed
# cost and, with threads, a barrier) and 16-32 (intermediates fall out of cache). It also keeps
# every allocation far below the 32 MB above which glibc always maps (and page-faults) fresh
# memory.
_CHUNK_PIXELS = 8 * 256 * 256
# Scratch per chunk, in image planes: the 4 planes to blur, then the formula's temporaries,
# then those of PSNR and AG/CON/SF; one buffer serves every chunk of a call. Only the
# convolution outputs are fresh allocations. (When glibc hands freed memory back to the OS
# between chunks, re-faulting it can double the time: jemalloc/tcmalloc, or raising
# MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_, avoid that; bench_metrics.py counts faults.)
_SCRATCH_PLANES = 4


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_image(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_pair(x: Tensor, y: Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    _check_image(x, names[0])
    _check_image(y, names[1])
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(
            f"{names[0]} and {names[1]} must be on the same device, got {x.device} and {y.device}"
        )


def _check_window(window_size: int, sigma: float, h: int, w: int) -> None:
    if isinstance(window_size, bool) or not isinstance(window_size, int):
        raise TypeError(f"window_size must be an int, got {type(window_size).__name__}")
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd int, got {window_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if h < window_size or w < window_size:
        raise ValueError(
            f"images must be at least window_size={window_size} pixels on each side, "
            f"got H={h}, W={w}"
        )


def _check_min_size(x: Tensor, name: str) -> None:
    if x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(
            f"{name} must be at least 2 x 2 pixels, got H={x.shape[-2]}, W={x.shape[-1]}"
        )


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


# ---------------------------------------------------------------------------------------------
# Chunks and scratch


def _work_dtype(x: Tensor, y: Tensor | None = None) -> torch.dtype:
    # float64 stays float64 (gradcheck, references); half types are too coarse for the moments.
    if x.dtype == torch.float64 and (y is None or y.dtype == torch.float64):
        return torch.float64
    return torch.float32


def _tracks_grad(*ts: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def _chunks(batch: int, plane: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // max(plane, 1))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]


def _scratch(x: Tensor, y: Tensor | None, chunks: list[slice]) -> Tensor | None:
    """One buffer of ``_SCRATCH_PLANES`` planes per chunk image, or None under autograd."""
    if _tracks_grad(x, y):
        return None
    _, c, h, w = x.shape
    images = chunks[0].stop - chunks[0].start
    wp = w + (-w % BLOCK)
    return torch.empty(
        _SCRATCH_PLANES * images * c * h * wp, dtype=_work_dtype(x, y), device=x.device
    )


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


# ---------------------------------------------------------------------------------------------
# SSIM


def _ssim_per_image(
    x: Tensor,
    y: Tensor,
    window_size: int,
    sigma: float,
    c1: float,
    c2: float,
    buf: Tensor | None,
) -> Tensor:
    n, c = x.shape[:2]
    m = ssim_valid_map(x, y, window_size, sigma, c1, c2, buf)
    return m.reshape(n, c, -1).mean(dim=(1, 2))


def ssim_map(
    x: Tensor,
    y: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 1e-4,
    c2: float = 4e-4,
) -> Tensor:
    """Local SSIM map over the valid region (no padding).

    Args:
        x: images, shape (B, C, H, W), values in [0, 1].
        y: reference images, same shape.
        window_size: odd side of the Gaussian window.
        sigma: standard deviation of the Gaussian window, in pixels.
        c1: luminance constant (the paper: 1e-4 = (0.01 * 1)**2).
        c2: contrast-structure constant (the paper: 4e-4 = (0.02 * 1)**2).

    Returns:
        SSIM map of shape (B, C, H - window_size + 1, W - window_size + 1); pixel ``(i, j)``
        is the SSIM of the window whose top-left corner is ``(i, j)``.
    """
    _check_pair(x, y)
    b, c, h, w = x.shape
    _check_window(window_size, sigma, h, w)
    dt = _work_dtype(x, y)
    m = ssim_valid_map(x.to(dt), y.to(dt), window_size, float(sigma), c1, c2)
    return m.reshape(b, c, *m.shape[1:])


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 1e-4,
    c2: float = 4e-4,
    reduction: Reduction = "none",
) -> Tensor:
    """Mean SSIM per image (eq. 6), Gaussian window, valid region; differentiable.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1].
        y: reference images, same shape (SSIM is symmetric).
        window_size: odd side of the Gaussian window (11 in the paper).
        sigma: standard deviation of the Gaussian window, in pixels (1.5).
        c1: luminance constant (the paper: 1e-4).
        c2: contrast-structure constant (the paper: 4e-4).
        reduction: ``"none"`` for one value per image, ``"mean"`` for the batch mean.

    Returns:
        Shape (B,) for ``"none"`` (mean over channels and the valid region), a scalar for
        ``"mean"``.
    """
    _check_pair(x, y)
    b, c, h, w = x.shape
    _check_window(window_size, sigma, h, w)
    _check_reduction(reduction)
    dt = _work_dtype(x, y)
    chunks = _chunks(b, c * h * w)
    buf = _scratch(x, y, chunks)
    parts = [
        _ssim_per_image(x[sl].to(dt), y[sl].to(dt), window_size, float(sigma), c1, c2, buf)
        for sl in chunks
    ]
    out = _cat(parts)
    return out.mean() if reduction == "mean" else out


# ---------------------------------------------------------------------------------------------
# PSNR


def _mse(x: Tensor, y: Tensor, buf: Tensor | None) -> Tensor:
    if buf is not None:
        d = torch.sub(x, y, out=region(buf, 0, 0, tuple(x.shape))).square_()
    else:
        d = (x - y).square()
    # square().sum(): cascade summation; vector_norm(d).square() was 10x less accurate.
    return d.sum(dim=(1, 2, 3)) / d[0].numel()


def _psnr_from_mse(mse: Tensor, max_val: float) -> Tensor:
    # max_val**2 / 0 = inf and log10(inf) = inf: identical images give +inf, not NaN.
    return 10 * torch.log10(max_val**2 / mse)


def psnr(x: Tensor, y: Tensor, *, max_val: float = 1.0, reduction: Reduction = "none") -> Tensor:
    """Peak signal-to-noise ratio per image (eq. 7-8), in dB.

    Args:
        x: images, shape (B, C, H, W).
        y: reference images, same shape.
        max_val: the peak value (1 for images in [0, 1]).
        reduction: ``"none"`` for one value per image, ``"mean"`` for the batch mean.

    Returns:
        Shape (B,) (or a scalar for ``"mean"``); ``+inf`` where x and y are identical.
    """
    _check_pair(x, y)
    _check_reduction(reduction)
    if not max_val > 0:
        raise ValueError(f"max_val must be > 0, got {max_val!r}")
    dt = _work_dtype(x, y)
    b, c, h, w = x.shape
    chunks = _chunks(b, c * h * w)
    buf = _scratch(x, y, chunks)
    out = _psnr_from_mse(_cat([_mse(x[sl].to(dt), y[sl].to(dt), buf) for sl in chunks]), max_val)
    return out.mean() if reduction == "mean" else out


# ---------------------------------------------------------------------------------------------
# AG, CON, SF


def _difference_stats(x: Tensor, buf: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Per image, 0-1 scale: mean of ``sqrt(dh^2 + dv^2)`` (AG * sqrt 2), sum dh^2, sum dv^2."""
    n, c, h, w = x.shape
    dims = (1, 2, 3)
    if buf is not None:
        slot = n * c * h * w
        dh = torch.sub(x[..., 1:], x[..., :-1], out=region(buf, slot, 0, (n, c, h, w - 1)))
        dv = torch.sub(x[..., 1:, :], x[..., :-1, :], out=region(buf, slot, 1, (n, c, h - 1, w)))
        dh2, dv2 = dh.square_(), dv.square_()
        g = region(buf, slot, 2, (n, c, h - 1, w - 1))
        torch.add(dh2[..., :-1, :], dv2[..., :-1], out=g).sqrt_()
    else:
        dh2 = (x[..., 1:] - x[..., :-1]).square()
        dv2 = (x[..., 1:, :] - x[..., :-1, :]).square()
        g = (dh2[..., :-1, :] + dv2[..., :-1]).sqrt()
    return g.mean(dim=dims), dh2.sum(dim=dims), dv2.sum(dim=dims)


def _sharpness(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    _check_image(x, "x")
    _check_min_size(x, "x")
    b, c, h, w = x.shape
    dt = _work_dtype(x)
    chunks = _chunks(b, c * h * w)
    buf = _scratch(x, None, chunks)
    ag, sh, sv = zip(*[_difference_stats(x[sl].to(dt), buf) for sl in chunks], strict=True)
    return _cat(list(ag)), _cat(list(sh)), _cat(list(sv))


def _ag_con_sf(ag: Tensor, sh: Tensor, sv: Tensor, shape: torch.Size) -> tuple[Tensor, ...]:
    """The three metrics on the 0-255 scale from the per-image sums (0-1 scale)."""
    _, c, h, w = shape
    pairs = c * (h * (w - 1) + (h - 1) * w)
    # mean sqrt((dh^2 + dv^2) / 2) = mean sqrt(dh^2 + dv^2) / sqrt(2)
    return (
        ag * (255.0 / math.sqrt(2.0)),
        (sh + sv) * (255.0**2 / pairs),
        ((sh + sv) / (c * h * w)).sqrt() * 255.0,
    )


def average_gradient(x: Tensor) -> Tensor:
    """Average gradient AG (eq. 1) per image on the 0-255 scale.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1]; H, W >= 2.

    Returns:
        Shape (B,): mean of ``sqrt((dh**2 + dv**2) / 2)`` over the (H-1) x (W-1) pixels with
        a right and a lower neighbour (forward differences), times 255.
    """
    return _ag_con_sf(*_sharpness(x), x.shape)[0]


def contrast(x: Tensor) -> Tensor:
    """Gray-level-difference contrast CON (eq. 2) per image on the 0-255 scale.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1]; H, W >= 2.

    Returns:
        Shape (B,): mean squared difference of all horizontally and vertically adjacent pixel
        pairs (each pair once), in gray levels squared.
    """
    return _ag_con_sf(*_sharpness(x), x.shape)[1]


def spatial_frequency(x: Tensor) -> Tensor:
    """Spatial frequency SF (eq. 3-5) per image on the 0-255 scale.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1]; H, W >= 2.

    Returns:
        Shape (B,): ``sqrt(RF**2 + CF**2)``, RF from horizontal and CF from vertical neighbour
        differences, each sum normalised by H W (the missing first column / row count as 0).
    """
    return _ag_con_sf(*_sharpness(x), x.shape)[2]


# ---------------------------------------------------------------------------------------------
# All at once


def all_metrics(
    restored: Tensor,
    clean: Tensor | None,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 1e-4,
    c2: float = 4e-4,
) -> dict[str, Tensor]:
    """All five metrics in one pass over the batch (each chunk read once while in cache).

    Args:
        restored: images to score, shape (B, C, H, W), values in [0, 1].
        clean: ground truth of the same shape, or None (no-reference metrics only).
        window_size: SSIM window side.
        sigma: SSIM window standard deviation.
        c1: SSIM luminance constant.
        c2: SSIM contrast-structure constant.

    Returns:
        ``{"ssim", "psnr", "ag", "con", "sf"}`` (the first two only when ``clean`` is given),
        each of shape (B,): SSIM and PSNR (max 1) against ``clean``, AG/CON/SF of ``restored``.
    """
    _check_image(restored, "restored")
    b, c, h, w = restored.shape
    if clean is not None:
        _check_pair(restored, clean, ("restored", "clean"))
        _check_window(window_size, sigma, h, w)
    _check_min_size(restored, "restored")
    dt = _work_dtype(restored, clean)
    chunks = _chunks(b, c * h * w)
    buf = _scratch(restored, clean, chunks)
    acc: dict[str, list[Tensor]] = {k: [] for k in ("ssim", "mse", "ag", "sh", "sv")}
    for sl in chunks:
        xs = restored[sl].to(dt)
        if clean is not None:
            ys = clean[sl].to(dt)
            acc["ssim"].append(_ssim_per_image(xs, ys, window_size, float(sigma), c1, c2, buf))
            acc["mse"].append(_mse(xs, ys, buf))
        for key, value in zip(("ag", "sh", "sv"), _difference_stats(xs, buf), strict=True):
            acc[key].append(value)
    ag, con, sf = _ag_con_sf(_cat(acc["ag"]), _cat(acc["sh"]), _cat(acc["sv"]), restored.shape)
    out: dict[str, Tensor] = {}
    if clean is not None:
        out["ssim"] = _cat(acc["ssim"])
        out["psnr"] = _psnr_from_mse(_cat(acc["mse"]), 1.0)
    out.update(ag=ag, con=con, sf=sf)
    return out


class SSIM(nn.Module):
    """Module form of :func:`ssim` (stores the arguments, kornia style).

    Args:
        window_size: odd side of the Gaussian window.
        sigma: standard deviation of the Gaussian window.
        c1: luminance constant.
        c2: contrast-structure constant.
        reduction: ``"none"`` or ``"mean"``.
    """

    def __init__(
        self,
        window_size: int = 11,
        sigma: float = 1.5,
        c1: float = 1e-4,
        c2: float = 4e-4,
        reduction: Reduction = "none",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.window_size = window_size
        self.sigma = sigma
        self.c1 = c1
        self.c2 = c2
        self.reduction: Reduction = reduction

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return ssim(
            x,
            y,
            window_size=self.window_size,
            sigma=self.sigma,
            c1=self.c1,
            c2=self.c2,
            reduction=self.reduction,
        )
