"""Plot validation PSNR/SSIM against training time from one or more runs' metrics.csv.

The validation images are held out from training (``data.val_fraction`` of the clean folder,
degraded like the run's ``val_set``); the blurred input's figures are drawn as a dashed line.

    python bench/plot_training.py runs/cpu/metrics.csv --out docs/img/psnr_vs_time.png
    python bench/plot_training.py runs/a/metrics.csv runs/b/metrics.csv --labels a b --out x.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+", type=Path, help="metrics.csv of each run")
    p.add_argument("--labels", nargs="*", default=None, help="one label per run")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args()
    labels = args.labels or [c.parent.name for c in args.csv]
    if len(labels) != len(args.csv):
        p.error(f"{len(args.csv)} files but {len(labels)} labels")
    fig, (ax_p, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8))
    for csv, label in zip(args.csv, labels, strict=True):
        df = pd.read_csv(csv)
        minutes = df["train_seconds"] / 60
        ax_p.plot(minutes, df["psnr"], marker="o", ms=3, label=label)
        ax_s.plot(minutes, df["ssim"], marker="o", ms=3, label=label)
    df = pd.read_csv(args.csv[0])
    ax_p.axhline(df["blurry_psnr"].iloc[0], ls="--", c="grey", label="blurred input")
    ax_s.axhline(df["blurry_ssim"].iloc[0], ls="--", c="grey", label="blurred input")
    ax_p.set(xlabel="training time (min)", ylabel="PSNR (dB)", title="held-out validation PSNR")
    ax_s.set(xlabel="training time (min)", ylabel="SSIM", title="held-out validation SSIM")
    for ax in (ax_p, ax_s):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
