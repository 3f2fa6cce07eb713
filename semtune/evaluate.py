"""``python -m semtune.evaluate``: score a trained generator exactly like the benchmark scores
the classical methods (same crops, same seed, same ``table.csv`` columns; method ``cyclegan``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from semtune.benchmark import add_scoring_args
from semtune.enhance import load_model
from semtune.inference import restore_batch
from semtune.io import ImageReadError
from semtune.scoring import (
    Method,
    check_outputs,
    load_scoring_data,
    score,
    to_markdown,
    write_outputs,
)

__all__ = ["generator_method", "main"]


def generator_method(
    model: str | Path,
    device: torch.device | str | None = None,
    *,
    tracking_uri: str | None = None,
) -> Method:
    """A scoring method that runs a generator (checkpoint file, or a models:/ / runs:/ URI read
    from ``tracking_uri``)."""
    dev = (
        torch.device(device)
        if device
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    g = load_model(model, dev, tracking_uri=tracking_uri)

    def method(x: torch.Tensor, _paired: object) -> torch.Tensor:
        return restore_batch(g, x.to(dev)).cpu()

    return method


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m semtune.evaluate",
        description="Score a trained generator on paired synthetic sets made from clean SEM "
        "images (same crops and columns as python -m semtune.benchmark).",
    )
    p.add_argument("--model", required=True, help="checkpoint file or models:/ / runs:/ URI")
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow server or store of a models:/ or runs:/ --model (default: "
        "$MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db); never created by reading",
    )
    add_scoring_args(p)
    args = p.parse_args(argv)
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
