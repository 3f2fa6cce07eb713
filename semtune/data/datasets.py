"""Image sets for training and testing: crops of SEM images and paired synthetic test sets.

Images come in as ``(1, H, W)`` float tensors in [0, 1] with the data bar already cropped
(``semtune.io``); sets go out as ``(N, 1, size, size)`` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from semtune.data.degrade import ALL_SETS, DegradeConfig, degrade

# Frozen, so one shared default is safe.
_DEFAULT_CONFIG = DegradeConfig()

__all__ = [
    "PairedSet",
    "make_paired_set",
    "random_crops",
    "tiled_crops",
]


# --------------------------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------------------------


def random_crops(images: Sequence[Tensor], size: int, n: int, *, seed: int) -> Tensor:
    """Square crops at random positions, spread over the images in turn.

    Crop ``j`` comes from image ``j % len(images)`` (round robin), at a position drawn uniformly
    from one CPU generator seeded with ``seed``, so the crops depend only on the images, ``size``,
    ``n`` and ``seed``.

    Args:
        images: ``(1, H, W)`` float images, each at least ``size`` on both sides.
        size: crop side in pixels (>= 1).
        n: number of crops (>= 0).
        seed: generator seed.

    Returns:
        ``(n, 1, size, size)`` crops, in the images' dtype.
    """
    _check_images(images, size)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for j in range(n):
        image = images[j % len(images)]
        top = int(torch.randint(image.shape[-2] - size + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[-1] - size + 1, (1,), generator=generator))
        crops.append(image[:, top : top + size, left : left + size])
    if not crops:
        return images[0].new_zeros((0, 1, size, size))
    return torch.stack(crops)


def tiled_crops(images: Sequence[Tensor], size: int, *, stride: int | None = None) -> Tensor:
    """Square tiles on a regular grid over each image, image by image, row-major.

    Tiles start at ``0, stride, 2 stride, ...`` along each axis while they fit; a remainder
    narrower than a tile at the bottom and right edges is left out.

    Args:
        images: ``(1, H, W)`` float images, each at least ``size`` on both sides.
        size: tile side in pixels (>= 1).
        stride: step between tiles in pixels (>= 1); ``None`` for ``size`` (no overlap).

    Returns:
        ``(N, 1, size, size)`` tiles.
    """
    _check_images(images, size)
    stride = size if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1 or None, got {stride!r}")
    tiles = []
    for image in images:
        # unfold gives (1, rows, cols, size, size) views: one copy at the end.
        grid = image.unfold(-2, size, stride).unfold(-2, size, stride)
        tiles.append(grid.reshape(-1, 1, size, size))
    return torch.cat(tiles)


def _check_images(images: Sequence[Tensor], size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if isinstance(images, Tensor) or len(images) == 0:
        raise ValueError("images must be a non-empty sequence of (1, H, W) tensors")
    for index, image in enumerate(images):
        if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 1:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"image {index} must be a (1, H, W) tensor, got {shape}")
        if min(image.shape[-2:]) < size:
            raise ValueError(
                f"image {index} of size {tuple(image.shape[-2:])} is smaller than the "
                f"{size}x{size} crop"
            )


# --------------------------------------------------------------------------------------------
# Paired synthetic test sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedSet:
    """Clean images and their synthetic degradations, pair by pair.

    Indexing gives ``(clean[i], blurred[i])``, each ``(1, H, W)``, so the set can feed a
    ``torch.utils.data.DataLoader`` directly.

    Attributes:
        set_name: the synthetic set, one of ``ALL_SETS``.
        clean: ``(N, 1, H, W)`` clean images in [0, 1].
        blurred: ``(N, 1, H, W)`` degraded images in [0, 1].
        psfs: ``(N, 1, k, k)`` blur PSF of each pair (see ``Degraded.psfs``).
    """

    set_name: str
    clean: Tensor
    blurred: Tensor
    psfs: Tensor

    def __post_init__(self) -> None:
        if self.set_name not in ALL_SETS:
            raise ValueError(f"unknown set {self.set_name!r}; valid: {ALL_SETS}")
        if self.clean.shape != self.blurred.shape:
            raise ValueError(
                f"clean and blurred shapes differ: {tuple(self.clean.shape)} vs "
                f"{tuple(self.blurred.shape)}"
            )
        if self.psfs.shape[0] != self.clean.shape[0]:
            raise ValueError(
                f"expected one PSF per pair ({self.clean.shape[0]}), got {self.psfs.shape[0]}"
            )

    def __len__(self) -> int:
        return self.clean.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.clean[index], self.blurred[index]


def make_paired_set(
    clean: Tensor, set_name: str, *, seed: int, config: DegradeConfig = _DEFAULT_CONFIG
) -> PairedSet:
    """Degrade clean crops into a paired test set, deterministically for ``seed``.

    Pair ``i`` uses the randomness of image ``i`` of :func:`semtune.data.degrade.degrade`, so
    the first ``m`` pairs of a set of ``n > m`` equal a set made from ``clean[:m]``.

    Args:
        clean: ``(N, 1, H, W)`` clean images in [0, 1], e.g. from :func:`random_crops` or
            :func:`tiled_crops`.
        set_name: ``'A'``, ``'B'``, ``'C'`` or a noisy variant (``'A+n'``, ...).
        seed: int >= 0.
        config: degradation parameters.

    Returns:
        The :class:`PairedSet`.
    """
    degraded = degrade(clean, set_name, seed=seed, config=config)
    return PairedSet(set_name=set_name, clean=clean, blurred=degraded.blurred, psfs=degraded.psfs)
