"""The training loop: plain Python, no Ray and no MLflow (they plug in through a Reporter).

Writes into ``out_dir``: ``last.pt`` (full state, at every evaluation and at the end),
``best.pt`` (the state with the best validation score so far), ``generator.pt`` (G alone, from
the best state: what ``semtune.evaluate`` and ``semtune.enhance`` take) and ``metrics.csv``
(one row per evaluation).

Size: longer than ~400 lines because of the loop with its evaluation, logs and export; the
training step is semtune.train.step.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from semtune.atomic import write_text_atomically
from semtune.data.datasets import PairedSet
from semtune.data.estimate import (
    DegradationEstimate,
    estimate_degradation,
    noise_free_warning,
    noise_levels,
)
from semtune.data.unpaired import TrainingData, build_training_data, sample_crops
from semtune.device import gpu_fallback_note, resolve_device
from semtune.inference import restore_batch
from semtune.metric_names import FULL_REFERENCE, GAINS, INPUT_METRICS, SCORE, score_of
from semtune.metrics import all_metrics
from semtune.models.degradation import PhysicsDegradation
from semtune.train.config import TrainConfig
from semtune.train.state import (
    TrainState,
    build_state,
    degradation_of,
    load_checkpoint,
    restorer_weights,
    save_checkpoint,
)
from semtune.train.step import Precision, train_step
from semtune.uncertainty import bootstrap_ci, per_group_means

VAL_SCORES_FILE = "val_scores.csv"  # the latest evaluation, per validation image

__all__ = [
    "VAL_SCORES_FILE",
    "per_image_scores",
    "score_images",
    "Reporter",
    "TrainResult",
    "evaluate_generator",
    "data_lines",
    "export_generator",
    "resolve_device",
    "train",
]

log = logging.getLogger(__name__)

# The validation score that picks best.pt: SSIM gain plus PSNR gain on a comparable scale
# (0.01 SSIM ~ 1 dB on these images), so neither metric alone can be gamed.
SCORE_KEY = SCORE


class Reporter(Protocol):
    """What the loop tells the outside world; Tune and MLflow adapt this."""

    def log(self, step: int, losses: dict[str, float]) -> None: ...

    def evaluate(
        self, step: int, metrics: dict[str, float], checkpoint: Path, samples: Tensor
    ) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """What a finished run leaves: its folder, last/best metrics, and where the files are."""

    out_dir: Path
    step: int
    last: dict[str, float]
    best: dict[str, Any]
    checkpoint: Path
    generator: Path


@torch.no_grad()
def evaluate_generator(
    g: nn.Module,
    paired: PairedSet,
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
    groups: Sequence[int] | None = None,
) -> dict[str, float]:
    """Mean SSIM/PSNR/AG/CON/SF of ``g(blurred)`` against ``clean``, with the input's alongside.

    Args:
        groups: the image each crop comes from; with it, 95% confidence intervals by a
            bootstrap over images (``semtune.uncertainty``).

    Returns keys ``ssim, psnr, ag, con, sf`` (restored), ``blurry_ssim, blurry_psnr`` (input),
    ``ssim_gain, psnr_gain`` and ``score`` (ssim_gain * 100 + psnr_gain); with ``groups`` also
    ``<name>_ci_low`` / ``<name>_ci_high`` for ssim, psnr, their gains and score, and
    ``val_images``.
    """
    return _evaluate(g, paired, batch_size=batch_size, device=device, groups=groups)[0]


_PER_IMAGE = (*FULL_REFERENCE, *INPUT_METRICS, *GAINS, SCORE)


def _evaluate(
    g: nn.Module,
    paired: PairedSet,
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
    groups: Sequence[int] | None = None,
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """``evaluate_generator``'s means, and the per-crop values behind them."""
    device = device or next(g.parameters()).device
    was_training = g.training
    g.eval()
    parts: dict[str, list[Tensor]] = {}
    n = paired.clean.shape[0]
    for i in range(0, n, batch_size):
        blurred = paired.blurred[i : i + batch_size].to(device)
        clean = paired.clean[i : i + batch_size].to(device)
        restored = restore_batch(g, blurred)  # tiled exactly as enhance runs it
        for k, v in all_metrics(restored, clean).items():
            parts.setdefault(k, []).append(v.detach().double().cpu())
        for k, v in all_metrics(blurred, clean).items():
            if k in ("ssim", "psnr"):
                parts.setdefault(f"blurry_{k}", []).append(v.detach().double().cpu())
    g.train(was_training)
    crops = {k: torch.cat(v) for k, v in parts.items()}
    crops["ssim_gain"] = crops["ssim"] - crops["blurry_ssim"]
    crops["psnr_gain"] = crops["psnr"] - crops["blurry_psnr"]
    crops[SCORE_KEY] = score_of(crops["ssim_gain"], crops["psnr_gain"])
    out = {k: float(v.mean()) for k, v in crops.items()}
    if groups is not None:
        shown = ("ssim", "psnr", "ssim_gain", "psnr_gain", SCORE_KEY)
        out.update(bootstrap_ci({k: crops[k] for k in shown}, groups))
    return out, crops


def score_images(
    g: nn.Module,
    paired: PairedSet,
    groups: Sequence[int],
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
) -> dict[str, Tensor]:
    """Per image (its crops averaged; images in ``groups`` order): SSIM and PSNR of
    ``g(blurred)`` and of the input, their gains and ``score``, scored as validation is."""
    _, crops = _evaluate(g, paired, batch_size=batch_size, device=device)
    return {k: per_group_means(crops[k], groups) for k in _PER_IMAGE}


def per_image_scores(
    crops: dict[str, Tensor], groups: Sequence[int], names: Sequence[str], step: int
) -> str:
    """CSV text: one row per validation image (its crops averaged), for comparing two trials
    or models image by image (every trial of a study sees the same crops)."""
    means = {k: per_group_means(crops[k], groups) for k in _PER_IMAGE}
    counts = Counter(groups)
    lines = [",".join(["step", "image", "crops", *_PER_IMAGE])]
    for row, i in enumerate(sorted(counts)):  # per_group_means's order
        name = names[i] if i < len(names) else f"image{i}"
        values = [f"{float(means[k][row]):.6g}" for k in _PER_IMAGE]
        lines.append(",".join([str(step), name, str(counts[i]), *values]))
    return "\n".join(lines) + "\n"


def export_generator(
    state_or_ckpt: TrainState | dict[str, Any],
    path: str | Path,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Save G alone with its config (small file for evaluate/enhance/registry), and the
    validation metrics of exactly these weights when given."""
    ckpt = state_or_ckpt.to_checkpoint() if isinstance(state_or_ckpt, TrainState) else state_or_ckpt
    payload: dict[str, Any] = {
        "version": 1,
        "config": ckpt["config"],
        "generator": restorer_weights(ckpt),
        "step": ckpt["step"],
        # what --report compares a user's images with, and F's blur for its self-check
        "data_stats": dict(ckpt.get("data_stats", {})),
        "degradation": degradation_of(ckpt),
    }
    if metrics is not None:
        payload["metrics"] = {k: float(v) for k, v in metrics.items()}
    return save_checkpoint(payload, path)


def _quantiles(levels: Tensor) -> list[float]:
    return [float(v) for v in torch.quantile(levels.float(), torch.tensor([0.1, 0.5, 0.9]))]


def _data_stats(data: TrainingData, est: DegradationEstimate | None) -> dict[str, Any]:
    """What the run's images were like (the model carries this; --report compares with it)."""
    stats: dict[str, Any] = {
        "fingerprint": data.fingerprint,
        "blurred_noise": _quantiles(noise_levels(data.blurred)),
        "clean_noise": _quantiles(noise_levels(data.clean)),
        "val": data.val_label,
        "n_blurred": len(data.blurred),
        "n_clean": len(data.clean),
    }
    if est is not None:
        stats.update(
            blur_sigma=math.nan if est.sigma is None else est.sigma,
            edge_width_blurred=est.sigma_blurred,
            edge_width_clean=est.sigma_clean,
        )
    return stats


def _sample_grid(g: nn.Module, paired: PairedSet, device: torch.device, n: int = 4) -> Tensor:
    """(n, 1, H, 3W): blurred | restored | clean, for people to look at."""
    with torch.no_grad():
        was = g.training
        g.eval()
        blurred = paired.blurred[:n].to(device)
        restored = restore_batch(g, blurred)
        g.train(was)
    return torch.cat([blurred, restored, paired.clean[:n].to(device)], dim=-1).cpu()


class _CsvLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with path.open() as fh:
                header = fh.readline().strip()
            self.fields = header.split(",") if header else None

    def write(self, row: dict[str, float]) -> None:
        new = self.fields is None
        if self.fields is None:
            self.fields = list(row)
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def _progress_line(
    step: int, total: int, losses: dict[str, float], last: dict[str, float], rate: float
) -> str:
    parts = [
        f"step {step}/{total}",
        f"{rate:.1f} it/s",
        f"G {losses['loss_g']:.3f}",
        f"D {losses['loss_d']:.3f}",
    ]
    if last:
        parts.append(
            f"val SSIM {last['ssim']:.4f} ({last['ssim_gain']:+.4f}) "
            f"PSNR {last['psnr']:.2f} ({last['psnr_gain']:+.2f} dB)"
        )
    return " | ".join(parts)


def _estimate_lines(est: DegradationEstimate, init_sigma: float) -> list[str]:
    """What a run says about F's starting blur (and WARNING lines when it is not to be trusted)."""
    if est.sigma is None:
        return [
            f"WARNING: the blur between the two folders could not be measured: "
            f"{'; '.join(est.problems)}. F starts from f.init_sigma = "
            f"{init_sigma:g} px instead ({est.describe()})."
        ]
    return [f"F starts from the data: {est.describe()}", *(f"WARNING: {p}" for p in est.problems)]


def _noise_lines(levels: Tensor) -> list[str]:
    """What a run says about the blurred images' noise, which F adds (and a WARNING when there
    is almost none)."""
    q = torch.quantile(levels, torch.tensor([0.1, 0.5, 0.9]))
    lines = [
        "F adds the blurred images' noise: std "
        f"{q[0]:.4f} / {q[1]:.4f} / {q[2]:.4f} (10th / 50th / 90th percentile)"
    ]
    warning = noise_free_warning(levels)
    if warning is not None:
        lines.append(f"WARNING: {warning}")
    return lines


def data_lines(cfg: TrainConfig) -> list[str]:
    """What a run of ``cfg`` measures on its data before its first step and prints: F's
    starting blur and the blurred images' noise, with their WARNING lines (the data are read
    only when there is something to measure). For a study's driver, whose trials write these
    only to their own ``train.log``."""
    if cfg.f.kind != "physics" or (cfg.f.init != "estimate" and not cfg.f.noise):
        return []
    data = build_training_data(cfg.data)
    lines: list[str] = []
    if cfg.f.init == "estimate":
        est = data.estimate or estimate_degradation(data.blurred, data.clean)
        lines += _estimate_lines(est, cfg.f.init_sigma)
    if cfg.f.noise:
        lines += _noise_lines(noise_levels(data.blurred))
    return lines


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    reporter: Reporter | None = None,
    resume: str | Path | None = None,
    data: TrainingData | None = None,
    printer: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train (or resume) a CycleGAN as configured; see the module docstring for the outputs.

    Args:
        cfg: the full config. Ignored in favour of the checkpoint's own when ``resume`` is set.
        out_dir: where checkpoints and ``metrics.csv`` go (created).
        reporter: optional hooks (Ray Tune, MLflow); called at every log and evaluation.
        resume: a ``last.pt`` to continue from; the run continues exactly (same crops, same RNG).
        data: pre-built data (tests and benchmarks share it between runs).
        printer: where progress lines go (None for silence).

    Raises:
        NonFiniteLossError: a loss became NaN/Inf; ``last.pt`` still holds the last good state.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.runtime.device, option="runtime.device")
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if resume is not None:
        state = load_checkpoint(resume, device)
        cfg = state.config
    else:
        state = build_state(cfg, device)
    prec = Precision.resolve(device, cfg.runtime.precision)
    channels_last = cfg.runtime.channels_last == "on" or (
        cfg.runtime.channels_last == "auto" and device.type == "cuda"
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for m in state.modules().values():
        m.to(memory_format=memory_format)  # type: ignore[call-overload]  # torch's stubs lack it
        m.train()

    data = data or build_training_data(cfg.data)
    for debris in out_dir.glob(".*.pt.*"):  # half-written by a killed run (semtune.atomic)
        debris.unlink(missing_ok=True)
    csv_log = _CsvLog(out_dir / "metrics.csv")
    sched = cfg.schedule
    last_metrics: dict[str, float] = dict(state.history[-1]) if state.history else {}
    # the estimate below is part of the training time; a resumed run carries on the clock of
    # the checkpoint it resumes from, so that time_budget_s counts the whole run, not each part
    trained_before = float(state.history[-1].get("train_seconds", 0.0)) if state.history else 0.0
    t0 = time.monotonic() - (trained_before if resume is not None else 0.0)
    if printer is not None:
        if note := gpu_fallback_note(device):
            printer(f"WARNING: {note}")
        for note in data.notes:
            printer(f"WARNING: {note}")
        if resume is None:
            printer(
                f"validation: {len(data.val)} crops from {len(data.files['val'])} held-out "
                f"images, degraded as {data.val_label}"
            )
    est = data.estimate
    physics = state.f if isinstance(state.f, PhysicsDegradation) else None
    if resume is None and physics is not None and cfg.f.init == "estimate":
        est = est or estimate_degradation(data.blurred, data.clean)
        # the blur only: between different scenes the contrast estimate was wrong by 10 %
        # on fog-free data (measured), and a false fog in F teaches G a false contrast boost
        f = physics
        sigma = est.sigma if est.sigma is not None else cfg.f.init_sigma
        f.reset(sigma, float(f.transmission().detach()), float(f.airlight().detach()))
        if printer is not None:
            for line in _estimate_lines(est, cfg.f.init_sigma):
                printer(line)
    if resume is None and physics is not None and cfg.f.noise:
        levels = noise_levels(data.blurred)
        physics.set_noise_levels(levels)
        if printer is not None:
            for line in _noise_lines(levels):
                printer(line)
    if resume is None:
        state.data_stats = _data_stats(data, est)
    t_log, step_log = t0, state.step
    losses: dict[str, float] = {}

    def evaluate_and_save() -> None:
        nonlocal last_metrics
        metrics, crops = _evaluate(
            state.restorer(), data.val, device=device, groups=data.val_groups or None
        )
        if data.val_groups:
            names = [Path(p).name for p in data.files.get("val", [])]
            text = per_image_scores(crops, data.val_groups, names, state.step)
            write_text_atomically(out_dir / VAL_SCORES_FILE, text)
        metrics["step"] = float(state.step)
        metrics["train_seconds"] = time.monotonic() - t0
        metrics.update({k: v for k, v in losses.items()})
        if isinstance(state.f, PhysicsDegradation):
            metrics["f_kernel_sigma"] = state.f.kernel_sigma()
        state.history.append(metrics)
        improved = not state.best or metrics[SCORE_KEY] > state.best.get(SCORE_KEY, float("-inf"))
        if improved:
            state.best = dict(metrics)
        ckpt = state.to_checkpoint()
        path = save_checkpoint(ckpt, out_dir / "last.pt")
        if improved:
            save_checkpoint(ckpt, out_dir / "best.pt")
            export_generator(ckpt, out_dir / "generator.pt", metrics=metrics)
        csv_log.write(metrics)
        last_metrics = metrics
        if reporter is not None:
            reporter.evaluate(
                state.step, metrics, path, _sample_grid(state.restorer(), data.val, device)
            )

    while state.step < sched.steps:
        real_a = sample_crops(
            data.blurred,
            sched.batch_size,
            cfg.data.crop_size,
            state.generator,
            augment=cfg.data.augment,
        )
        real_b = sample_crops(
            data.clean,
            sched.batch_size,
            cfg.data.crop_size,
            state.generator,
            augment=cfg.data.augment,
        )
        real_a = real_a.to(device, memory_format=memory_format, non_blocking=True)
        real_b = real_b.to(device, memory_format=memory_format, non_blocking=True)
        losses = train_step(state, real_a, real_b, prec)
        state.update_ema()
        out_of_time = sched.time_budget_s > 0 and time.monotonic() - t0 >= sched.time_budget_s
        if state.step % sched.log_every == 0:
            now = time.monotonic()
            rate = (state.step - step_log) / max(now - t_log, 1e-9)
            t_log, step_log = now, state.step
            if reporter is not None:
                reporter.log(state.step, losses)
            if printer is not None:
                printer(_progress_line(state.step, sched.steps, losses, last_metrics, rate))
        if state.step % sched.eval_every == 0 or state.step == sched.steps or out_of_time:
            evaluate_and_save()
            if out_of_time:
                if printer is not None:
                    printer(
                        f"time budget of {sched.time_budget_s:.0f} s reached at step {state.step}"
                    )
                break
    if not state.history or state.history[-1]["step"] != state.step:
        evaluate_and_save()

    return TrainResult(
        out_dir=out_dir,
        step=state.step,
        last=last_metrics,
        best=state.best,
        checkpoint=out_dir / "last.pt",
        generator=out_dir / "generator.pt",
    )
