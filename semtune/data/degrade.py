"""Pure, seeded degradations of SEM images and the paper's synthetic sets A, B and C.

Gao et al. (2024) build three paired test sets from clean images:

- ``'A'``: Gaussian blur (7x7, sigma 1);
- ``'B'``: Gaussian blur + fog of random, spatially varying concentration;
- ``'C'``: hybrid blur (Gaussian; motion, angle 0, length 10 px; defocus disk, radius 5) + fog.

Each has a noisy variant (``'A+n'``, ``'B+n'``, ``'C+n'``: the same blur and fog, then SEM noise,
``semtune.data.noise``), because real micrographs are blurred *and* noisy; the paper's three
stay exactly as they are, for comparison with the paper.

Conventions (see docs/synthetic_sets.md for the calibration):

- Images are ``(B, 1, H, W)`` float tensors in [0, 1]; every output stays in [0, 1].
- Blurs are true convolutions with ``'reflect'`` borders: torch/kornia ``'reflect'`` mirrors about
  the edge pixel without repeating it, i.e. scipy.ndimage ``mode='mirror'`` (not scipy's
  ``'reflect'``, which repeats the edge pixel). Each image side must exceed the PSF's radius.
- Fog follows the scattering model of the paper's eq. 18, ``I = f t + A (1 - t)`` with
  ``t(x, y) = exp(-beta(x, y) d)``. ``beta`` is a smooth random field spanning
  ``config.fog_beta``; ``d`` (``fog_depth``) and the airlight ``A`` (``fog_airlight``, in [0, 1]
  image units) are calibrated on real SEM crops to the paper's SSIM drop from set A to set B.
- Randomness: image ``i`` of a batch draws only from its own ``torch.Generator``, seeded from
  ``(seed, index_offset + i)``. An image's degradation therefore does not depend on the other
  images in the batch, and a set can be made in chunks: ``degrade(x[a:b], s, seed=k,
  index_offset=a)`` equals rows ``a:b`` of ``degrade(x, s, seed=k)``.

The blur kernels and convolutions are in ``semtune.data.blur`` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from semtune.data.blur import (
    check_images,
    check_positive,
    compose,
    convolve,
    convolve_unchecked,
    defocus_blur,
    disk_kernel,
    embed,
    gaussian_blur,
    gaussian_kernel,
    is_int,
    is_real,
    motion_blur,
    motion_kernel,
)
from semtune.data.noise import NoiseConfig, add_noise

__all__ = [
    "ALL_SETS",
    "BLUR_KERNELS",
    "NOISY_SETS",
    "SETS",
    "DegradeConfig",
    "convolve",
    "Degraded",
    "defocus_blur",
    "degrade",
    "disk_kernel",
    "fog",
    "gaussian_blur",
    "gaussian_kernel",
    "image_generator",
    "motion_blur",
    "motion_kernel",
    "set_psf",
]

SETS: tuple[str, ...] = ("A", "B", "C")  # the paper's
NOISY_SETS: tuple[str, ...] = tuple(f"{s}+n" for s in SETS)
ALL_SETS: tuple[str, ...] = SETS + NOISY_SETS
BLUR_KERNELS: tuple[str, ...] = ("gaussian", "motion", "defocus")
_HYBRID_READINGS: tuple[str, ...] = ("sequence", "random")

# Pixels per batched call in degrade(): 4M (16 MB in float32) per temporary.
_CHUNK_PIXELS = 1 << 22


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _check_set(set_name: str) -> None:
    if set_name not in ALL_SETS:
        raise ValueError(f"unknown set {set_name!r}; valid: {ALL_SETS}")


def _base_set(set_name: str) -> str:
    """``'A+n'`` -> ``'A'``: the paper's set a noisy variant starts from."""
    return set_name.removesuffix("+n")


def _per_image(
    generator: torch.Generator | Sequence[torch.Generator], batch: int
) -> Sequence[torch.Generator]:
    if isinstance(generator, torch.Generator):
        return [generator] * batch
    generators = list(generator)
    if len(generators) != batch or not all(isinstance(g, torch.Generator) for g in generators):
        raise ValueError(
            f"expected a torch.Generator or {batch} of them (one per image), "
            f"got {len(generators)} items"
        )
    return generators


def _convolve_each(x: Tensor, choices: Sequence[Tensor], picks: Tensor) -> Tensor:
    """Convolve image ``i`` with ``choices[picks[i]]``, a few batched calls per distinct PSF.

    Images sharing a PSF go through together, in chunks of about ``_CHUNK_PIXELS`` pixels: big
    enough to keep the number of (multi-threaded) tensor operations low, small enough for the
    allocator to recycle the temporaries (a fresh buffer costs a page fault per 4 KiB).
    """
    out = torch.empty_like(x)
    step = max(1, _CHUNK_PIXELS // (x.shape[-2] * x.shape[-1]))
    for choice in picks.unique().tolist():
        index = (picks == choice).nonzero()[:, 0].to(x.device)
        for start in range(0, len(index), step):
            part = index[start : start + step]
            if len(part) == len(x):  # everything in one call: no gather
                return convolve_unchecked(x, choices[choice])
            out.index_copy_(0, part, convolve_unchecked(x.index_select(0, part), choices[choice]))
    return out


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DegradeConfig:
    """Parameters of the blurs, the fog and the hybrid blur of set C.

    The blur parameters are the paper's. The fog parameters are calibrated on 256x256 crops of
    real SEM images (bench/calibrate_sets.py, docs/synthetic_sets.md) to reproduce the paper's
    drops of sets B and C from set A.

    Attributes:
        gaussian_kernel: odd Gaussian kernel side, pixels.
        gaussian_sigma: Gaussian standard deviation, pixels (> 0).
        motion_length: motion streak length, pixels (>= 1).
        motion_angle: motion direction, degrees counter-clockwise (0 = horizontal).
        defocus_radius: defocus disk radius, pixels (> 0).
        fog_airlight: airlight ``A`` of eq. 18 in image units, [0, 1].
        fog_depth: depth ``d`` of eq. 18 (>= 0): scales the optical thickness ``beta d``; 0 turns
            fog off.
        fog_beta: ``(low, high)`` range of the scattering coefficient field, 0 <= low <= high
            (the paper's [1.5, 2.5]).
        fog_scale: spacing in pixels of the random nodes of the ``beta`` field (>= 1); the field
            varies over about this distance.
        hybrid: reading of set C's "hybrid blur": ``'sequence'`` applies every blur of
            ``hybrid_kernels`` one after the other (one composite PSF); ``'random'`` applies one
            entry of ``hybrid_kernels``, drawn uniformly per image.
        hybrid_kernels: the blurs of set C, each a name from ``BLUR_KERNELS`` or a chain of
            them joined by ``'+'`` (``'gaussian+motion'`` applies both), so that
            ``hybrid='random'`` with ``('gaussian+gaussian', 'gaussian+motion',
            'gaussian+defocus')`` reads "a Gaussian, then one blur drawn per image".
        noise: the noise of the noisy sets (``'A+n'``, ...), see ``semtune.data.noise``.
    """

    gaussian_kernel: int = 7
    gaussian_sigma: float = 1.0
    motion_length: int = 10
    motion_angle: float = 0.0
    defocus_radius: float = 5.0
    # Calibrated by bench/calibrate_sets.py --search (docs/synthetic_sets.md).
    fog_airlight: float = 0.25
    fog_depth: float = 0.0664
    fog_beta: tuple[float, float] = (1.5, 2.5)
    fog_scale: int = 64
    hybrid: Literal["sequence", "random"] = "random"
    hybrid_kernels: tuple[str, ...] = BLUR_KERNELS
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    def __post_init__(self) -> None:
        if not is_int(self.gaussian_kernel) or self.gaussian_kernel < 1:
            raise ValueError(
                f"gaussian_kernel must be an odd int >= 1, got {self.gaussian_kernel!r}"
            )
        if self.gaussian_kernel % 2 == 0:
            raise ValueError(f"gaussian_kernel must be odd, got {self.gaussian_kernel!r}")
        check_positive("gaussian_sigma", self.gaussian_sigma)
        if not is_int(self.motion_length) or self.motion_length < 1:
            raise ValueError(f"motion_length must be an int >= 1, got {self.motion_length!r}")
        if not is_real(self.motion_angle) or not math.isfinite(self.motion_angle):
            raise ValueError(f"motion_angle must be a finite number, got {self.motion_angle!r}")
        check_positive("defocus_radius", self.defocus_radius)
        if not is_real(self.fog_airlight) or not 0.0 <= self.fog_airlight <= 1.0:
            raise ValueError(f"fog_airlight must be in [0, 1], got {self.fog_airlight!r}")
        if not is_real(self.fog_depth) or not 0.0 <= self.fog_depth < math.inf:
            raise ValueError(f"fog_depth must be a finite number >= 0, got {self.fog_depth!r}")
        beta = self.fog_beta
        if (
            not isinstance(beta, tuple)
            or len(beta) != 2
            or not all(is_real(b) and math.isfinite(b) for b in beta)
            or not 0.0 <= beta[0] <= beta[1]
        ):
            raise ValueError(
                f"fog_beta must be a tuple (low, high), 0 <= low <= high, got {beta!r}"
            )
        if not is_int(self.fog_scale) or self.fog_scale < 1:
            raise ValueError(f"fog_scale must be an int >= 1, got {self.fog_scale!r}")
        if self.hybrid not in _HYBRID_READINGS:
            raise ValueError(f"hybrid must be one of {_HYBRID_READINGS}, got {self.hybrid!r}")
        kernels = self.hybrid_kernels
        if (
            not isinstance(kernels, tuple)
            or not kernels
            or not all(isinstance(k, str) for k in kernels)
            or any(part not in BLUR_KERNELS for k in kernels for part in k.split("+"))
        ):
            raise ValueError(
                f"hybrid_kernels must be a non-empty tuple of names from {BLUR_KERNELS} or "
                f"'+'-joined chains of them, got {kernels!r}"
            )

    def kernel(self, name: str) -> Tensor:
        """The PSF of blur ``name`` (from ``BLUR_KERNELS``, or a ``'+'``-joined chain of them)."""
        if "+" in name:
            return compose([self.kernel(part) for part in name.split("+")])
        makers = {
            "gaussian": lambda: gaussian_kernel(self.gaussian_kernel, self.gaussian_sigma),
            "motion": lambda: motion_kernel(self.motion_length, self.motion_angle),
            "defocus": lambda: disk_kernel(self.defocus_radius),
        }
        if name not in makers:
            raise ValueError(f"unknown blur kernel {name!r}; valid: {tuple(makers)}")
        return makers[name]()


# --------------------------------------------------------------------------------------------
# Fog
# --------------------------------------------------------------------------------------------


def fog(
    x: Tensor,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
    config: DegradeConfig = DegradeConfig(),
) -> Tensor:
    """Synthetic fog of spatially varying density (paper eq. 18).

    ``I = x t + A (1 - t)`` with ``t = exp(-beta(x, y) d)``. The field ``beta`` is
    ``low + (high - low) u`` with ``u`` a bicubic interpolation (clamped to [0, 1]) of uniform
    random values on a grid of nodes ``config.fog_scale`` pixels apart.

    Args:
        x: ``(B, 1, H, W)`` float images in [0, 1].
        generator: one CPU generator per image (image ``i`` draws its field from
            ``generator[i]`` only), or a single generator that all images draw from in turn.
        config: fog parameters (``fog_airlight``, ``fog_depth``, ``fog_beta``, ``fog_scale``).

    Returns:
        ``(B, 1, H, W)`` fogged images in [0, 1].
    """
    check_images(x)
    generators = _per_image(generator, x.shape[0])
    transmission = _transmission(x.shape, generators, config).to(device=x.device, dtype=x.dtype)
    return _fog_inplace(x.clone(), transmission, config.fog_airlight)


def _fog_inplace(x: Tensor, transmission: Tensor, airlight: float) -> Tensor:
    """``x t + A (1 - t)``, overwriting ``x``."""
    return x.sub_(airlight).mul_(transmission).add_(airlight)


def _transmission(
    shape: torch.Size, generators: Sequence[torch.Generator], config: DegradeConfig
) -> Tensor:
    """Random transmission maps ``exp(-beta d)``, (B, 1, H, W), one draw per generator."""
    height, width = shape[-2:]
    scale = config.fog_scale
    nodes_h = math.ceil((height - 1) / scale) + 1
    nodes_w = math.ceil((width - 1) / scale) + 1
    grid = torch.stack([torch.rand(nodes_h, nodes_w, generator=g) for g in generators])
    low, high = config.fog_beta
    depth = config.fog_depth
    # Interpolate -beta d rather than u: bicubic weights sum to 1, so the map is the same, and
    # clamping u to [0, 1] becomes clamping -beta d to [-high d, -low d]. Bicubic interpolation is
    # separable and linear: two small matrix products give what F.interpolate would, faster.
    rows = _cubic_weights(nodes_h, scale)[:height]
    cols = _cubic_weights(nodes_w, scale)[:width]
    log_t = rows @ (grid * (-(high - low) * depth) - low * depth) @ cols.T
    return log_t.clamp_(-high * depth, -low * depth).exp_()[:, None]


def _cubic_weights(nodes: int, scale: int) -> Tensor:
    """(length, nodes) matrix of bicubic weights (align_corners) from nodes ``scale`` px apart."""
    eye = torch.eye(nodes)[:, None, :, None]
    weights = F.interpolate(
        eye, size=((nodes - 1) * scale + 1, 1), mode="bicubic", align_corners=True
    )
    return weights[:, 0, :, 0].T.contiguous()


# --------------------------------------------------------------------------------------------
# Sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Degraded:
    """Output of :func:`degrade`.

    Attributes:
        blurred: ``(B, 1, H, W)`` degraded images in [0, 1].
        psfs: ``(B, 1, k, k)`` the blur PSF each image went through (fog excluded): the composite
            kernel for a sequential hybrid, zero-padded to the set's common size. ``k`` depends
            only on the set and the config, not on the draws: 7 for A and B; for C, 11 with the
            default random hybrid, 27 with the sequential one.
    """

    blurred: Tensor
    psfs: Tensor


def image_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of image ``index`` of a set made with ``seed``.

    The two integers are mixed by NumPy's ``SeedSequence``, so nearby seeds and indices give
    unrelated streams.
    """
    for name, value in (("seed", seed), ("index", index)):
        if not is_int(value) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    state = np.random.SeedSequence(entropy=seed, spawn_key=(index,)).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def set_psf(set_name: str, config: DegradeConfig = DegradeConfig()) -> tuple[Tensor, ...]:
    """The PSFs an image of ``set_name`` can go through, all zero-padded to one size.

    Args:
        set_name: one of ``ALL_SETS`` (a noisy set has its base set's PSFs).
        config: degradation parameters.

    Returns:
        A tuple of ``(k, k)`` kernels: one for sets A and B and for a sequential hybrid C, one
        per entry of ``config.hybrid_kernels`` for a random hybrid C (drawn uniformly).
    """
    _check_set(set_name)
    gaussian = config.kernel("gaussian")
    if _base_set(set_name) in ("A", "B"):
        return (gaussian,)
    if config.hybrid == "sequence":
        return (config.kernel("+".join(config.hybrid_kernels)),)
    choices = [config.kernel(name) for name in config.hybrid_kernels]
    size = max(k.shape[-1] for k in choices)
    return tuple(embed(k, size) for k in choices)


def degrade(
    x: Tensor,
    set_name: str,
    *,
    seed: int,
    config: DegradeConfig = DegradeConfig(),
    index_offset: int = 0,
) -> Degraded:
    """Degrade clean images into one of the paper's synthetic sets.

    Args:
        x: ``(B, 1, H, W)`` float clean images in [0, 1]; ``H, W`` larger than the PSF radius
            (5 px for the default set C, 13 px for the sequential hybrid).
        set_name: ``'A'`` (Gaussian), ``'B'`` (Gaussian + fog) or ``'C'`` (hybrid blur + fog),
            or their noisy variants ``'A+n'``, ``'B+n'``, ``'C+n'`` (the same, then noise).
        seed: int >= 0. Image ``i`` draws from :func:`image_generator` ``(seed, index_offset +
            i)`` only. Set A draws nothing; a noisy set draws its noise last.
        config: degradation parameters.
        index_offset: index of ``x[0]`` in the whole set, to make a set in chunks.

    Returns:
        :class:`Degraded` with the degraded images and each image's blur PSF.
    """
    check_images(x)
    _check_set(set_name)
    batch = x.shape[0]
    generators = [image_generator(seed, index_offset + i) for i in range(batch)]
    choices = set_psf(set_name, config)
    if len(choices) == 1:
        picks = torch.zeros(batch, dtype=torch.long)
    else:
        # The draw comes first in each image's stream, the fog field after it.
        picks = torch.tensor(
            [int(torch.randint(len(choices), (1,), generator=g)) for g in generators],
            dtype=torch.long,
        )
    psfs = torch.stack(choices)[picks][:, None].to(x.device)
    blurred = _convolve_each(x, choices, picks)
    if _base_set(set_name) in ("B", "C"):
        step = max(1, _CHUNK_PIXELS // (x.shape[-2] * x.shape[-1]))
        for start in range(0, batch, step):
            stop = min(start + step, batch)
            t = _transmission(x[start:stop].shape, generators[start:stop], config)
            _fog_inplace(
                blurred[start:stop], t.to(device=x.device, dtype=x.dtype), config.fog_airlight
            )
    blurred.clamp_(0.0, 1.0)
    if set_name in NOISY_SETS:
        blurred, _ = add_noise(blurred, generator=generators, config=config.noise)
    return Degraded(blurred=blurred, psfs=psfs)
