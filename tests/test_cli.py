"""One vocabulary across the ``python -m semtune.*`` commands: the shared flags, defaults and
examples in every ``--help``, the old spellings kept, and docs/cli.md generated from the parsers."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from semtune.cli import (
    COMMANDS,
    DEFAULT_MODEL_NAME,
    TRACKING_URI_HELP,
    HelpFormatter,
    parsers,
    reference,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL = parsers()


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def _help_string(p: argparse.ArgumentParser, action: argparse.Action) -> str:
    return p._get_formatter()._get_help_string(action) or ""


def test_docs_cli_md_is_generated_from_the_parsers_and_current() -> None:
    written = (REPO_ROOT / "docs" / "cli.md").read_text()
    assert written == reference(), (
        "docs/cli.md is stale: run `make cli-docs` (.venv/bin/python -m semtune.cli > docs/cli.md)"
    )


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "61")
    narrow = reference()
    monkeypatch.setenv("COLUMNS", "250")
    assert reference() == narrow
    assert all(len(line) <= 100 for line in narrow.splitlines() if not line.startswith("usage"))


def test_every_command_and_subcommand_is_in_the_reference() -> None:
    progs = set(ALL)
    assert set(COMMANDS) <= progs
    assert {"python -m semtune.models list", "python -m semtune.models promote"} <= progs
    text = reference()
    for prog in progs:
        assert f"## {prog}\n" in text


def _examples(epilog: str) -> list[str]:
    """The command lines of an epilog's ``examples:`` block (continuations joined)."""
    lines: list[str] = []
    block = epilog.split("examples:", 1)[1].split("\n\n", 1)[0]
    for raw in block.splitlines():
        text = raw.strip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + text
        elif text.startswith("python -m semtune."):
            lines.append(text)
    return lines


def _parse(line: str) -> argparse.Namespace:
    """Parse an example with its command's parser (``models list ...`` by ``models``)."""
    words = shlex.split(line, comments=True)
    prog, args = " ".join(words[:3]), words[3:]
    if prog == "python -m semtune.submit" and "--" in args:
        args = args[: args.index("--")]  # the rest goes to semtune.search
    return ALL[prog].parse_args(args)


@pytest.mark.parametrize("prog", sorted(ALL))
def test_every_help_ends_with_examples_that_parse(prog: str) -> None:
    p = ALL[prog]
    assert (p.epilog or "").startswith("examples:"), f"{prog}: no examples"
    examples = _examples(p.epilog or "")
    assert len(examples) >= 2, f"{prog}: fewer than two examples"
    assert any(e.startswith(prog) for e in examples)
    for line in examples:
        try:
            _parse(line)
        except SystemExit:
            pytest.fail(f"{prog}: the example {line!r} does not parse")
    assert "examples:" in p.format_help()


@pytest.mark.parametrize("prog", sorted(ALL))
def test_every_option_with_a_value_shows_its_default_once(prog: str) -> None:
    p = ALL[prog]
    for action in p._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or action.nargs == 0:
            continue
        shown = _help_string(p, action)
        assert shown.lower().count("default") <= 1, f"{prog} {action.option_strings}: {shown}"
        if action.default not in (None, [], argparse.SUPPRESS):
            assert "default" in shown.lower(), f"{prog} {action.option_strings}: no default"


def test_the_formatter_appends_defaults_only_where_the_help_says_none() -> None:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--n", type=int, default=3, help="a count")
    p.add_argument("--sets", nargs="+", default=["A", "B"], help="sets")
    p.add_argument("--pct", default="5%", help="a share")
    p.add_argument("--said", default=7, help="seven (default: seven)")
    p.add_argument("--none", default=None, help="nothing")
    p.add_argument("--flag", action="store_true", help="on or off")
    p.add_argument("--no-x", dest="x", action="store_false", help="x off")
    shown = {a.dest: _help_string(p, a) for a in p._actions}
    assert shown["n"] == "a count (default: 3)"
    assert shown["sets"] == "sets (default: A B)"
    assert shown["said"] == "seven (default: seven)"
    assert shown["none"] == "nothing" and shown["flag"] == "on or off" and shown["x"] == "x off"
    assert "a share (default: 5%)" in " ".join(p.format_help().split())


def test_the_shared_flags_have_one_spelling_and_metavar_everywhere() -> None:
    for prog, p in ALL.items():
        opts = _options(p)
        if "--out" in opts:
            assert "-o" in opts and opts["-o"] is opts["--out"], f"{prog}: --out without -o"
        if "--tracking-uri" in opts:
            assert opts["--tracking-uri"].metavar == "URI", prog
            if prog != "python -m semtune.submit":  # a server only, said in its own words
                assert opts["--tracking-uri"].help == TRACKING_URI_HELP, prog
        if "--set" in opts:
            assert opts["--set"].metavar == "PATH=VALUE", prog
        if "--threads" in opts:
            assert opts["--threads"].default == 0, prog
        for old in ("--name", "--no-bar-crop", "--crop_bar"):
            if old in opts:
                assert opts[old].help == argparse.SUPPRESS, f"{prog}: {old} is listed"
    assert {p for p in ALL if "--model-name" in _options(ALL[p])} == {
        "python -m semtune.search",
        "python -m semtune.models list",
        "python -m semtune.models promote",
    }
    assert {p for p in ALL if "--no-bar-detect" in _options(ALL[p])} == {
        "python -m semtune.enhance",
        "python -m semtune.evaluate",
        "python -m semtune.benchmark",
    }
    assert {p for p in ALL if "--threads" in _options(ALL[p])} == {
        "python -m semtune.enhance",
        "python -m semtune.evaluate",
        "python -m semtune.benchmark",
    }


def test_the_old_spellings_still_work_hidden() -> None:
    models = ALL["python -m semtune.models"]
    assert models.parse_args(["list", "--name", "old"]).model_name == "old"
    assert models.parse_args(["list", "--model-name", "new"]).model_name == "new"
    assert models.parse_args(["promote", "3"]).model_name == DEFAULT_MODEL_NAME
    for prog in ("python -m semtune.evaluate", "python -m semtune.benchmark"):
        base = ["--data", "d", "-o", "o"] + (["--model", "g.pt"] if "evaluate" in prog else [])
        p = ALL[prog]
        assert p.parse_args(base).bar_detect is True
        assert p.parse_args([*base, "--no-bar-detect"]).bar_detect is False
        assert p.parse_args([*base, "--no-bar-crop"]).bar_detect is False
        assert "--no-bar-crop" not in p.format_help()
    assert "--name" not in ALL["python -m semtune.models list"].format_help()


def test_the_model_name_default_is_the_registry_s() -> None:
    from semtune.tracking import DEFAULT_MODEL_NAME as TRACKING_DEFAULT

    assert DEFAULT_MODEL_NAME == TRACKING_DEFAULT
    search = ALL["python -m semtune.search"].parse_args(["--space", "s.yaml"])
    assert search.model_name == TRACKING_DEFAULT


def test_the_readme_links_the_reference() -> None:
    assert "(docs/cli.md)" in (REPO_ROOT / "README.md").read_text()
