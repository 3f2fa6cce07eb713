"""``python -m semtune.compare``: are two trials (or models) different, image by image?

Every trial of a study is scored on the same validation crops, and each run keeps its scores per
validation image (``val_scores.csv``; in MLflow ``scores/step_<step>.csv``). Comparing two runs
on those, image by image, takes out how hard each image is (common to both) and leaves the
difference the settings made: its mean over the images, a 95% interval by a bootstrap over the
images, and on how many images each run was ahead. Two runs scored on different images are
refused, not compared.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from semtune.cli import parser
from semtune.uncertainty import bootstrap_ci

__all__ = ["Comparison", "build_parser", "compare", "main", "read_scores"]

METRICS = ("psnr_gain", "ssim_gain", "score", "psnr", "ssim")


def read_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """A run's per-image scores: ``path`` is a ``val_scores.csv`` (or ``scores/step_*.csv``),
    a run folder holding one, or a Tune trial folder (its latest checkpoint's)."""
    p = Path(path)
    if p.is_dir():
        found = [p / "val_scores.csv"] if (p / "val_scores.csv").is_file() else []
        found = found or sorted(p.glob("checkpoint_*/val_scores.csv"))[-1:]
        if not found:
            raise ValueError(f"{p}: no val_scores.csv in it (nor in its checkpoint_* folders)")
        p = found[0]
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "image" not in rows[0]:
        raise ValueError(f"{p}: not a per-image score table (no 'image' column)")
    return {
        r["image"]: {k: float(v) for k, v in r.items() if k in (*METRICS, "step")} for r in rows
    }


@dataclass(frozen=True)
class Comparison:
    """B minus A on one metric, over the images both were scored on."""

    metric: str
    images: int
    mean: float
    ci_low: float
    ci_high: float
    b_ahead: int
    a_ahead: int

    def verdict(self) -> str:
        if self.images < 2:
            return "one image: no interval, no verdict"
        if self.ci_low > 0:
            return "B is better (the interval excludes 0)"
        if self.ci_high < 0:
            return "A is better (the interval excludes 0)"
        return "not told apart (the interval contains 0)"


def compare(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str
) -> Comparison:
    """B minus A on ``metric``, image by image; both must hold the same images."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(
            "the two runs were scored on different validation images (only in A: "
            f"{only_a[:3]}, only in B: {only_b[:3]}); a paired comparison needs the same ones"
        )
    names = sorted(a)
    diff = torch.tensor([b[n][metric] - a[n][metric] for n in names], dtype=torch.float64)
    ci = bootstrap_ci({"d": diff}, list(range(len(names))))
    return Comparison(
        metric=metric,
        images=len(names),
        mean=float(diff.mean()),
        ci_low=ci["d_ci_low"],
        ci_high=ci["d_ci_high"],
        b_ahead=int((diff > 0).sum()),
        a_ahead=int((diff < 0).sum()),
    )


_EXAMPLES = """\
examples:
  python -m semtune.compare gamma/tune/trial_0e9242cd gamma/tune/trial_724568a9
  python -m semtune.compare runs/a/val_scores.csv runs/b/val_scores.csv --metric ssim_gain

A and B are run folders (val_scores.csv), Tune trial folders (their latest checkpoint's) or the
CSV files themselves (an MLflow trial run's scores/step_<step>.csv downloaded from the UI).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (also read by ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.compare",
        "Compare two trials or models image by image on their validation scores: the mean "
        "difference (B minus A), its 95% interval over the images, and how many images each "
        "was ahead on.",
        _EXAMPLES,
    )
    p.add_argument("a", metavar="A", help="the first run: folder or per-image score CSV")
    p.add_argument("b", metavar="B", help="the second run, scored on the same images")
    p.add_argument(
        "--metric",
        choices=METRICS,
        default="psnr_gain",
        help="what to compare (a gain takes out each image's own difficulty twice over)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        a, b = read_scores(args.a), read_scores(args.b)
        c = compare(a, b, args.metric)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"A: {args.a}\nB: {args.b}")
    steps_a = {int(s["step"]) for s in a.values() if "step" in s}
    steps_b = {int(s["step"]) for s in b.values() if "step" in s}
    if steps_a and steps_b and steps_a != steps_b:
        print(
            f"note: A was scored at step {max(steps_a)}, B at step {max(steps_b)}: different "
            "budgets (a trial stopped early against one that ran on), not only other settings"
        )
    print(
        f"{c.metric}, B minus A over {c.images} images: {c.mean:+.4f} "
        f"(95% CI {c.ci_low:+.4f} to {c.ci_high:+.4f}); B ahead on {c.b_ahead}, A on "
        f"{c.a_ahead}: {c.verdict()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
