"""The study folder: where a study's state lives and whether it may start or resume there.

``prepare_folder`` refuses a folder holding another study, checks a resume against the file
the study started with, makes data paths absolute for the trials and writes ``study.json``;
``tune_storage``, ``storage_url`` and ``ray_address`` say where Tune's state, Optuna's
database and the Ray cluster are.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from ray import tune

from semtune.atomic import write_text_atomically
from semtune.config import to_dict
from semtune.train.config import TrainConfig, config_from_dict, migrate_key
from semtune.tune.confirm import (
    CONFIRM_DIR,
    ConfirmationError,
    check_confirmation_images,
    control_params,
)
from semtune.tune.space import StudySpec, load_space, spec_to_dict

__all__ = [
    "STUDY_FILE",
    "TUNE_DIR",
    "StudyError",
    "default_out",
    "prepare_folder",
    "ray_address",
    "saved_storage",
    "saved_tune_storage",
    "storage_url",
    "tune_storage",
]


TUNE_DIR = "tune"


STUDY_FILE = "study.json"


class StudyError(RuntimeError):
    """The study cannot start or resume as asked (the message says why and what to do)."""


def default_out(spec: StudySpec) -> Path:
    """The study folder when none is given: the study's name in the working directory."""
    return Path.cwd() / spec.study


def storage_url(spec: StudySpec, out: Path) -> str:
    """Optuna's storage: the file's ``storage:`` URL, else ``sqlite:///<out>/optuna.db``."""
    return spec.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"


def _absolute_data_paths(cfg: TrainConfig) -> TrainConfig:
    # Trials run in their own working directories (and maybe on other machines with the same
    # layout): relative data paths are taken from the driver's working directory, now.
    changes: dict[str, Any] = {}
    for name in ("clean_dir", "blurred_dir", "val_dir"):
        value = getattr(cfg.data, name)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        if not path.is_dir():
            raise StudyError(
                f"data.{name}: {path} is not a folder (relative paths are taken from the "
                f"working directory, {Path.cwd()})"
            )
        changes[name] = str(path)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))


def tune_storage(out: Path, storage_path: str | None) -> str:
    """Where Tune keeps the study's experiment state and checkpoints (``<it>/tune``).

    Args:
        out: the study folder (the default).
        storage_path: ``--storage-path``: a URI that every node of a cluster reaches
            (``s3://bucket/studies/gamma``, ``gs://...``) or a folder on shared storage (NFS)
            mounted at the same path on every node. One per study, like ``out``.

    Returns:
        The URI as given, or an absolute folder.
    """
    if not storage_path:
        return str(out)
    if "://" in storage_path:
        return storage_path.rstrip("/")
    return str(Path(storage_path).expanduser().resolve())


def ray_address(address: str | None) -> str:
    """The Ray cluster a study runs on: ``address``, else the job's cluster, else a private one.

    Args:
        address: ``--address`` as given (``auto``, ``HOST:PORT``, ``ray://HOST:10001``) or None.

    Returns:
        ``address`` when given; inside a Ray job (``ray job submit``, ``semtune.submit``), the
        cluster's GCS address that Ray puts in ``RAY_ADDRESS`` for the job's entrypoint; else
        ``"local"``, a private Ray instance for this process.
    """
    if address:
        return address
    env = os.environ.get("RAY_ADDRESS", "")
    # A dashboard URL there (http://...:8265) is meant for the jobs CLI, not for ray.init.
    if env and not env.startswith(("http://", "https://")):
        return env
    return "local"


def _as_today(saved: dict[str, Any]) -> dict[str, Any]:
    """A spec recorded by an earlier semtune, as today's code records the same file: trainer
    keys renamed since (``semtune.train.config.RENAMED``), keys it did not know at their
    defaults (``confirm``, before the confirmation stage)."""
    was = {k: v for k, v in saved.items() if k != "source"}
    pairs = []
    for key, value in was.get("base_overrides", []):
        if (new := migrate_key(key, value, strict=False)) is not None:
            pairs.append([new[0], new[1]])
    was["base_overrides"] = pairs
    defaults = spec_to_dict(StudySpec(source="", study="defaults"))
    for key, value in defaults.items():
        if key != "source":
            was.setdefault(key, value)
    return was


def _compare(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def prepare_folder(
    spec: StudySpec,
    out: Path,
    *,
    resume: bool,
    cli_overrides: Sequence[str],
    num_samples: int | None,
    storage: str,
    tune_root: str,
) -> tuple[StudySpec, TrainConfig]:
    """Check the folder and return the spec and base config the study runs with (on resume,
    the base config recorded when the study started, old key names migrated)."""
    tune_dir = f"{tune_root}/{TUNE_DIR}"
    study_file = out / STUDY_FILE
    if resume:
        if not (study_file.is_file() and tune.Tuner.can_restore(tune_dir)):
            raise StudyError(
                f"{out}: no study to resume here (expected {STUDY_FILE} and Tune's state in "
                f"{tune_dir}); run without --resume to start one"
            )
        if cli_overrides or num_samples is not None:
            raise StudyError(
                "--resume continues the study as it started; --set and --num-samples cannot "
                "change it (start a new study in another --out instead)"
            )
        saved = json.loads(study_file.read_text())
        file_spec = load_space(spec.source, saved["cli_overrides"])
        file_spec = dataclasses.replace(file_spec, trials=saved["spec"]["trials"])
        now = {k: v for k, v in spec_to_dict(file_spec).items() if k != "source"}
        was = _as_today(saved["spec"])
        diff = _compare(was, now)
        if diff:
            raise StudyError(
                f"{spec.source} differs from the file the study in {out} started with "
                f"(changed: {', '.join(diff)}); resume with the original file or start a new "
                f"study in another --out"
            )
        base = config_from_dict(saved["base_config"], source=str(study_file), strict=False)
        return file_spec, base

    for where, taken in (
        (out, study_file.exists() or (out / "optuna.db").exists()),
        (tune_dir, tune.Tuner.can_restore(tune_dir)),
        (f"{tune_root}/{CONFIRM_DIR}", tune.Tuner.can_restore(f"{tune_root}/{CONFIRM_DIR}")),
    ):
        if taken:
            raise StudyError(
                f"{where} already holds a study; add --resume to continue it, or choose "
                f"another --out{' or --storage-path' if tune_root != str(out) else ''}"
            )
    # A shared database (storage: in the file) may hold the name from another folder's study.
    if spec.storage and spec.study in optuna.study.get_all_study_names(storage):
        raise StudyError(
            f"Optuna study {spec.study!r} already exists in {storage}; add --resume to continue "
            f"it, or rename the study"
        )
    if num_samples is not None:
        if num_samples < 1:
            raise StudyError(f"--num-samples must be >= 1, got {num_samples}")
        spec = dataclasses.replace(spec, trials=num_samples)
        if spec.sampler.name == "grid":
            size = math.prod(len(p.values) for p in spec.space)
            if num_samples > size:
                raise StudyError(f"--num-samples {num_samples}: the grid has only {size} points")
    base = _absolute_data_paths(spec.train_config())
    if spec.confirm.enabled:  # a confirmation that cannot run fails now, not after the search
        try:
            check_confirmation_images(spec, base)
            control_params(spec)
        except ConfirmationError as exc:
            raise StudyError(f"{spec.source}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "spec": spec_to_dict(spec),
        "cli_overrides": list(cli_overrides),
        "base_config": to_dict(base),
        "storage": storage,
        "tune_storage": tune_root,
    }
    write_text_atomically(study_file, json.dumps(record, indent=2))
    src = Path(spec.source)
    if src.is_file():
        shutil.copyfile(src, out / "space.yaml")
    return spec, base


def saved_tune_storage(out: Path) -> str | None:
    f = out / STUDY_FILE
    if not f.is_file():
        return None
    return str(json.loads(f.read_text()).get("tune_storage") or "") or None


def saved_storage(out: Path) -> str | None:
    f = out / STUDY_FILE
    if not f.is_file():
        return None
    return str(json.loads(f.read_text()).get("storage") or "") or None
