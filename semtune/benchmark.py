"""``python -m semtune.benchmark``: Table 1/2 of the paper for any folder of clean SEM images.

Crops the data bars, makes the paired synthetic sets A/B/C, runs every classical method (and a
trained generator with ``--model``) and writes ``OUT/table.csv`` (long form), ``OUT/table.md``
and ``OUT/examples.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from semtune.baselines import METHODS, restore
from semtune.data.degrade import ALL_SETS, SETS
from semtune.io import ImageReadError
from semtune.scoring import (
    Method,
    check_outputs,
    load_scoring_data,
    score,
    to_markdown,
    write_outputs,
)

__all__ = ["classical_methods", "main", "add_scoring_args"]

ORACLE_METHODS = ("wiener", "richardson_lucy", "cls")


def classical_methods(*, oracle: bool = True) -> dict[str, Method]:
    """The classical baselines by table name; ``*_oracle`` are handed the true PSF."""
    methods: dict[str, Method] = {m: (lambda x, _p, m=m: restore(m, x)) for m in METHODS}
    if oracle:
        for m in ORACLE_METHODS:
            methods[f"{m}_oracle"] = lambda x, p, m=m: restore(f"{m}_oracle", x, psf=p.psfs)
    return methods


def add_scoring_args(p: argparse.ArgumentParser) -> None:
    """The options benchmark and evaluate share, so that they make the same crops."""
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder(s) of clean SEM images (PNG/JPEG/TIFF); their data bars are cropped",
    )
    p.add_argument(
        "--sets",
        nargs="+",
        default=list(SETS),
        choices=ALL_SETS,
        help="synthetic sets: the paper's A B C (default) and their noisy variants A+n B+n C+n",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder (table.csv, table.md, examples.png; kept unless --overwrite)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the tables already in --out")
    p.add_argument("--crop-size", type=int, default=256, help="crop side in pixels (default 256)")
    p.add_argument("--crops", type=int, default=64, help="number of test crops (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and degradations")
    p.add_argument(
        "--no-bar-crop",
        dest="crop_bar",
        action="store_false",
        help="do not detect and crop the microscope's information bar",
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m semtune.benchmark",
        description="Score classical deblurring methods (and optionally a trained generator) on "
        "paired synthetic sets made from clean SEM images: the paper's Table 1/2.",
    )
    add_scoring_args(p)
    p.add_argument("--model", type=Path, help="also score this generator checkpoint as 'cyclegan'")
    p.add_argument(
        "--no-oracle",
        dest="oracle",
        action="store_false",
        help="leave out the *_oracle rows (methods handed the true blur kernel)",
    )
    args = p.parse_args(argv)

    t0 = time.monotonic()
    try:
        check_outputs(args.out, overwrite=args.overwrite)
        data = load_scoring_data(
            args.data,
            args.sets,
            crop_size=args.crop_size,
            n_crops=args.crops,
            seed=args.seed,
            crop_bar=args.crop_bar,
        )
    except (ImageReadError, ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, reason in data.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(
        f"{len(data.files)} images, {data.crops.shape[0]} crops of "
        f"{args.crop_size}x{args.crop_size}, "
        f"sets {' '.join(args.sets)}, seed {args.seed}"
    )
    methods = classical_methods(oracle=args.oracle)
    if args.model is not None:
        from semtune.evaluate import generator_method

        methods["cyclegan"] = generator_method(args.model)
    bar = tqdm(total=len(methods) * len(args.sets), desc="benchmark", unit="run", file=sys.stderr)

    table, examples = score(
        data, methods, progress=lambda m: (bar.set_postfix_str(m), bar.update(1))
    )
    bar.close()
    paths = write_outputs(table, examples, args.out, title=_title(args), overwrite=args.overwrite)
    print(to_markdown(table))
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']} in {time.monotonic() - t0:.0f} s")
    return 0


def _title(args: argparse.Namespace) -> str:
    folders = " ".join(str(d) for d in args.data)
    return (
        f"Benchmark on {folders}: {args.crops} crops of {args.crop_size}px, seed {args.seed}. "
        "SSIM/PSNR against the clean crops; AG/CON/SF no-reference (0-255 scale). "
        "`*_oracle` rows are given the true blur kernel."
    )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
