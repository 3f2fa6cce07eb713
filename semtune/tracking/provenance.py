"""Where a run's model and scores come from: the code's commit and fingerprints of the data.

Two versions' scores are compared only when their validation fingerprints agree (issue 12).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["data_folders", "data_fingerprint", "git_commit", "validation_fingerprint"]


def git_commit(path: str | Path | None = None) -> str | None:
    """``HEAD``'s commit of the repository holding ``path`` (default: semtune's), ``-dirty`` if
    the working tree has changes; None outside a repository or before the first commit."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def data_fingerprint(folders: Iterable[str | Path | None]) -> str:
    """A short hash of the files in ``folders`` (names, sizes, contents), to tell data sets apart.

    Missing folders count as such (``missing:<path>``) rather than raising: on a cluster the
    driver may not see the workers' data.

    Returns:
        12 hex characters.
    """
    h = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        root = Path(folder)
        if not root.is_dir():
            h.update(f"missing:{root.name}\n".encode())
            continue
        for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.relative_to(root).as_posix()}:{f.stat().st_size}\n".encode())
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()[:12]


# data settings that do not change the validation crops (training crops and augmentation)
_TRAIN_ONLY_DATA = ("crop_size", "augment", "synthetic_set", "domains")


def validation_fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of what a run's validation scores were measured on: the data folders'
    contents and the settings that choose and degrade the held-out crops (``val_set``,
    ``val_crops``, ``val_crop_size``, ``val_fraction``, ``seed``, ``degrade``, ...)."""
    data = dict(config.get("data", {})) if isinstance(config, Mapping) else {}
    settings = {k: v for k, v in sorted(data.items()) if k not in _TRAIN_ONLY_DATA}
    h = hashlib.sha256(data_fingerprint(data_folders(config)).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def data_folders(config: Mapping[str, Any]) -> list[str | None]:
    data = config.get("data", {}) if isinstance(config, Mapping) else {}
    return [data.get("clean_dir"), data.get("blurred_dir"), data.get("val_dir")]
