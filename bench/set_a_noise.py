"""How much of set A's error is the ground truth's own noise, and where models gain or lose.

Set A blurs a clean crop with a 7x7 Gaussian (sigma 1) and adds no noise. When the clean image
is itself noisy (white noise of std s), the blurred crop differs from it by at least
(1 - 2 k0 + sum k^2) s^2 = 0.761 s^2 in mean square, where k0 is the kernel's centre tap: the
blur removed most of that noise. No restorer recovers it without re-growing a grain from the
blurred remnant, so on crops where that share dominates, a restorer that denoises loses PSNR.
This prints the share per collection and each model's PSNR gain on the crops where it is above
one half and on the rest (docs/restoration.md, item 27). Crops as ``semtune.evaluate`` scores
them (256 px, 64 crops, seed 0); s is Immerkaer's estimate (``semtune.quality.noise_sigma``).

    python bench/set_a_noise.py --data HELD_OUT --model runs/nasa/generator.pt \\
        runs/item25/generator.pt
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from semtune.data.blur import gaussian_kernel  # noqa: E402
from semtune.inference import restore_batch  # noqa: E402
from semtune.quality import noise_sigma  # noqa: E402
from semtune.restore import load_model  # noqa: E402
from semtune.scoring import load_scoring_data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="folders of clean images")
    p.add_argument("--model", nargs="*", default=[], help="generator files to score")
    args = p.parse_args()
    torch.set_num_threads(1)
    paired = load_scoring_data(args.data, ["A"], crop_size=256, n_crops=64, seed=0).sets["A"]
    clean, blurred = paired.clean.double(), paired.blurred.double()
    k = gaussian_kernel(7, 1.0).double()
    factor = float(1 - 2 * k[3, 3] + (k**2).sum())
    mse_in = ((blurred - clean) ** 2).mean(dim=(1, 2, 3))
    sigma = noise_sigma(paired.clean).double()
    share = (factor * sigma**2 / mse_in).clamp(max=1)
    noisy = share > 0.5
    print(
        f"{len(clean)} crops: clean-crop noise median {float(sigma.median()):.4f}; "
        f"share of set A's error that is that noise ({factor:.3f} s^2 / MSE): "
        f"median {float(share.median()):.2f}; "
        f"above 0.5 on {int(noisy.sum())} crops"
    )
    for ref in args.model:
        g = load_model(ref, "cpu")
        with torch.no_grad():
            out = restore_batch(g, paired.blurred)  # each crop tiled as enhance runs it
        gain = 10 * torch.log10(
            mse_in / ((out.double().clamp(0, 1) - clean) ** 2).mean(dim=(1, 2, 3))
        )
        print(
            f"{ref}: PSNR gain {float(gain.mean()):+.2f} dB; on the noise-dominated crops "
            f"{float(gain[noisy].mean()):+.2f}, on the rest {float(gain[~noisy].mean()):+.2f}"
        )


if __name__ == "__main__":
    main()
