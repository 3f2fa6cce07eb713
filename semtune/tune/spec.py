"""A study's typed, validated description (``StudySpec``) and what is built from it: the
per-trial parameter sampler and the Optuna sampler. ``semtune.tune.space`` reads study files
into it; Tune, the searcher and the confirmation stage only read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from semtune.config import ConfigError, to_dict
from semtune.metric_names import INPUT_METRICS, VALIDATION_METRICS
from semtune.train.config import TrainConfig, load_train_config

__all__ = [
    "DISTRIBUTIONS",
    "OBJECTIVE_METRICS",
    "PAPER_VALUES",
    "REPORT_METRICS",
    "SAMPLERS",
    "SAMPLER_OPTIONS",
    "DEFAULT_REPORT",
    "ConfirmSpec",
    "Objective",
    "Param",
    "Resources",
    "SamplerSpec",
    "SchedulerSpec",
    "SpaceSampler",
    "StudySpec",
    "build_sampler",
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

DEFAULT_REPORT = ("ssim", "psnr", "ssim_gain", "psnr_gain", "score")


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


SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {
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
    report: tuple[str, ...] = DEFAULT_REPORT
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
