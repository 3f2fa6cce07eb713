"""95% confidence intervals for validation scores, by a bootstrap over *images*.

The validation crops of one image are not independent (same sample, same contrast, same
degradation seed family), so resampling crops would make an interval look narrower than the
evidence is. Each image's crops are averaged first; the images are then resampled with
replacement (a fixed seed: the same crops give the same interval), and the interval is the 2.5th
and 97.5th percentile of the resampled means. With fewer than two images there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["CI_BOUNDS", "bootstrap_ci", "gain_name", "per_group_means", "seeds_images_ci"]

RESAMPLES = 2000
# the suffixes of an interval's bounds: ``ssim_ci_low``, ``ssim_ci_high``
CI_BOUNDS = ("_ci_low", "_ci_high")


def gain_name(metric: str) -> str:
    """The gain over the input that goes with ``metric`` (``ssim`` -> ``ssim_gain``; a gain or
    ``score`` is its own): its interval is what tells trials apart, as every trial is scored on
    the same images, whose own difficulty spreads the absolute score."""
    return metric if metric.endswith("_gain") or metric == "score" else f"{metric}_gain"


def per_group_means(values: Tensor, groups: Sequence[int]) -> Tensor:
    """The mean of ``values`` (one per crop) within each group (image), in group order."""
    if len(groups) != values.shape[0]:
        raise ValueError(f"{values.shape[0]} values but {len(groups)} group labels")
    g = torch.as_tensor(list(groups), dtype=torch.long)
    ids = torch.unique(g)
    return torch.stack([values[g == i].double().mean() for i in ids])


def bootstrap_ci(
    per_crop: Mapping[str, Tensor],
    groups: Sequence[int],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """``{name}_ci_low`` / ``{name}_ci_high`` for each per-crop series, resampling images.

    Args:
        per_crop: name -> one value per crop (e.g. SSIM of each restored crop).
        groups: the image each crop comes from.
        level: coverage of the interval.
        resamples: bootstrap draws.
        seed: the draws' seed.

    Returns:
        The bounds, NaN when there are fewer than two images; plus ``val_images``.
    """
    n_images = len(set(groups))
    out: dict[str, float] = {"val_images": float(n_images)}
    draws = None
    if n_images >= 2:
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randint(n_images, (resamples, n_images), generator=gen)
    low, high = CI_BOUNDS
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    for name, values in per_crop.items():
        if draws is None:
            out[f"{name}{low}"] = out[f"{name}{high}"] = math.nan
            continue
        means = per_group_means(values.detach().cpu(), groups)[draws].mean(dim=1)
        out[f"{name}{low}"] = float(torch.quantile(means, lo_q))
        out[f"{name}{high}"] = float(torch.quantile(means, hi_q))
    return out


def seeds_images_ci(
    table: Tensor, *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The interval of the mean of a ``(seeds, images)`` table of scores (or of paired
    differences), by a two-way bootstrap: seeds and images are resampled independently, as both
    are sources of chance (a configuration trained again with another seed, scored on other
    images). With one seed only images are resampled, with one image only seeds; with one of
    each there is no interval (NaN, NaN)."""
    if table.ndim != 2:
        raise ValueError(f"expected a (seeds, images) table, got shape {tuple(table.shape)}")
    n_seeds, n_images = table.shape
    if n_seeds * n_images < 2:
        return math.nan, math.nan
    gen = torch.Generator().manual_seed(seed)
    values = table.detach().double().cpu()
    seeds = torch.randint(n_seeds, (resamples, n_seeds), generator=gen)
    images = torch.randint(n_images, (resamples, n_images), generator=gen)
    if n_seeds == 1:
        seeds = torch.zeros_like(seeds)
    if n_images == 1:
        images = torch.zeros_like(images)
    # draw r: the rows seeds[r] and the columns images[r] of the table, averaged
    means = values[seeds[:, :, None], images[:, None, :]].mean(dim=(1, 2))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    return float(torch.quantile(means, lo_q)), float(torch.quantile(means, hi_q))
