"""Read and write SEM images as float tensors in [0, 1], and crop the microscope's data bar.

Reading accepts PNG, JPEG and TIFF (TIFF through tifffile, the rest through Pillow), 8- or 16-bit,
grayscale or grayscale stored as RGB. Everything becomes a ``(1, H, W)`` float32 tensor in [0, 1]:
8-bit data is divided by 255 and 16-bit data by 65535. Other sample types follow one rule, always
with ``bit_depth = 16`` for writing back:

- floating point: kept as is when every value lies in [0, 1], otherwise min-max normalised to
  [0, 1] with a :class:`ColourConversionWarning` (NaN or inf is an error);
- any other integer type (signed, 32- or 64-bit): divided by 65535 when every value lies in
  [0, 65535] (16-bit data in a wider container), otherwise min-max normalised with a warning.

Colour is reduced to luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, what Pillow's ``"L"`` uses).
Grayscale stored as RGB passes silently; true colour and dropped alpha channels raise a
:class:`ColourConversionWarning`. "True colour" is judged outside the data bar only, because the
NFFA bars carry a coloured logo on otherwise gray images.

The data bar: :func:`read_image` crops the bottom rows that ``semtune.databar.detect_data_bar``
finds (the microscope's information band, and the strip under it) unless ``crop_bar=False``, and
keeps them in :attr:`SEMImage.bar` so that they can be pasted back.

Size: longer than ~400 lines because of reading (six sample-type rules, pixel limits before
decoding) and writing with the microscope's metadata; data-bar detection is in semtune.databar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from semtune.databar import detect_data_bar
from semtune.metadata import ImageMetadata, save

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderImages",
    "ColourConversionWarning",
    "ImageReadError",
    "SEMImage",
    "detect_data_bar",
    "read_folder",
    "read_image",
    "write_image",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF_EXTENSIONS = (".tif", ".tiff")

# Images above this many pixels are refused before decoding (a 16384 x 16384 frame is the
# limit: enhance peaked at 3.0 GB on one, 10 bytes per pixel above the loaded model). Raise it
# with the environment variable SEMTUNE_MAX_PIXELS, ``read_image(max_pixels=...)`` or
# ``semtune.enhance --max-pixels``.
DEFAULT_MAX_PIXELS = 16384 * 16384
MAX_PIXELS_ENV = "SEMTUNE_MAX_PIXELS"


def pixel_limit() -> int:
    """The pixel limit: ``$SEMTUNE_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {raw!r}")
    return value


_JPEG_EXTENSIONS = (".jpg", ".jpeg")

# Rec. 601 luma, the weights Pillow's "L" conversion uses, so a converted image matches what
# most viewers show as its gray version.
_LUMA = np.array([0.299, 0.587, 0.114])

# An image counts as gray stored in colour channels when at most this fraction of its pixels
# (outside the data bar) has a channel spread above _GRAY_SPREAD. On the 100 NFFA images, gray
# content never spreads more than 10/255 (JPEG chroma rounding); the one image with a real colour
# annotation (a green frame) has 1.6% of pixels above 8/255.
_GRAY_SPREAD = 0.05
_COLOUR_FRACTION = 1e-3


class ImageReadError(ValueError):
    """An image file or folder cannot be used; the message names the path and the reason.

    ``ImageReadError(path, reason)`` formats ``"{path}: {reason}"`` and keeps both as
    attributes; ``ImageReadError(message)`` (a message that already names the path) is accepted
    too, with ``path = None`` and ``reason = message``.

    Args:
        path: The offending file or folder (or the whole message when ``reason`` is None).
        reason: What went wrong, in words a user can act on.
    """

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        self.path: Path | None = None if reason is None else Path(path)
        self.reason: str = str(path) if reason is None else reason
        super().__init__(self.reason if reason is None else f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str | Path, str | None]]:
        # Default pickling re-calls __init__ with the formatted message only, which would lose
        # the fields; Ray ships exceptions between processes.
        if self.path is None:
            return (type(self), (self.reason, None))
        return (type(self), (self.path, self.reason))


class ColourConversionWarning(UserWarning):
    """An image was converted lossily while reading: colour to gray, alpha dropped, rescaled."""


@dataclass(frozen=True, eq=False)
class SEMImage:
    """One SEM image as read from disk.

    Attributes:
        data: ``(1, H, W)`` float32 in [0, 1], data bar already cropped if requested.
        bit_depth: 8 or 16, the depth to write results back at.
        path: The source file, or None for an image made in memory.
        bar_rows: Rows removed at the bottom (0 if no bar or cropping disabled).
        bar: The removed rows, ``(1, bar_rows, W)`` float32, or None when ``bar_rows == 0``;
            ``torch.cat([data, bar], dim=1)`` restores the full frame.
    """

    data: torch.Tensor
    bit_depth: int
    path: Path | None = None
    bar_rows: int = 0
    bar: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor):
            raise TypeError(f"SEMImage.data must be a torch.Tensor, got {type(self.data)}")
        if self.data.ndim != 3 or self.data.shape[0] != 1:
            raise ValueError(
                f"SEMImage.data must have shape (1, H, W), got {tuple(self.data.shape)}"
            )
        if self.bit_depth not in (8, 16):
            raise ValueError(f"SEMImage.bit_depth must be 8 or 16, got {self.bit_depth}")
        if self.bar_rows < 0:
            raise ValueError(f"SEMImage.bar_rows must be >= 0, got {self.bar_rows}")
        expected = (1, self.bar_rows, self.data.shape[2])
        if self.bar_rows == 0 and self.bar is not None:
            raise ValueError("SEMImage.bar must be None when bar_rows == 0")
        if self.bar_rows > 0 and (self.bar is None or tuple(self.bar.shape) != expected):
            got = None if self.bar is None else tuple(self.bar.shape)
            raise ValueError(f"SEMImage.bar must have shape {expected}, got {got}")


@dataclass(frozen=True)
class FolderImages:
    """The readable images of a folder, and the files that were skipped with the reason."""

    images: list[SEMImage]
    skipped: list[tuple[Path, str]]


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _warn(message: str, frames: int) -> None:
    """Warn at the caller of read_image; ``frames``: calls from there down to this one."""
    warnings.warn(message, ColourConversionWarning, stacklevel=frames + 1)


def _png_header_depth(path: Path) -> int | None:
    """Bit depth recorded in a PNG's IHDR chunk, or None if the file is not a PNG."""
    with path.open("rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _check_pixels(path: Path, height: int, width: int, limit: int) -> None:
    if height * width > limit:
        raise ImageReadError(
            path,
            f"image is {height}x{width} (HxW), {height * width / 1e6:.0f} M pixels, above the "
            f"limit of {limit / 1e6:.0f} M (set {MAX_PIXELS_ENV} or --max-pixels to allow it; "
            "restoring takes about 10 bytes per pixel)",
        )


def _decode_tiff(path: Path, limit: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        pages = len(tif.pages)
        if pages == 0:
            raise ImageReadError(path, "TIFF file has no image pages")
        page = tif.pages.first
        shape = page.shape
        axes = page.axes
        height = shape[axes.index("Y")] if "Y" in axes else shape[0]
        width = shape[axes.index("X")] if "X" in axes else shape[-1]
        _check_pixels(path, height, width, limit)
        array = page.asarray()
        axes = page.axes
    if pages > 1:
        _warn(f"{path}: TIFF has {pages} pages; only the first was read", frames=4)
    array = np.asarray(array)
    if "S" in axes and array.ndim == len(axes):
        array = np.moveaxis(array, axes.index("S"), -1)
    array = np.squeeze(array) if array.ndim > 3 else array
    return array


@contextlib.contextmanager
def _pillow_limit() -> Iterator[None]:
    """Pillow's own decompression-bomb check off while opening: ours reads the same header
    right after ``Image.open`` (which decodes nothing) and names the limit and how to raise it.
    Pillow's default (89 M pixels) would warn below our limit, and raise at twice that."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _decode_pil(path: Path, limit: int) -> tuple[np.ndarray, bool]:
    """Pixel array and whether Pillow reduced a 16-bit colour PNG to 8 bits."""
    with _pillow_limit(), Image.open(path) as opened:
        _check_pixels(path, opened.height, opened.width, limit)
        opened.load()
        im: Image.Image = opened
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode == "1":
            im = im.convert("L")
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif im.mode == "PA":
            im = im.convert("RGBA")
        array = np.asarray(im)
    reduced = False
    if path.suffix.lower() == ".png" and array.dtype == np.uint8 and array.ndim == 3:
        reduced = _png_header_depth(path) == 16
    return array, reduced


def _decode(path: Path, limit: int) -> tuple[np.ndarray, bool]:
    """Decode a file to its stored sample array; every decoder failure becomes ImageReadError."""
    try:
        if path.suffix.lower() in _TIFF_EXTENSIONS:
            return _decode_tiff(path, limit), False
        return _decode_pil(path, limit)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused by Pillow as a decompression bomb: {exc}") from exc
    except MemoryError as exc:
        raise ImageReadError(path, "not enough memory to decode it") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as exc:
        # Pillow signals truncated or malformed files with OSError, SyntaxError (broken PNG
        # chunks), EOFError or struct errors; tifffile with TiffFileError (a ValueError).
        kind = "not a readable image (corrupt, truncated or not an image file)"
        raise ImageReadError(path, f"{kind}: {type(exc).__name__}: {exc}") from exc


def _scale(array: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    """Samples to float32 in [0, 1] and the bit depth to write back at (see the module doc).
    Float32 holds 16-bit samples exactly (24-bit mantissa) at half the memory of float64."""
    if array.dtype == np.bool_:
        return array.astype(np.float32), 8
    if array.dtype == np.uint8:
        values = array.astype(np.float32)
        values /= 255.0
        return values, 8
    if array.dtype == np.uint16 or array.dtype == np.dtype(">u2"):
        values = array.astype(np.float32)
        values /= 65535.0
        return values, 16
    # float32 where it is exact (small integers, float16/32), float64 for wider types
    exact32 = array.itemsize <= 2 or (array.dtype.kind == "f" and array.itemsize <= 4)
    values = array.astype(np.float32 if exact32 else np.float64)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(values).all():
            raise ImageReadError(path, "floating-point image contains NaN or infinite values")
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            return values, 16
    elif np.issubdtype(array.dtype, np.integer):
        if values.size and values.min() >= 0 and values.max() <= 65535:
            # 16-bit data in a wider container (32-bit TIFF, Pillow mode "I").
            return values / 65535.0, 16
    else:
        raise ImageReadError(path, f"unsupported sample type {array.dtype}")
    low, high = float(values.min()), float(values.max())
    _warn(f"{path}: {array.dtype} samples in [{low:g}, {high:g}] min-max normalised to [0, 1]", 3)
    if high > low:
        values = (values - low) / (high - low)
    else:
        values = np.zeros_like(values)
    return values, 16


def _channels(array: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Split into luma (H, W), the colour channels if any (H, W, 3), and whether alpha existed."""
    if array.ndim == 2:
        return array, None, False
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(path, f"expected a 2-D image (gray, RGB or RGBA), got {array.shape}")
    channels = array.shape[2]
    if channels == 1:
        return array[..., 0], None, False
    if channels == 2:
        return array[..., 0], None, True
    rgb = array[..., :3]
    return rgb @ _LUMA, rgb, channels == 4


def _is_colour(rgb: np.ndarray, rows: int) -> bool:
    red, green, blue = rgb[:rows, :, 0], rgb[:rows, :, 1], rgb[:rows, :, 2]
    # Elementwise max/min of three planes: a reduction over the last axis is ~20x slower here.
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    return spread.size > 0 and float((spread > _GRAY_SPREAD).mean()) > _COLOUR_FRACTION


def _check_min_size(min_size: int | None) -> None:
    if min_size is not None and (
        isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1
    ):
        raise ValueError(f"min_size must be a positive int or None, got {min_size!r}")


def read_image(
    path: str | Path,
    *,
    crop_bar: bool = True,
    min_size: int | None = None,
    max_pixels: int | None = None,
) -> SEMImage:
    """Read one SEM image as a float tensor in [0, 1], cropping the data bar.

    Args:
        path: A ``.png``, ``.jpg``/``.jpeg`` or ``.tif``/``.tiff`` file (case-insensitive).
        crop_bar: Detect the information bar (:func:`detect_data_bar`) and remove it.
        min_size: If given, the (cropped) image must be at least this many pixels in H and W.
        max_pixels: Refuse images with more pixels, checked from the file's header before
            decoding; None = :func:`pixel_limit` (``$SEMTUNE_MAX_PIXELS`` or 16384 x 16384).

    Returns:
        The image; ``data`` is ``(1, H, W)`` float32 in [0, 1].

    Raises:
        ImageReadError: Missing, unreadable, corrupt or non-image file, unsupported extension,
            an image smaller than ``min_size`` or larger than ``max_pixels``, a decompression
            bomb, not enough memory to decode it, or a constant image (e.g. all black).
    """
    _check_min_size(min_size)
    file = Path(path)
    if not file.exists():
        raise ImageReadError(file, "file does not exist")
    if file.is_dir():
        raise ImageReadError(file, "is a folder, not an image file (use read_folder)")
    if file.suffix.lower() not in IMAGE_EXTENSIONS:
        listed = ", ".join(IMAGE_EXTENSIONS)
        raise ImageReadError(file, f"unsupported extension {file.suffix!r}; expected {listed}")

    limit = pixel_limit() if max_pixels is None else max_pixels
    array, reduced_png = _decode(file, limit)
    if array.size == 0:
        raise ImageReadError(file, f"image is empty (shape {array.shape})")
    values, bit_depth = _scale(array, file)
    gray, rgb, had_alpha = _channels(values, file)
    if gray.ndim != 2:
        raise ImageReadError(file, f"expected a 2-D image, got shape {array.shape}")

    bar_rows = detect_data_bar(gray)
    if had_alpha:
        _warn(f"{file}: alpha channel discarded", frames=2)
    # The colour test skips the bar: the NFFA bars carry a coloured logo on gray images.
    if rgb is not None and _is_colour(rgb, gray.shape[0] - bar_rows):
        _warn(f"{file}: colour image converted to gray (luma 0.299 R + 0.587 G + 0.114 B)", 2)
    if reduced_png:
        _warn(f"{file}: 16-bit colour PNG decoded at 8 bits by Pillow; gray or TIFF keeps 16", 2)
        bit_depth = 16
    if not crop_bar:
        bar_rows = 0

    kept = gray[: gray.shape[0] - bar_rows]
    if float(kept.max()) == float(kept.min()):
        raise ImageReadError(file, f"image is constant (every pixel is {float(kept.min()):.4g})")
    if min_size is not None and min(kept.shape) < min_size:
        what = "after cropping the data bar " if bar_rows else ""
        raise ImageReadError(
            file, f"image is {kept.shape[0]}x{kept.shape[1]} (HxW) {what}, smaller than {min_size}"
        )
    del array, values  # what is not ``gray`` (colour planes, the decoded samples) can go
    data = torch.from_numpy(np.ascontiguousarray(kept, dtype=np.float32)).unsqueeze(0)
    bar = None
    if bar_rows:
        removed = np.ascontiguousarray(gray[gray.shape[0] - bar_rows :], dtype=np.float32)
        bar = torch.from_numpy(removed).unsqueeze(0)
    return SEMImage(data=data, bit_depth=bit_depth, path=file, bar_rows=bar_rows, bar=bar)


def read_folder(
    folder: str | Path,
    *,
    crop_bar: bool = True,
    min_size: int | None = None,
    skip_bad: bool = True,
    recursive: bool = False,
) -> FolderImages:
    """Read every image file of a folder, in name order.

    Args:
        folder: The folder; files are chosen by extension (:data:`IMAGE_EXTENSIONS`).
        crop_bar: Passed to :func:`read_image`.
        min_size: Passed to :func:`read_image`.
        skip_bad: Skip files that cannot be read, log one warning per file and list them in
            ``skipped``; if False the first bad file raises.
        recursive: Include sub-folders (files sorted by their path relative to ``folder``).

    Returns:
        The images read and the ``(path, reason)`` of each skipped file.

    Raises:
        ImageReadError: Not a folder, no image files, every file bad, or (``skip_bad=False``)
            the first bad file.
    """
    _check_min_size(min_size)
    root = Path(folder)
    if not root.is_dir():
        reason = "is not a folder" if root.exists() else "folder does not exist"
        raise ImageReadError(root, reason)
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(
        (p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        where = " (searched recursively)" if recursive else ""
        raise ImageReadError(root, f"no image files ({', '.join(IMAGE_EXTENSIONS)}){where}")

    images: list[SEMImage] = []
    skipped: list[tuple[Path, str]] = []
    for file in files:
        try:
            images.append(read_image(file, crop_bar=crop_bar, min_size=min_size))
        except ImageReadError as exc:
            if not skip_bad:
                raise
            skipped.append((file, exc.reason))
            logger.warning("skipped %s: %s", file, exc.reason)
    if not images:
        listed = "; ".join(f"{p.name}: {reason}" for p, reason in skipped)
        raise ImageReadError(root, f"none of the {len(files)} image files could be read ({listed})")
    return FolderImages(images=images, skipped=skipped)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_image(
    path: str | Path,
    data: torch.Tensor,
    *,
    bit_depth: int = 8,
    metadata: ImageMetadata | None = None,
    provenance: str = "",
    quality: int = 95,
) -> None:
    """Write a gray image, format chosen by the file extension.

    Args:
        path: Target file, ``.png``, ``.jpg``/``.jpeg`` (8-bit only) or ``.tif``/``.tiff``.
        data: ``(1, H, W)`` or ``(H, W)`` float tensor; values are clamped to [0, 1].
        bit_depth: 8 or 16 (16 only for PNG and TIFF).
        metadata: the source image's metadata to carry over (``semtune.metadata``).
        provenance: a line added to the image's description.
        quality: JPEG quality (1-95).

    Missing parent folders are created.
    """
    file = Path(path)
    ext = file.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        listed = ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(f"Unsupported extension {file.suffix!r} for {file}; expected {listed}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and ext in _JPEG_EXTENSIONS:
        raise ValueError(f"JPEG stores 8 bits only; use .png or .tif for 16-bit output ({file})")
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a torch.Tensor, got {type(data)}")
    if not data.is_floating_point():
        raise TypeError(f"data must be a float tensor in [0, 1], got dtype {data.dtype}")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"data must have shape (1, H, W) or (H, W), got {tuple(data.shape)}")
    values = data.detach().to("cpu", torch.float32).numpy()  # may share data's memory
    file.parent.mkdir(parents=True, exist_ok=True)

    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    # rounded in float64 as before, in blocks of rows: no full-size float64 copy of a large image
    samples = np.empty(values.shape, dtype)
    rows = max(1, (1 << 20) // values.shape[1])
    for r in range(0, values.shape[0], rows):
        block = values[r : r + rows].astype(np.float64)
        if not np.isfinite(block).all():
            raise ValueError(f"data contains NaN or infinite values; not writing {file}")
        np.clip(block, 0.0, 1.0, out=block)
        block *= top
        samples[r : r + rows] = np.round(block, out=block)
    # A uint16 array becomes Pillow mode "I;16", which PNG stores as 16-bit gray.
    save(file, samples, metadata, provenance=provenance, quality=quality)
