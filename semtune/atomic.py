"""Files written whole or not at all: a crash, a kill or a full disk mid-write leaves the
previous version (or nothing), never half a file that a resume would then read."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX file systems; the temporary file is removed if ``write``
    fails.

    Args:
        path: the file to (re)place.
        write: writes the whole content to the path it is given.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``Path.write_text``, whole or not at all."""
    return write_atomically(path, lambda tmp: tmp.write_text(text))
