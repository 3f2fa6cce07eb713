"""Read and write SEM micrographs; detect and crop the microscope's information bar.

Images become float32 tensors (1, H, W) in [0, 1]: 8-bit sources are divided by 255, 16-bit by
65535. Grayscale stored as RGB (equal channels) is read silently; true colour and alpha are
converted to luminance with a ``ColourConversionWarning``. TIFF goes through tifffile (8/16-bit,
float), everything else through Pillow.

The information bar: ZEISS instruments (the NFFA set) write a white band with black text across
the full width near the bottom (60 rows of 768 there, with a few rows of image below it);
FEI/Thermo instruments write a black band with white text at the very bottom. ``read_image``
finds such a band and crops the image above it; ``crop_bar=False`` turns that off.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ColourConversionWarning",
    "FolderImages",
    "ImageReadError",
    "SEMImage",
    "detect_data_bar",
    "read_folder",
    "read_image",
    "write_image",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")

# A bar row is mostly saturated (its text covers well under half of it); measured on the NFFA
# sample: at least 0.79 of a white-bar row is > 0.85, against < 0.05 in image rows next to it.
_BAR_FRACTION = 0.6
_TEXT_FRACTION = 0.35
_WHITE, _BLACK = 0.85, 0.08
_MIN_BAR = 0.025  # of the height: ~19 rows of 768
_MAX_BAR = 0.3
_SEARCH = 0.4  # only the bottom 40% of the frame can hold a bar


class ImageReadError(ValueError):
    """An image or folder cannot be used; the message names the file and the reason."""


class ColourConversionWarning(UserWarning):
    """A colour or alpha image was converted to grayscale."""


@dataclass(frozen=True)
class SEMImage:
    """One micrograph.

    Attributes:
        data: (1, H, W) float32 in [0, 1], the bar already cropped when it was detected.
        bit_depth: 8 or 16, the source depth (what ``write_image`` should use to write back).
        path: where it was read from.
        bar_rows: rows removed at the bottom (the bar and anything below it); 0 if none.
        bar: the removed rows, (1, bar_rows, W), so that ``enhance`` can paste them back.
    """

    data: torch.Tensor
    bit_depth: int
    path: Path | None
    bar_rows: int = 0
    bar: torch.Tensor | None = None


@dataclass(frozen=True)
class FolderImages:
    """The readable images of a folder and the files that were skipped, with the reason."""

    images: list[SEMImage]
    skipped: list[tuple[Path, str]]


def _runs(mask: np.ndarray, max_gap: int = 2) -> list[tuple[int, int]]:
    """Runs [start, end) of True in ``mask``, bridging gaps of up to ``max_gap`` rows."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    runs = []
    start = prev = int(idx[0])
    for i in idx[1:]:
        i = int(i)
        if i - prev > max_gap + 1:
            runs.append((start, prev + 1))
            start = i
        prev = i
    runs.append((start, prev + 1))
    return runs


def detect_data_bar(image: np.ndarray) -> int:
    """Rows to cut at the bottom of ``image`` to remove the microscope's information bar.

    A bar is a band of rows, each mostly saturated (white with dark text, or black with light
    text), at least 2.5% and at most 30% of the height, within the bottom 40%, whose top edge
    is a sharp change from the image above it. A black band must touch the bottom (FEI/Thermo
    layout) so that a dark substrate is not mistaken for a bar; a white one may have image rows
    below it (the ZEISS/NFFA layout), which are cut too.

    Args:
        image: (H, W) float array in [0, 1].

    Returns:
        The number of bottom rows to remove (``H - top of the bar``), 0 when there is no bar.
    """
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {image.shape}")
    h = image.shape[0]
    lo = int(h * (1 - _SEARCH))
    region = image[lo:]
    best = 0
    for polarity, frac in (
        ("white", (region > _WHITE).mean(axis=1)),
        ("black", (region < _BLACK).mean(axis=1)),
    ):
        # Hysteresis: rows of dense text (weakly saturated) may sit inside a bar, as long as
        # most of the band is strongly saturated.
        for start, end in _runs(frac >= _TEXT_FRACTION):
            strong = np.flatnonzero(frac[start:end] >= _BAR_FRACTION)
            if strong.size < 0.6 * (end - start):
                continue
            start = start + int(strong[0])
            length = end - start
            if not _MIN_BAR * h <= length <= _MAX_BAR * h:
                continue
            top = lo + start
            if polarity == "black" and lo + end < h - 2:
                continue
            if top < 2:
                continue
            # The rows just above the band must look like image, not more bar: a real bar has
            # a sharp top edge.
            above = image[max(0, top - 6) : top - 1]
            above_frac = (above > _WHITE).mean() if polarity == "white" else (above < _BLACK).mean()
            if above_frac > 0.5:
                continue
            best = max(best, h - top)
    return best


def _to_gray(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) from (H, W), (H, W, C) or (C, H, W) arrays; warns when colour is dropped."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported image shape {arr.shape}")
    c = arr.shape[-1]
    if c == 1:
        return arr[..., 0]
    if c == 2:  # gray + alpha
        warnings.warn(f"{path}: alpha channel dropped", ColourConversionWarning, stacklevel=3)
        return arr[..., 0]
    rgb = arr[..., :3]
    if c == 4:
        warnings.warn(f"{path}: alpha channel dropped", ColourConversionWarning, stacklevel=3)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return rgb[..., 0]
    # JPEG chroma noise makes stored-gray RGB differ by a level or two: still gray.
    spread = np.abs(rgb.astype(np.float32) - rgb.astype(np.float32).mean(-1, keepdims=True))
    scale = 255.0 if rgb.dtype == np.uint8 else 65535.0 if rgb.dtype == np.uint16 else 1.0
    if spread.mean() / scale > 0.01:
        warnings.warn(
            f"{path}: true-colour image converted to grayscale (ITU-R 601 luma)",
            ColourConversionWarning,
            stacklevel=3,
        )
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return luma.astype(np.float32) if rgb.dtype.kind == "f" else np.rint(luma).astype(rgb.dtype)


def _normalise(arr: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, 8
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0, 16
    if arr.dtype == bool:
        return arr.astype(np.float32), 8
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.float32) / 65535.0, 16
        warnings.warn(
            f"{path}: {arr.dtype} values min-max normalised to [0, 1] (range {lo}..{hi}, "
            f"type range {info.min}..{info.max})",
            ColourConversionWarning,
            stacklevel=3,
        )
        return ((arr - lo) / max(hi - lo, 1)).astype(np.float32), 16
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ImageReadError(f"{path}: image contains NaN or Inf values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 1:
            return arr.astype(np.float32), 16
        warnings.warn(
            f"{path}: float values outside [0, 1] (range {lo:g}..{hi:g}) min-max normalised",
            ColourConversionWarning,
            stacklevel=3,
        )
        return ((arr - lo) / max(hi - lo, 1e-12)).astype(np.float32), 16
    raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype}")


def _load_array(path: Path) -> np.ndarray:
    if path.suffix.lower() in _TIFF:
        try:
            arr = tifffile.imread(path)
        except Exception as exc:  # tifffile raises many types for broken files
            raise ImageReadError(f"{path}: not a readable TIFF ({exc})") from exc
        while arr.ndim > 3 or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4) and arr.shape[0] not in (3, 4)):
            arr = arr[0]  # first page / plane of a stack
        return np.asarray(arr)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode == "I":
                return np.asarray(im, dtype=np.int32)
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("CMYK", "YCbCr", "HSV", "LAB"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def read_image(path: str | Path, *, crop_bar: bool = True, min_size: int | None = None) -> SEMImage:
    """Read one micrograph as a (1, H, W) float32 tensor in [0, 1].

    Args:
        path: a PNG, JPEG or TIFF file.
        crop_bar: detect the information bar and crop it (``SEMImage.bar`` keeps it).
        min_size: raise if the (cropped) image is smaller than this in height or width.

    Raises:
        ImageReadError: missing, unreadable or non-image file, a constant image, or an image
            smaller than ``min_size``; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    arr, depth = _normalise(_to_gray(_load_array(path), path), path)
    if arr.size == 0:
        raise ImageReadError(f"{path}: empty image")
    if float(arr.max()) - float(arr.min()) < 1e-6:
        raise ImageReadError(f"{path}: constant image (every pixel is {float(arr.flat[0]):.3g})")
    bar_rows = detect_data_bar(arr) if crop_bar else 0
    bar = None
    if bar_rows:
        bar = torch.from_numpy(np.ascontiguousarray(arr[-bar_rows:]))[None]
        arr = arr[:-bar_rows]
    if min_size is not None and min(arr.shape) < min_size:
        raise ImageReadError(
            f"{path}: image is {arr.shape[0]}x{arr.shape[1]}"
            f"{' after cropping its data bar' if bar_rows else ''}, smaller than the crop size "
            f"{min_size}"
        )
    data = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    return SEMImage(data=data, bit_depth=depth, path=path, bar_rows=bar_rows, bar=bar)


def write_image(path: str | Path, data: torch.Tensor, *, bit_depth: int = 8) -> None:
    """Write (1, H, W) or (H, W) values in [0, 1] (clamped) at ``bit_depth`` (8 or 16).

    The format follows the extension; 16-bit needs PNG or TIFF.
    """
    path = Path(path)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    arr = data.detach().cpu().float()
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected (1, H, W) or (H, W), got {tuple(data.shape)}")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unknown image extension (use one of {', '.join(IMAGE_EXTENSIONS)})")
    if bit_depth == 16 and ext in (".jpg", ".jpeg"):
        raise ValueError(f"{path}: JPEG cannot hold 16-bit data; use .png or .tif")
    scale = 255.0 if bit_depth == 8 else 65535.0
    out = np.rint(arr.clamp(0, 1).numpy() * scale).astype(np.uint8 if bit_depth == 8 else np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext in _TIFF:
        tifffile.imwrite(path, out)
    elif ext in (".jpg", ".jpeg"):
        Image.fromarray(out).save(path, quality=95)
    else:
        Image.fromarray(out).save(path)


def read_folder(
    folder: str | Path,
    *,
    crop_bar: bool = True,
    min_size: int | None = None,
    skip_bad: bool = True,
    recursive: bool = False,
) -> FolderImages:
    """Read every image of a folder (sorted by name).

    Args:
        folder: the folder.
        crop_bar, min_size: as for ``read_image``.
        skip_bad: skip unreadable/unsuitable files (each logged as a warning and returned in
            ``skipped``); False raises on the first one.
        recursive: include sub-folders.

    Raises:
        ImageReadError: not a folder, no image files, or no usable image at all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ImageReadError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    images: list[SEMImage] = []
    skipped: list[tuple[Path, str]] = []
    for f in files:
        try:
            images.append(read_image(f, crop_bar=crop_bar, min_size=min_size))
        except ImageReadError as exc:
            if not skip_bad:
                raise
            reason = str(exc).removeprefix(f"{f}: ")
            log.warning("skipped %s: %s", f, reason)
            skipped.append((f, reason))
    if not images:
        listing = "; ".join(f"{p.name}: {r}" for p, r in skipped)
        raise ImageReadError(f"{folder}: no usable image ({listing})")
    return FolderImages(images=images, skipped=skipped)
