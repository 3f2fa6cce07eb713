"""Unpaired training domains and the held-out paired validation split for the trainer.

The simulated experiment (no ``blurred_dir``) makes both domains from the clean images:
``domains: halves`` splits them into two disjoint halves and degrades one, so that the blurred
and clean domains never show the same scene (unpaired in fact, not only shuffled);
``domains: shuffled`` is the paper's protocol, every image degraded in domain A and clean in
domain B, crops drawn independently from each. Halves of a dozen scenes differ in their own
sharpness, and F learns that difference along with the blur (measured: docs/restoration.md).
The validation images are held out *before* either and are never seen in training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from semtune.data.datasets import PairedSet, make_paired_set, random_crops
from semtune.data.degrade import DegradeConfig, degrade
from semtune.data.estimate import DegradationEstimate, estimate_degradation, noise_levels
from semtune.io import read_folder

if TYPE_CHECKING:
    from semtune.data.config import DataConfig

__all__ = ["TrainingData", "build_training_data", "sample_crops", "split_holdout"]


@dataclass(frozen=True)
class TrainingData:
    """Everything the loop needs from disk: two unpaired domains and a paired validation set.

    Attributes:
        blurred: domain A images, each (1, H, W) in [0, 1].
        clean: domain B images, each (1, H, W) in [0, 1].
        val: held-out paired synthetic split (clean crops and their degraded versions).
        files: which files went where (``blurred``, ``clean``, ``val``), for the record.
        fingerprint: a short hash of the file names and sizes, to tag runs with their data.
        estimate: the blur measured between the two domains, when it was needed
            (``data.val_set: own``); the trainer reuses it for F.
        val_label: what the validation pairs are, for people (``"A"``, or the estimated
            degradation for ``own``).
        notes: warnings about the data for the run's log (an estimate that failed, ...).
    """

    blurred: list[Tensor]
    clean: list[Tensor]
    val: PairedSet
    files: dict[str, list[str]]
    fingerprint: str
    estimate: DegradationEstimate | None = None
    val_label: str = ""
    notes: tuple[str, ...] = ()
    # the validation image each crop of ``val`` comes from (confidence intervals over images)
    val_groups: tuple[int, ...] = ()


def split_holdout(paths: Sequence[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """Split files into (train, held-out) by a hash of their names, stable across machines.

    At least one file is held out when ``fraction > 0`` and at least one is kept for training.
    """
    if not paths:
        return [], []
    ranked = sorted(paths, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())
    n_val = min(len(ranked) - 1, math.ceil(fraction * len(ranked))) if fraction > 0 else 0
    held = sorted(ranked[:n_val])
    return sorted(ranked[n_val:]), held


def _fingerprint(paths: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:12]


def build_training_data(cfg: DataConfig) -> TrainingData:
    """Read and prepare the training domains and the validation split described by ``cfg``."""
    min_size = max(cfg.crop_size, cfg.val_crop_size)
    clean_all = read_folder(cfg.clean_dir, crop_bar=cfg.crop_bar, min_size=cfg.crop_size)
    clean_imgs = {img.path: img.data for img in clean_all.images if img.path is not None}
    clean_paths = sorted(clean_imgs)

    if cfg.val_dir is not None:
        val_read = read_folder(cfg.val_dir, crop_bar=cfg.crop_bar, min_size=min_size)
        val_images = [img.data for img in val_read.images]
        val_paths = [img.path for img in val_read.images if img.path is not None]
        train_paths = clean_paths
    else:
        train_paths, val_paths = split_holdout(clean_paths, cfg.val_fraction)
        if not val_paths:
            raise ValueError(
                f"data.val_fraction={cfg.val_fraction} holds out no image of {cfg.clean_dir}: "
                "set data.val_dir or a larger val_fraction"
            )
        val_images = [clean_imgs[p] for p in val_paths]

    if cfg.blurred_dir is not None:
        blurred_read = read_folder(cfg.blurred_dir, crop_bar=cfg.crop_bar, min_size=cfg.crop_size)
        blurred = [img.data for img in blurred_read.images]
        blurred_paths = [img.path for img in blurred_read.images if img.path is not None]
        clean = [clean_imgs[p] for p in train_paths]
        clean_train_paths = list(train_paths)
    else:
        if len(train_paths) < 2:
            raise ValueError(
                f"{cfg.clean_dir}: the simulated experiment needs at least 2 training images "
                f"(one per domain), found {len(train_paths)}"
            )
        if cfg.domains == "shuffled":
            blurred_paths = clean_train_paths = list(train_paths)
        else:  # alternate so that both halves sample the folder evenly
            blurred_paths = train_paths[0::2]
            clean_train_paths = train_paths[1::2]
        blurred = [
            degrade(
                clean_imgs[p][None], cfg.synthetic_set, seed=cfg.seed + i, config=cfg.degrade
            ).blurred[0]
            for i, p in enumerate(blurred_paths)
        ]
        clean = [clean_imgs[p] for p in clean_train_paths]

    crops = random_crops(val_images, cfg.val_crop_size, cfg.val_crops, seed=cfg.seed)
    estimate: DegradationEstimate | None = None
    notes: list[str] = []
    val_set: str = cfg.val_set
    val_degrade, val_label = cfg.degrade, str(cfg.val_set)
    if cfg.val_set == "own":
        estimate = estimate_degradation(blurred, clean)
        val_degrade, val_label, notes = _own_degradation(cfg.degrade, estimate, blurred)
        val_set = "A+n"
    val = make_paired_set(crops, val_set, seed=cfg.seed, config=val_degrade)
    files = {
        "blurred": [str(p) for p in blurred_paths],
        "clean": [str(p) for p in clean_train_paths],
        "val": [str(p) for p in val_paths],
    }
    return TrainingData(
        blurred=blurred,
        clean=clean,
        val=val,
        files=files,
        fingerprint=_fingerprint([*blurred_paths, *clean_train_paths, *val_paths]),
        # random_crops takes crop j from image j % len(images)
        val_groups=tuple(j % len(val_images) for j in range(len(crops))),
        estimate=estimate,
        val_label=val_label,
        notes=tuple(notes),
    )


# The user's case when the blur between the folders cannot be measured: the paper's set A blur.
_FALLBACK_SIGMA = 1.0


def _own_degradation(
    base: DegradeConfig, estimate: DegradationEstimate, blurred: Sequence[Tensor]
) -> tuple[DegradeConfig, str, list[str]]:
    """Set A+n's recipe with the blur and noise measured on the user's blurred folder."""
    notes = []
    sigma = estimate.sigma
    if sigma is None:
        sigma = _FALLBACK_SIGMA
        notes.append(
            f"validation: the blur between the folders could not be measured "
            f"({'; '.join(estimate.problems)}); validating on a Gaussian blur of "
            f"{sigma:g} px instead"
        )
    levels = noise_levels(blurred)
    low, high = (float(v) for v in torch.quantile(levels, torch.tensor([0.1, 0.9])))
    low = max(low, 1e-4)
    config = dataclasses.replace(
        base,
        gaussian_sigma=sigma,
        gaussian_kernel=2 * math.ceil(3 * sigma) + 1,
        noise=dataclasses.replace(base.noise, sigma=(low, max(high, low))),
    )
    label = f"own (Gaussian {sigma:.2f} px + noise {low:.4f}-{high:.4f})"
    return config, label, notes


def sample_crops(
    images: Sequence[Tensor], batch: int, size: int, generator: torch.Generator, *, augment: bool
) -> Tensor:
    """Random ``size`` crops from ``images`` (chosen in proportion to their area).

    Args:
        images: each (1, H, W) with H, W >= size.
        batch: number of crops.
        size: crop side in pixels.
        generator: the only source of randomness, so a resumed run draws the same crops.
        augment: random flips and 90-degree rotations (SEM has no preferred orientation).

    Returns:
        (batch, 1, size, size).
    """
    areas = torch.tensor([float(im.shape[-1] * im.shape[-2]) for im in images])
    idx = torch.multinomial(areas, batch, replacement=True, generator=generator)
    out = []
    for i in idx.tolist():
        im = images[i]
        h, w = im.shape[-2:]
        y = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        crop = im[:, y : y + size, x : x + size]
        if augment:
            flip, rot = torch.randint(0, 4, (2,), generator=generator).tolist()
            if flip % 2:
                crop = crop.flip(-1)
            crop = torch.rot90(crop, rot, dims=(-2, -1))
        out.append(crop)
    return torch.stack(out).contiguous()
