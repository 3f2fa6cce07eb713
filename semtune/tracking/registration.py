"""Registering a study's best generator: a new model version with its metrics, provenance and a
description, and the ``champion`` alias moved to it only if it is better than the holder,
scored on the same validation data (issue 12).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from semtune.tracking.provenance import validation_fingerprint
from semtune.tracking.pyfunc import log_generator_model
from semtune.tracking.registry import training_data_tags
from semtune.tracking.store import quoted, use_tracking_uri
from semtune.tracking.tags import (
    MAX_TAG,
    METRIC_TAG_PREFIX,
    PARAM_TAG_PREFIX,
    TAG_CONFIG,
    TAG_DATA,
    TAG_EDGE,
    TAG_OBJECTIVE,
    TAG_PRESET,
    TAG_REGISTERED,
    TAG_SEED,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_VAL,
    TAGGED_METRICS,
    short,
)

__all__ = ["PairedCheck", "PairedDifference", "RegistrationResult", "register_version"]

log = logging.getLogger("semtune.tracking")


@dataclass(frozen=True)
class PairedDifference:
    """A candidate minus the alias's holder on ``metric``, image by image on the same images
    (the candidate's validation data), with the 95% interval of the mean difference."""

    metric: str
    mean: float
    ci_low: float
    ci_high: float
    images: int

    def describe(self) -> str:
        return (
            f"{self.metric} {self.mean:+.4f} (95% CI {self.ci_low:+.4f}..{self.ci_high:+.4f}, "
            f"{self.images} images)"
        )


# Given the holder's model URI, score the candidate and the holder on the same images; None
# when that cannot be done (then the registry compares the values recorded with each version).
PairedCheck = Callable[[str], PairedDifference | None]
TAG_VS_HOLDER = "semtune.vs_champion"
# "false" on a version the paired comparison turned down: settling a race never picks it
TAG_PAIRED_BETTER = "semtune.paired_better"


@dataclass(frozen=True)
class RegistrationResult:
    """What ``StudyTracker.register_best`` did; ``message`` says it in a sentence."""

    name: str
    version: str
    model_uri: str
    run_id: str
    alias: str
    promoted: bool
    objective: str
    value: float
    previous_version: str | None
    previous_value: float | None
    message: str


def register_version(
    client: MlflowClient,
    uri: str,
    generator_path: str | Path,
    metrics: Mapping[str, Any],
    trial_id: str,
    config: Mapping[str, Any],
    *,
    run_id: str,
    parent_run_id: str,
    study: str,
    study_tags: Mapping[str, str],
    model_name: str,
    objective: str,
    mode: str,
    alias: str,
    paired: PairedCheck | None = None,
) -> RegistrationResult:
    """Log ``generator_path`` into ``run_id`` as a model, register it as a new version of
    ``model_name`` and move ``alias`` to it only if it is better on ``objective`` than the
    holder, scored on the same validation data (``StudyTracker.register_best`` describes the
    tags and the description). ``parent_run_id`` (the study's run) is tagged with the version;
    ``study_tags`` fill the provenance tags the trial's run lacks.

    With ``paired``, the candidate and the holder are scored on the same images and the alias
    moves only if the interval of the paired difference lies above 0 (below, for ``min``): a
    better number within the noise of a few images is not an improvement (issue 12)."""
    # a direct database store (sqlite:///, postgresql://) resolves the logged model of
    # a new version through MLflow's global URI: point it at this study's store
    with use_tracking_uri(uri):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if objective not in metrics:
            raise ValueError(f"metrics have no {objective!r} (the objective): {sorted(metrics)}")
        # compared at the precision the tags keep (6 significant digits), as every other
        # version's value is read back from its tag
        value = float(short(float(metrics[objective])))
        info = log_generator_model(uri, run_id, generator_path)
        numeric = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float | np.number) and not isinstance(v, bool)
        }
        # a few headline metrics (the registry page shows every tag of every version)
        tagged = [k for k in numeric if k == objective or k in TAGGED_METRICS]
        # 6 significant digits: the registry page cuts longer values (the exact ones are
        # the trial run's metrics and params)
        tags = {f"{METRIC_TAG_PREFIX}{k}": short(numeric[k]) for k in tagged}
        run = client.get_run(run_id)
        tags.update(
            {f"{PARAM_TAG_PREFIX}{k}": short(v) for k, v in run.data.params.items() if "." in k}
        )
        tags.update(
            {
                TAG_STUDY: study,
                TAG_TRIAL: str(trial_id),
                TAG_OBJECTIVE: objective,
                TAG_CONFIG: json.dumps(dict(config), separators=(",", ":"))[:MAX_TAG],
            }
        )
        for key in (TAG_PRESET, TAG_DATA, TAG_EDGE, MLFLOW_GIT_COMMIT):
            if v := run.data.tags.get(key) or study_tags.get(key):
                tags[key] = v
        if TAG_EDGE not in tags and (edge := config.get("loss", {}).get("edge_operator")):
            tags[TAG_EDGE] = str(edge)
        tags.update(training_data_tags(generator_path))
        if (seed := config.get("runtime", {}).get("seed")) is not None:
            tags[TAG_SEED] = str(seed)
        for bound in ("_ci_low", "_ci_high"):  # the objective's 95% interval over the images
            if f"{objective}{bound}" in numeric:
                tags[f"{METRIC_TAG_PREFIX}{objective}{bound}"] = short(numeric[objective + bound])
        val_fp = validation_fingerprint(config)
        tags[TAG_VAL] = val_fp
        try:
            client.get_registered_model(model_name)
        except MlflowException:
            try:
                client.create_registered_model(
                    model_name,
                    description="SEM image restoration generators (CycleGAN + edge loss) "
                    "registered by semtune studies. Restore images with `python -m "
                    f"semtune.enhance IMAGES --model models:/{model_name}@{alias} -o OUT`.",
                )
            except MlflowException:  # created concurrently
                pass
        mv = client.create_model_version(
            model_name,
            source=info["model_uri"],
            run_id=run_id,
            tags=tags,
            model_id=info["model_id"],
        )
        version = str(mv.version)
        # written once the version number is known, so its "Use:" line is complete
        client.update_model_version(
            model_name,
            version,
            description=_version_description(
                model_name,
                version,
                study,
                trial_id,
                objective,
                mode,
                numeric,
                config,
                run_id,
            ),
        )
        prev_version, prev_value, prev_fp = _current_holder(client, model_name, alias, objective)
        promote_hint = (
            f"promote by hand if wanted: python -m semtune.models promote {version} --alias "
            f"{alias} --model-name {model_name}"
        )
        diff = None
        if prev_version is not None and paired is not None:
            try:
                diff = paired(f"models:/{model_name}/{prev_version}")
            except Exception as exc:  # noqa: BLE001 (fall back to the recorded values)
                log.warning(
                    "version %s not re-scored (%s); comparing recorded values", prev_version, exc
                )
        if prev_version is None:
            better, why = True, f"there was no {alias!r} yet"
        elif diff is not None:
            better = diff.ci_low > 0 if mode == "max" else diff.ci_high < 0
            worse = diff.ci_high < 0 if mode == "max" else diff.ci_low > 0
            why = f"against version {prev_version} on the same images, {diff.describe()}: "
            if better:
                why += "the interval lies on the better side of 0, a real improvement"
            elif worse:
                why += f"the interval lies on the worse side of 0; {promote_hint}"
            else:
                why += f"the interval includes 0, no real improvement; {promote_hint}"
            client.set_model_version_tag(
                model_name, version, TAG_VS_HOLDER, f"version {prev_version}: {diff.describe()}"
            )
            client.set_model_version_tag(
                model_name, version, TAG_PAIRED_BETTER, "true" if better else "false"
            )
        elif prev_fp != val_fp:
            better = False
            why = (
                f"version {prev_version} (the current {alias!r}) was scored on other "
                f"validation data ({TAG_VAL} {prev_fp or 'not recorded'}, this one {val_fp}),"
                " so the two scores say nothing about each other; promote by hand if wanted:"
                f" python -m semtune.models promote {version} --alias {alias} --model-name "
                f"{model_name}"
            )
        elif prev_value is None:
            better = False
            why = (
                f"version {prev_version} (the current {alias!r}) has no {objective!r} to "
                "compare with; promote by hand if wanted: python -m semtune.models promote "
                f"{version} --alias {alias} --model-name {model_name}"
            )
        else:
            better = value > prev_value if mode == "max" else value < prev_value
            rel = "better than" if better else "not better than"
            why = (
                f"{objective}={value:.6g} is {rel} version {prev_version}'s {prev_value:.6g} "
                f"({mode})"
            )
        if math.isnan(value):
            better, why = False, f"{objective} is NaN"
        if better:
            client.set_registered_model_alias(model_name, alias, version)
        # MLflow has no compare-and-set: a study registering at the same time may have
        # read the same holder and set the alias after us; settle on the best of the
        # versions registered since (every registrant does, so they agree). A version the
        # paired comparison turned down (its TAG_PAIRED_BETTER) takes no part in it.
        holder = _settle_alias(
            client, model_name, alias, objective, mode, since=prev_version, val=val_fp
        )
        if better and holder != version:
            better = False
            why += f"; then version {holder}, registered at the same time, was better"
        if better:
            message = (
                f"registered {model_name} version {version}; alias {alias!r} moved to it: {why}"
            )
        else:
            message = (
                f"registered {model_name} version {version}; alias {alias!r} stays on version "
                f"{holder}: {why}"
            )
        client.set_tag(parent_run_id, TAG_REGISTERED, f"{model_name}/{version}")
        log.info(message)
        return RegistrationResult(
            name=model_name,
            version=version,
            model_uri=f"models:/{model_name}/{version}",
            run_id=run_id,
            alias=alias,
            promoted=better,
            objective=objective,
            value=value,
            previous_version=prev_version,
            previous_value=prev_value,
            message=message,
        )


def _settle_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    objective: str,
    mode: str,
    *,
    since: str | None,
    val: str,
    rounds: int = 5,
) -> str | None:
    """Move ``alias`` to the best version on ``objective`` among its holder and the versions
    registered after ``since`` by studies with that objective and validation data ``val``;
    return the holder at the end.

    Two registrants that both compared with the old holder and set the alias one after the
    other leave the later one, better or not; each re-reads after setting, so whichever looks
    last puts the best one there. A holder without a value (promoted by hand) is left alone."""
    sign = 1.0 if mode == "max" else -1.0
    holder: str | None = None
    for _ in range(rounds):
        holder, holder_value, holder_val = _current_holder(client, name, alias, objective)
        if holder is not None and (holder_value is None or holder_val != val):
            return holder
        best, best_value = holder, holder_value
        low = int(since) if since is not None else 0
        for mv in client.search_model_versions(f"name={quoted(name)}"):
            if int(mv.version) <= low or mv.tags.get(TAG_OBJECTIVE) != objective:
                continue
            if mv.tags.get(TAG_PAIRED_BETTER) == "false":
                continue
            if mv.tags.get(TAG_VAL) != val:
                continue
            try:
                value = float(mv.tags.get(f"{METRIC_TAG_PREFIX}{objective}", "nan"))
            except ValueError:
                continue
            if math.isnan(value):
                continue
            if best_value is None or sign * value > sign * best_value:
                best, best_value = str(mv.version), value
        if best is None or best == holder:
            return holder
        client.set_registered_model_alias(name, alias, best)
        time.sleep(0.2)  # let a concurrent registrant's set land, then look again
    return holder


def _current_holder(
    client: MlflowClient, name: str, alias: str, objective: str
) -> tuple[str | None, float | None, str | None]:
    """The version holding ``alias``, its ``objective`` and its validation fingerprint."""
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None, None
    raw: str | float | None = mv.tags.get(f"{METRIC_TAG_PREFIX}{objective}")
    if raw is None and mv.run_id:
        # a version registered by hand: fall back to its run's latest metric
        try:
            raw = client.get_run(mv.run_id).data.metrics.get(objective)
        except MlflowException:
            raw = None
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        value = None
    return str(mv.version), value, mv.tags.get(TAG_VAL)


def _version_description(
    name: str,
    version: str,
    study: str,
    trial_id: str,
    objective: str,
    mode: str,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    run_id: str,
) -> str:
    shown = [
        k for k in ("ssim", "psnr", "ssim_gain", "psnr_gain", "score", "ag", "sf") if k in metrics
    ]
    lines = [
        f"Best trial `{trial_id}` of study `{study}` (objective: {objective}, {mode}).",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {metrics[k]:.4f} |" for k in shown),
        "",
    ]
    loss, model = config.get("loss", {}), config.get("model", {})
    if loss:
        lines.append(
            "Loss: λ_cycle={lambda_cycle}, λ_identity={lambda_identity}, γ={gamma}, edge "
            "operator {edge_operator}.".format(
                **{
                    k: loss.get(k, "?")
                    for k in ("lambda_cycle", "lambda_identity", "gamma", "edge_operator")
                }
            )
        )
    if model:
        lines.append(f"Generator: {model.get('generator', '?')}, width {model.get('width', '?')}.")
    lines += [
        f"Trial run: `{run_id}`; its full trainer config is the run's artifact `config.yaml` "
        "(the `semtune.config` tag holds the same as JSON, cut short on this page).",
        "",
        f"Use: `python -m semtune.enhance IMAGES -o OUT --model models:/{name}/{version}`",
        f"Promote: `python -m semtune.models promote {version} --model-name {name}` moves the "
        "`champion` alias here (MLflow's *Promote model* button copies the version into another "
        "registered model instead).",
    ]
    return "\n".join(lines)


# -- the trials (worker side) ---------------------------------------------------------------------
