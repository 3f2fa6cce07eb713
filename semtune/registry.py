"""``python -m semtune.models list|promote``: the model registry from the command line.

(The module is ``semtune.registry``, a CLI over ``semtune.tracking``; ``semtune.models`` keeps
the command's name with a forwarder.)

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

from semtune.cli import HelpFormatter, add_model_name, add_tracking_uri, parser
from semtune.metric_names import HEADLINE

__all__ = ["build_parser", "main"]

# metrics shown as columns, in this order, when any version has them
_COLUMNS = (*HEADLINE, "ag", "sf")


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
    rows = [["version", "aliases", *shown, "val data", "seed", "study", "trial", "created"]]
    for v in versions:
        rows.append(
            [
                v.version,
                ",".join(v.aliases) or "-",
                *(f"{v.metrics[c]:.4f}" if c in v.metrics else "-" for c in shown),
                v.val_fingerprint[:8] or "-",
                v.seed or "-",
                v.study or "-",
                v.trial or "-",
                v.created,
            ]
        )
    print(f"{name} at {uri}")
    print(_table(rows))
    compared = [v for v in versions if v.vs_champion]
    if compared:
        print("\nre-scored beside the champion of the day on the same images:")
        for v in compared:
            print(f"  version {v.version} against {v.vs_champion}")
    print("(val data: the fingerprint of the images and settings the scores were measured on)")
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


_EXAMPLES = """\
examples:
  python -m semtune.models list                      # versions, metrics, aliases
  python -m semtune.models promote 3                 # champion -> version 3
  python -m semtune.models list --model-name my-generator --tracking-uri http://127.0.0.1:5000
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser, with its ``list`` and ``promote`` subcommands (also read by
    ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.models",
        "List registered semtune generators and move aliases (MLflow model registry).",
        _EXAMPLES,
    )
    common = argparse.ArgumentParser(add_help=False)
    add_tracking_uri(common)
    add_model_name(common, old=["--name"])
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,promote}")
    sub.add_parser(
        "list",
        parents=[common],
        help="versions with their metrics and aliases (newest first)",
        description="List the registered model's versions with their metrics and aliases, "
        "newest first.",
        epilog="""\
examples:
  python -m semtune.models list
  python -m semtune.models list --model-name my-generator --tracking-uri http://127.0.0.1:5000
""",
        formatter_class=HelpFormatter,
    )
    pr = sub.add_parser(
        "promote",
        parents=[common],
        help="point an alias at a version",
        description="Point an alias of the registered model (champion by default) at a "
        "version: what the MLflow UI's alias edit does.",
        epilog="""\
examples:
  python -m semtune.models promote 3
  python -m semtune.models promote 2 --alias staging --tracking-uri http://127.0.0.1:5000
""",
        formatter_class=HelpFormatter,
    )
    pr.add_argument("version", help="version number (see `list`)")
    pr.add_argument("--alias", default="champion", metavar="ALIAS", help="alias to move")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        uri = _uri(args.tracking_uri)
        if args.command == "list":
            return _list(uri, args.model_name)
        return _promote(uri, args.model_name, args.version, args.alias)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
