"""Real micrographs that look like set-A inputs: pixel noise and high-frequency share per image.

For each image (its top-left 512 px) and for set A made from it, prints the pixel noise
(``semtune.quality.noise_sigma``) and the share of power at 0.3-0.5 cycles/px over that at
0.05-0.15 (radially, of the mean-removed image). A real frame whose figures fall among set A's
is soft and nearly noise-free: to a blind restorer it looks like a set-A input, and a model
that gains on set A sharpens it (docs/restoration.md, item 29).

    python bench/soft_frames.py NASA_HELD
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from semtune.data.degrade import degrade  # noqa: E402
from semtune.io import read_folder  # noqa: E402
from semtune.quality import noise_sigma  # noqa: E402

SIDE = 512
MID = (0.05, 0.15)  # cycles/px
HIGH = (0.3, 0.5)


def high_share(x: torch.Tensor) -> float:
    """Mean power at HIGH over mean power at MID of a (H, W) image."""
    a = x.double().numpy()
    power = np.abs(np.fft.fft2(a - a.mean())) ** 2
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    r = np.hypot(fy, fx)
    mid = power[(r > MID[0]) & (r < MID[1])].mean()
    high = power[(r > HIGH[0]) & (r < HIGH[1])].mean()
    return float(high / mid)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("image | real: noise, high/mid | its set A: noise, high/mid")
    for folder in args.folders:
        for im in read_folder(folder).images:
            x = im.data[:, :SIDE, :SIDE]
            blurred = degrade(x[None], "A", seed=0).blurred[0]
            print(
                f"{Path(im.path).name} | {float(noise_sigma(x[None])[0]):.4f}, "
                f"{high_share(x[0]):.1e} | {float(noise_sigma(blurred[None])[0]):.4f}, "
                f"{high_share(blurred[0]):.1e}"
            )


if __name__ == "__main__":
    main()
