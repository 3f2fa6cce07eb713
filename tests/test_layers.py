"""The layering of docs/architecture.md, held by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import semtune

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken" in proc.stdout


def test_every_module_of_semtune_has_a_layer() -> None:
    """A new top-level module or package must be placed in a layer, or nothing checks it."""
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    modules = {f"semtune.{m.name}" for m in pkgutil.iter_modules(semtune.__path__)}
    assert modules == placed, (
        f"not in a layer: {sorted(modules - placed)}; in a layer but gone: "
        f"{sorted(placed - modules)}"
    )


def test_a_long_module_says_why_it_is_long() -> None:
    """Issue 13: no module over ~400 lines without a reason written at its top."""
    import ast

    unexplained = []
    for f in sorted((ROOT / "semtune").rglob("*.py")):
        text = f.read_text()
        if len(text.splitlines()) > 420 and "Size:" not in (
            ast.get_docstring(ast.parse(text)) or ""
        ):
            unexplained.append(str(f.relative_to(ROOT)))
    assert not unexplained, f"over 420 lines with no 'Size:' reason in the docstring: {unexplained}"
