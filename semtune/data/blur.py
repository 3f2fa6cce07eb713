"""Blur kernels (Gaussian, motion, defocus disk) and the convolutions that apply them to SEM
images: true convolutions with ``'reflect'`` borders (scipy.ndimage ``mode='mirror'``), separable
PSFs as two 1-D passes, large ones through the FFT. ``semtune.data.degrade`` builds the paper's
sets from them; the argument checks here are shared with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "check_fits",
    "check_images",
    "check_odd_size",
    "check_positive",
    "compose",
    "convolve",
    "convolve_unchecked",
    "defocus_blur",
    "disk_kernel",
    "embed",
    "gaussian_blur",
    "gaussian_kernel",
    "is_int",
    "is_real",
    "motion_blur",
    "motion_kernel",
]

# Direct convolution costs k^2 per pixel, FFT roughly a constant: from this PSF size on, the
# FFT is faster on CPU for 256x256 images (an 11x11 disk: about 2x).
_FFT_MIN_KERNEL = 9


# --------------------------------------------------------------------------------------------
# Checks (shared with semtune.data.degrade)
# --------------------------------------------------------------------------------------------


def is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_positive(name: str, value: object) -> None:
    if not is_real(value) or not 0.0 < float(value) < math.inf:  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_odd_size(name: str, value: object) -> None:
    if not is_int(value) or value < 1 or value % 2 == 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be an odd int >= 1, got {value!r}")


def check_images(x: object) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected images of shape (B, 1, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {x.dtype}")


def check_fits(x: Tensor, kernel_size: int) -> None:
    # Reflect padding mirrors without the edge pixel, so it needs more than k // 2 pixels.
    if min(x.shape[-2:]) <= kernel_size // 2:
        raise ValueError(
            f"images of size {tuple(x.shape[-2:])} are too small for a {kernel_size}x"
            f"{kernel_size} PSF with reflect borders: each side must exceed {kernel_size // 2}"
        )


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


def gaussian_kernel(kernel_size: int = 7, sigma: float = 1.0) -> Tensor:
    """Sampled, normalised 2D Gaussian (paper eq. 17).

    Args:
        kernel_size: odd side length in pixels (>= 1).
        sigma: standard deviation in pixels (> 0).

    Returns:
        ``(kernel_size, kernel_size)`` float32 kernel that sums to 1.
    """
    check_odd_size("kernel_size", kernel_size)
    check_positive("sigma", sigma)
    kernel = kornia.filters.get_gaussian_kernel2d(kernel_size, (float(sigma), float(sigma)))
    return kernel[0].to(torch.float32)


def motion_kernel(length: int = 10, angle: float = 0.0) -> Tensor:
    """Linear motion-blur kernel: a uniform segment of ``length`` pixels (paper eq. 19).

    Each tap of the horizontal line gets the exact length of the segment ``[-length/2, length/2]``
    that falls in its pixel, so even lengths stay centred: length 10 gives nine taps of 1/10 and
    two end taps of 1/20 (kornia's motion kernel only takes odd sizes). The line is then turned
    with kornia's bilinear rotation.

    Args:
        length: segment length in pixels (>= 1).
        angle: direction in degrees, counter-clockwise as displayed (rows run down); 0 is a
            horizontal streak.

    Returns:
        ``(k, k)`` float32 kernel summing to 1, ``k`` the smallest odd size that holds the
        segment (11 for length 10).
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    if not math.isfinite(angle):
        raise ValueError(f"angle must be finite, got {angle!r}")
    half = math.ceil(length / 2 - 0.5)
    size = 2 * half + 1
    centres = torch.arange(size, dtype=torch.float64) - half
    lo = torch.clamp(centres - 0.5, min=-length / 2)
    hi = torch.clamp(centres + 0.5, max=length / 2)
    row = torch.clamp(hi - lo, min=0.0) / length
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[half] = row
    if angle % 360.0 != 0.0:
        rotated = kornia.geometry.transform.rotate(
            kernel[None, None], torch.tensor([float(angle)], dtype=torch.float64)
        )[0, 0]
        kernel = rotated / rotated.sum()
    return kernel.to(torch.float32)


def disk_kernel(radius: float = 5) -> Tensor:
    """Uniform out-of-focus disk (paper eq. 20), sampled at pixel centres.

    Args:
        radius: disk radius in pixels (> 0); pixels whose centre is within ``radius`` of the
            kernel centre are inside.

    Returns:
        ``(k, k)`` float32 kernel with ``k = 2 * floor(radius) + 1``, equal to one over the number
        of pixels inside the disk there and zero elsewhere (81 pixels for radius 5, against
        ``pi r^2 = 78.5`` in the continuous formula).
    """
    check_positive("radius", radius)
    half = math.floor(radius)
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    inside = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2
    kernel = inside.to(torch.float64)
    return (kernel / kernel.sum()).to(torch.float32)


# --------------------------------------------------------------------------------------------
# Blurs
# --------------------------------------------------------------------------------------------


def gaussian_blur(x: Tensor, kernel_size: int = 7, sigma: float = 1.0) -> Tensor:
    """Gaussian blur with reflect borders (kornia, separable).

    Args:
        x: ``(B, 1, H, W)`` float images in [0, 1]; ``H, W > kernel_size // 2``.
        kernel_size: odd side length in pixels.
        sigma: standard deviation in pixels.

    Returns:
        ``(B, 1, H, W)`` blurred images.
    """
    check_images(x)
    check_odd_size("kernel_size", kernel_size)
    check_positive("sigma", sigma)
    check_fits(x, kernel_size)
    return kornia.filters.gaussian_blur2d(
        x, kernel_size, (float(sigma), float(sigma)), border_type="reflect"
    )


def motion_blur(x: Tensor, length: int = 10, angle: float = 0.0) -> Tensor:
    """Linear motion blur (see :func:`motion_kernel`) with reflect borders.

    Args:
        x: ``(B, 1, H, W)`` float images in [0, 1].
        length: streak length in pixels.
        angle: streak direction in degrees, counter-clockwise; 0 is horizontal.

    Returns:
        ``(B, 1, H, W)`` blurred images.
    """
    check_images(x)
    return convolve_unchecked(x, motion_kernel(length, angle))


def defocus_blur(x: Tensor, radius: float = 5.0) -> Tensor:
    """Out-of-focus blur by a uniform disk (see :func:`disk_kernel`) with reflect borders.

    Args:
        x: ``(B, 1, H, W)`` float images in [0, 1].
        radius: disk radius in pixels.

    Returns:
        ``(B, 1, H, W)`` blurred images.
    """
    check_images(x)
    return convolve_unchecked(x, disk_kernel(radius))


def convolve(x: Tensor, psf: Tensor) -> Tensor:
    """Convolve images with one PSF, reflect borders (the sets' own convolution).

    Args:
        x: ``(B, 1, H, W)`` float images; each side must exceed the PSF's radius.
        psf: ``(k, k)`` kernel, ``k`` odd, e.g. a trained F's (sum 1 keeps brightness).

    Returns:
        ``(B, 1, H, W)`` blurred images.
    """
    check_images(x)
    if not isinstance(psf, Tensor) or psf.ndim != 2 or psf.shape[0] != psf.shape[1]:
        raise ValueError(f"psf must be a square (k, k) tensor, got {getattr(psf, 'shape', psf)}")
    check_odd_size("psf size", psf.shape[0])
    return convolve_unchecked(x, psf.float())


def convolve_unchecked(x: Tensor, psf: Tensor) -> Tensor:
    """Convolve ``x`` (B, 1, H, W) with one PSF (k, k), by the cheapest exact route.

    A rank-1 PSF (Gaussian, motion at 0 or 90 degrees) runs as two 1-D passes, a small one
    directly, a large one by FFT.
    """
    psf = _trim(psf)
    size = psf.shape[-1]
    check_fits(x, size)
    factors = _separable_factors(psf)
    if factors is not None:
        column, row = factors
        return _filter1d(_filter1d(x, row, dim=-1), column, dim=-2)
    psf = psf.to(device=x.device, dtype=x.dtype)
    if size < _FFT_MIN_KERNEL:
        return kornia.filters.filter2d(x, psf[None], border_type="reflect", behaviour="conv")
    return _fft_convolve(x, psf)


def _filter1d(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """Convolve along ``dim`` (-1 or -2) with odd-length ``taps``, reflect borders.

    Written as a sum of shifted copies: for these 1-channel images and 1-D taps it runs about 3x
    faster on CPU than conv2d (kornia's filter2d_separable), and skips zero taps.
    """
    taps = _trim_taps(taps)
    weights = taps.flip(0).tolist()  # convolution = correlation with the flipped taps
    pad = len(weights) // 2
    if pad == 0:
        return x * weights[0]
    padded = F.pad(x, (pad, pad, 0, 0) if dim == -1 else (0, 0, pad, pad), mode="reflect")
    length = x.shape[dim]
    out = padded.narrow(dim, 0, length) * weights[0]
    for shift, weight in enumerate(weights[1:], start=1):
        if weight != 0.0:
            out.add_(padded.narrow(dim, shift, length), alpha=weight)
    return out


def _trim_taps(taps: Tensor) -> Tensor:
    """Drop (near-)zero taps at both ends in pairs, keeping the centre."""
    tol = 1e-7 * float(taps.abs().max())
    while taps.numel() > 1 and abs(float(taps[0])) <= tol and abs(float(taps[-1])) <= tol:
        taps = taps[1:-1]
    return taps


def _separable_factors(psf: Tensor) -> tuple[Tensor, Tensor] | None:
    """(column, row) with ``psf == column[:, None] * row[None, :]``, or None if not rank 1."""
    u, s, vh = torch.linalg.svd(psf.to(torch.float64))
    # float32 kernels are rank 1 only up to rounding
    if s.numel() > 1 and s[1] > 1e-6 * s[0]:
        return None
    # The sign of a singular pair is arbitrary; the PSF is non-negative, so keep both factors so.
    sign = 1.0 if u[:, 0].sum() >= 0 else -1.0
    scale = s[0].sqrt()
    return sign * scale * u[:, 0], sign * scale * vh[0]


def _trim(psf: Tensor) -> Tensor:
    """Drop all-zero outer rings of an odd square PSF (undoes :func:`embed`)."""
    while psf.shape[-1] > 1 and not (
        psf[0].any() or psf[-1].any() or psf[:, 0].any() or psf[:, -1].any()
    ):
        psf = psf[1:-1, 1:-1]
    return psf


def _fft_convolve(x: Tensor, psf: Tensor) -> Tensor:
    """Reflect-padded convolution of (B, 1, H, W) images with one (k, k) PSF by FFT, k odd."""
    size = psf.shape[-1]
    pad = size // 2
    height, width = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    # Zero-padding up to a smooth FFT size is safe: the kept window never reads past H + 2 pad.
    fft_h = scipy.fft.next_fast_len(height + 2 * pad, real=True)
    fft_w = scipy.fft.next_fast_len(width + 2 * pad, real=True)
    spectrum = torch.fft.rfft2(padded, s=(fft_h, fft_w))
    psf_spectrum = torch.fft.rfft2(psf, s=(fft_h, fft_w))
    # The PSF sits at the top-left corner, so the output is shifted by ``pad``: with the input
    # padded by ``pad`` too, the un-padded image lands at [2 pad, 2 pad + H).
    out = torch.fft.irfft2(spectrum * psf_spectrum, s=(fft_h, fft_w))
    return out[..., 2 * pad : 2 * pad + height, 2 * pad : 2 * pad + width].contiguous()


def compose(kernels: Sequence[Tensor]) -> Tensor:
    """Full convolution of odd square kernels: the PSF of applying them one after the other."""
    out = kernels[0].to(torch.float64)
    for kernel in kernels[1:]:
        k = kernel.to(torch.float64)
        size = k.shape[-1]
        out = F.conv2d(out[None, None], k.flip(-1, -2)[None, None], padding=size - 1)[0, 0]
    return (out / out.sum()).to(torch.float32)


def embed(psf: Tensor, size: int) -> Tensor:
    """Zero-pad an odd (k, k) PSF to (size, size), keeping its centre."""
    pad = (size - psf.shape[-1]) // 2
    return F.pad(psf, (pad, pad, pad, pad))
