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

import torch
from tqdm import tqdm

from semtune.baselines import METHODS, restore
from semtune.cli import (
    add_tracking_uri,
    parser,
    start_threads,
)
from semtune.data.datasets import PairedSet
from semtune.io import ImageReadError
from semtune.restore import generator_method
from semtune.scoring import (
    Method,
    add_scoring_args,
    check_outputs,
    load_scoring_data,
    score,
    to_markdown,
    write_outputs,
)

__all__ = ["build_parser", "classical_methods", "main"]

ORACLE_METHODS = ("wiener", "richardson_lucy", "cls")


def classical_methods(*, oracle: bool = True) -> dict[str, Method]:
    """The classical baselines by table name; ``*_oracle`` are handed the true PSF."""
    methods: dict[str, Method] = {m: _blind(m) for m in METHODS}
    if oracle:
        for m in ORACLE_METHODS:
            methods[f"{m}_oracle"] = _oracle(f"{m}_oracle")
    return methods


def _blind(name: str) -> Method:
    def method(x: torch.Tensor, _paired: PairedSet) -> torch.Tensor:
        return restore(name, x)

    return method


def _oracle(name: str) -> Method:
    def method(x: torch.Tensor, paired: PairedSet) -> torch.Tensor:
        return restore(name, x, psf=paired.psfs)  # handed the true kernel

    return method


_EXAMPLES = """\
examples:
  python -m semtune.benchmark --data data/sample/test --out bench-out/          # sets A B C
  python -m semtune.benchmark --data data/sample/test --sets A+n B+n C+n --crops 16 --out noisy/
  python -m semtune.benchmark --data data/sample/test --model runs/cpu/generator.pt --out with-g/

Writes OUT/table.csv (one row per set and method: SSIM, PSNR against the clean crops; AG, CON,
SF without reference), OUT/table.md and OUT/examples.png. python -m semtune.evaluate makes the
same crops for the same --data, --crop-size, --crops and --seed.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (also read by ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.benchmark",
        "Score classical deblurring methods (and optionally a trained generator) on paired "
        "synthetic sets made from clean SEM images: the paper's Table 1/2.",
        _EXAMPLES,
    )
    add_scoring_args(p)
    p.add_argument(
        "--model",
        help="also score this generator as 'cyclegan': a checkpoint file or a models:/ or "
        "runs:/ URI (read from --tracking-uri)",
    )
    add_tracking_uri(p)
    p.add_argument(
        "--no-oracle",
        dest="oracle",
        action="store_false",
        help="leave out the *_oracle rows (methods handed the true blur kernel)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.threads < 0:
        p.error(f"--threads must be >= 0 (0 = the CPUs this process may use), got {args.threads}")
    print(start_threads(args.threads), file=sys.stderr)

    t0 = time.monotonic()
    try:
        check_outputs(args.out, overwrite=args.overwrite)
        data = load_scoring_data(
            args.data,
            args.sets,
            crop_size=args.crop_size,
            n_crops=args.crops,
            seed=args.seed,
            crop_bar=args.bar_detect,
        )
        methods = classical_methods(oracle=args.oracle)
        if args.model is not None:
            methods["cyclegan"] = generator_method(args.model, tracking_uri=args.tracking_uri)
    except (ImageReadError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, reason in data.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(
        f"{len(data.files)} images, {data.crops.shape[0]} crops of "
        f"{args.crop_size}x{args.crop_size}, "
        f"sets {' '.join(args.sets)}, seed {args.seed}"
    )
    bar = tqdm(total=len(methods) * len(args.sets), desc="benchmark", unit="run", file=sys.stderr)

    def progress(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update(1)

    table, examples = score(data, methods, progress=progress)
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
