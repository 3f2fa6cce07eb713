"""The fast SSIM kernel under ``semtune.metrics.ssim``: the Gaussian window's two separable
passes as blocked convolutions (one AVX2 register of 8 columns per block), the four planes of
a chunk blurred by one call, and the SSIM formula evaluated in place in a scratch buffer.

Private to ``semtune.metrics``, which checks the arguments, splits batches into chunks and
owns the scratch buffer; kept apart because it is the part one reads for speed, not for what
is measured (``bench/bench_metrics.py`` measures it against scikit-image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as nnf
from torch import Tensor

__all__ = ["BLOCK", "region", "ssim_valid_map"]

# Block width of both 1-D passes: 8 float32 = one AVX2 register. W is zero-padded to a multiple.
BLOCK = 8


def region(buf: Tensor, slot: int, index: int, shape: tuple[int, ...]) -> Tensor:
    """Slot ``index`` (of ``slot`` elements) of a scratch buffer, viewed as ``shape``."""
    return buf[index * slot : index * slot + math.prod(shape)].view(shape)


@dataclass(frozen=True)
class _Plan:
    """Geometry of the two blur passes for one (H, W, window) triple.

    The input is zero-padded on the right by ``pad_w`` columns to a multiple of ``BLOCK``. The
    vertical pass keeps the valid rows only (``rows = H - k + 1``); the horizontal pass pads
    ``pad_h`` blocks of zeros on each side and returns ``cols_out`` columns, of which
    ``[col0, col0 + cols)`` are the valid ones (``cols = W - k + 1``).
    """

    rows: int
    cols: int
    pad_w: int
    pad_h: int
    cols_out: int

    @property
    def col0(self) -> int:
        return BLOCK * self.pad_h


@lru_cache(maxsize=64)
def _plan(h: int, w: int, k: int) -> _Plan:
    rows, cols = h - k + 1, w - k + 1
    pad_w = -w % BLOCK
    nb = -(-(BLOCK + k - 1) // BLOCK)  # input blocks one output block reads
    blocks = (w + pad_w) // BLOCK
    pad_h = 0
    while (blocks + 2 * pad_h - nb + 1) * BLOCK < BLOCK * pad_h + cols:
        pad_h += 1  # the smallest padding whose output blocks cover every valid column
    return _Plan(rows, cols, pad_w, pad_h, (blocks + 2 * pad_h - nb + 1) * BLOCK)


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
    """Depthwise vertical ``(P, 1, k, 1)`` and polyphase horizontal ``(P, P, 1, nb)`` kernels.

    Vertical: every column of a block (a channel) gets the same 1-D window along the rows.
    Horizontal: output block ``j`` (``P`` channels = ``P`` adjacent columns) reads the input
    blocks ``j .. j + nb - 1``; tap ``t`` of output column ``o`` sits at offset ``o + t`` from
    the first of them. ``scale`` multiplies the horizontal kernel.
    """
    g = torch.tensor(_gaussian(window_size, sigma), dtype=torch.float64)
    kv = g.view(1, 1, window_size, 1).repeat(BLOCK, 1, 1, 1)
    nb = -(-(BLOCK + window_size - 1) // BLOCK)
    kh = torch.zeros(BLOCK, BLOCK, 1, nb, dtype=torch.float64)
    for o in range(BLOCK):
        for t in range(window_size):
            kh[o, (o + t) % BLOCK, 0, (o + t) // BLOCK] = g[t] * scale
    cl = torch.channels_last
    return (
        kv.to(dtype=dtype, device=device).contiguous(memory_format=cl),
        kh.to(dtype=dtype, device=device).contiguous(memory_format=cl),
    )


def _blocks(t: Tensor) -> Tensor:
    """``(m, R, W)`` contiguous, ``W % P == 0`` -> the channels-last view ``(m, P, R, W / P)``."""
    m, r, w = t.shape
    return t.view(m, r, w // BLOCK, BLOCK).permute(0, 3, 1, 2)


def _unblocks(t: Tensor) -> Tensor:
    """Inverse of ``_blocks`` for a channels-last ``(m, P, R, n)``: ``(m, R, n P)``, no copy."""
    m, _, r, n = t.shape
    return t.permute(0, 2, 3, 1).reshape(m, r, n * BLOCK)


def ssim_valid_map(
    x: Tensor,
    y: Tensor,
    window_size: int,
    sigma: float,
    c1: float,
    c2: float,
    buf: Tensor | None = None,
) -> Tensor:
    """SSIM map over the valid region of ``(n, C, H, W)`` images: ``(n C, rows, cols)``.

    ``buf``: scratch (``semtune.metrics._scratch``) for the chunk when no gradient is
    tracked, else None.
    """
    n, c, h, w = x.shape
    m = n * c
    k = window_size
    plan = _plan(h, w, k)
    wp = w + plan.pad_w
    xs = x.reshape(m, h, w)
    ys = y.reshape(m, h, w)

    # The four planes to blur, side by side; one depthwise call blurs them all along the rows.
    slot = m * h * wp  # one padded plane per image of the chunk
    t = region(buf, slot, 0, (4, m, h, wp)) if buf is not None else xs.new_empty(4, m, h, wp)
    if plan.pad_w:
        # Zero, not just ignored: the polyphase kernel multiplies them by its zero taps.
        t[..., w:] = 0
    t[0, :, :, :w] = xs
    t[1, :, :, :w] = ys
    if buf is not None:
        torch.mul(xs, xs, out=t[2, :, :, :w]).addcmul_(ys, ys)
        torch.mul(xs, ys, out=t[3, :, :, :w])
    else:
        t[2, :, :, :w] = xs * xs + ys * ys
        t[3, :, :, :w] = xs * ys
    kv, kh = _kernels(k, sigma, 1.0, t.dtype, t.device)
    v = _unblocks(nnf.conv2d(_blocks(t.view(4 * m, h, wp)), kv, groups=BLOCK))  # (4m, rows, wp)

    def hblur(planes: Tensor, scale: float) -> Tensor:
        kernel = kh if scale == 1.0 else _kernels(k, sigma, scale, t.dtype, t.device)[1]
        z = _unblocks(nnf.conv2d(_blocks(planes), kernel, padding=(0, plan.pad_h)))
        return z[..., plan.col0 : plan.col0 + plan.cols]

    mxy = hblur(v[: 2 * m], 1.0)
    mx, my = mxy[:m], mxy[m:]
    s = hblur(v[2 * m : 3 * m], 1.0)  # mean of x^2 + y^2
    p2 = hblur(v[3 * m :], 2.0)  # 2 * mean of x y (scaling by 2 is exact)
    del v
    # Eq. 6 as num1 num2 / (den1 den2). s - mx^2 - my^2 and p2 - 2 mx my nearly cancel where
    # the image is flat, so they are formed before C2 is added: adding it to s first rounds
    # away low bits that survive the cancellation (ten times the float32 error against float64).
    c1_t = torch.tensor(c1, dtype=t.dtype, device=t.device)
    if buf is not None:  # the planes in t are spent: num1 and den1 take their place
        shape = (m, plan.rows, plan.cols)
        num1 = torch.addcmul(c1_t, mx, my, value=2.0, out=region(buf, slot, 0, shape))
        den1 = torch.addcmul(c1_t, mx, mx, out=region(buf, slot, 1, shape)).addcmul_(my, my)
        num2 = p2.addcmul_(mx, my, value=-2.0).add_(c2)
        den2 = s.addcmul_(mx, mx, value=-1.0).addcmul_(my, my, value=-1.0).add_(c2)
        return num1.mul_(num2).div_(den1.mul_(den2))
    num1 = torch.addcmul(c1_t, mx, my, value=2.0)
    den1 = torch.addcmul(torch.addcmul(c1_t, mx, mx), my, my)
    num2 = torch.addcmul(p2, mx, my, value=-2.0) + c2
    den2 = torch.addcmul(torch.addcmul(s, mx, mx, value=-1.0), my, my, value=-1.0) + c2
    return (num1 * num2) / (den1 * den2)
