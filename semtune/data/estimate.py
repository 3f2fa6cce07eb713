"""What can be measured about the two unpaired training domains before training.

F's starting blur (``estimate_degradation``: the edge widths of the two domains, subtracted in
quadrature) and the noise of each domain (``noise_levels``), which F adds back to its output,
validation can imitate (``data.val_set: own``) and a trained model carries, so that
``semtune.enhance --report`` can tell when a user's images are far from what it learned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf

from semtune.quality import blur_sigma, noise_sigma

__all__ = [
    "NOISE_FREE_BELOW",
    "DegradationEstimate",
    "estimate_degradation",
    "noise_free_warning",
    "noise_levels",
    "spectral_blur",
]

# Below this median pixel noise a folder of blurred images is noise-free for practical purposes:
# the 10th percentile of real micrographs measured here is 0.0017 (NASA) and 0.0042 (NFFA), and
# set A's blur leaves 0.0004-0.0006 (docs/synthetic_sets.md#noise).
NOISE_FREE_BELOW = 0.0015


def noise_levels(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """The pixel-noise std of each (1, H, W) image (``semtune.quality.noise_sigma``), (N,)."""
    if not images:
        raise ValueError("need at least one image")
    return torch.stack([noise_sigma(x.reshape(1, 1, *x.shape[-2:]))[0] for x in images])


def noise_free_warning(levels: torch.Tensor) -> str | None:
    """A warning when the blurred training images (their ``noise_levels``) carry almost no
    pixel noise, else ``None``. F adds the blurred images' own noise to G's pseudo-inputs, so a
    model trained on noise-free blurred images learns to deconvolve without noise: it gains on
    the paper's noise-free sets and paints grain into real, noisy micrographs
    (docs/restoration.md, item 28)."""
    median = float(levels.median())
    if median >= NOISE_FREE_BELOW:
        return None
    return (
        f"the blurred images carry almost no pixel noise (median {median:.4f}; real micrographs "
        f"measured here: 0.0017 and more in nine of ten). The model will learn to restore "
        f"noise-free images and will paint grain into real, noisy ones "
        f"(semtune.enhance --report flags them). Expected for the paper's noise-free sets A, B "
        f"and C; for real micrographs, train on blurred images with their noise (your own "
        f"--blurred folder as the microscope wrote it, or the default data.synthetic_set A+n)."
    )


@dataclass(frozen=True)
class DegradationEstimate:
    """F's starting point measured from the two unpaired training domains.

    Attributes:
        sigma: relative Gaussian blur of the blurred domain, px (``None`` when it could not be
            measured: see ``problems``).
        transmission: global contrast ratio blurred / clean (1 = no fog).
        airlight: the grey level contrast is lost towards, in [0, 1].
        sigma_blurred: median edge width measured on the blurred images, px (NaN if none).
        sigma_clean: the same on the clean images (their own optical blur), px (NaN if none).
        measured_blurred: how many blurred images had usable edges, of ``used_blurred``.
        measured_clean: the same for the clean images, of ``used_clean``.
        problems: why the blur estimate should not be trusted (empty when it can be).
    """

    sigma: float | None
    transmission: float
    airlight: float
    sigma_blurred: float
    sigma_clean: float
    measured_blurred: int = 0
    used_blurred: int = 0
    measured_clean: int = 0
    used_clean: int = 0
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for people: the blur and the two edge widths it came from."""
        blur = "not measured" if self.sigma is None else f"{self.sigma:.2f} px"
        return (
            f"blur sigma {blur} (edge widths {self.sigma_blurred:.2f} px on "
            f"{self.measured_blurred}/{self.used_blurred} blurred images, "
            f"{self.sigma_clean:.2f} px on {self.measured_clean}/{self.used_clean} clean)"
        )


# Scale of the contrast statistics: blurs of a few pixels barely change the variance of 16x16
# block means, a global loss of contrast (fog) scales it by t^2.
_CONTRAST_BLOCK = 16
# Below this blur the difference of two medians of edge widths is within their own spread.
_MIN_SIGMA = 0.3


def estimate_degradation(
    blurred: Sequence[torch.Tensor],
    clean: Sequence[torch.Tensor],
    *,
    max_images: int = 16,
    max_sigma: float = 3.0,
) -> DegradationEstimate:
    """Estimate F's blur and contrast loss from unpaired blurred and clean images.

    The blur: Zhuo & Sim's re-blur gradient ratio (``semtune.quality.blur_sigma``) gives the
    median edge width of each domain; Gaussian widths add in quadrature, so the blur that takes
    the clean domain to the blurred one is ``sqrt(s_blurred^2 - s_clean^2)``. The contrast: the
    standard deviation of 16x16 block means (insensitive to a few pixels of blur) gives
    ``t = std_blurred / std_clean``, and the means give the airlight from
    ``mean_blurred = t * mean_clean + (1 - t) * airlight``. Different scenes in the two
    domains make these estimates rough; F refines them in training.

    The blur estimate fails, and says so in ``problems`` (``sigma`` is then None), when fewer
    than half of either domain's images have usable edges, or when the blurred images' edges
    are not measurably wider than the clean ones' (below 0.3 px of blur). It is capped at
    ``max_sigma`` with a problem noted.

    Args:
        blurred: domain A images, each (1, H, W) in [0, 1].
        clean: domain B images, each (1, H, W) in [0, 1].
        max_images: images used per domain (the first ones).
        max_sigma: cap on the blur, px.

    Returns:
        The estimate.
    """
    if not blurred or not clean:
        raise ValueError("need at least one blurred and one clean image")
    spectral = spectral_blur(blurred[:max_images], clean[:max_images])
    wa = np.array([blur_sigma(_plane(x)) for x in blurred[:max_images]])
    wb = np.array([blur_sigma(_plane(x)) for x in clean[:max_images]])
    ok_a, ok_b = np.isfinite(wa), np.isfinite(wb)
    sa = float(np.median(wa[ok_a])) if ok_a.any() else math.nan
    sb = float(np.median(wb[ok_b])) if ok_b.any() else math.nan
    problems = []
    for name, ok in (("blurred", ok_a), ("clean", ok_b)):
        if ok.sum() * 2 < len(ok):
            problems.append(
                f"only {int(ok.sum())} of {len(ok)} {name} images have edges to measure"
            )
    sigma: float | None = None
    if spectral is None:
        problems.append(
            "the images are too small (under 64 px) or too featureless to compare their spectra"
        )
    else:
        problems = []  # the spectra decide; the edge widths are kept for the record
        sigma = spectral
        if sigma < _MIN_SIGMA:
            problems.append(
                f"the blurred images' spectrum falls no faster than the clean ones' (blur "
                f"{sigma:.2f} px; edge widths {sa:.2f} and {sb:.2f} px)"
            )
            sigma = None
        elif sigma > max_sigma:
            problems.append(f"the blur {sigma:.2f} px exceeds {max_sigma} px; capped")
            sigma = max_sigma
    ma, va = _block_stats(blurred[:max_images])
    mb, vb = _block_stats(clean[:max_images])
    t = min(max(math.sqrt(va / vb) if vb > 0 else 1.0, 0.05), 0.98)
    airlight = (ma - t * mb) / (1 - t)
    return DegradationEstimate(
        sigma,
        t,
        min(max(airlight, 0.0), 1.0),
        sa,
        sb,
        measured_blurred=int(ok_a.sum()),
        used_blurred=len(ok_a),
        measured_clean=int(ok_b.sum()),
        used_clean=len(ok_b),
        problems=tuple(problems),
    )


# Frequencies (cycles/px) where the spectra are compared: below the band that noise fills,
# above the lowest bins that a tile's window and mean removal distort.
_BAND = (0.02, 0.10)


def _radial_power(images: Sequence[torch.Tensor], tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean radial power spectrum of Hann-windowed ``tile`` x ``tile`` tiles of the images."""
    window = torch.hann_window(tile, periodic=False)
    window2d = window[:, None] * window[None, :]
    total, count = torch.zeros(tile, tile // 2 + 1, dtype=torch.float64), 0
    for x in images:
        plane = x.detach().float().cpu().reshape(x.shape[-2], x.shape[-1])
        if min(plane.shape) < tile:
            continue
        tiles = plane.unfold(0, tile, tile).unfold(1, tile, tile).reshape(-1, tile, tile)
        tiles = (tiles - tiles.mean((-2, -1), keepdim=True)) * window2d
        total += torch.fft.rfft2(tiles).abs().pow(2).double().sum(0)
        count += tiles.shape[0]
    fy = torch.fft.fftfreq(tile)[:, None]
    fx = torch.fft.rfftfreq(tile)[None, :]
    radius = torch.sqrt(fy**2 + fx**2).double()
    edges = np.arange(0, 0.5 + 1 / tile, 1 / tile)
    freq, power = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ring = (radius >= lo) & (radius < hi)
        if ring.any() and count:
            freq.append((lo + hi) / 2)
            power.append(float(total[ring].mean()) / count)
    return np.array(freq), np.array(power)


def spectral_blur(
    blurred: Sequence[torch.Tensor], clean: Sequence[torch.Tensor], tile: int = 128
) -> float | None:
    """The Gaussian blur between two image sets from their mean power spectra, px.

    A Gaussian blur of ``s`` multiplies the power at frequency ``f`` by ``exp(-4 pi^2 s^2
    f^2)``, a global loss of contrast by a constant; so ``log(P_blurred / P_clean)`` against
    ``-4 pi^2 f^2`` is a line of slope ``s^2``, fitted over ``_BAND``, where the signal of SEM
    images stands well above their noise. Measured on set A / A+n of both shared collections:
    0.99 / 0.85 (NFFA) and 0.98 / 0.82 (NASA) for a true 1.0, where the edge widths read 0.71
    and 0.37 on the noisy sets. Like any unpaired estimate it also reads the difference of
    content between the two sets.

    Returns:
        The blur in px (0 when the blurred set is not softer), or None when the images are
        smaller than 64 px or either set has no structure in the band (blank images: power
        below that of an amplitude of 1e-5, far under one grey level of 8 bits).
    """
    for size in (tile, 64):
        fa, pa = _radial_power(blurred, size)
        fb, pb = _radial_power(clean, size)
        if len(fa) and len(fb):
            break
    else:
        return None
    floor = 1e-10 * size**2  # power of an amplitude-1e-5 pattern in a size x size tile
    band = (fa >= _BAND[0]) & (fa <= _BAND[1]) & (pa > floor) & (pb > floor)
    if band.sum() < 2:
        return None
    y = np.log(pa[band] / pb[band])
    x = -4 * math.pi**2 * fa[band] ** 2
    slope, _ = np.polyfit(x, y, 1)
    return float(math.sqrt(max(slope, 0.0)))


def _plane(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(x.shape[-2], x.shape[-1]).double().cpu().numpy()


def _block_stats(images: Sequence[torch.Tensor]) -> tuple[float, float]:
    means = [
        nnf.avg_pool2d(x.detach().float().reshape(1, 1, *x.shape[-2:]), _CONTRAST_BLOCK).flatten()
        for x in images
    ]
    allm = torch.cat(means)
    return float(allm.mean()), float(allm.var())
