"""One vocabulary for every ``python -m semtune.*`` command, and their generated reference.

Each command builds its parser with :class:`HelpFormatter` (examples kept as written, defaults
shown) and takes the flags they share from the helpers here, so that a flag means the same
thing, with the same help, everywhere: ``--tracking-uri URI``, ``--model-name NAME``,
``-o/--out``, ``--no-bar-detect``, ``--set PATH=VALUE``, ``--threads N``.

``python -m semtune.cli > docs/cli.md`` (``make cli-docs``) writes the CLI reference from the
parsers themselves; ``tests/test_cli.py`` fails when docs/cli.md is stale.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "COMMANDS",
    "DEFAULT_MODEL_NAME",
    "HelpFormatter",
    "TRACKING_URI_HELP",
    "add_model_name",
    "add_no_bar_detect",
    "add_out",
    "add_set",
    "add_threads",
    "add_tracking_uri",
    "parser",
    "reference",
    "start_threads",
]

# semtune.tracking.DEFAULT_MODEL_NAME (tests/test_cli.py checks they agree); not imported from
# there, which would load MLflow just to print --help
DEFAULT_MODEL_NAME = "semtune-generator"

TRACKING_URI_HELP = (
    "MLflow tracking server or store: http://HOST:5000, sqlite:///abs/path.db, a .db file or "
    "a folder (default: $MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db in the working folder, "
    "the store mlflow/start-server.sh serves)"
)

# The commands and the module that builds each parser (build_parser()), in reference order.
COMMANDS: dict[str, str] = {
    "python -m semtune.train": "semtune.train.__main__",
    "python -m semtune.search": "semtune.search",
    "python -m semtune.submit": "semtune.submit",
    "python -m semtune.enhance": "semtune.enhance",
    "python -m semtune.evaluate": "semtune.evaluate",
    "python -m semtune.benchmark": "semtune.benchmark",
    "python -m semtune.compare": "semtune.compare",
    "python -m semtune.models": "semtune.registry",
}

# the width docs/cli.md is written at, so that it does not depend on the terminal
REFERENCE_COLUMNS = 100


class HelpFormatter(argparse.HelpFormatter):
    """A one-paragraph description wrapped to the terminal, an epilog of several lines kept as
    written (its examples keep their lines), and ``(default: X)`` after every option whose help
    does not state its default already, unless the default is None, False or suppressed (a
    flag, or a value the help explains). Paths and URIs are never broken at a hyphen."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return "\n".join(self._wrap(text, width, indent))

    def _split_lines(self, text: str, width: int) -> list[str]:
        return self._wrap(text, width, "")

    @staticmethod
    def _wrap(text: str, width: int, indent: str) -> list[str]:
        return textwrap.wrap(
            " ".join(text.split()),
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        )

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not text
            or text == argparse.SUPPRESS
            or "default" in text.lower()
            or action.nargs == 0  # store_true / store_false / count: on or off, nothing to show
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
        ):
            return text
        if isinstance(default, list | tuple):
            shown = " ".join(str(d) for d in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def parser(prog: str, description: str, examples: str, **kwargs: Any) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` in the house format.

    Args:
        prog: ``python -m semtune.NAME`` (``... models list`` for a subcommand).
        description: what the command does, one paragraph.
        examples: the epilog: starts with ``examples:`` and two or more working command lines,
            then any notes; kept as written.
        **kwargs: passed to ``ArgumentParser``.
    """
    if not examples.lstrip().startswith("examples:"):
        raise ValueError(f"{prog}: the epilog must start with 'examples:', got {examples[:30]!r}")
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=examples,
        formatter_class=HelpFormatter,
        **kwargs,
    )


def _alias(p: argparse.ArgumentParser | Any, names: Sequence[str], **kwargs: Any) -> None:
    """Old spellings of a flag, hidden from --help, writing to the same ``dest``."""
    if names:
        p.add_argument(*names, help=argparse.SUPPRESS, **kwargs)


def add_tracking_uri(p: argparse.ArgumentParser | Any, help: str = TRACKING_URI_HELP) -> None:
    """``--tracking-uri URI`` (default None: the command resolves the default it documents)."""
    p.add_argument("--tracking-uri", default=None, metavar="URI", help=help)


def add_model_name(
    p: argparse.ArgumentParser | Any,
    help: str = "registered model in the MLflow model registry",
    *,
    old: Sequence[str] = (),
) -> None:
    """``--model-name NAME``, default ``semtune-generator``; ``old`` spellings stay as hidden
    aliases (``--name`` of semtune.models)."""
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, metavar="NAME", help=help)
    _alias(p, old, dest="model_name", default=DEFAULT_MODEL_NAME, metavar="NAME")


def add_out(
    p: argparse.ArgumentParser | Any,
    help: str,
    *,
    required: bool = False,
    default: Any = None,
    metavar: str = "DIR",
    type: Callable[[str], Any] = Path,
) -> None:
    """``-o/--out DIR``: where a command writes."""
    p.add_argument(
        "-o", "--out", required=required, default=default, type=type, metavar=metavar, help=help
    )


def add_no_bar_detect(p: argparse.ArgumentParser | Any, *, old: Sequence[str] = ()) -> None:
    """``--no-bar-detect`` (``args.bar_detect`` False): the whole frame is sample content.
    ``old`` spellings (``--no-bar-crop`` of evaluate and benchmark) stay as hidden aliases."""
    p.add_argument(
        "--no-bar-detect",
        dest="bar_detect",
        action="store_false",
        help="treat the whole frame as sample content: do not look for the microscope's data "
        "bar (found, it is left out of what is restored or scored)",
    )
    _alias(p, old, dest="bar_detect", action="store_false")


def add_set(p: argparse.ArgumentParser | Any, help: str) -> None:
    """``--set PATH=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help=help,
    )


def add_threads(p: argparse.ArgumentParser | Any) -> None:
    """``--threads N`` (0 = the CPUs this process may use; see :mod:`semtune.threads`)."""
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch threads; 0 = as many as the CPUs this process may use (its CPU affinity "
        "and cgroup quota), or $OMP_NUM_THREADS when set",
    )


def start_threads(requested: int, *, flag: str = "--threads", change: str | None = None) -> str:
    """Set torch's thread count for this command (see :func:`semtune.threads.choose_threads`)
    and return the line that says it, for the command to print once at start."""
    from semtune.threads import set_torch_threads

    return set_torch_threads(requested, flag=flag, change=change).describe()


# -- the reference ---------------------------------------------------------------------------


@contextmanager
def _fixed_width(columns: int) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR")}
    os.environ["COLUMNS"] = str(columns)
    os.environ["NO_COLOR"] = "1"  # argparse colours help from Python 3.14 on
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _subparsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(dict.fromkeys(action.choices.values()))
    return found


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser (subcommands included) by its prog, built without running it."""
    out: dict[str, argparse.ArgumentParser] = {}
    for module in COMMANDS.values():
        p = importlib.import_module(module).build_parser()
        out[p.prog] = p
        for sub in _subparsers(p):
            out[sub.prog] = sub
    return out


_VOCABULARY = (
    "Every command shares one vocabulary: `-o/--out DIR` is where it writes, `--tracking-uri "
    "URI` the MLflow store it reads or writes (default `$MLFLOW_TRACKING_URI`, else "
    "`./mlruns/mlflow.db`), `--model-name NAME` the registered model (default "
    f"`{DEFAULT_MODEL_NAME}`), `--set PATH=VALUE` a trainer config value by its path, "
    "`--no-bar-detect` treats the whole frame as sample (no data-bar detection), `--threads N` "
    "the torch threads (0: the CPUs the process may use). Every `--help` ends with examples. "
    "Old spellings still work, unlisted: `--name` (models), `--no-bar-crop` (evaluate, "
    "benchmark)."
)


def reference(columns: int = REFERENCE_COLUMNS) -> str:
    """docs/cli.md: the ``--help`` of every command, formatted ``columns`` wide."""
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated from the parsers by `make cli-docs` (python -m semtune.cli > docs/cli.md);",
        "     do not edit: tests/test_cli.py fails when this file is stale. -->",
        "",
        *HelpFormatter._wrap(_VOCABULARY, columns, ""),
        "",
    ]
    with _fixed_width(columns):
        for prog, p in parsers().items():
            if hasattr(p, "color"):
                p.color = False
            lines += [f"## {prog}", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(
        "python -m semtune.cli",
        "Print the command-line reference (docs/cli.md) of every semtune command.",
        "examples:\n  python -m semtune.cli > docs/cli.md      # what `make cli-docs` runs\n",
    )
    p.add_argument("--columns", type=int, default=REFERENCE_COLUMNS, metavar="N", help="line width")
    args = p.parse_args(argv)
    sys.stdout.write(reference(args.columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
