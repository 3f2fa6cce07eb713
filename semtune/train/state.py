"""Networks + optimisers <-> plain checkpoint dicts that carry their config.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)`` and a generator can be rebuilt without the YAML that
trained it (the ``config`` entry).
"""

from __future__ import annotations

import copy
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from semtune.atomic import write_atomically
from semtune.models.degradation import PhysicsDegradation
from semtune.models.discriminator import PatchDiscriminator
from semtune.models.generator import build_generator
from semtune.train.config import TrainConfig, config_from_dict

__all__ = [
    "CHECKPOINT_VERSION",
    "TrainState",
    "build_degradation",
    "build_restorer",
    "GeneratorFile",
    "build_state",
    "degradation_of",
    "checkpoint_config",
    "load_checkpoint",
    "load_generator",
    "load_generator_file",
    "restorer_weights",
    "save_checkpoint",
]

CHECKPOINT_VERSION = 1


def build_restorer(cfg: TrainConfig, *, restorer: bool = True) -> nn.Module:
    """G: blurred -> clean, the paper's multi-scale U-Net with the configured options.

    Its stride plan is fixed by the training crop size (see ``semtune.models.generator``), so a
    network trained on 64 px crops computes the same function on any larger input.
    ``restorer=False`` builds the same U-Net for the paper's F, without G-only options.
    """
    m = cfg.model
    return build_generator(
        m.generator,
        width=m.width,
        image_size=cfg.data.crop_size,
        residual=m.residual,
        zero_init_last=m.zero_init_last,
        output=m.output,
        **({"highpass_sigma": m.highpass_sigma} if restorer and m.highpass_sigma > 0 else {}),
        **({"noise_film": True} if restorer and m.noise_film else {}),
    )


def build_degradation(cfg: TrainConfig) -> nn.Module:
    """F: clean -> blurred; the paper's U-Net or the physics model of issue 7."""
    if cfg.f.kind == "physics":
        return PhysicsDegradation(cfg.f.kernel_size, cfg.f.init_sigma)
    return build_restorer(cfg, restorer=False)


@dataclass
class TrainState:
    """All that changes during training; ``to_checkpoint`` / ``load_checkpoint`` round-trip it."""

    config: TrainConfig
    g: nn.Module  # G: blurred (A) -> clean (B)
    f: nn.Module  # F: clean (B) -> blurred (A)
    d_clean: nn.Module  # judges G's output against real clean images (the paper's D_B in eq. 9)
    d_blur: nn.Module  # judges F's output against real blurred images (the paper's D_A, eq. 10)
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    generator: torch.Generator  # data sampling
    step: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    g_ema: nn.Module | None = None  # moving average of G's weights (optim.ema > 0)
    # what was measured on the training data (noise, blur): exported with G for --report
    data_stats: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        mods = {"g": self.g, "f": self.f, "d_clean": self.d_clean, "d_blur": self.d_blur}
        if self.g_ema is not None:
            mods["g_ema"] = self.g_ema
        return mods

    def restorer(self) -> nn.Module:
        """The G that is validated and exported: the weight average when there is one."""
        return self.g_ema if self.g_ema is not None else self.g

    @torch.no_grad()
    def update_ema(self) -> None:
        """Fold G's current weights into the average; called after each step.

        The decay ramps up as ``(1 + n) / (10 + n)`` over G's steps ``n`` towards
        ``optim.ema``, so the average follows G closely early on instead of holding on to the
        initial weights.
        """
        if self.g_ema is None:
            return
        n = self.step
        decay = min(self.config.optim.ema, (1 + n) / (10 + n))
        torch._foreach_lerp_(
            list(self.g_ema.parameters()), [p.detach() for p in self.g.parameters()], 1 - decay
        )
        for b_ema, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            b_ema.copy_(b)

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "step": self.step,
            "models": {k: _cpu_state(m) for k, m in self.modules().items()},
            "optim": {"g": self.opt_g.state_dict(), "d": self.opt_d.state_dict()},
            "rng": {
                "sampler": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": _numpy_state(),
                "python": random.getstate()[1][:625],
            },
            "best": dict(self.best),
            "history": list(self.history),
            "data_stats": dict(self.data_stats),
        }


def _cpu_state(m: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in m.state_dict().items()}


def _numpy_state() -> dict[str, Any]:
    _, keys, pos, _, _ = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)}


def _optimizers(
    cfg: TrainConfig, g: nn.Module, f: nn.Module, d1: nn.Module, d2: nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    lr, betas = cfg.optim.lr, (cfg.optim.beta1, cfg.optim.beta2)
    opt_g = torch.optim.Adam(
        [
            {"params": g.parameters(), "lr": lr},
            {"params": f.parameters(), "lr": lr * cfg.f.lr_ratio},
        ],
        betas=betas,
    )
    opt_d = torch.optim.Adam([*d1.parameters(), *d2.parameters()], lr=lr, betas=betas)
    return opt_g, opt_d


def build_state(cfg: TrainConfig, device: torch.device) -> TrainState:
    """Fresh networks, optimisers and RNGs for ``cfg``, seeded by ``cfg.runtime.seed``."""
    torch.manual_seed(cfg.runtime.seed)
    np.random.seed(cfg.runtime.seed % 2**32)
    random.seed(cfg.runtime.seed)
    g = build_restorer(cfg).to(device)
    f = build_degradation(cfg).to(device)
    d_clean = PatchDiscriminator(width=cfg.model.disc_width).to(device)
    d_blur = PatchDiscriminator(width=cfg.model.disc_width).to(device)
    opt_g, opt_d = _optimizers(cfg, g, f, d_clean, d_blur)
    gen = torch.Generator().manual_seed(cfg.runtime.seed)
    g_ema = copy.deepcopy(g).requires_grad_(False) if cfg.optim.ema > 0 else None
    return TrainState(
        config=cfg,
        g=g,
        f=f,
        d_clean=d_clean,
        d_blur=d_blur,
        opt_g=opt_g,
        opt_d=opt_d,
        generator=gen,
        g_ema=g_ema,
    )


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file + rename): a crash mid-write never leaves a broken file."""
    return write_atomically(path, lambda tmp: torch.save(ckpt, tmp))


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message goes on to advise weights_only=False: never, for a file that
        # holds code-bearing objects; semtune checkpoints hold tensors and plain values only
        raise ValueError(
            f"{path}: not a semtune checkpoint: it holds Python objects other than tensors and "
            "plain values, which semtune never unpickles (they can run code)"
        ) from exc
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = type(exc).__name__
        raise ValueError(f"{path}: not a readable semtune checkpoint ({kind}: {first})") from exc
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise ValueError(f"{path}: not a semtune checkpoint (no 'config' entry)")
    return ckpt


def checkpoint_config(path: str | Path) -> TrainConfig:
    """The config a checkpoint's run was started with (what ``--resume`` continues)."""
    return config_from_dict(_read(path)["config"], source=str(path), strict=False)


def load_checkpoint(path: str | Path, device: torch.device) -> TrainState:
    """Rebuild the full training state saved by ``TrainState.to_checkpoint``."""
    ckpt = _read(path)
    cfg = config_from_dict(ckpt["config"], source=str(path), strict=False)
    state = build_state(cfg, device)
    for name, module in state.modules().items():
        module.load_state_dict(ckpt["models"][name])
    state.opt_g.load_state_dict(ckpt["optim"]["g"])
    state.opt_d.load_state_dict(ckpt["optim"]["d"])
    state.generator.set_state(ckpt["rng"]["sampler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    np_state = ckpt["rng"]["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(np_state["pos"]), 0, 0.0))
    random.setstate((3, tuple(ckpt["rng"]["python"]), None))
    state.step = int(ckpt["step"])
    state.best = dict(ckpt.get("best", {}))
    state.history = list(ckpt.get("history", []))
    state.data_stats = dict(ckpt.get("data_stats", {}))
    return state


def restorer_weights(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    """G's weights in a training checkpoint: the weight average when it has one."""
    return ckpt["models"].get("g_ema", ckpt["models"]["g"])


def degradation_of(ckpt: dict[str, Any]) -> dict[str, Any]:
    """F's blur and noise in a training checkpoint (physics F only; ``{}`` otherwise):
    ``psf`` (k, k) tensor, ``sigma`` px, ``noise_quantiles`` (16,) tensor of noise stds."""
    f = ckpt.get("models", {}).get("f", {})
    if "kernel_logits" not in f:
        return {}
    logits = f["kernel_logits"].float()
    psf = torch.softmax(logits.flatten(), 0).view_as(logits)
    r = torch.arange(psf.shape[-1], dtype=psf.dtype) - psf.shape[-1] // 2
    sigma = float(torch.sqrt(((psf.sum(1) * r**2).sum() + (psf.sum(0) * r**2).sum()) / 2))
    noise = f.get("noise_quantiles", torch.zeros(0)).float()
    return {"psf": psf, "sigma": sigma, "noise_quantiles": noise}


@dataclass(frozen=True)
class GeneratorFile:
    """A restorer with what it knows about itself, as ``load_generator_file`` reads it.

    Attributes:
        g: G, in eval mode.
        config: the config it was trained with.
        metrics: its validation metrics (may be empty).
        data_stats: what was measured on its training images (noise levels, blur; may be
            empty for files from before these were recorded).
        degradation: F's blur kernel and noise (``degradation_of``; empty for a U-Net F).
        step: the training step of these weights.
    """

    g: nn.Module
    config: TrainConfig
    metrics: dict[str, float]
    data_stats: dict[str, Any]
    degradation: dict[str, Any]
    step: int


def load_generator_file(path: str | Path, device: torch.device | str = "cpu") -> GeneratorFile:
    """G and what it carries, from a training checkpoint or an exported generator file."""
    ckpt = _read(path)
    cfg = config_from_dict(ckpt["config"], source=str(path), strict=False)
    g = build_restorer(cfg)
    g.load_state_dict(ckpt["generator"] if "models" not in ckpt else restorer_weights(ckpt))
    degradation = ckpt.get("degradation") or degradation_of(ckpt)
    return GeneratorFile(
        g=g.to(device).eval(),
        config=cfg,
        metrics=dict(ckpt.get("metrics", {}) or (ckpt.get("best") or {})),
        data_stats=dict(ckpt.get("data_stats", {})),
        degradation=dict(degradation),
        step=int(ckpt.get("step", 0)),
    )


def load_generator(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """G alone, in eval mode, from a training checkpoint or an exported generator file."""
    file = load_generator_file(path, device)
    return file.g, file.config
