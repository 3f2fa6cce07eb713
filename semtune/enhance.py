"""Restore real micrographs at full size with a trained generator (``python -m semtune.enhance``).

Large frames are processed in overlapping tiles blended with a smooth weight window, so memory
stays bounded and no seams appear; the microscope's data bar is pasted back unchanged (or left
cropped with ``--crop-bar``); the output has the input's bit depth and format.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from tqdm import tqdm

from semtune.io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image

__all__ = ["enhance_image", "load_model", "run_padded", "tile_weights", "main"]


def load_model(ref: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A generator from a checkpoint file (``generator.pt``, ``last.pt``, ``best.pt``) or an
    MLflow model URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/PATH``)."""
    text = str(ref)
    if text.startswith(("models:/", "runs:/")):
        from semtune.tracking import load_registered_generator

        return load_registered_generator(text, device)
    from semtune.train.state import load_generator

    g, _ = load_generator(text, device)
    return g


def _multiple(g: nn.Module) -> int:
    return int(getattr(g, "size_multiple", 1))


def _min_size(g: nn.Module) -> int:
    return int(getattr(g, "min_size", 1))


@torch.no_grad()
def run_padded(g: nn.Module, x: Tensor) -> Tensor:
    """``g(x)`` for any H, W: reflect-pad up to the generator's size multiple, crop back."""
    h, w = x.shape[-2:]
    m, lo = _multiple(g), _min_size(g)
    th, tw = max(lo, -(-h // m) * m), max(lo, -(-w // m) * m)
    if (th, tw) == (h, w):
        return g(x).float()
    # reflect needs pad < size; fall back to replicate for tiny inputs
    mode = "reflect" if th - h < h and tw - w < w else "replicate"
    xp = nnf.pad(x, (0, tw - w, 0, th - h), mode=mode)
    return g(xp).float()[..., :h, :w]


def tile_weights(size: int, overlap: int, device: torch.device | None = None) -> Tensor:
    """1-D blending ramp: rises over ``overlap`` pixels at both ends, never exactly zero."""
    w = torch.ones(size, device=device)
    if overlap > 0:
        ramp = (torch.arange(overlap, device=device, dtype=torch.float32) + 0.5) / overlap
        w[:overlap] = ramp
        w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


@torch.no_grad()
def enhance_image(
    g: nn.Module, x: Tensor, *, tile: int = 512, overlap: int = 64, batch_size: int = 4
) -> Tensor:
    """Restore ``x`` (1, 1, H, W) or (1, H, W) with overlapping tiles blended by weight.

    Each output pixel is the weighted mean of the tiles covering it (weights from
    ``tile_weights``), so the result is seamless; ``tile=0`` runs the whole image at once.

    Returns:
        (1, 1, H, W) float32 in [0, 1] on the input's device.
    """
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[:2] != (1, 1):
        raise ValueError(f"expected (1, 1, H, W) or (1, H, W), got {tuple(x.shape)}")
    if overlap < 0 or (tile and overlap * 2 >= tile):
        raise ValueError(f"overlap must be in [0, tile/2), got overlap={overlap}, tile={tile}")
    device = next(g.parameters()).device
    x = x.to(device)
    h, w = x.shape[-2:]
    if tile == 0 or (h <= tile and w <= tile):
        return run_padded(g, x).clamp(0, 1)
    m = _multiple(g)
    tile = max(m, tile // m * m)  # whole tiles need no padding
    step = tile - overlap
    ys, xs = _starts(h, tile, step), _starts(w, tile, step)
    th, tw = min(tile, h), min(tile, w)
    weight = (
        tile_weights(th, overlap if h > tile else 0, device)[:, None]
        * tile_weights(tw, overlap if w > tile else 0, device)[None, :]
    )
    out = torch.zeros(1, 1, h, w, device=device)
    norm = torch.zeros(1, 1, h, w, device=device)
    coords = [(y, x0) for y in ys for x0 in xs]
    for i in range(0, len(coords), batch_size):
        chunk = coords[i : i + batch_size]
        tiles = torch.cat([x[..., y : y + th, x0 : x0 + tw] for y, x0 in chunk])
        restored = run_padded(g, tiles)
        for (y, x0), r in zip(chunk, restored, strict=True):
            out[..., y : y + th, x0 : x0 + tw] += r * weight
            norm[..., y : y + th, x0 : x0 + tw] += weight
    return (out / norm).clamp(0, 1)


def _inputs(items: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ImageReadError(f"{item}: no images ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise ImageReadError(f"{item}: no such file or folder")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m semtune.enhance",
        description="Restore SEM micrographs at full size with a trained generator.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    p.add_argument(
        "--model",
        required=True,
        help="generator: a checkpoint file (generator.pt / best.pt) or models:/NAME@ALIAS, "
        "models:/NAME/VERSION, runs:/RUN_ID/PATH",
    )
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--tile", type=int, default=512, help="tile side in pixels (0 = whole image)")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (blended)")
    p.add_argument(
        "--crop-bar",
        action="store_true",
        help="drop the microscope's data bar from the output (default: keep it, unchanged)",
    )
    p.add_argument(
        "--no-bar-detect",
        action="store_true",
        help="treat the whole frame as sample content (no data-bar detection)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    args = p.parse_args(argv)

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    try:
        files = _inputs(args.inputs)
        g = load_model(args.model, device)
    except (ImageReadError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(files, desc="enhance", unit="image", disable=len(files) < 2, file=sys.stderr):
        try:
            img = read_image(path, crop_bar=not args.no_bar_detect)
        except ImageReadError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        restored = enhance_image(g, img.data, tile=args.tile, overlap=args.overlap)[0].cpu()
        if img.bar is not None and img.bar_rows and not args.crop_bar:
            restored = torch.cat([restored, img.bar.to(restored.dtype)], dim=-2)
        suffix = path.suffix
        if img.bit_depth == 16 and suffix.lower() in (".jpg", ".jpeg"):
            suffix = ".tif"
        target = args.out / f"{path.stem}{suffix}"
        write_image(target, restored, bit_depth=img.bit_depth)
        if len(files) == 1:
            print(f"wrote {target}")
    print(f"enhanced {len(files) - failed} of {len(files)} images into {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
