"""Search-space YAML files -> a typed, validated ``StudySpec`` (and Optuna samplers from it).

A study file says which trainer config to start from, which config paths to search and how,
what to optimise, and how to run the trials. Everything is checked here, before Ray starts:
unknown keys, config paths the trainer does not have, unknown distributions, empty or inverted
ranges, values the trainer's own config would reject, and sampler/distribution mismatches. Each
error names the file and the key. See ``docs/search.md`` for the format.

Size: longer than ~400 lines because of the study file's typed spec and the parser that checks
every key against it change together; the parser is about half of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna

from semtune.config import (
    ConfigError,
    as_number,
    from_dict,
    get_path,
    load_yaml,
    parse_override,
    replace_path,
    to_dict,
)
from semtune.metric_names import INPUT_METRICS, VALIDATION_METRICS
from semtune.train.config import (
    PRESETS,
    REMOVED,
    RENAMED,
    TrainConfig,
    load_train_config,
    migrate_key,
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

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice", "grid")
SAMPLERS = ("tpe", "random", "grid", "nsga2")

# What the trainer reports at every evaluation (semtune.train.loop.evaluate_generator plus the
# last step's losses). Objectives are restricted to the validation metrics: optimising a loss
# value would reward a generator that does nothing.
OBJECTIVE_METRICS = VALIDATION_METRICS
REPORT_METRICS = (
    *OBJECTIVE_METRICS,
    *INPUT_METRICS,
    "loss_g",
    "loss_gan",
    "loss_cycle",
    "loss_identity",
    "loss_edge",
    "loss_d",
    "f_kernel_sigma",
    "train_seconds",
)

# The paper's values (Gao et al. 2024: lambda1 = 10, lambda2 = 5, gamma = 10, Adam lr 1e-4);
# plots against these parameters mark them.
PAPER_VALUES: dict[str, float] = {
    "loss.gamma": 10.0,
    "loss.lambda_cycle": 10.0,
    "loss.lambda_identity": 5.0,
    "optim.lr": 1e-4,
}

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
_DEFAULT_REPORT = ("ssim", "psnr", "ssim_gain", "psnr_gain", "score")


@dataclass(frozen=True, kw_only=True)
class Objective:
    """One metric to optimise and its direction."""

    metric: str
    mode: Literal["max", "min"] = "max"


@dataclass(frozen=True, kw_only=True)
class SamplerSpec:
    """Optuna sampler by name; options that only some samplers take are checked by name."""

    name: Literal["tpe", "random", "grid", "nsga2"] = "tpe"
    seed: int | None = 0
    # TPE only: random trials before the model takes over (Optuna's default is 10, which
    # would make every small study a random search).
    n_startup_trials: int | None = None
    multivariate: bool | None = None
    constant_liar: bool | None = None
    # NSGA-II only.
    population_size: int | None = None

    def __post_init__(self) -> None:
        if self.n_startup_trials is not None and self.n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {self.n_startup_trials}")
        if self.population_size is not None and self.population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {self.population_size}")


_SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
    "tpe": ("n_startup_trials", "multivariate", "constant_liar"),
    "random": (),
    "grid": (),
    "nsga2": ("population_size",),
}


@dataclass(frozen=True, kw_only=True)
class SchedulerSpec:
    """Early stopping: ASHA on the (first) objective, counted in training steps, or none."""

    name: Literal["asha", "none"] = "asha"
    # Steps a trial runs before it can be stopped; default: two evaluations.
    grace_period: int | None = None
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.grace_period is not None and self.grace_period < 1:
            raise ValueError(f"grace_period must be >= 1 step, got {self.grace_period}")
        if not self.reduction_factor > 1:  # NaN fails too
            raise ValueError(f"reduction_factor must be > 1, got {self.reduction_factor}")


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What one trial reserves; fractional GPUs share a device (0.5 = two trials per GPU)."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self) -> None:
        if not self.cpu > 0:
            raise ValueError(f"cpu must be > 0, got {self.cpu}")
        if not self.gpu >= 0:
            raise ValueError(f"gpu must be >= 0, got {self.gpu}")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu above 1 must be a whole number, got {self.gpu}")

    @property
    def threads(self) -> int:
        """Torch threads for one trial: its CPU share, at least one."""
        return max(1, int(self.cpu))


@dataclass(frozen=True, kw_only=True)
class ConfirmSpec:
    """The confirmation stage (issue 12): after the search, the ``top_k`` configurations and a
    control are trained again from scratch with ``seeds`` fresh seeds each, side by side, and
    scored on images the search never saw (``data``); the study's verdict comes from these.

    ``top_k: 0`` (the default) skips it. ``control``: ``auto`` takes the paper's values of the
    searched parameters when each has one (``PAPER_VALUES``), else the first ``enqueue`` point;
    ``paper``/``enqueue`` ask for one of these; ``none`` compares the winner with the runner-up
    only. ``crops`` crops of the base config's ``val_crop_size`` are cut from ``data`` (folders,
    relative to the working directory) and degraded like the validation set.
    """

    top_k: int = 0
    seeds: int = 3
    data: tuple[str, ...] = ()
    crops: int = 96
    control: Literal["auto", "paper", "enqueue", "none"] = "auto"

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.crops < 2:
            raise ValueError(f"crops must be >= 2, got {self.crops}")
        if self.top_k and not self.data:
            raise ValueError(
                "data: name the folder(s) of images the search never uses (e.g. "
                "data/sample/test): the confirmation is scored on them"
            )

    @property
    def enabled(self) -> bool:
        return self.top_k > 0


@dataclass(frozen=True, kw_only=True)
class Param:
    """One searched config path and its distribution.

    ``when`` makes the parameter conditional: it is sampled only in trials where each named
    earlier (choice) parameter took one of the listed values; otherwise the base config's value
    stays.
    """

    path: str
    distribution: Literal["uniform", "loguniform", "int", "choice", "grid"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    values: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this parameter's value from an Optuna trial (define-by-run)."""
        d = self.distribution
        if d in ("choice", "grid"):
            return trial.suggest_categorical(self.path, list(self.values))
        if d == "int":
            return trial.suggest_int(
                self.path,
                int(self.low or 0),
                int(self.high or 0),
                step=int(self.step or 1),
                log=self.log,
            )
        return trial.suggest_float(
            self.path,
            float(self.low or 0.0),
            float(self.high or 0.0),
            step=self.step,
            log=d == "loguniform",
        )

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take."""
        if self.distribution in ("choice", "grid"):
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.distribution == "int" and value != int(value):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high

    def active(self, sampled: Mapping[str, Any]) -> bool:
        """Whether the ``when`` conditions hold for the values sampled so far."""
        return all(sampled.get(path) in allowed for path, allowed in self.when)


class SpaceSampler:
    """The define-by-run search space handed to ``OptunaSearch`` (picklable, so it resumes).

    Calling it with an Optuna trial suggests every active parameter in file order and returns
    nothing: ``OptunaSearch`` records what was suggested.
    """

    def __init__(self, params: Sequence[Param]) -> None:
        self.params = tuple(params)

    def __call__(self, trial: optuna.Trial) -> None:
        sampled: dict[str, Any] = {}
        for p in self.params:
            if p.active(sampled):
                sampled[p.path] = p.suggest(trial)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A validated study file. ``base_config`` is a preset name or an absolute YAML path."""

    source: str
    study: str
    description: str = ""
    base_config: str = "cpu"
    base_overrides: tuple[tuple[str, Any], ...] = ()
    space: tuple[Param, ...] = ()
    objectives: tuple[Objective, ...] = ()
    report: tuple[str, ...] = _DEFAULT_REPORT
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    trials: int = 1
    concurrency: int = 1
    time_budget_s: float = 0.0
    max_failures: int = 2
    resources: Resources = field(default_factory=Resources)
    storage: str | None = None
    enqueue: tuple[tuple[tuple[str, Any], ...], ...] = ()
    confirm: ConfirmSpec = field(default_factory=ConfirmSpec)

    @property
    def metrics(self) -> list[str]:
        """Objective metric names, in file order."""
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def columns(self) -> list[str]:
        """What the study shows of each trial: the objectives, then the ``report`` metrics."""
        return list(dict.fromkeys([*self.metrics, *self.report]))

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def train_config(self) -> TrainConfig:
        """The base trainer config every trial starts from (file + overrides, validated)."""
        return load_train_config(self.base_config, list(self.base_overrides))

    def param(self, path: str) -> Param:
        for p in self.space:
            if p.path == path:
                return p
        raise KeyError(path)


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
    _check_keys(data, _TOP_KEYS, source, "")
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
        if getattr(sampler, opt) is not None and opt not in _SAMPLER_OPTIONS[sampler.name]:
            valid = ", ".join(("name", "seed", *_SAMPLER_OPTIONS[sampler.name]))
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


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the file asks for (seeded: the same file samples the same trials)."""
    s = spec.sampler
    if s.name == "tpe":
        kwargs: dict[str, Any] = {"seed": s.seed}
        if s.n_startup_trials is not None:
            kwargs["n_startup_trials"] = s.n_startup_trials
        if s.multivariate is not None:
            kwargs["multivariate"] = s.multivariate
        if s.constant_liar is not None:
            kwargs["constant_liar"] = s.constant_liar
        return optuna.samplers.TPESampler(**kwargs)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "grid":
        grid = {p.path: list(p.values) for p in spec.space}
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    if s.name == "nsga2":
        kwargs = {"seed": s.seed}
        if s.population_size is not None:
            kwargs["population_size"] = s.population_size
        return optuna.samplers.NSGAIISampler(**kwargs)
    raise ConfigError(f"unknown sampler {s.name!r} (samplers: {', '.join(SAMPLERS)})")


def spec_to_dict(spec: StudySpec) -> dict[str, Any]:
    """A JSON-friendly view of the spec (what ``--resume`` compares against the file)."""
    out = to_dict(spec)
    out["base_overrides"] = [[k, v] for k, v in spec.base_overrides]
    out["enqueue"] = [dict(point) for point in spec.enqueue]
    for p, raw in zip(out["space"], spec.space, strict=True):
        p["when"] = {k: list(v) for k, v in raw.when}
    return out


# --- parsing helpers -------------------------------------------------------------------------


def _check_keys(data: Any, valid: Sequence[str], source: str, where: str) -> None:
    label = where or "<top level>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {label}: expected a mapping, got {data!r}")
    for key in data:
        if key not in valid:
            prefix = f"{where}." if where else ""
            raise ConfigError(
                f"{source}: unknown key {prefix}{key} (valid keys"
                f"{' in ' + where if where else ''}: {', '.join(valid)})"
            )


def _build_section(cls: type, data: Any, source: str, where: str) -> Any:
    if data is None:
        return cls()
    if isinstance(data, str) and cls in (SamplerSpec, SchedulerSpec):
        data = {"name": data}  # shorthand: `sampler: random`, `scheduler: none`
    _check_keys(data, [f.name for f in dataclasses.fields(cls)], source, where)
    try:
        return from_dict(cls, dict(data), source=source)
    except ConfigError as exc:
        # from_dict names keys relative to the section (or "<root>"): put the section in front.
        msg = str(exc).removeprefix(f"{source}: ").removeprefix("<root>: ")
        head = msg.split(" ")[0]
        sep = "." if head.endswith(":") else ": "
        raise ConfigError(f"{source}: {where}{sep}{msg}") from None


def _int(value: Any, source: str, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{source}: {key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _parse_base(
    base: Any, source: str, base_dir: Path | None, extra: Sequence[str | tuple[str, Any]]
) -> tuple[str, tuple[tuple[str, Any], ...], TrainConfig]:
    _check_keys(base, ("config", "overrides"), source, "base")
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
    pairs: list[tuple[str, Any]] = [(str(k), v) for k, v in raw.items()]
    for item in extra:
        pairs.append(parse_override(item) if isinstance(item, str) else (item[0], item[1]))
    # study files written with the trainer config's old key names still load
    pairs = [
        new
        for key, value in pairs
        if (new := migrate_key(key, value, source=f"{source}: base.overrides")) is not None
    ]
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
        _check_keys(spec, ("distribution", *fields, "when"), source, key)
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
        _check_keys(item, ("metric", "mode"), source, where)
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
        return _DEFAULT_REPORT
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
