"""Carry a micrograph's metadata from the input file to the restored one.

A restored SEM image is only useful with its pixel size, beam settings and instrument record.
``read_metadata`` collects what the input file carries; ``save`` writes pixels with it:

- TIFF: every tag that describes the acquisition rather than the pixel layout is copied with
  its raw bytes, the instrument records among them (FEI/Thermo ``FEI_SFEG`` 34680 and
  ``FEI_HELIOS`` 34682, Zeiss ``CZ_SEM`` 34118, Olympus/TESCAN and others likewise, by code);
  resolution and its unit are kept; the provenance line is appended to ``ImageDescription``
  and ``Software`` names semtune.
- PNG: text chunks and the physical pixel size (dpi) are kept, provenance is added as text.
- JPEG: its EXIF and ICC profile go into the output (PNG by default: lossless, see
  ``semtune.enhance``; JPEG when the user asks, at the quality they give).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, PngImagePlugin

__all__ = ["ImageMetadata", "read_metadata", "save"]

# Tags that describe how the pixels are laid out: tifffile writes its own.
_LAYOUT_TAGS = frozenset(
    {
        254, 255, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 280, 281, 284,
        317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 530, 531, 532,
        # handled on their own below: description, resolution, software, date
        270, 282, 283, 296, 305,
    }
)  # fmt: skip


@dataclass(frozen=True)
class ImageMetadata:
    """What an input image file says about itself, kept for the output.

    Attributes:
        format: ``"tiff"``, ``"png"`` or ``"jpeg"``.
        description: TIFF ImageDescription or PNG "Description" text ("" if none).
        resolution: (x, y) pixels per unit, or None.
        resolution_unit: TIFF ResolutionUnit code (2 inch, 3 cm), or None.
        tiff_tags: raw acquisition tags, ``(code, dtype, count, value)`` for tifffile's
            ``extratags``.
        text: PNG text chunks.
        exif: raw EXIF block, or None.
        icc: ICC profile, or None.
    """

    format: str
    description: str = ""
    resolution: tuple[float, float] | None = None
    resolution_unit: int | None = None
    tiff_tags: tuple[tuple[int, int, int, Any], ...] = ()
    text: dict[str, str] = field(default_factory=dict)
    exif: bytes | None = None
    icc: bytes | None = None


def _raw_tag(tif: tifffile.TiffFile, tag: tifffile.TiffTag) -> tuple[int, int, int, Any] | None:
    """The tag's value as stored (tifffile decodes some instrument tags into dicts)."""
    dtype = int(tag.dtype)
    fmt = tifffile.TIFF.DATA_FORMATS.get(dtype)
    if fmt is None:
        return None
    size = struct.calcsize(tif.byteorder + fmt) * tag.count
    if dtype in (1, 2, 7):  # BYTE, ASCII, UNDEFINED: the bytes themselves
        if size <= tif.tiff.tagoffsetthreshold:
            value: Any = tag.value
            if isinstance(value, str):
                value = value.encode("utf-8", "replace")
            if not isinstance(value, bytes):
                return None
        else:
            tif.filehandle.seek(tag.valueoffset)
            value = tif.filehandle.read(size)
        if dtype == 2:
            value = value.rstrip(b"\0")
            return (tag.code, 2, 0, value.decode("latin-1"))
        return (tag.code, dtype, len(value), value)
    value = tag.value
    if isinstance(value, dict):
        return None
    values = value if isinstance(value, tuple | list) else (value,)
    try:
        flat = tuple(int(v) if isinstance(v, bool | np.integer) else v for v in values)
    except TypeError:
        return None
    return (tag.code, dtype, len(flat) // (2 if dtype in (5, 10) else 1), flat)


def read_metadata(path: str | Path) -> ImageMetadata:
    """Collect the metadata of an image file (what ``save`` can write back).

    Unreadable metadata never stops a restoration: it is returned empty.
    """
    file = Path(path)
    ext = file.suffix.lower()
    try:
        if ext in (".tif", ".tiff"):
            return _read_tiff(file)
        with Image.open(file) as im:
            fmt = "jpeg" if ext in (".jpg", ".jpeg") else "png"
            text = {k: v for k, v in getattr(im, "text", {}).items() if isinstance(v, str)}
            dpi = im.info.get("dpi")
            return ImageMetadata(
                format=fmt,
                description=text.get("Description", ""),
                resolution=(float(dpi[0]), float(dpi[1])) if dpi else None,
                resolution_unit=2 if dpi else None,
                text=text,
                exif=im.info.get("exif"),
                icc=im.info.get("icc_profile"),
            )
    except (OSError, ValueError, KeyError, struct.error):
        return ImageMetadata(format=ext.lstrip("."))


def _read_tiff(file: Path) -> ImageMetadata:
    with tifffile.TiffFile(file) as tif:
        page = tif.pages.first
        tags = page.tags
        description = tags.get(270)
        unit = tags.get(296)
        xres, yres = tags.get(282), tags.get(283)
        resolution = None
        if xres is not None and yres is not None:
            resolution = (_rational(xres.value), _rational(yres.value))
        kept = []
        for tag in tags:
            if tag.code in _LAYOUT_TAGS:
                continue
            raw = _raw_tag(tif, tag)
            if raw is not None:
                kept.append(raw)
        text = str(description.value) if description is not None else ""
        if tif.is_shaped or tif.is_imagej or tif.is_ome:
            # layout records of the writing library, not the microscope's: tifffile would read
            # them back as the layout of the new file
            text = ""
        return ImageMetadata(
            format="tiff",
            description=text,
            resolution=resolution,
            resolution_unit=int(unit.value) if unit is not None else None,
            tiff_tags=tuple(kept),
        )


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else 0.0
    return float(value)


def save(
    path: str | Path,
    samples: np.ndarray,
    metadata: ImageMetadata | None = None,
    *,
    provenance: str = "",
    quality: int = 95,
) -> None:
    """Write integer gray ``samples`` (uint8 or uint16) with the input's metadata.

    Args:
        path: the target; its extension picks the format.
        samples: (H, W) uint8 or uint16.
        metadata: what ``read_metadata`` found on the input, or None.
        provenance: a line added to the description (what restored the image, with what).
        quality: JPEG quality, 1-95.
    """
    file = Path(path)
    ext = file.suffix.lower()
    meta = metadata or ImageMetadata(format="")
    description = "\n".join(s for s in (meta.description, provenance) if s)
    if ext in (".tif", ".tiff"):
        kwargs: dict[str, Any] = {}
        if meta.resolution is not None and all(r > 0 for r in meta.resolution):
            kwargs["resolution"] = meta.resolution
            kwargs["resolutionunit"] = meta.resolution_unit or 1
        tifffile.imwrite(
            file,
            samples,
            photometric="minisblack",
            description=description or None,
            software="semtune",
            metadata=None,  # tifffile's own JSON would replace the description
            extratags=[
                (code, dtype, count, value, True) for code, dtype, count, value in meta.tiff_tags
            ],
            **kwargs,
        )
        return
    image = Image.fromarray(samples)
    if ext in (".jpg", ".jpeg"):
        params: dict[str, Any] = {"quality": quality}
        if meta.exif:
            params["exif"] = meta.exif
        if meta.icc:
            params["icc_profile"] = meta.icc
        if description:
            params["comment"] = description.encode("utf-8", "replace")
        image.save(file, **params)
        return
    info = PngImagePlugin.PngInfo()
    for key, value in meta.text.items():
        if key != "Description":
            info.add_text(key, value)
    if description:
        info.add_text("Description", description)
    params = {"pnginfo": info}
    if meta.exif:
        params["exif"] = meta.exif
    if meta.icc:
        params["icc_profile"] = meta.icc
    if meta.resolution is not None and meta.resolution_unit == 2:
        params["dpi"] = meta.resolution
    image.save(file, **params)
