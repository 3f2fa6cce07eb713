"""The model registry as users meet it: a registered generator loaded back as a plain
``nn.Module`` for ``semtune.enhance``, versions listed and promoted (``python -m
semtune.models``), and the training-data facts a version carries as tags.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow.artifacts
import yaml
from mlflow.exceptions import MlflowException

from semtune.tracking.store import (
    CHAMPION,
    DEFAULT_MODEL_NAME,
    default_tracking_uri,
    normalise_uri,
    open_client,
    quoted,
    sqlite_path,
    use_tracking_uri,
)
from semtune.tracking.tags import (
    GENERATOR_ARTIFACT,
    METRIC_TAG_PREFIX,
    TAG_SEED,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_VAL,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from semtune.train.state import GeneratorFile

__all__ = [
    "TRAIN_TAG_PREFIX",
    "ModelVersionInfo",
    "list_model_versions",
    "load_registered_generator",
    "load_registered_generator_file",
    "promote",
    "training_data_tags",
]


def _find_generator_file(local: Path) -> Path:
    if local.is_file():
        return local
    mlmodel = local / "MLmodel"
    if mlmodel.is_file():
        conf = yaml.safe_load(mlmodel.read_text()) or {}
        art = conf.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        entry = art.get(GENERATOR_ARTIFACT)
        if entry and (local / entry["path"]).is_file():
            return local / entry["path"]
    found = sorted(local.rglob("generator.pt"))
    if not found:
        raise ValueError(f"{local}: no generator.pt in the downloaded artifacts")
    return found[0]


# what a model knows of its training images, as registry tags (semtune.enhance --report reads
# the same facts from generator.pt)
TRAIN_TAG_PREFIX = "train."


def training_data_tags(generator_path: str | Path) -> dict[str, str]:
    """Registry tags with the noise and blur measured on a generator's training images.

    ``train.blurred_noise`` / ``train.clean_noise``: the 10/50/90 % noise stds of the two
    training domains; ``train.blur_sigma``: the blur measured between them (px);
    ``train.f_sigma``: F's learned blur (px); ``train.fingerprint``: the data's fingerprint.
    Empty for files written before these were recorded.
    """
    from semtune.train.state import load_generator_file

    try:
        file = load_generator_file(generator_path)
    except (FileNotFoundError, ValueError):
        return {}
    stats, tags = file.data_stats, {}
    for key in ("blurred_noise", "clean_noise"):
        if isinstance(stats.get(key), list | tuple):
            tags[f"{TRAIN_TAG_PREFIX}{key}"] = " / ".join(f"{v:.4f}" for v in stats[key])
    if isinstance(stats.get("blur_sigma"), float) and math.isfinite(stats["blur_sigma"]):
        tags[f"{TRAIN_TAG_PREFIX}blur_sigma"] = f"{stats['blur_sigma']:.3f}"
    if isinstance(file.degradation.get("sigma"), float):
        tags[f"{TRAIN_TAG_PREFIX}f_sigma"] = f"{file.degradation['sigma']:.3f}"
    if stats.get("fingerprint"):
        tags[f"{TRAIN_TAG_PREFIX}fingerprint"] = str(stats["fingerprint"])
    return tags


def load_registered_generator(uri: str, device: torch.device | str = "cpu") -> nn.Module:
    """A generator (eval mode) from an MLflow URI (see ``load_registered_generator_file``)."""
    return load_registered_generator_file(uri, device).g


def load_registered_generator_file(
    uri: str, device: torch.device | str = "cpu", *, tracking_uri: str | None = None
) -> GeneratorFile:
    """A generator and what it carries from an MLflow URI, as ``semtune.enhance`` uses it.

    Args:
        uri: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-<id>`` or
            ``runs:/RUN_ID/PATH`` where PATH is a logged model or a ``generator.pt`` (a trial
            run's ``generator/generator.pt``).
        device: where to put the network.
        tracking_uri: the store or server to read (a path works too); default
            ``default_tracking_uri()``. Reading never creates a store: a local one that does
            not exist is an error.

    Raises:
        ValueError: the URI does not resolve (no such store; unknown model, alias or run; no
            generator in it); the message names the store searched and how to name another.
    """
    from semtune.train.state import load_generator_file

    if not uri.startswith(("models:/", "runs:/")):
        raise ValueError(f"expected a models:/ or runs:/ URI, got {uri!r}")
    store = normalise_uri(tracking_uri) if tracking_uri else default_tracking_uri()
    hint = (
        "name the store or server that holds your models with --tracking-uri or "
        "MLFLOW_TRACKING_URI (semtune.search writes ./mlruns/mlflow.db in the folder it ran in)"
    )
    local_db = sqlite_path(store)
    if local_db is not None and not local_db.is_file():
        raise ValueError(f"{uri}: there is no MLflow store at {local_db}; {hint}")
    with tempfile.TemporaryDirectory(prefix="semtune-dl-") as tmp, use_tracking_uri(store):
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except MlflowException as exc:
            raise ValueError(f"{uri}: not found in {store}: {exc.message}; {hint}") from exc
        return load_generator_file(_find_generator_file(local), device)


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version as ``list_model_versions`` reports it."""

    version: str
    aliases: tuple[str, ...]
    created: str
    study: str
    trial: str
    run_id: str
    metrics: dict[str, float]
    # what its scores were measured on, its training seed, and how it compared with the
    # champion of the day on the same images (when it was re-scored beside it)
    val_fingerprint: str = ""
    seed: str = ""
    vs_champion: str = ""


def list_model_versions(uri: str, name: str = DEFAULT_MODEL_NAME) -> list[ModelVersionInfo]:
    """Registered versions of ``name`` (newest first) with their aliases and tagged metrics.

    Raises:
        ValueError: no registered model ``name`` (the message lists the ones there are).
    """
    client = open_client(uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        names = [m.name for m in client.search_registered_models(max_results=100)]
        raise ValueError(
            f"no registered model {name!r} at {uri} (registered: {', '.join(names) or 'none'})"
        ) from exc
    versions = client.search_model_versions(f"name = {quoted(name)}", max_results=1000)
    # search results do not carry aliases; the registered model has them all
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = {}
        for k, v in mv.tags.items():
            if k.startswith(METRIC_TAG_PREFIX):
                try:
                    metrics[k.removeprefix(METRIC_TAG_PREFIX)] = float(v)
                except ValueError:
                    pass
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000))
        out.append(
            ModelVersionInfo(
                version=str(mv.version),
                aliases=tuple(sorted(aliases.get(str(mv.version), []))),
                created=created,
                study=mv.tags.get(TAG_STUDY, ""),
                trial=mv.tags.get(TAG_TRIAL, ""),
                run_id=mv.run_id or "",
                metrics=metrics,
                val_fingerprint=mv.tags.get(TAG_VAL, ""),
                seed=mv.tags.get(TAG_SEED, ""),
                vs_champion=mv.tags.get("semtune.vs_champion", ""),
            )
        )
    return out


def promote(
    uri: str, version: str | int, *, name: str = DEFAULT_MODEL_NAME, alias: str = CHAMPION
) -> str | None:
    """Point ``alias`` at ``version`` of ``name`` (what the UI's "add alias" does).

    Returns:
        The version that held the alias before (None if none).

    Raises:
        ValueError: no such model or version.
    """
    client = open_client(uri)
    version = str(version)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise ValueError(f"{name} has no version {version} at {uri}: {exc.message}") from exc
    try:
        before: str | None = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        before = None
    client.set_registered_model_alias(name, alias, version)
    return before
