"""``python -m semtune.evaluate``: score a trained generator exactly like the benchmark scores
the classical methods (same crops, same seed, same ``table.csv`` columns; method ``cyclegan``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from semtune.cli import add_tracking_uri, parser, start_threads
from semtune.io import ImageReadError
from semtune.restore import generator_method
from semtune.scoring import (
    add_scoring_args,
    check_outputs,
    load_scoring_data,
    score,
    to_markdown,
    write_outputs,
)

# generator_method lives in semtune.restore; re-exported here
__all__ = ["build_parser", "generator_method", "main"]


_EXAMPLES = """\
examples:
  python -m semtune.evaluate --model runs/cpu/generator.pt --data data/sample/test --out eval/cpu
  python -m semtune.evaluate --model models:/semtune-generator@champion --data my_clean/ \\
      --sets A B C A+n --out eval/champion
  python -m semtune.evaluate --model runs/cpu/generator.pt --data data/sample/test --crops 16 \\
      --seed 1 -o eval/quick

Writes OUT/table.csv (method 'cyclegan', plus the blurred input and the clean reference),
OUT/table.md and OUT/examples.png, on the crops python -m semtune.benchmark scores the
classical methods on (same --data, --crop-size, --crops and --seed).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (also read by ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.evaluate",
        "Score a trained generator on paired synthetic sets made from clean SEM images (same "
        "crops and columns as python -m semtune.benchmark).",
        _EXAMPLES,
    )
    p.add_argument(
        "--model",
        required=True,
        help="generator: a checkpoint file (generator.pt / best.pt) or models:/NAME@ALIAS, "
        "models:/NAME/VERSION, runs:/RUN_ID/PATH (read from --tracking-uri)",
    )
    add_tracking_uri(p)
    add_scoring_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.threads < 0:
        p.error(f"--threads must be >= 0 (0 = the CPUs this process may use), got {args.threads}")
    print(start_threads(args.threads), file=sys.stderr)
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
        method = generator_method(args.model, tracking_uri=args.tracking_uri)
    except (ImageReadError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table, examples = score(data, {"cyclegan": method})
    paths = write_outputs(
        table, examples, args.out, title=f"Generator {args.model}", overwrite=args.overwrite
    )
    print(to_markdown(table))
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
