"""Image quality metrics of the paper (Methods, eq. 1-8): SSIM, PSNR, AG, CON, SF.

All functions take ``(B, C, H, W)`` float tensors in [0, 1] and return one value per image,
shape ``(B,)``; a multi-channel image is averaged over its channels (SEM images have one).

Full-reference:

- ``ssim``: eq. 6 with the standard product in the denominator (the paper prints a "+"), an
  ``window_size`` x ``window_size`` Gaussian window (11, sigma 1.5) and the paper's constants
  C1 = 1e-4, C2 = 4e-4 (not the usual 1e-4 / 9e-4). Statistics are the population (biased)
  moments under the window, taken over the *valid* region only (no padding), and the per-image
  value is the mean of the SSIM map over that region. This is what
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, K1=0.01, K2=0.02)`` computes (scikit-image
  filters with reflect padding and then crops ``(win - 1) // 2`` pixels per side before
  averaging, i.e. keeps exactly the valid region). Differentiable: it is used as a loss.
- ``psnr``: eq. 7-8, ``10 log10(max_val**2 / MSE)`` with ``max_val = 1``. Identical images give
  ``MSE = 0`` and the function returns ``+inf`` (as scikit-image does), never NaN; a ``"mean"``
  over a batch that contains one is ``+inf`` too.

No-reference sharpness (larger is sharper), reported on the 0-255 gray scale like the paper's
tables: the image is multiplied by 255 first. With ``f`` the image, ``dh = f[:, 1:] - f[:, :-1]``
the differences of horizontal neighbours (same row, next column; ``H x (W-1)`` of them) and
``dv = f[1:, :] - f[:-1, :]`` those of vertical neighbours (same column, next row; ``(H-1) x W``):

- ``average_gradient`` (AG, eq. 1): mean over the ``(H-1) x (W-1)`` pixels that have both a right
  and a lower neighbour of ``sqrt((dh**2 + dv**2) / 2)`` (forward differences). Eq. 1 prints a
  ``1 / (m n)`` normalisation over a sum that would need a row and a column outside the image;
  the usual reading, taken here, averages over the pixels where both differences exist.
- ``contrast`` (CON, eq. 2): ``sum over delta of delta**2 P(delta)`` where delta runs over the
  gray-level differences of all 4-connected neighbour pairs (every horizontal and every vertical
  pair, each pair once) and ``P`` is their empirical distribution; that is the mean of ``dh**2``
  and ``dv**2`` pooled: ``(sum dh**2 + sum dv**2) / (H (W-1) + (H-1) W)``.
- ``spatial_frequency`` (SF, eq. 3-5): ``sqrt(RF**2 + CF**2)`` with ``RF**2 = sum dh**2 / (m n)``
  (row frequency: horizontal neighbours) and ``CF**2 = sum dv**2 / (m n)`` (column frequency:
  vertical neighbours), normalised by the pixel count ``m n = H W`` as printed; the first column
  (for RF) and first row (for CF) have no left / upper neighbour and contribute nothing (the sums
  run over the existing pairs, the normaliser is not reduced).

So ``SF**2 = CON * (2 - 1/H - 1/W)``: the paper's tables keep that ratio (about 1.97), which
supports this reading of eq. 2. AG uses a square root, so its gradient is infinite where the
image is flat; it, CON and SF are metrics, not losses.

Performance: the metrics run on whole batches without a per-image Python loop; the batch is cut
into chunks of a few images so that every intermediate stays in cache. SSIM's Gaussian window is
separable; both 1-D passes are written as dense convolutions that oneDNN runs well on a CPU
(a plain ``conv2d`` with one channel and a ``1 x 11`` kernel is several times slower):

- vertical: one output channel per row offset ``o`` in a block of ``P`` rows, kernel
  ``(P + win - 1) x 1``, stride ``P``: a batch of small GEMMs over contiguous rows. The output
  rows come out permuted (offset-major); the horizontal pass and the mean do not care, and
  ``ssim_map`` puts them back.
- horizontal (polyphase): a row of ``W`` pixels is viewed as ``W / P`` blocks of ``P`` channels
  (a channels-last tensor, no copy); output block ``j`` needs input blocks ``j .. j + nb - 1``,
  so the pass is an ordinary ``P -> P`` channel convolution with a ``1 x nb`` kernel.

The four blurred quantities are ``x``, ``y``, ``x**2 + y**2`` (only the sum of the variances
enters SSIM) and ``x * y``, stacked and filtered together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

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

# Pixels per chunk (summed over the chunk's images and channels). The passes are bound by memory
# traffic, not arithmetic: a chunk should stay in cache from one pass to the next, yet every
# torch call (and, with several threads, every parallel region) has a fixed cost.
_CHUNK_PIXELS = 4 * 256 * 256
# Block sizes of the two 1-D passes. Horizontal: 8 float32 output channels = one AVX2 register.
# Vertical: oneDNN picks a much faster kernel for 16 output channels than for 8.
_P_H = 8
_P_V = 16


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


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(v: Tensor, reduction: str) -> Tensor:
    return v.mean() if reduction == "mean" else v


def _work_dtype(x: Tensor, y: Tensor | None = None) -> torch.dtype:
    # float64 stays float64 (gradcheck, references); half types are too coarse for the moments.
    if x.dtype == torch.float64 and (y is None or y.dtype == torch.float64):
        return torch.float64
    return torch.float32


def _chunks(batch: int, plane: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // max(plane, 1))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


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


@dataclass(frozen=True)
class _Plan:
    """Geometry of the two blur passes for one (H, W, window) triple.

    The vertical pass turns ``H`` rows into ``P_V * nbv`` rows stored offset-major (output row
    ``j * P_V + o`` at position ``o * nbv + j``), zero-padded by ``pad_v`` rows on each side; the
    horizontal pass turns ``W + pad_w`` (a multiple of ``P_H``) columns into ``cols_out``,
    zero-padded by ``pad_h`` blocks on each side. Valid (window fully inside the image) output
    rows are ``[pad_v, pad_v + rows)`` and columns ``[P_H * pad_h, P_H * pad_h + cols)``.
    """

    rows: int
    cols: int
    pad_v: int
    nbv: int
    pad_w: int
    pad_h: int
    cols_out: int

    @property
    def col0(self) -> int:
        return _P_H * self.pad_h


@lru_cache(maxsize=64)
def _plan(h: int, w: int, k: int) -> _Plan:
    rows, cols = h - k + 1, w - k + 1
    kv = _P_V + k - 1
    pad_v = 0
    while True:  # smallest symmetric padding whose output blocks cover every valid row
        nbv = (h + 2 * pad_v - kv) // _P_V + 1 if h + 2 * pad_v >= kv else 0
        if nbv * _P_V >= pad_v + rows:
            break
        pad_v += 1
    pad_w = -w % _P_H
    nb = -(-(_P_H + k - 1) // _P_H)
    blocks = (w + pad_w) // _P_H
    pad_h = 0
    while True:
        nbo = blocks + 2 * pad_h - nb + 1
        if nbo * _P_H >= _P_H * pad_h + cols:
            break
        pad_h += 1
    return _Plan(rows, cols, pad_v, nbv, pad_w, pad_h, nbo * _P_H)


@lru_cache(maxsize=32)
def _gaussian(window_size: int, sigma: float) -> tuple[float, ...]:
    r = (window_size - 1) / 2
    w = [math.exp(-((i - r) ** 2) / (2 * sigma * sigma)) for i in range(window_size)]
    s = sum(w)
    return tuple(v / s for v in w)


@lru_cache(maxsize=64)
def _kernels(
    window_size: int, sigma: float, scale: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Vertical ``(P_V, 1, P_V + k - 1, 1)`` and polyphase horizontal ``(P_H, P_H, 1, nb)``.

    Output channel ``o`` of the vertical kernel holds the window shifted down by ``o`` rows
    (stride ``P_V``: one output block of ``P_V`` rows per step). The horizontal kernel maps the
    ``nb`` input blocks of ``P_H`` columns that output block ``j`` reads (``j .. j + nb - 1``) to
    its ``P_H`` outputs. ``scale`` multiplies the horizontal kernel.
    """
    g = torch.tensor(_gaussian(window_size, sigma), dtype=torch.float64)
    kv = torch.zeros(_P_V, 1, _P_V + window_size - 1, 1, dtype=torch.float64)
    for o in range(_P_V):
        kv[o, 0, o : o + window_size, 0] = g
    nb = -(-(_P_H + window_size - 1) // _P_H)
    kh = torch.zeros(_P_H, _P_H, 1, nb, dtype=torch.float64)
    for o in range(_P_H):
        for t in range(window_size):
            q = o + t  # column of tap t of output o, counted from output block j's first input
            kh[o, q % _P_H, 0, q // _P_H] = g[t] * scale
    kh = kh.to(dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
    return kv.to(dtype=dtype, device=device), kh


@lru_cache(maxsize=64)
def _bias(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.full((_P_H,), value, dtype=dtype, device=device)


@lru_cache(maxsize=64)
def _row_weights(h: int, w: int, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1 for the valid rows of the offset-major layout, 0 for padding rows: ``(P_V * nbv,)``."""
    p = _plan(h, w, k)
    r = torch.arange(_P_V * p.nbv).view(_P_V, p.nbv)  # [o, j]
    r = r % p.nbv * _P_V + r // p.nbv  # output row j * P_V + o
    valid = (r >= p.pad_v) & (r < p.pad_v + p.rows)
    return valid.reshape(-1).to(dtype=dtype, device=device)


def _blur(t: Tensor, plan: _Plan, window_size: int, sigma: float, scale: float, bias: float) -> Tensor:
    """Gaussian-window means ``scale * mean + bias`` of planes ``(m, H, W + pad_w)``.

    Returns ``(m, P_V * nbv, cols_out)`` in offset-major row order (see ``_Plan``).
    """
    m, h, wp = t.shape
    kv, kh = _kernels(window_size, sigma, scale, t.dtype, t.device)
    v = nnf.conv2d(t.view(m, 1, h, wp), kv, stride=(_P_V, 1), padding=(plan.pad_v, 0))
    rows_p = _P_V * plan.nbv
    # (m, P_V, nbv, W) is also (m, rows_p, W): read its rows as blocks of P_H channels, which is
    # a channels-last tensor without a copy; so is the output.
    vh = v.view(m, rows_p, wp // _P_H, _P_H).permute(0, 3, 1, 2)
    b = _bias(bias, t.dtype, t.device) if bias else None
    z = nnf.conv2d(vh, kh, b, padding=(0, plan.pad_h))
    return z.permute(0, 2, 3, 1).reshape(m, rows_p, plan.cols_out)


def _ssim_blocked(
    x: Tensor, y: Tensor, window_size: int, sigma: float, c1: float, c2: float
) -> tuple[Tensor, _Plan]:
    """SSIM map of ``(n, C, H, W)`` images in the blurred layout: ``(n C, P_V nbv, cols_out)``.

    Only the valid region (see ``_Plan``) is meaningful; padding positions are finite.
    """
    n, c, h, w = x.shape
    k = window_size
    plan = _plan(h, w, k)
    xs = x.reshape(n * c, h, w)
    ys = y.reshape(n * c, h, w)
    if plan.pad_w:
        xs = nnf.pad(xs, (0, plan.pad_w))
        ys = nnf.pad(ys, (0, plan.pad_w))
    xs = xs.contiguous()
    ys = ys.contiguous()
    inplace = not (torch.is_grad_enabled() and (xs.requires_grad or ys.requires_grad))

    # The constants ride on the convolutions (scale and bias are free there), so that the
    # formula below is 8 elementwise calls: with mx, my the means, s = mean(x^2 + y^2) and
    # p = mean(x y),  num1 = 2 mx my + C1,  num2 = 2 (p - mx my) + C2 = p' - num1  with
    # p' = 2 p + C1 + C2,  den1 = mx^2 + my^2 + C1,  den2 = s - mx^2 - my^2 + C2 = s' - den1
    # with s' = s + C1 + C2.
    mx = _blur(xs, plan, k, sigma, 1.0, 0.0)
    my = _blur(ys, plan, k, sigma, 1.0, 0.0)
    sq = torch.addcmul(xs * xs, ys, ys) if not inplace else torch.mul(xs, xs).addcmul_(ys, ys)
    s_ = _blur(sq, plan, k, sigma, 1.0, c1 + c2)
    del sq
    p_ = _blur(xs * ys, plan, k, sigma, 2.0, c1 + c2)
    c1_t = torch.tensor(c1, dtype=mx.dtype, device=mx.device)
    num1 = torch.addcmul(c1_t, mx, my, value=2.0)
    den1 = torch.addcmul(c1_t, mx, mx)
    if inplace:
        den1.addcmul_(my, my)
        num2 = p_.sub_(num1)
        den2 = s_.sub_(den1)
        return num1.mul_(num2).div_(den1.mul_(den2)), plan
    den1 = torch.addcmul(den1, my, my)
    return (num1 * (p_ - num1)) / (den1 * (s_ - den1)), plan


def _valid_mean(m: Tensor, h: int, w: int, k: int) -> Tensor:
    """Mean over the valid region of blocked maps ``(N, P_V nbv, cols_out)`` -> ``(N,)``."""
    plan = _plan(h, w, k)
    row_sums = m[..., plan.col0 : plan.col0 + plan.cols].sum(dim=-1)
    weights = _row_weights(h, w, k, m.dtype, m.device)
    return (row_sums @ weights) / (plan.rows * plan.cols)


def _ssim_per_image(
    x: Tensor, y: Tensor, window_size: int, sigma: float, c1: float, c2: float
) -> Tensor:
    n, c, h, w = x.shape
    m, _ = _ssim_blocked(x, y, window_size, sigma, c1, c2)
    per_plane = _valid_mean(m, h, w, window_size)
    return per_plane.view(n, c).mean(dim=1)


def ssim_map(
    x: Tensor,
    y: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 1e-4,
    c2: float = 4e-4,
) -> Tensor:
    """Local SSIM map over the valid region.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1].
        y: reference images, same shape.
        window_size: odd side of the Gaussian window.
        sigma: standard deviation of the Gaussian window, in pixels.
        c1: luminance constant (the paper: 1e-4 = (0.01 * 1)**2).
        c2: contrast-structure constant (the paper: 4e-4 = (0.02 * 1)**2).

    Returns:
        SSIM map of shape (B, C, H - window_size + 1, W - window_size + 1); float64 for float64
        inputs, float32 otherwise.
    """
    _check_pair(x, y)
    b, c, h, w = x.shape
    _check_window(window_size, sigma, h, w)
    dt = _work_dtype(x, y)
    m, plan = _ssim_blocked(x.to(dt), y.to(dt), window_size, float(sigma), c1, c2)
    m = m.view(b * c, _P_V, plan.nbv, plan.cols_out).transpose(1, 2)
    m = m.reshape(b, c, _P_V * plan.nbv, plan.cols_out)
    return m[:, :, plan.pad_v : plan.pad_v + plan.rows, plan.col0 : plan.col0 + plan.cols]


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
        ``"mean"``. float64 inputs give float64, anything else float32.
    """
    _check_pair(x, y)
    b, c, h, w = x.shape
    _check_window(window_size, sigma, h, w)
    _check_reduction(reduction)
    dt = _work_dtype(x, y)
    parts = [
        _ssim_per_image(x[sl].to(dt), y[sl].to(dt), window_size, float(sigma), c1, c2)
        for sl in _chunks(b, c * h * w)
    ]
    return _reduce(_cat(parts), reduction)


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
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not max_val > 0:
        raise ValueError(f"max_val must be > 0, got {max_val!r}")
    dt = _work_dtype(x, y)
    b, c, h, w = x.shape
    parts = [_mse(x[sl].to(dt), y[sl].to(dt)) for sl in _chunks(b, c * h * w)]
    mse = torch.cat(parts) if len(parts) > 1 else parts[0]
    return _reduce(_psnr_from_mse(mse, max_val), reduction)


def _mse(x: Tensor, y: Tensor) -> Tensor:
    d = x - y
    return (d * d).mean(dim=(1, 2, 3))


def _psnr_from_mse(mse: Tensor, max_val: float) -> Tensor:
    # max_val**2 / 0 = inf and log10(inf) = inf: identical images give +inf, not NaN.
    return 10 * torch.log10(max_val**2 / mse)


def _difference_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image: AG (0-1 scale), sum of dh^2, sum of dv^2 (both 0-1 scale)."""
    dh = x[..., :, 1:] - x[..., :, :-1]
    dv = x[..., 1:, :] - x[..., :-1, :]
    dh2 = dh * dh
    dv2 = dv * dv
    sh = dh2.sum(dim=(1, 2, 3))
    sv = dv2.sum(dim=(1, 2, 3))
    ag = ((dh2[..., :-1, :] + dv2[..., :, :-1]) * 0.5).sqrt().mean(dim=(1, 2, 3))
    return ag, sh, sv


def _sharpness(x: Tensor, name: str) -> tuple[Tensor, Tensor, Tensor]:
    _check_image(x, name)
    b, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got H={h}, W={w}")
    dt = _work_dtype(x)
    parts = [_difference_stats(x[sl].to(dt)) for sl in _chunks(b, c * h * w)]
    if len(parts) == 1:
        return parts[0]
    ag, sh, sv = zip(*parts, strict=True)
    return torch.cat(ag), torch.cat(sh), torch.cat(sv)


def _con_sf(sh: Tensor, sv: Tensor, shape: torch.Size) -> tuple[Tensor, Tensor]:
    _, c, h, w = shape
    pairs = c * (h * (w - 1) + (h - 1) * w)
    con = (sh + sv) * (255.0**2 / pairs)
    sf = ((sh + sv) / (c * h * w)).sqrt() * 255.0
    return con, sf


def average_gradient(x: Tensor) -> Tensor:
    """Average gradient AG (eq. 1) per image on the 0-255 scale.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1]; H, W >= 2.

    Returns:
        Shape (B,): mean of ``sqrt((dh**2 + dv**2) / 2)`` over the (H-1) x (W-1) pixels with
        a right and a lower neighbour (forward differences), times 255.
    """
    ag, _, _ = _sharpness(x, "x")
    return ag * 255.0


def contrast(x: Tensor) -> Tensor:
    """Gray-level-difference contrast CON (eq. 2) per image on the 0-255 scale.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1]; H, W >= 2.

    Returns:
        Shape (B,): mean squared difference of all horizontally and vertically adjacent pixel
        pairs (each pair once), in gray levels squared.
    """
    _, sh, sv = _sharpness(x, "x")
    return _con_sf(sh, sv, x.shape)[0]


def spatial_frequency(x: Tensor) -> Tensor:
    """Spatial frequency SF (eq. 3-5) per image on the 0-255 scale.

    Args:
        x: images, shape (B, C, H, W), values in [0, 1]; H, W >= 2.

    Returns:
        Shape (B,): ``sqrt(RF**2 + CF**2)``, RF from horizontal and CF from vertical neighbour
        differences, each sum normalised by H W (the missing first column / row count as 0).
    """
    _, sh, sv = _sharpness(x, "x")
    return _con_sf(sh, sv, x.shape)[1]


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
        each of shape (B,); PSNR and SSIM against ``clean``, AG/CON/SF of ``restored``.
    """
    _check_image(restored, "restored")
    b, c, h, w = restored.shape
    if clean is not None:
        _check_image(clean, "clean")
        if clean.shape != restored.shape:
            raise ValueError(
                f"restored and clean must have the same shape, "
                f"got {tuple(restored.shape)} and {tuple(clean.shape)}"
            )
        _check_window(window_size, sigma, h, w)
    elif h < 2 or w < 2:
        raise ValueError(f"restored must be at least 2 x 2 pixels, got H={h}, W={w}")
    dt = _work_dtype(restored, clean)
    acc: dict[str, list[Tensor]] = {k: [] for k in ("ssim", "psnr", "ag", "sh", "sv")}
    for sl in _chunks(b, c * h * w):
        xs = restored[sl].to(dt)
        if clean is not None:
            ys = clean[sl].to(dt)
            z, rows, cols = _blurred_moments(xs, ys, window_size, sigma)
            acc["ssim"].append(_valid_mean(_ssim_terms(z, c1, c2), rows, cols).view(-1, c).mean(1))
            acc["psnr"].append(_mse(xs, ys))
        ag, sh, sv = _difference_stats(xs)
        acc["ag"].append(ag)
        acc["sh"].append(sh)
        acc["sv"].append(sv)
    cat = {k: torch.cat(v) for k, v in acc.items() if v}
    con, sf = _con_sf(cat["sh"], cat["sv"], restored.shape)
    out: dict[str, Tensor] = {}
    if clean is not None:
        out["ssim"] = cat["ssim"]
        out["psnr"] = _psnr_from_mse(cat["psnr"], 1.0)
    out["ag"] = cat["ag"] * 255.0
    out["con"] = con
    out["sf"] = sf
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
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
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
