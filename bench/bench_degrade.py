"""Synthetic set C for 256 images of 256x256, semtune vs a scipy.ndimage reference, ratio.

Goal: at least 5x faster. The reference is the same degradation written the way one would with
scipy: a loop over images, ``ndimage.convolve`` / ``gaussian_filter`` with 'mirror' borders (the
border semtune uses), and the fog in NumPy with a cubic ``ndimage.zoom`` of the random node grid.
Both follow the default ``DegradeConfig`` (the hybrid reading included). Best of ``--repeats``.

    python bench/bench_degrade.py
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
from torch import Tensor

from semtune.data.datasets import random_crops
from semtune.data.degrade import DegradeConfig, degrade
from semtune.io import read_folder

REPO_ROOT = Path(__file__).resolve().parents[1]


def sample_images(folder: Path) -> list[Tensor]:
    """The folder's micrographs as (1, H, W) tensors in [0, 1], information bar cropped."""
    return [image.data for image in read_folder(folder).images]


def numpy_kernels(config: DegradeConfig) -> dict[str, np.ndarray]:
    """The three blur kernels, written again in NumPy (angle-0 motion only)."""
    if config.motion_angle != 0.0:
        raise SystemExit("the reference writes the motion kernel for angle 0 only")
    k = config.gaussian_kernel
    r = np.arange(k) - k // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * config.gaussian_sigma**2))
    length = config.motion_length
    half = math.ceil(length / 2 - 0.5)
    c = np.arange(-half, half + 1)
    row = np.clip(np.minimum(c + 0.5, length / 2) - np.maximum(c - 0.5, -length / 2), 0, None)
    motion = np.zeros((2 * half + 1, 2 * half + 1))
    motion[half] = row
    radius = config.defocus_radius
    d = np.arange(-math.floor(radius), math.floor(radius) + 1)
    disk = (d[:, None] ** 2 + d[None, :] ** 2 <= radius**2).astype(np.float64)
    return {"gaussian": g / g.sum(), "motion": motion / motion.sum(), "defocus": disk / disk.sum()}


def scipy_set_c(images: np.ndarray, config: DegradeConfig, seed: int) -> np.ndarray:
    """Set C image by image with scipy.ndimage and NumPy: (N, H, W) float64 -> (N, H, W)."""
    kernels = numpy_kernels(config)

    def blur(image: np.ndarray, name: str) -> np.ndarray:
        if name == "gaussian":
            truncate = (config.gaussian_kernel // 2) / config.gaussian_sigma
            return ndi.gaussian_filter(
                image, config.gaussian_sigma, mode="mirror", truncate=truncate
            )
        return ndi.convolve(image, kernels[name], mode="mirror")

    rng = np.random.default_rng(seed)
    low, high = config.fog_beta
    scale = config.fog_scale
    out = np.empty_like(images)
    for i, image in enumerate(images):
        chain = (
            list(config.hybrid_kernels)
            if config.hybrid == "sequence"
            else [config.hybrid_kernels[rng.integers(len(config.hybrid_kernels))]]
        )
        for name in "+".join(chain).split("+"):
            image = blur(image, name)
        h, w = image.shape
        nodes = (math.ceil((h - 1) / scale) + 1, math.ceil((w - 1) / scale) + 1)
        grid = rng.random(nodes)
        size = ((nodes[0] - 1) * scale + 1, (nodes[1] - 1) * scale + 1)
        field = ndi.zoom(grid, (size[0] / nodes[0], size[1] / nodes[1]), order=3, grid_mode=False)
        beta = low + (high - low) * np.clip(field[:h, :w], 0, 1)
        t = np.exp(-beta * config.fog_depth)
        out[i] = np.clip(image * t + config.fog_airlight * (1 - t), 0, 1)
    return out


def best_of(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "sample" / "train")
    parser.add_argument("--n", type=int, default=256, help="number of images")
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--hybrid", choices=("random", "sequence"), default=None, help="default: the config's"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = DegradeConfig() if args.hybrid is None else DegradeConfig(hybrid=args.hybrid)
    x = random_crops(sample_images(args.data), args.size, args.n, seed=0)
    x_np = x[:, 0].double().numpy()
    print(f"{args.n} images {args.size}x{args.size} from {args.data}, torch threads {args.threads}")
    # Other processes on the cores slow torch's multi-threaded ops far more than scipy's
    # single-threaded loop: read the ratio together with the load.
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"config: {config}")

    # The blurs agree with scipy (same PSF per image, fog off) before anything is timed.
    no_fog = degrade(x[:16], "C", seed=0, config=dataclasses.replace(config, fog_depth=0.0))
    gap = max(
        float(np.abs(ndi.convolve(img, psf[0].double().numpy(), mode="mirror") - out[0]).max())
        for img, psf, out in zip(
            x_np[:16], no_fog.psfs, no_fog.blurred.double().numpy(), strict=True
        )
    )
    print(f"blur check, 16 images: max |semtune - scipy| = {gap:.1e}")

    ours = best_of(args.repeats, lambda: degrade(x, "C", seed=0, config=config))
    print(f"semtune  best of {args.repeats}: {ours:.3f} s")
    ref = best_of(args.repeats, lambda: scipy_set_c(x_np, config, seed=0))
    print(f"scipy    best of {args.repeats}: {ref:.3f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(
        f"set C: semtune {ours:.2f} s, scipy reference {ref:.2f} s, speed-up {ref / ours:.1f}x "
        f"({args.n} images {args.size}x{args.size})"
    )


if __name__ == "__main__":
    main()
