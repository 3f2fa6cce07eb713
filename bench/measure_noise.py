"""Measure the noise of real SEM images: the figures behind semtune.data.noise's ranges.

For each folder: the pixel-noise std (Immerkaer's estimator on the low-gradient pixels,
``semtune.quality.noise_sigma``), the scan-line offset std, how much more 0.7-3 px energy the
flattest 30 % carry than white noise of that std would (2.9x the white-noise value means the
noise, or texture mistaken for it, is spatially correlated), and the same pixel-noise estimate
after set A's blur, to show how much smoother the paper's synthetic inputs are.

    python bench/measure_noise.py data/sample/train data/sample/nasa
    python bench/measure_noise.py ../shared/data/nffa-particles ../shared/data/nasa-micronet-dev
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from semtune.data.degrade import degrade  # noqa: E402
from semtune.io import read_folder  # noqa: E402
from semtune.quality import flat_mask, flat_texture, line_noise_sigma, noise_sigma  # noqa: E402

# flat_texture / noise_sigma of white noise on a flat image (measured: 0.35)
_WHITE_RATIO = 0.35


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(
        "| folder | images | noise std 10/50/90 % | line noise (median) | flat-area band / "
        "white noise (10/50/90 %) | after set A's blur (median) |"
    )
    print("|---|---|---|---|---|---|")
    for folder in args.folders:
        images = [im.data[None] for im in read_folder(folder).images]
        sigma = np.array([float(noise_sigma(x)[0]) for x in images])
        line = np.array([float(line_noise_sigma(x)[0]) for x in images])
        band = np.array([float(flat_texture(x, flat_mask(x))[0]) for x in images]) / np.maximum(
            sigma, 1e-6
        )
        after = np.array([float(noise_sigma(degrade(x, "A", seed=0).blurred)[0]) for x in images])
        q = np.quantile(sigma, [0.1, 0.5, 0.9])
        r = np.quantile(band / _WHITE_RATIO, [0.1, 0.5, 0.9])
        print(
            f"| {folder} | {len(images)} | {q[0]:.4f} / {q[1]:.4f} / {q[2]:.4f} | "
            f"{np.median(line):.4f} | {r[0]:.1f} / {r[1]:.1f} / {r[2]:.1f} | "
            f"{np.median(after):.4f} ({np.median(sigma / np.maximum(after, 1e-9)):.0f}x less) |"
        )


if __name__ == "__main__":
    main()
