"""Restoring micrographs to files, the library under ``python -m semtune.enhance``.

Which images a list of files and folders names (``find_inputs``), where each one's output goes
without losing work (``plan_outputs``: never over an original, never two inputs onto one name,
existing outputs only on request), and one image restored (``restore_file``): read with its data
bar, restored in tiles of the network's training size (``semtune.inference``), the bar pasted
back, written with the input's bit depth and metadata plus a provenance line, and measured for
the report when asked.
"""

from __future__ import annotations

import datetime
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from semtune.device import resolve_device
from semtune.inference import enhance_image, restore_batch
from semtune.io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from semtune.metadata import read_metadata
from semtune.report import Assessment, ModelInfo, assess, contact_sheet
from semtune.scoring import Method
from semtune.train.state import GeneratorFile, load_generator_file

__all__ = [
    "RestoreOptions",
    "Skipped",
    "find_inputs",
    "generator_method",
    "load_model",
    "load_model_file",
    "output_suffix",
    "plan_outputs",
    "provenance",
    "restore_file",
]


def load_model_file(
    ref: str | Path, device: torch.device | str = "cpu", *, tracking_uri: str | None = None
) -> GeneratorFile:
    """A generator and what it carries (config, metrics, training-data facts) from a checkpoint
    file (``generator.pt``, ``last.pt``, ``best.pt``) or an MLflow model URI
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/PATH``) read from
    ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db``)."""
    text = str(ref)
    if text.startswith(("models:/", "runs:/")):
        from semtune.tracking import load_registered_generator_file

        return load_registered_generator_file(text, device, tracking_uri=tracking_uri)
    return load_generator_file(text, device)


def load_model(
    ref: str | Path, device: torch.device | str = "cpu", *, tracking_uri: str | None = None
) -> nn.Module:
    """The generator alone (see ``load_model_file``)."""
    return load_model_file(ref, device, tracking_uri=tracking_uri).g


def generator_method(
    model: str | Path,
    device: torch.device | str | None = None,
    *,
    tracking_uri: str | None = None,
) -> Method:
    """A scoring method that runs a generator (checkpoint file, or a models:/ / runs:/ URI read
    from ``tracking_uri``)."""
    dev = device if isinstance(device, torch.device) else resolve_device(device or "auto")
    g = load_model(model, dev, tracking_uri=tracking_uri)

    def method(x: torch.Tensor, _paired: object) -> torch.Tensor:
        return restore_batch(g, x.to(dev)).cpu()

    return method


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _under(p: Path, folder: Path) -> bool:
    return p.resolve().is_relative_to(folder.resolve())


def find_inputs(
    items: Sequence[Path], *, recursive: bool = False, out: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The images to restore, each with the sub-folder (relative to the folder given, ``.`` for
    a file given) its output goes to, and notes for the user (sub-folders skipped).

    A folder's sub-folders are searched only with ``recursive``; the output folder ``out``, when
    it is one of them, never is (it holds the restored images of an earlier run).
    """
    found: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for item in items:
        if item.is_dir():
            # -o naming the folder itself is refused later (the originals are never written over)
            skip = out if out is not None and out.resolve() != item.resolve() else None
            walk = item.rglob("*") if recursive else item.iterdir()
            images = sorted(
                p for p in walk if _is_image(p) and (skip is None or not _under(p, skip))
            )
            skipped: list[str] = []
            if not recursive:
                skipped = sorted(
                    d.name
                    for d in item.iterdir()
                    if d.is_dir()
                    and (skip is None or not _under(d, skip))
                    and any(_is_image(f) for f in d.rglob("*"))
                )
                if skipped:
                    shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
                    notes.append(
                        f"{item}: {len(skipped)} sub-folder(s) with images skipped ({shown}); "
                        "--recursive includes them"
                    )
            if not images:
                more = "; its sub-folders have some: add --recursive" if skipped else ""
                raise ImageReadError(f"{item}: no images ({', '.join(IMAGE_EXTENSIONS)}){more}")
            found.extend((p, p.parent.relative_to(item)) for p in images)
        elif item.is_file():
            found.append((item, Path(".")))
        else:
            raise ImageReadError(f"{item}: no such file or folder")
    unique = {f.resolve(): (f, rel) for f, rel in reversed(found)}  # named twice: restored once
    return [(f, rel) for f, rel in found if unique[f.resolve()][0] is f], notes


def plan_outputs(
    files: Sequence[tuple[Path, Path]],
    out: Path,
    jpeg_quality: int,
    *,
    overwrite: bool,
    report: bool,
) -> dict[Path, Path]:
    """Each input's output file (``out/SUB-FOLDER/NAME``), or a ValueError that says why the
    outputs would lose work: ``out`` is a file or holds an input (the originals are never
    written over, even with ``overwrite``), two inputs would be written to one name, or outputs
    exist already and ``overwrite`` is off."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {out} is a file; name a folder for the restored images")
    where = out.resolve()
    targets: dict[Path, Path] = {}
    for f, rel in files:
        target = out / rel / f"{f.stem}{output_suffix(f, 8, jpeg_quality)}"
        if f.resolve().parent in (where, target.resolve().parent):
            raise ValueError(
                f"-o {out} is the folder of the input {f}: name another folder, the originals "
                "are never written over"
            )
        if target in targets:
            raise ValueError(
                f"{targets[target]} and {f} would both be written to {target}: restore them "
                "into separate folders (-o), or rename one"
            )
        targets[target] = f
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if report and (out / "report" / "report.html").exists():
            existing.append(out / "report" / "report.html")
        if existing:
            shown = ", ".join(t.name for t in existing[:3]) + (", ..." if len(existing) > 3 else "")
            raise ValueError(
                f"-o {out} already holds {len(existing)} of the outputs ({shown}): pass "
                "--overwrite to replace them, or name another folder"
            )
    return {f: t for t, f in targets.items()}


def provenance(model: str, file: GeneratorFile | None = None) -> str:
    """The line written into a restored image's description: what restored it, with what."""
    try:
        version = importlib.metadata.version("semtune")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    step = f", step {file.step}" if file is not None and file.step else ""
    return f"restored by semtune {version} with {model}{step} on {when}"


def output_suffix(path: Path, bit_depth: int, jpeg_quality: int) -> str:
    """The output's extension: the input's, except JPEG (PNG unless a quality is given, and
    TIFF for 16-bit data JPEG cannot hold)."""
    suffix = path.suffix
    if suffix.lower() in (".jpg", ".jpeg"):
        if bit_depth == 16:
            return ".tif"
        return suffix if jpeg_quality else ".png"
    return suffix


class Skipped(Exception):
    """An image that was not restored; the message says which and why."""


@dataclass(frozen=True)
class RestoreOptions:
    """How ``restore_file`` restores and writes (the CLI's options of the same names).

    Attributes:
        tile, overlap: tiling (``semtune.inference.tiling``; None = the model's own).
        crop_bar: drop the data bar from the output (else it is kept, unchanged).
        bar_detect: find a data bar at all (``semtune.io.read_image``'s ``crop_bar``).
        max_pixels: skip larger images before decoding (None = the reader's default).
        jpeg_quality: JPEG inputs written as JPEG at this quality; 0 = PNG, losslessly.
        overwrite: replace an output that exists.
        report_dir: where contact sheets go, and measure each restoration; None = no report.
    """

    tile: int | None = None
    overlap: int | None = None
    crop_bar: bool = False
    bar_detect: bool = True
    max_pixels: int | None = None
    jpeg_quality: int = 0
    overwrite: bool = False
    report_dir: Path | None = None


def restore_file(
    path: Path,
    target: Path,
    g: nn.Module,
    *,
    device: torch.device,
    options: RestoreOptions,
    stamp: str,
    info: ModelInfo,
    name: str,
) -> tuple[Path, Assessment | None]:
    """Restore ``path`` and write it at ``target`` (its suffix set by bit depth and options).

    Args:
        name: the image's name in the report (its sub-folder and file name).

    Returns:
        the file written, and the report's measures (None without ``options.report_dir``).

    Raises:
        Skipped: unreadable, too large for memory, or the output exists (not overwriting).
    """
    try:
        img = read_image(path, crop_bar=options.bar_detect, max_pixels=options.max_pixels)
    except ImageReadError as exc:
        raise Skipped(str(exc)) from None
    h, w = img.data.shape[-2:]
    keep_bar = img.bar is not None and img.bar_rows and not options.crop_bar
    try:
        # one frame for the result and the data bar: restored in place, never copied
        frame = torch.empty(1, h + (img.bar_rows if keep_bar else 0), w, device=device)
        enhance_image(
            g, img.data, tile=options.tile, overlap=options.overlap, out=frame[None, :, :h]
        )
    except (MemoryError, RuntimeError) as exc:  # torch: RuntimeError / OutOfMemoryError
        if not isinstance(exc, MemoryError | torch.OutOfMemoryError) and (
            "can't allocate memory" not in str(exc)
        ):
            raise
        raise Skipped(
            f"{path}: not enough memory to restore it ({h}x{w}; a smaller --tile lowers the "
            "network's share)"
        ) from None
    if keep_bar:
        assert img.bar is not None
        frame[:, h:] = img.bar.to(frame.device, frame.dtype)
    frame = frame.cpu()
    restored = frame[:, :h]
    assessment = None
    if options.report_dir is not None:
        assessment = assess(
            name, img.data[None], restored[None], info, lambda x: restore_batch(g, x)
        )
        # named after the whole input name: x.tif and x.png of one folder get a sheet each
        sheet = contact_sheet(img.data[None], restored[None], options.report_dir / f"{name}.png")
        assessment.sheet = (Path(name).parent / sheet.name).as_posix()
    out = target.with_suffix(output_suffix(path, img.bit_depth, options.jpeg_quality))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out != target and out.exists() and not options.overwrite:
        raise Skipped(f"{path}: {out} exists (--overwrite replaces it)")
    write_image(
        out,
        frame,
        bit_depth=img.bit_depth,
        metadata=read_metadata(path),
        provenance=stamp,
        quality=options.jpeg_quality or 95,
    )
    return out, assessment
