"""Pictures of a trainer's validation samples: blurred | restored | clean, for people to look at.

``image_grid`` is the bare arrangement; ``labelled_grid`` is what a study logs to MLflow at every
evaluation: the panels named, each row with its SSIM and PSNR (blurred -> restored, against the
clean crop), and crops magnified (nearest neighbour, whole pixels) to at least 256 px so that
grain and halos are visible in the MLflow UI without zooming.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .metrics import psnr, ssim

__all__ = ["image_grid", "labelled_grid"]

PANELS = ("blurred", "restored", "clean")


def _check(samples: Tensor) -> None:
    if samples.ndim != 4 or samples.shape[1] != 1 or samples.shape[-1] % 3:
        raise ValueError(f"expected samples of shape (n, 1, H, 3W), got {tuple(samples.shape)}")


def image_grid(samples: Tensor, gap: int = 2) -> np.ndarray:
    """One picture of the trainer's samples: a row per sample, blurred | restored | clean.

    Args:
        samples: (n, 1, H, 3W) float in [0, 1], the three panels side by side.
        gap: white pixels between panels and rows.

    Returns:
        (n*H + (n-1)*gap, 3W + 2*gap) uint8.
    """
    _check(samples)
    x = samples.detach().float().cpu().clamp(0, 1)[:, 0].numpy()
    n, h, w3 = x.shape
    w = w3 // 3
    grid = np.full((n * h + (n - 1) * gap, w3 + 2 * gap), 255, dtype=np.uint8)
    for i in range(n):
        row = np.rint(x[i] * 255).astype(np.uint8)
        for j in range(3):
            grid[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = row[
                :, j * w : (j + 1) * w
            ]
    return grid


def _row_scores(x: Tensor) -> list[tuple[float, float, float, float]]:
    """Per row: SSIM blurred, SSIM restored, PSNR blurred, PSNR restored (against clean)."""
    w = x.shape[-1] // 3
    blurred, restored, clean = x[..., :w], x[..., w : 2 * w], x[..., 2 * w :]
    if min(blurred.shape[-2:]) < 11:  # too small for SSIM's window: PSNR only
        s_b = s_r = torch.full((x.shape[0],), math.nan)
    else:
        s_b = ssim(blurred, clean, reduction="none")
        s_r = ssim(restored, clean, reduction="none")
    p_b = psnr(blurred, clean, reduction="none")
    p_r = psnr(restored, clean, reduction="none")
    return [(float(s_b[i]), float(s_r[i]), float(p_b[i]), float(p_r[i])) for i in range(x.shape[0])]


def labelled_grid(
    samples: Tensor, *, min_side: int = 256, gap: int = 4, title: str = ""
) -> np.ndarray:
    """The samples as people read them: named panels, per-row scores, crops at least ``min_side``.

    Args:
        samples: (n, 1, H, 3W) float in [0, 1]: blurred | restored | clean side by side.
        min_side: crops smaller than this are magnified by the smallest whole factor that
            reaches it (nearest neighbour: every pixel stays a square block of one grey level).
        gap: white pixels between panels and rows.
        title: a line above everything (e.g. the trial and step).

    Returns:
        A uint8 grey image (H', W').
    """
    _check(samples)
    x = samples.detach().float().cpu().clamp(0, 1)
    n, _, h, w3 = x.shape
    w = w3 // 3
    zoom = max(1, math.ceil(min_side / max(1, min(h, w))))
    scores = _row_scores(x)
    font = ImageFont.load_default(size=15)
    line = 22
    ph, pw = h * zoom, w * zoom
    width = 3 * pw + 2 * gap
    head = line * (2 if title else 1)
    height = head + n * (line + ph) + (n - 1) * gap
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    top = 2
    if title:
        draw.text((4, top), title, fill=0, font=font)
        top += line
    zoom_note = f" ({zoom}x, nearest)" if zoom > 1 else ""
    for j, name in enumerate(PANELS):
        label = name + (zoom_note if j == 0 else "")
        draw.text((j * (pw + gap) + 4, top), label, fill=0, font=font)
    top = head
    for i in range(n):
        s_b, s_r, p_b, p_r = scores[i]
        ssim_text = "" if math.isnan(s_b) else f"SSIM {s_b:.3f} -> {s_r:.3f}    "
        draw.text(
            (4, top + 3),
            f"{ssim_text}PSNR {p_b:.2f} -> {p_r:.2f} dB  (blurred -> restored, vs clean)",
            fill=0,
            font=font,
        )
        top += line
        row = np.rint(x[i, 0].numpy() * 255).astype(np.uint8)
        for j in range(3):
            panel = Image.fromarray(np.ascontiguousarray(row[:, j * w : (j + 1) * w]))
            if zoom > 1:
                panel = panel.resize((pw, ph), Image.Resampling.NEAREST)
            sheet.paste(panel, (j * (pw + gap), top))
        top += ph + gap
    return np.asarray(sheet)
