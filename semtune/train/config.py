"""The trainer's config tree: frozen dataclasses, loaded from a preset name or a YAML file.

Search spaces address these fields by dotted path (``loss.gamma``, ``optim.lr``), so every field
name here is part of the public interface.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from semtune.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_yaml,
    parse_override,
    require_non_negative,
    require_positive,
    to_dict,
)
from semtune.data.config import DataConfig

__all__ = [
    "PRESETS",
    "DataConfig",
    "FConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
    "REMOVED",
    "RENAMED",
    "config_from_dict",
    "migrate_overrides",
    "load_train_config",
    "migrate",
    "migrate_key",
    "preset_path",
]

EdgeOperator = Literal["sobel", "kirsch", "scharr", "prewitt", "laplacian"]


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The restorer G (blurred -> clean) and the two discriminators; F has its own section."""

    generator: str = "unet"
    width: float = 0.25
    # G's output is its input plus a learned correction (the paper: False, a direct output)
    residual: bool = True
    # the correction starts at zero: G starts as the identity
    zero_init_last: bool = True
    # "clamp" clips a residual G's output to [0, 1]; "sigmoid" is the paper's direct output
    output: Literal["sigmoid", "clamp"] = "clamp"
    # G's correction keeps only frequencies above a Gaussian low-pass of this sigma (px); 0 =
    # off. See semtune.models.generator.
    highpass_sigma: float = 4.0
    # G's InstanceNorms are modulated by the pixel-noise level measured on its own input
    # (FiLM; semtune.models.generator.NoiseFiLMNorm). Not in a preset: kept as the lead of
    # issue 11's open item (docs/restoration.md, item 22), tested in tests/train/test_loop.py.
    noise_film: bool = False
    disc_width: float = 0.25

    def __post_init__(self) -> None:
        require_positive("width", self.width)
        require_positive("disc_width", self.disc_width)
        require_non_negative("highpass_sigma", self.highpass_sigma)


@dataclass(frozen=True, kw_only=True)
class FConfig:
    """F, the learned degradation (clean -> blurred) whose outputs give G its pseudo-pairs."""

    # "physics": a learnable blur kernel + contrast/fog parameters (issue 7); "unet": the
    # paper's second U-Net
    kind: Literal["physics", "unet"] = "physics"
    kernel_size: int = 15
    # "estimate": F's blur, transmission and airlight are first measured on the two training
    # domains (semtune.models.degradation.estimate_degradation); "sigma": F starts as a
    # Gaussian of init_sigma, no contrast
    init: Literal["estimate", "sigma"] = "estimate"
    init_sigma: float = 2.0
    # F adds white noise to its output, each crop's std drawn from the noise levels measured
    # (semtune.quality.noise_sigma) on the blurred training images: F(b) then looks like a real
    # blurred micrograph to D_blur, and G's pseudo-pairs carry the data's own noise
    noise: bool = True
    # F's learning rate, as a multiple of optim.lr
    lr_ratio: float = 10.0
    # F's blur kernel learns from its adversarial term alone (see semtune.train.step)
    gan_only: bool = True
    # the identity term on F (MSE(a, F(a))) pulls a learnable blur towards a delta; 1 = the
    # paper, 0 for the physics F (issue 7)
    identity_weight: float = 0.0
    # Share of G's pseudo-inputs whose noise (F's and loss.pseudo_noise) is scaled down by a
    # factor log-uniform in [LOW_NOISE_MIN, 1]: a noise-conditioned G (model.noise_film) then
    # also learns blurred inputs cleaner than the data's, down to the paper's noise-free sets
    # (docs/restoration.md, item 24). 0 = every pseudo-input carries the full noise.
    low_noise_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.low_noise_share <= 1:
            raise ValueError(f"low_noise_share must be in [0, 1], got {self.low_noise_share!r}")
        if self.kernel_size % 2 == 0 or self.kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")
        require_positive("init_sigma", self.init_sigma)
        require_positive("lr_ratio", self.lr_ratio)
        require_non_negative("identity_weight", self.identity_weight)


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Total G loss = GAN + lambda_cycle*cycle + lambda_identity*identity + gamma*edge (eq. 16)."""

    lambda_cycle: float = 10.0
    lambda_identity: float = 0.0
    gamma: float = 1.0
    edge_operator: EdgeOperator = "sobel"
    gan_weight: float = 1.0
    # An L1 term added to the SSIM cycle loss, times this (0 = the paper's SSIM-only cycle).
    # SSIM ignores small uniform intensity offsets; L1 keeps the restoration's grey levels.
    cycle_l1: float = 5.0
    # Factor on G's own adversarial term (D_clean judging G(a)); F's term keeps gan_weight.
    # Clean SEM images carry shot noise that blurred ones lack: a strong D_clean pushes G to
    # paint noise back, which costs PSNR; F needs its adversarial term to learn the kernel.
    gan_weight_g: float = 0.0
    # Std of Gaussian noise added to F(b) before G restores it in the backward cycle (0 = off):
    # a noise prior for the deconvolution G learns from those pseudo-pairs.
    pseudo_noise: float = 0.003
    # Weight of the forward cycle a -> G(a) -> F(G(a)) within the cycle loss (1 = the paper).
    # On noisy blurred images F(G(a)) can only match a's noise if G amplifies it (F blurs it
    # away again), so this term rewards noise amplification there.
    forward_cycle: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "lambda_cycle",
            "lambda_identity",
            "gamma",
            "gan_weight",
            "cycle_l1",
            "gan_weight_g",
            "pseudo_noise",
            "forward_cycle",
        ):
            require_non_negative(name, getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """Adam for the generators (F at ``f.lr_ratio`` times ``lr``) and the discriminators."""

    lr: float = 5e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # Exponential moving average of G's weights (0 = off): validation, best.pt and
    # generator.pt use the average, which smooths the step-to-step jitter of a GAN.
    ema: float = 0.999

    def __post_init__(self) -> None:
        require_positive("lr", self.lr)
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """How long to train and how often to evaluate and checkpoint (all counted in steps)."""

    steps: int = 2400
    batch_size: int = 4
    eval_every: int = 200
    log_every: int = 20
    # Stop early after this many seconds of training (0 = no limit); the run is still complete:
    # it evaluates and checkpoints at the stop.
    time_budget_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "log_every"):
            require_positive(name, getattr(self, name))
        require_non_negative("time_budget_s", self.time_budget_s)


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Device, precision and threads; "auto" picks CUDA + bf16/fp16 when there is a GPU."""

    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    # torch threads; 0 = the CPUs this process may use (semtune.threads). One thread: on 2 cores
    # a second OpenMP thread made the cpu preset's small networks 3x slower (1.45 against 4.5-5
    # steps/s, measured); a second core is better used by a second trial.
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        require_non_negative("threads", self.threads)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The whole trainer configuration."""

    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    f: FConfig = field(default_factory=FConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def with_values(
        self, values: Mapping[str, Any], *, source: str = "override", strict: bool = True
    ) -> TrainConfig:
        """A copy with ``{config.path: value}`` applied (a trial's parameters), old key names
        migrated and every value type-checked; ConfigError naming the key otherwise."""
        pairs = migrate_overrides(values.items(), source=source, strict=strict)
        data = apply_overrides(self.to_dict(), pairs)
        return from_dict(TrainConfig, data, source=source)


PRESETS = ("cpu", "paper", "tiny")

# Configs, checkpoints and study folders written before the trainer config was pruned and F's
# settings gathered in one section (issue 13) still load: their keys are moved or dropped here.
# docs/restoration.md's history uses the old names; its "Option names" table maps them.
RENAMED: dict[str, str] = {
    "model.degradation": "f.kind",
    "model.physics_kernel_size": "f.kernel_size",
    "model.physics_init": "f.init",
    "model.physics_init_sigma": "f.init_sigma",
    "model.physics_noise": "f.noise",
    "optim.lr_f_ratio": "f.lr_ratio",
    "loss.f_gan_only": "f.gan_only",
    "loss.identity_f_weight": "f.identity_weight",
}
# removed option -> (the value that behaves as the code does now, why it went)
REMOVED: dict[str, tuple[Any, str]] = {
    "model.disc_highpass": (False, "no clear change measured, never in a preset"),
    "model.first_norm": (True, "never switched off in a preset or a study"),
    "schedule.f_warmup_steps": (0, "replaced by f.init=estimate"),
    "schedule.decay_from": (1.0, "no gain measured"),
    "optim.lr_d_ratio": (1.0, "never set, tested or documented"),
    "optim.pool_size": (0, "never set, tested or documented"),
    "loss.clean_share": (0.0, "tried and not taken (docs/restoration.md, item 23)"),
    "loss.partial_blur": (0.0, "tried and not taken (docs/restoration.md, item 17)"),
    "f.soft_target_share": (0.0, "tried and not taken (docs/restoration.md, item 26)"),
}
_REMOVED_OUTPUTS = ("tanh", "none")  # model.output values never used by a preset


def migrate_key(
    path: str, value: Any, *, source: str = "config", strict: bool = True
) -> tuple[str, Any] | None:
    """The current ``(path, value)`` of an old config key; None if the key is gone.

    A removed option set to anything but the one behaviour left is an error when ``strict``
    (a config being written or a setting being given) and a warning otherwise (a checkpoint or
    study folder being read, trained with an option since removed)."""
    if path in RENAMED:
        return RENAMED[path], value
    if path == "model.output" and value in _REMOVED_OUTPUTS:
        _removed(f"{path}={value}", "clamp or sigmoid", "never used by a preset", source, strict)
        return path, "clamp"
    if path not in REMOVED:
        return path, value
    kept, why = REMOVED[path]
    if value != kept and not (isinstance(kept, float) and _close(value, kept)):
        _removed(f"{path}={value}", f"{kept}", why, source, strict)
    return None


def _close(value: Any, kept: float) -> bool:
    try:
        return float(value) == kept
    except (TypeError, ValueError):
        return False


def _removed(setting: str, now: str, why: str, source: str, strict: bool) -> None:
    text = f"{source}: {setting}: this option was removed ({why}); it now always behaves as {now}"
    if strict:
        raise ConfigError(text + "; see docs/restoration.md, 'Option names'")
    warnings.warn(text, stacklevel=3)


def migrate(data: Mapping[str, Any], *, source: str = "config", strict: bool = True) -> dict:
    """``data`` (a nested trainer-config mapping) with old keys moved or dropped."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for section, body in data.items():
        if not isinstance(body, Mapping):
            continue
        for key, value in body.items():
            path = f"{section}.{key}"
            new = migrate_key(path, value, source=source, strict=strict)
            if new == (path, value):
                continue
            del out[section][key]
            if new is not None:
                new_section, new_key = new[0].split(".", 1)
                out.setdefault(new_section, {})
                # a key written under its new name as well wins (it is the newer setting)
                out[new_section].setdefault(new_key, new[1])
    return out


def migrate_overrides(
    items: Iterable[str | tuple[str, Any]], *, source: str = "override", strict: bool = True
) -> list[tuple[str, Any]]:
    """``"path=value"`` strings or ``(path, value)`` pairs as today's ``(path, value)`` pairs:
    parsed, old key names moved, removed options dropped (``migrate_key``)."""
    pairs = []
    for item in items:
        key, value = parse_override(item) if isinstance(item, str) else item
        if (new := migrate_key(key, value, source=source, strict=strict)) is not None:
            pairs.append(new)
    return pairs


def config_from_dict(
    data: Mapping[str, Any], *, source: str = "config", strict: bool = True
) -> TrainConfig:
    """A ``TrainConfig`` from a nested mapping, old keys migrated (see ``migrate``)."""
    return from_dict(TrainConfig, migrate(data, source=source, strict=strict), source=source)


def preset_path(name: str) -> Path:
    """Path of a bundled preset YAML; ConfigError listing the presets if unknown."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    return Path(str(resources.files("semtune") / "configs" / f"{name}.yaml"))


def load_train_config(
    preset_or_path: str | Path | None = "cpu",
    overrides: list[str] | list[tuple[str, Any]] | None = None,
    *,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Load a trainer config from a preset name or YAML path, then apply overrides.

    Args:
        preset_or_path: ``"cpu"``, ``"paper"``, ``"tiny"`` or a YAML file; a YAML file may say
            ``preset: cpu`` to start from a preset and change only some keys.
        overrides: ``"loss.gamma=5"`` strings or ``(path, value)`` pairs, applied last.
        base: a mapping merged over the file before the overrides (used by search spaces).
    """
    data: dict[str, Any] = {}
    source = "config"
    if preset_or_path is not None:
        text = str(preset_or_path)
        if text in PRESETS:
            path = preset_path(text)
        else:
            path = Path(text)
            if not path.suffix and not path.exists():
                raise ConfigError(f"unknown preset {text!r} (presets: {', '.join(PRESETS)})")
        data = migrate(load_yaml(path), source=str(path))
        source = str(path)
        parent = data.get("preset")
        if parent in PRESETS and Path(path) != preset_path(parent):
            merged = load_yaml(preset_path(parent))
            data = _merge(merged, data)
    if base:
        data = _merge(data, migrate(base, source=source, strict=False))
    if overrides:
        data = apply_overrides(data, migrate_overrides(overrides, source="override"))
        source = f"{source} (with overrides)"
    return from_dict(TrainConfig, data, source=source)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
