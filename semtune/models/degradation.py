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

__all__ = ["PhysicsDegradation"]


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
