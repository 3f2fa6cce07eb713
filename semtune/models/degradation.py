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

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from semtune.data.estimate import DegradationEstimate, estimate_degradation
from semtune.data.noise import NoiseConfig, draw_noise, noise_field

# The estimate lives with the data it measures; re-exported here, where F uses it.
__all__ = ["NOISE_QUANTILES", "DegradationEstimate", "PhysicsDegradation", "estimate_degradation"]

# How many quantiles of the measured noise levels F keeps.
NOISE_QUANTILES = 16


class PhysicsDegradation(nn.Module):
    """Learnable blur kernel + global contrast loss: ``t * (k * x) + (1 - t) * airlight``.

    Args:
        kernel_size: odd support of the learnable PSF.
        init_sigma: the PSF starts as a Gaussian of this standard deviation (pixels).
        init_transmission: the starting ``t`` in (0, 1]; 1 means no contrast loss.
    """

    noise_quantiles: Tensor  # a buffer (typed for mypy: nn.Module's attributes are not)

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
        # Quantiles of the noise std measured on the real blurred images (all zero: no noise);
        # a buffer, so that checkpoints carry it and a resumed run draws the same noise.
        self.register_buffer("noise_quantiles", torch.zeros(NOISE_QUANTILES))

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
    def set_noise_levels(self, levels: Tensor) -> None:
        """Remember the noise stds measured on the blurred images (as quantiles)."""
        levels = levels.detach().flatten().float()
        if levels.numel() == 0 or not bool(torch.isfinite(levels).all()) or levels.min() < 0:
            raise ValueError(f"noise levels must be finite and >= 0, got {levels.tolist()}")
        q = torch.linspace(0, 1, NOISE_QUANTILES)
        self.noise_quantiles.copy_(torch.quantile(levels.cpu(), q).to(self.noise_quantiles))

    def noise(
        self, signal: Tensor, generator: torch.Generator, config: NoiseConfig
    ) -> Tensor | None:
        """SEM noise (``semtune.data.noise``) for the batch ``signal``, each image's pixel std
        drawn from the measured levels, the rest of its parameters from ``config``'s ranges;
        None when no levels were set."""
        if not bool(self.noise_quantiles.any()):
            return None
        b = signal.shape[0]
        pick = torch.randint(NOISE_QUANTILES, (b,), generator=generator)
        gens = [generator] * b
        draw = draw_noise(gens, config, sigma=self.noise_quantiles.cpu()[pick])
        return noise_field(signal, draw, gens, config)

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
