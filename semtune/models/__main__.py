"""``python -m semtune.models list|promote``: the model registry from the command line.

``list`` shows the registered generator versions with their metrics and aliases; ``promote``
moves an alias (``champion`` by default) to a version -- what a user would otherwise click in
the MLflow UI. The server is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local
store ``./mlruns/mlflow.db`` that ``semtune.search`` writes by default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

# metrics shown as columns, in this order, when any version has them
_COLUMNS = ("score", "ssim", "psnr", "ssim_gain", "psnr_gain", "ag", "sf")


def _uri(flag: str | None) -> str:
    from semtune.tracking import resolve_tracking_uri

    return resolve_tracking_uri(flag, default_dir=Path.cwd() / "mlruns")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _list(uri: str, name: str) -> int:
    from semtune.tracking import list_model_versions

    versions = list_model_versions(uri, name)
    if not versions:
        print(f"{name}: no versions registered at {uri}")
        return 0
    shown = [c for c in _COLUMNS if any(c in v.metrics for v in versions)]
    rows = [["version", "aliases", *shown, "study", "trial", "created"]]
    for v in versions:
        rows.append(
            [
                v.version,
                ",".join(v.aliases) or "-",
                *(f"{v.metrics[c]:.4f}" if c in v.metrics else "-" for c in shown),
                v.study or "-",
                v.trial or "-",
                v.created,
            ]
        )
    print(f"{name} at {uri}")
    print(_table(rows))
    return 0


def _promote(uri: str, name: str, version: str, alias: str) -> int:
    from semtune.tracking import promote

    before = promote(uri, version, name=name, alias=alias)
    if before == version:
        print(f"{name}@{alias} already is version {version}")
    else:
        was = f" (was version {before})" if before else ""
        print(f"{name}@{alias} -> version {version}{was}")
    print(f"use it: python -m semtune.enhance IMAGES --model models:/{name}@{alias} -o OUT")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from semtune.tracking import DEFAULT_MODEL_NAME

    p = argparse.ArgumentParser(
        prog="python -m semtune.models",
        description="List registered semtune generators and move aliases (MLflow registry).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        help="MLflow server or store (default: $MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db)",
    )
    common.add_argument(
        "--name",
        default=DEFAULT_MODEL_NAME,
        help=f"registered model (default: {DEFAULT_MODEL_NAME})",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "list", parents=[common], help="versions with their metrics and aliases (newest first)"
    )
    pr = sub.add_parser("promote", parents=[common], help="point an alias at a version")
    pr.add_argument("version", help="version number (see `list`)")
    pr.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    args = p.parse_args(argv)
    try:
        uri = _uri(args.tracking_uri)
        if args.command == "list":
            return _list(uri, args.name)
        return _promote(uri, args.name, args.version, args.alias)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
