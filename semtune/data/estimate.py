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

__all__ = ["DegradationEstimate", "estimate_degradation", "noise_levels"]


def noise_levels(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """The pixel-noise std of each (1, H, W) image (``semtune.quality.noise_sigma``), (N,)."""
    if not images:
        raise ValueError("need at least one image")
    return torch.stack([noise_sigma(x.reshape(1, 1, *x.shape[-2:]))[0] for x in images])


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
    if not problems:
        sigma = math.sqrt(max(sa * sa - sb * sb, 0.0))
        if sigma < _MIN_SIGMA:
            problems.append(
                f"the blurred images' edges ({sa:.2f} px) are not measurably wider than the "
                f"clean ones' ({sb:.2f} px)"
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


def _plane(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(x.shape[-2], x.shape[-1]).double().cpu().numpy()


def _block_stats(images: Sequence[torch.Tensor]) -> tuple[float, float]:
    means = [
        nnf.avg_pool2d(x.detach().float().reshape(1, 1, *x.shape[-2:]), _CONTRAST_BLOCK).flatten()
        for x in images
    ]
    allm = torch.cat(means)
    return float(allm.mean()), float(allm.var())
