"""A noise model for SEM images: signal-dependent shot noise, detector noise and scan-line noise.

Real micrographs are blurred *and* noisy; the paper's sets A/B/C blur a clean image and add fog
but no noise, which leaves them 13x to 41x smoother than any real micrograph (measured,
docs/synthetic_sets.md#noise). The noisy sets ``A+n``, ``B+n`` and ``C+n`` add, after the blur
and the fog, per image:

- pixel noise of standard deviation ``sigma`` at mid-grey, drawn log-uniformly from
  ``NoiseConfig.sigma``; a share ``f`` of its variance (drawn from ``shot_fraction``) scales
  with the signal like the secondary-electron shot noise (Poisson: variance proportional to the
  count), the rest is signal-independent detector noise:
  ``var(I) = sigma^2 * (f * I / 0.5 + (1 - f))``;
- spatially correlated noise: white noise blurred by a Gaussian of ``correlation_px``,
  scaled to ``correlated * sigma``, ``correlated`` drawn from ``NoiseConfig.correlated``. Real
  micrographs carry 2-5x more energy between 0.7 and 3 px in their flat areas than white noise
  of the same pixel std would (detector bandwidth, JPEG, fine texture); a restorer trained on
  white noise alone takes that band for blurred detail and amplifies it (measured,
  docs/restoration.md);
- scan-line noise: one offset per row (the fast scan direction), Gaussian with standard
  deviation ``line * sigma``, ``line`` drawn from ``NoiseConfig.line``.

The ranges come from measurements on real SEM images of two instruments
(``semtune.quality.noise_sigma``, Immerkaer's estimator; bench/measure_noise.py prints them).
All draws come from the image's own ``torch.Generator``, after the draws of its blur and fog, so
a noisy set shares its blur and fog with the noise-free set of the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor

__all__ = ["NoiseConfig", "NoiseDraw", "add_noise", "draw_noise", "noise_field"]


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
        or not low <= value[0] <= value[1] <= high
    ):
        raise ValueError(
            f"{name} must be a tuple (low, high) with {low} <= low <= high <= {high}, got {value!r}"
        )


@dataclass(frozen=True, kw_only=True)
class NoiseConfig:
    """Ranges the noise of each image is drawn from (see the module docstring).

    Attributes:
        sigma: (low, high) pixel-noise standard deviation at mid-grey, [0, 1] image units;
            drawn log-uniformly (uniformly when low is 0). The default spans what was measured
            on real micrographs (0.002-0.03).
        shot_fraction: (low, high) share of the variance that scales with the signal, in [0, 1].
        correlated: (low, high) std of the correlated component as a multiple of ``sigma``.
        correlation_px: the correlated component's Gaussian correlation length, px (> 0).
        line: (low, high) scan-line offset standard deviation as a fraction of ``sigma``.
    """

    sigma: tuple[float, float] = (0.003, 0.03)
    shot_fraction: tuple[float, float] = (0.0, 1.0)
    correlated: tuple[float, float] = (0.0, 2.0)
    correlation_px: float = 1.0
    line: tuple[float, float] = (0.0, 0.15)

    def __post_init__(self) -> None:
        _check_range("sigma", self.sigma, 0.0, 0.5)
        _check_range("shot_fraction", self.shot_fraction, 0.0, 1.0)
        _check_range("correlated", self.correlated, 0.0, 10.0)
        _check_range("line", self.line, 0.0, 10.0)
        if not (
            isinstance(self.correlation_px, int | float)
            and math.isfinite(self.correlation_px)
            and 0 < self.correlation_px <= 8
        ):
            raise ValueError(f"correlation_px must be in (0, 8], got {self.correlation_px!r}")


@dataclass(frozen=True)
class NoiseDraw:
    """The noise parameters drawn for each image of a batch, each a (B,) float tensor."""

    sigma: Tensor
    shot_fraction: Tensor
    correlated: Tensor
    line: Tensor


def _uniform(generator: torch.Generator, low: float, high: float, *, log: bool = False) -> float:
    u = float(torch.rand((), generator=generator))
    if log and low > 0:
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + u * (high - low)


def draw_noise(
    generators: Sequence[torch.Generator], config: NoiseConfig, sigma: Tensor | None = None
) -> NoiseDraw:
    """Draw each image's noise parameters from its own generator (four draws per image).

    Args:
        generators: one per image.
        config: the ranges.
        sigma: (B,) pixel-noise stds to use instead of drawing them (e.g. levels measured on
            real images); the draw still happens, so the stream stays aligned.
    """
    draws = [
        (
            _uniform(g, *config.sigma, log=True),
            _uniform(g, *config.shot_fraction),
            _uniform(g, *config.correlated),
            _uniform(g, *config.line),
        )
        for g in generators
    ]
    t = torch.tensor(draws, dtype=torch.float32).reshape(-1, 4)
    if sigma is not None:
        t[:, 0] = sigma.detach().float().cpu().reshape(-1)
    return NoiseDraw(sigma=t[:, 0], shot_fraction=t[:, 1], correlated=t[:, 2], line=t[:, 3])


def _correlation_kernel(px: float) -> Tensor:
    """1-D Gaussian taps normalised so that white noise blurred by them (in x and y) keeps unit
    variance."""
    radius = max(1, math.ceil(3 * px))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * px**2))
    return k / k.pow(2).sum().sqrt()


def noise_field(
    signal: Tensor, draw: NoiseDraw, generators: Sequence[torch.Generator], config: NoiseConfig
) -> Tensor:
    """The noise to add to ``signal`` (B, 1, H, W) for the drawn parameters.

    Each image draws its white, correlated and row fields from its own generator, in that order.
    """
    b, _, h, w = signal.shape
    taps = _correlation_kernel(config.correlation_px)
    r = taps.numel() // 2
    out = torch.empty(signal.shape, dtype=torch.float32)
    for i, g in enumerate(generators):
        white = torch.randn((1, 1, h, w), generator=g)
        corr = torch.randn((1, 1, h + 2 * r, w + 2 * r), generator=g)
        corr = nnf.conv2d(nnf.conv2d(corr, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
        rows = torch.randn((1, 1, h, 1), generator=g)
        f = float(draw.shot_fraction[i])
        level = signal[i : i + 1].detach().float().cpu().clamp(0, 1)
        scale = float(draw.sigma[i]) * torch.sqrt(f * level / 0.5 + (1 - f))
        out[i] = (
            scale * (white + float(draw.correlated[i]) * corr)
            + float(draw.line[i]) * float(draw.sigma[i]) * rows
        )[0]
    return out.to(device=signal.device, dtype=signal.dtype)


def add_noise(
    x: Tensor,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
    config: NoiseConfig = NoiseConfig(),
) -> tuple[Tensor, NoiseDraw]:
    """Add SEM noise to a batch, each image with its own draw of the noise parameters.

    Args:
        x: (B, 1, H, W) float images in [0, 1] (already blurred: noise comes after the optics).
        generator: one CPU generator per image, or one that every image draws from in turn.
        config: the ranges of the draws.

    Returns:
        The noisy images, clipped to [0, 1], and the parameters drawn.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected images of shape (B, 1, H, W), got {shape}")
    b = x.shape[0]
    gens = [generator] * b if isinstance(generator, torch.Generator) else list(generator)
    if len(gens) != b:
        raise ValueError(f"expected a torch.Generator or {b} of them, got {len(gens)}")
    draw = draw_noise(gens, config)
    return (x + noise_field(x, draw, gens, config)).clamp_(0.0, 1.0), draw
