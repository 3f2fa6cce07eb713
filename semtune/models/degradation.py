"""A degradation-side generator F built from the physics of charging blur (issue 7).

F maps clean -> blurred as ``F(x) = t * (k * x) + (1 - t) * airlight``: one learnable,
normalised blur kernel ``k`` (a softmax over its logits, so it stays a non-negative PSF that sums
to 1) and a global transmission ``t`` and ``airlight`` that model the loss of contrast (the fog
of sets B and C). It has ``kernel_size**2 + 2`` weights, starts as a real blur (a Gaussian of
``init_sigma``), and learns from unpaired data through the blurred-domain discriminator.

Why: with the paper's U-Net F, both generators start near the identity and the backward cycle
``b -> F(b) -> G(F(b))`` teaches G nothing until F learns to blur. A physical F blurs from the
first step, so that cycle hands G pseudo-pairs ``(F(b), b)`` at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

__all__ = ["DegradationEstimate", "PhysicsDegradation", "estimate_degradation"]


class PhysicsDegradation(nn.Module):
    """Learnable blur kernel + global contrast loss: ``t * (k * x) + (1 - t) * airlight``.

    Args:
        kernel_size: odd support of the learnable PSF.
        init_sigma: the PSF starts as a Gaussian of this standard deviation (pixels).
        init_transmission: the starting ``t`` in (0, 1]; 1 means no contrast loss.
    """

    def __init__(
        self, kernel_size: int = 15, init_sigma: float = 2.0, init_transmission: float = 0.98
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if not 0 < init_transmission < 1:
            raise ValueError(f"init_transmission must be in (0, 1), got {init_transmission}")
        self.kernel_size = kernel_size
        r = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
        d2 = r[:, None] ** 2 + r[None, :] ** 2
        # log of a Gaussian: softmax of these logits is exactly the normalised Gaussian kernel.
        self.kernel_logits = nn.Parameter(-d2 / (2 * init_sigma**2))
        self.transmission_logit = nn.Parameter(
            torch.tensor(math.log(init_transmission / (1 - init_transmission)))
        )
        self.airlight_logit = nn.Parameter(torch.tensor(0.0))

    def kernel(self) -> Tensor:
        """The current PSF, (k, k), non-negative, summing to 1."""
        return torch.softmax(self.kernel_logits.flatten(), 0).view_as(self.kernel_logits)

    def transmission(self) -> Tensor:
        return torch.sigmoid(self.transmission_logit)

    def airlight(self) -> Tensor:
        return torch.sigmoid(self.airlight_logit)

    def forward(self, x: Tensor) -> Tensor:
        """Degrade ``x`` (B, 1, H, W) in [0, 1]; reflect padding keeps borders artefact-free."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W), got {tuple(x.shape)}")
        pad = self.kernel_size // 2
        k = self.kernel().to(x.dtype)[None, None]
        blurred = nnf.conv2d(nnf.pad(x, (pad, pad, pad, pad), mode="reflect"), k)
        t = self.transmission().to(x.dtype)
        return t * blurred + (1 - t) * self.airlight().to(x.dtype)

    @torch.no_grad()
    def kernel_sigma(self) -> float:
        """Second-moment width of the current PSF in pixels (a Gaussian's sigma), for logging."""
        k = self.kernel()
        r = torch.arange(self.kernel_size, dtype=k.dtype, device=k.device) - self.kernel_size // 2
        var = (k.sum(1) * r**2).sum() + (k.sum(0) * r**2).sum()
        return float(torch.sqrt(var / 2))

    @torch.no_grad()
    def reset(self, sigma: float, transmission: float, airlight: float) -> None:
        """Set F to a Gaussian blur of ``sigma`` px and the given global contrast loss."""
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        t = min(max(transmission, 1e-3), 1 - 1e-3)
        a = min(max(airlight, 1e-3), 1 - 1e-3)
        r = torch.arange(self.kernel_size, dtype=torch.float32) - self.kernel_size // 2
        d2 = r[:, None] ** 2 + r[None, :] ** 2
        self.kernel_logits.copy_(-d2 / (2 * sigma**2))
        self.transmission_logit.fill_(math.log(t / (1 - t)))
        self.airlight_logit.fill_(math.log(a / (1 - a)))


@dataclass(frozen=True)
class DegradationEstimate:
    """F's starting point measured from the two unpaired training domains.

    Attributes:
        sigma: relative Gaussian blur of the blurred domain, px.
        transmission: global contrast ratio blurred / clean (1 = no fog).
        airlight: the grey level contrast is lost towards, in [0, 1].
        sigma_blurred: median edge width measured on the blurred images, px.
        sigma_clean: the same on the clean images (their own optical blur), px.
    """

    sigma: float
    transmission: float
    airlight: float
    sigma_blurred: float
    sigma_clean: float


# Scale of the contrast statistics: blurs of a few pixels barely change the variance of 16x16
# block means, a global loss of contrast (fog) scales it by t^2.
_CONTRAST_BLOCK = 16


def estimate_degradation(
    blurred: Sequence[torch.Tensor],
    clean: Sequence[torch.Tensor],
    *,
    max_images: int = 16,
    max_sigma: float = 3.0,
) -> DegradationEstimate:
    """Estimate F's blur and contrast loss from unpaired blurred and clean images.

    The blur: Zhuo & Sim's re-blur gradient ratio (``semtune.baselines``) gives the median
    edge width of each domain; Gaussian widths add in quadrature, so the blur that takes the
    clean domain to the blurred one is ``sqrt(s_blurred^2 - s_clean^2)``. The contrast: the
    standard deviation of 16x16 block means (insensitive to a few pixels of blur) gives
    ``t = std_blurred / std_clean``, and the means give the airlight from
    ``mean_blurred = t * mean_clean + (1 - t) * airlight``. Different scenes in the two
    domains make these estimates rough; F refines them in training.

    Args:
        blurred: domain A images, each (1, H, W) in [0, 1].
        clean: domain B images, each (1, H, W) in [0, 1].
        max_images: images used per domain (the first ones).
        max_sigma: cap on the blur, px.

    Returns:
        The estimate.
    """
    from semtune.baselines import _estimate_sigma

    if not blurred or not clean:
        raise ValueError("need at least one blurred and one clean image")
    sa = float(np.median([_estimate_sigma(_plane(x)) for x in blurred[:max_images]]))
    sb = float(np.median([_estimate_sigma(_plane(x)) for x in clean[:max_images]]))
    sigma = min(max(math.sqrt(max(sa * sa - sb * sb, 0.0)), 0.3), max_sigma)
    ma, va = _block_stats(blurred[:max_images])
    mb, vb = _block_stats(clean[:max_images])
    t = min(max(math.sqrt(va / vb) if vb > 0 else 1.0, 0.05), 0.98)
    airlight = (ma - t * mb) / (1 - t)
    return DegradationEstimate(sigma, t, min(max(airlight, 0.0), 1.0), sa, sb)


def _plane(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(x.shape[-2], x.shape[-1]).double().cpu().numpy()


def _block_stats(images: Sequence[torch.Tensor]) -> tuple[float, float]:
    means = [
        nnf.avg_pool2d(x.detach().float().reshape(1, 1, *x.shape[-2:]), _CONTRAST_BLOCK).flatten()
        for x in images
    ]
    allm = torch.cat(means)
    return float(allm.mean()), float(allm.var())
