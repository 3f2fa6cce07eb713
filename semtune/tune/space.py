"""Study files (YAML) -> a validated ``StudySpec`` (``semtune.tune.spec``).

A study file says which trainer config to start from, which config paths to search and how,
what to optimise, and how to run the trials. Everything is checked here, before Ray starts:
unknown keys, config paths the trainer does not have, unknown distributions, empty or inverted
ranges, values the trainer's own config would reject, and sampler/distribution mismatches. Each
error names the file and the key (with ``semtune.config``'s checks: the same messages as the
trainer config's). See ``docs/search.md`` for the format. The spec's names are re-exported here.

Size: about 480 lines, one parser per section of the study file (the space's parameters and
their conditions are the longest); each names the key of every problem it finds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from semtune.config import (
    ConfigError,
    as_number,
    check_keys,
    from_dict,
    get_path,
    load_yaml,
    replace_path,
)
from semtune.train.config import (
    PRESETS,
    REMOVED,
    RENAMED,
    TrainConfig,
    load_train_config,
    migrate_overrides,
)
from semtune.tune.spec import (
    DEFAULT_REPORT,
    DISTRIBUTIONS,
    OBJECTIVE_METRICS,
    PAPER_VALUES,
    REPORT_METRICS,
    SAMPLER_OPTIONS,
    SAMPLERS,
    ConfirmSpec,
    Objective,
    Param,
    Resources,
    SamplerSpec,
    SchedulerSpec,
    SpaceSampler,
    StudySpec,
    build_sampler,
    spec_to_dict,
)

__all__ = [
    "DISTRIBUTIONS",
    "OBJECTIVE_METRICS",
    "PAPER_VALUES",
    "REPORT_METRICS",
    "SAMPLERS",
    "ConfirmSpec",
    "Objective",
    "Param",
    "Resources",
    "SamplerSpec",
    "SchedulerSpec",
    "SpaceSampler",
    "StudySpec",
    "build_sampler",
    "load_space",
    "parse_space",
    "spec_to_dict",
]

_TOP_KEYS = (
    "study",
    "description",
    "base",
    "space",
    "objective",
    "report",
    "sampler",
    "scheduler",
    "trials",
    "concurrency",
    "time_budget_s",
    "max_failures",
    "resources",
    "storage",
    "enqueue",
    "confirm",
)
_REQUIRED = ("study", "base", "space", "objective")
_PARAM_FIELDS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high", "step"),
    "loguniform": ("low", "high"),
    "int": ("low", "high", "step", "log"),
    "choice": ("values",),
    "grid": ("values",),
}


def load_space(path: str | Path, overrides: Sequence[str | tuple[str, Any]] = ()) -> StudySpec:
    """Read and validate a study file.

    Args:
        path: the YAML file.
        overrides: extra ``path=value`` (or ``(path, value)``) settings for the base trainer
            config, applied after the file's own ``base.overrides`` (the CLI's ``--set``).

    Raises:
        ConfigError: naming the file and key of the first problem found.
    """
    path = Path(path)
    return parse_space(load_yaml(path), source=str(path), base_dir=path.parent, overrides=overrides)


def parse_space(
    data: Mapping[str, Any],
    *,
    source: str = "space",
    base_dir: Path | None = None,
    overrides: Sequence[str | tuple[str, Any]] = (),
) -> StudySpec:
    """Validate a study mapping (the parsed YAML); see ``load_space``."""
    check_keys(data, _TOP_KEYS, source, "")
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{source}: missing required key {key!r}")
    study = data["study"]
    if not isinstance(study, str) or not study.strip() or "/" in study:
        raise ConfigError(f"{source}: study: expected a name (no '/'), got {study!r}")

    base_config, base_overrides, cfg = _parse_base(data["base"], source, base_dir, overrides)
    params = _parse_params(data["space"], source, cfg)
    objectives = _parse_objectives(data["objective"], source)
    report = _parse_report(data.get("report"), source)
    sampler = _build_section(SamplerSpec, data.get("sampler"), source, "sampler")
    for opt in ("n_startup_trials", "multivariate", "constant_liar", "population_size"):
        if getattr(sampler, opt) is not None and opt not in SAMPLER_OPTIONS[sampler.name]:
            valid = ", ".join(("name", "seed", *SAMPLER_OPTIONS[sampler.name]))
            raise ConfigError(
                f"{source}: sampler.{opt}: not an option of the {sampler.name} sampler "
                f"(its options: {valid})"
            )
    scheduler = _build_section(SchedulerSpec, data.get("scheduler"), source, "scheduler")
    resources = _build_section(Resources, data.get("resources"), source, "resources")

    grid_params = [p.path for p in params if p.distribution == "grid"]
    other = [p.path for p in params if p.distribution != "grid"]
    grid_size = math.prod(len(p.values) for p in params) if not other else 0
    if sampler.name == "grid" and other:
        raise ConfigError(
            f"{source}: space.{other[0]}: the grid sampler needs every parameter to be "
            f"'distribution: grid'"
        )
    if grid_params and sampler.name != "grid":
        raise ConfigError(
            f"{source}: space.{grid_params[0]}: 'distribution: grid' needs 'sampler: grid' "
            f"(use 'choice' to let the {sampler.name} sampler pick values)"
        )

    if "trials" in data:
        trials = _int(data["trials"], source, "trials", minimum=1)
    elif sampler.name == "grid":
        trials = grid_size
    else:
        raise ConfigError(f"{source}: missing required key 'trials' (the number of trials)")
    if sampler.name == "grid" and trials > grid_size:
        raise ConfigError(
            f"{source}: trials: {trials} trials but the grid has only {grid_size} points"
        )
    concurrency = _int(data.get("concurrency", 1), source, "concurrency", minimum=1)
    max_failures = _int(data.get("max_failures", 2), source, "max_failures", minimum=0)
    raw_budget = data.get("time_budget_s", 0.0)
    time_budget = as_number(raw_budget)
    if time_budget is None or not math.isfinite(time_budget) or time_budget < 0:
        raise ConfigError(f"{source}: time_budget_s: expected seconds >= 0, got {raw_budget!r}")
    storage = data.get("storage")
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise ConfigError(
            f"{source}: storage: expected an SQLAlchemy URL such as "
            f"sqlite:///study.db or postgresql://user@host/db, got {storage!r}"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description: expected text, got {description!r}")
    enqueue = _parse_enqueue(data.get("enqueue"), source, params)
    confirm_data = data.get("confirm")
    if isinstance(confirm_data, Mapping) and isinstance(confirm_data.get("data"), str):
        confirm_data = {**confirm_data, "data": [confirm_data["data"]]}  # one folder
    confirm = _build_section(ConfirmSpec, confirm_data, source, "confirm")
    if confirm.enabled and len(objectives) > 1:
        raise ConfigError(
            f"{source}: confirm: a confirmation ranks configurations on one objective; with "
            "several objectives the study's answer is the Pareto front (remove confirm:)"
        )

    return StudySpec(
        source=source,
        study=study,
        description=description.strip(),
        base_config=base_config,
        base_overrides=base_overrides,
        space=params,
        objectives=objectives,
        report=report,
        sampler=sampler,
        scheduler=scheduler,
        trials=trials,
        concurrency=concurrency,
        time_budget_s=float(time_budget),
        max_failures=max_failures,
        resources=resources,
        storage=storage,
        enqueue=enqueue,
        confirm=confirm,
    )


def _build_section(cls: type[Any], data: Any, source: str, where: str) -> Any:
    if data is None:
        return cls()
    if isinstance(data, str) and cls in (SamplerSpec, SchedulerSpec):
        data = {"name": data}  # shorthand: `sampler: random`, `scheduler: none`
    return from_dict(cls, data, source=source, where=where)


def _int(value: Any, source: str, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{source}: {key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _parse_base(
    base: Any, source: str, base_dir: Path | None, extra: Sequence[str | tuple[str, Any]]
) -> tuple[str, tuple[tuple[str, Any], ...], TrainConfig]:
    check_keys(base, ("config", "overrides"), source, "base")
    name = base.get("config", "cpu")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: base.config: expected a preset or a YAML path, got {name!r}")
    if name not in PRESETS:
        candidate = Path(name)
        if not candidate.is_absolute() and base_dir is not None:
            candidate = base_dir / candidate
        if not candidate.is_file():
            raise ConfigError(
                f"{source}: base.config: {name!r} is neither a preset ({', '.join(PRESETS)}) "
                f"nor a file (looked for {candidate})"
            )
        name = str(candidate.resolve())
    raw = base.get("overrides") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: base.overrides: expected a mapping of config paths to values, got {raw!r}"
        )
    # study files written with the trainer config's old key names still load
    pairs = migrate_overrides(
        [*((str(k), v) for k, v in raw.items()), *extra], source=f"{source}: base.overrides"
    )
    try:
        plain = load_train_config(name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: base.config: {exc}") from None
    for key, _ in pairs:
        try:
            get_path(plain, key)
        except ConfigError as exc:
            raise ConfigError(f"{source}: base.overrides.{key}: {exc}") from None
    try:
        cfg = load_train_config(name, pairs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: base.overrides: {exc}") from None
    return name, tuple(pairs), cfg


def _number(value: Any, source: str, key: str) -> float:
    number = as_number(value)
    if number is None or not math.isfinite(number):
        raise ConfigError(f"{source}: {key}: expected a finite number, got {value!r}")
    return int(number) if isinstance(value, int) else number


def _parse_params(space: Any, source: str, cfg: TrainConfig) -> tuple[Param, ...]:
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            f"{source}: space: expected a mapping of config paths to distributions, got {space!r}"
        )
    params: list[Param] = []
    for path, spec in space.items():
        key = f"space.{path}"
        if path in REMOVED:
            raise ConfigError(f"{source}: {key}: this option was removed ({REMOVED[path][1]})")
        path = RENAMED.get(path, path)  # a study file written with the old key names
        try:
            get_path(cfg, str(path))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"{source}: {key}: expected a mapping such as "
                f"{{distribution: uniform, low: 0, high: 1}}, got {spec!r}"
            )
        dist = spec.get("distribution")
        if dist is None:
            raise ConfigError(f"{source}: {key}: missing required key 'distribution'")
        if dist not in DISTRIBUTIONS:
            raise ConfigError(
                f"{source}: {key}.distribution: unknown distribution {dist!r} "
                f"(distributions: {', '.join(DISTRIBUTIONS)})"
            )
        fields = _PARAM_FIELDS[dist]
        check_keys(spec, ("distribution", *fields, "when"), source, key)
        when = _parse_when(spec.get("when"), source, key, params)
        if dist in ("choice", "grid"):
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{source}: {key}.values: expected a non-empty list, got {values!r}"
                )
            for v in values:
                if v is not None and not isinstance(v, bool | int | float | str):
                    raise ConfigError(
                        f"{source}: {key}.values: {v!r} is not a number, string, bool or null"
                    )
            if len({repr(v) for v in values}) != len(values):
                raise ConfigError(f"{source}: {key}.values: values repeat: {values!r}")
            param = Param(path=str(path), distribution=dist, values=tuple(values), when=when)
            candidates = list(values)
        else:
            for req in ("low", "high"):
                if req not in spec:
                    raise ConfigError(f"{source}: {key}: missing required key {req!r}")
            low = _number(spec["low"], source, f"{key}.low")
            high = _number(spec["high"], source, f"{key}.high")
            step = spec.get("step")
            if step is not None:
                step = _number(step, source, f"{key}.step")
                if step <= 0:
                    raise ConfigError(f"{source}: {key}.step: must be > 0, got {step!r}")
            log = spec.get("log", False)
            if not isinstance(log, bool):
                raise ConfigError(f"{source}: {key}.log: expected true/false, got {log!r}")
            if dist == "int":
                for name, v in (("low", low), ("high", high), ("step", step)):
                    if v is not None and not isinstance(v, int):
                        raise ConfigError(f"{source}: {key}.{name}: expected an integer, got {v!r}")
            if not low < high:
                raise ConfigError(
                    f"{source}: {key}: low must be below high, got low={low!r} high={high!r}"
                )
            if (dist == "loguniform" or log) and low <= 0:
                raise ConfigError(f"{source}: {key}.low: a log scale needs low > 0, got {low!r}")
            if log and step not in (None, 1):
                raise ConfigError(f"{source}: {key}: an int on a log scale cannot have a step")
            if dist == "int":
                low, high = int(low), int(high)
            else:
                low, high = float(low), float(high)
            param = Param(
                path=str(path),
                distribution=dist,
                low=low,
                high=high,
                step=step,
                log=log,
                when=when,
            )
            candidates = [low, high]
        for value in candidates:
            try:
                replace_path(cfg, param.path, value, source=source)
            except ConfigError as exc:
                reason = str(exc).split(": ", 2)[-1]
                raise ConfigError(
                    f"{source}: {key}: {value!r} is not a valid {param.path}: {reason}"
                ) from None
        params.append(param)
    return tuple(params)


def _parse_when(
    when: Any, source: str, key: str, earlier: Sequence[Param]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(
            f"{source}: {key}.when: expected a mapping such as "
            f"{{loss.edge_operator: [kirsch, sobel]}}, got {when!r}"
        )
    by_path = {p.path: p for p in earlier}
    out = []
    for path, allowed in when.items():
        parent = by_path.get(path)
        if parent is None or parent.distribution != "choice":
            raise ConfigError(
                f"{source}: {key}.when: {path!r} must be a 'choice' parameter listed earlier "
                f"in the space"
            )
        values = allowed if isinstance(allowed, list) else [allowed]
        for v in values:
            if v not in parent.values:
                raise ConfigError(
                    f"{source}: {key}.when.{path}: {v!r} is not one of {list(parent.values)!r}"
                )
        out.append((str(path), tuple(values)))
    return tuple(out)


def _parse_objectives(obj: Any, source: str) -> tuple[Objective, ...]:
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise ConfigError(f"{source}: objective: expected a metric and mode, got an empty list")
    out = []
    for i, item in enumerate(items):
        where = "objective" if not isinstance(obj, list) else f"objective[{i}]"
        check_keys(item, ("metric", "mode"), source, where)
        if "metric" not in item:
            raise ConfigError(f"{source}: {where}: missing required key 'metric'")
        metric = item["metric"]
        if metric not in OBJECTIVE_METRICS:
            raise ConfigError(
                f"{source}: {where}.metric: unknown metric {metric!r} "
                f"(metrics: {', '.join(OBJECTIVE_METRICS)})"
            )
        mode = item.get("mode", "max")
        if mode not in ("max", "min"):
            raise ConfigError(f"{source}: {where}.mode: expected max or min, got {mode!r}")
        out.append(Objective(metric=metric, mode=mode))
    if len({o.metric for o in out}) != len(out):
        raise ConfigError(f"{source}: objective: a metric appears twice")
    return tuple(out)


def _parse_report(report: Any, source: str) -> tuple[str, ...]:
    if report is None:
        return DEFAULT_REPORT
    if not isinstance(report, list):
        raise ConfigError(f"{source}: report: expected a list of metric names, got {report!r}")
    for m in report:
        if m not in REPORT_METRICS:
            raise ConfigError(
                f"{source}: report: unknown metric {m!r} (metrics: {', '.join(REPORT_METRICS)})"
            )
    return tuple(report)


def _parse_enqueue(
    enqueue: Any, source: str, params: Sequence[Param]
) -> tuple[tuple[tuple[str, Any], ...], ...]:
    if enqueue is None:
        return ()
    if not isinstance(enqueue, list):
        raise ConfigError(f"{source}: enqueue: expected a list of points, got {enqueue!r}")
    by_path = {p.path: p for p in params}
    out = []
    for i, point in enumerate(enqueue):
        where = f"enqueue[{i}]"
        if not isinstance(point, Mapping) or not point:
            raise ConfigError(f"{source}: {where}: expected a mapping of parameters, got {point!r}")
        for path, value in point.items():
            param = by_path.get(path)
            if param is None:
                raise ConfigError(
                    f"{source}: {where}: {path!r} is not a parameter of the space "
                    f"(parameters: {', '.join(by_path)})"
                )
            if not param.contains(value):
                raise ConfigError(
                    f"{source}: {where}.{path}: {value!r} is outside the parameter's range"
                )
        out.append(tuple((str(k), v) for k, v in point.items()))
    return tuple(out)
