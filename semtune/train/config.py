"""The trainer's config tree: frozen dataclasses, loaded from a preset name or a YAML file.

Search spaces address these fields by dotted path (``loss.gamma``, ``optim.lr``), so every field
name here is part of the public interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from semtune.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_yaml,
    require_non_negative,
    require_positive,
    to_dict,
)
from semtune.data.config import DataConfig

__all__ = [
    "PRESETS",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
    "load_train_config",
    "preset_path",
]

EdgeOperator = Literal["sobel", "kirsch", "scharr", "prewitt", "laplacian"]


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Generators G (blurred -> clean), F (clean -> blurred) and the two discriminators."""

    generator: str = "unet"
    width: float = 0.25
    residual: bool = True
    zero_init_last: bool = True
    first_norm: bool = True
    output: Literal["sigmoid", "tanh", "clamp", "none"] = "clamp"
    # G's correction keeps only frequencies above a Gaussian low-pass of this sigma (px); 0 =
    # off. See semtune.models.generator.
    highpass_sigma: float = 0.0
    # G's InstanceNorms are modulated by the pixel-noise level measured on its own input
    # (FiLM; semtune.models.generator.NoiseFiLMNorm): one network for clean and noisy inputs.
    noise_film: bool = False
    # F, the degradation side: "unet" is the paper's (a second U-Net); "physics" is a learnable
    # blur kernel + contrast/fog parameters (issue 7).
    degradation: Literal["unet", "physics"] = "unet"
    physics_kernel_size: int = 15
    physics_init_sigma: float = 2.0
    # "sigma": F starts as a Gaussian of physics_init_sigma, no contrast loss. "estimate": its
    # blur, transmission and airlight are first measured on the two training domains
    # (semtune.models.degradation.estimate_degradation).
    physics_init: Literal["sigma", "estimate"] = "sigma"
    # F adds white noise to its output, each crop's std drawn from the noise levels measured
    # (semtune.quality.noise_sigma) on the blurred training images: F(b) then looks like a real
    # blurred micrograph to D_blur, and G's pseudo-pairs carry the data's own noise.
    physics_noise: bool = False
    disc_width: float = 0.25
    disc_highpass: bool = False

    def __post_init__(self) -> None:
        require_positive("width", self.width)
        require_positive("disc_width", self.disc_width)
        require_non_negative("highpass_sigma", self.highpass_sigma)
        if self.physics_kernel_size % 2 == 0 or self.physics_kernel_size < 3:
            raise ValueError(
                f"physics_kernel_size must be odd and >= 3, got {self.physics_kernel_size}"
            )
        require_positive("physics_init_sigma", self.physics_init_sigma)


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Total G loss = GAN + lambda_cycle*cycle + lambda_identity*identity + gamma*edge (eq. 16)."""

    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    gamma: float = 10.0
    edge_operator: EdgeOperator = "sobel"
    gan_weight: float = 1.0
    # An L1 term added to the SSIM cycle loss, times this (0 = the paper's SSIM-only cycle).
    # SSIM ignores small uniform intensity offsets; L1 keeps the restoration's grey levels.
    cycle_l1: float = 0.0
    # Factor on G's own adversarial term (D_clean judging G(a)); F's term keeps gan_weight.
    # Clean SEM images carry shot noise that blurred ones lack: a strong D_clean pushes G to
    # paint noise back, which costs PSNR; F needs its adversarial term to learn the kernel.
    gan_weight_g: float = 1.0
    # F's blur kernel learns from its adversarial term alone (see semtune.train.step).
    f_gan_only: bool = False
    # Std of Gaussian noise added to F(b) before G restores it in the backward cycle (0 = off):
    # a noise prior for the deconvolution G learns from those pseudo-pairs.
    pseudo_noise: float = 0.0
    # Weight of the forward cycle a -> G(a) -> F(G(a)) within the cycle loss (1 = the paper).
    # On noisy blurred images F(G(a)) can only match a's noise if G amplifies it (F blurs it
    # away again), so this term rewards noise amplification there.
    forward_cycle: float = 1.0
    # Share of G's pseudo-inputs given at most a quarter of F's noise (model.physics_noise):
    # a G that never saw an input cleaner than the training folder's smoothed noise-free
    # images away (docs/restoration.md).
    clean_share: float = 0.0
    # Share of G's pseudo-pairs whose input carries only a random part s ~ U(0, 1) of F's blur
    # ((1 - s) b + s F(b)); 0 = every pair carries all of it.
    partial_blur: float = 0.0
    # The identity term on F (MSE(a, F(a))) pulls a learnable blur towards a delta; issue 7 turns
    # it off for the physics F. 1.0 is the paper.
    identity_f_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "lambda_cycle",
            "lambda_identity",
            "gamma",
            "gan_weight",
            "identity_f_weight",
            "cycle_l1",
            "gan_weight_g",
            "pseudo_noise",
            "forward_cycle",
        ):
            require_non_negative(name, getattr(self, name))
        for name in ("partial_blur", "clean_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """Adam for both generator and discriminator groups."""

    lr: float = 1e-4
    lr_d_ratio: float = 1.0
    lr_f_ratio: float = 1.0
    beta1: float = 0.5
    beta2: float = 0.999
    pool_size: int = 0
    # Exponential moving average of G's weights (0 = off): validation, best.pt and
    # generator.pt use the average, which smooths the step-to-step jitter of a GAN.
    ema: float = 0.0

    def __post_init__(self) -> None:
        require_positive("lr", self.lr)
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        require_positive("lr_d_ratio", self.lr_d_ratio)
        require_positive("lr_f_ratio", self.lr_f_ratio)
        require_non_negative("pool_size", self.pool_size)


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """How long to train and how often to evaluate and checkpoint (all counted in steps)."""

    steps: int = 2000
    batch_size: int = 4
    eval_every: int = 200
    log_every: int = 20
    # Stop early after this many seconds of training (0 = no limit); the run is still complete:
    # it evaluates and checkpoints at the stop.
    time_budget_s: float = 0.0
    # Every learning rate falls linearly to zero from this fraction of the run (1 = constant,
    # 0.5 = the CycleGAN paper's second-half decay). With a time budget, the fraction is the
    # larger of steps done / steps and seconds spent / budget, so a budget-stopped run decays too.
    decay_from: float = 1.0
    # The first steps train F against D_blur alone (G untouched, a cheap step), so that G
    # starts on pseudo-pairs whose blur is already the data's (0 = off; counted in steps).
    f_warmup_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "log_every"):
            require_positive(name, getattr(self, name))
        require_non_negative("time_budget_s", self.time_budget_s)
        require_non_negative("f_warmup_steps", self.f_warmup_steps)
        if not 0 <= self.decay_from <= 1:
            raise ValueError(f"decay_from must be in [0, 1], got {self.decay_from}")


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Device, precision and threads; "auto" picks CUDA + bf16/fp16 when there is a GPU."""

    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        require_non_negative("threads", self.threads)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The whole trainer configuration."""

    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


PRESETS = ("cpu", "paper", "tiny")


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
        data = load_yaml(path)
        source = str(path)
        parent = data.get("preset")
        if parent in PRESETS and Path(path) != preset_path(parent):
            merged = load_yaml(preset_path(parent))
            data = _merge(merged, data)
    if base:
        data = _merge(data, base)
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} (with overrides)"
    return from_dict(TrainConfig, data, source=source)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
