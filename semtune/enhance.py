"""Restore real micrographs at full size with a trained generator (``python -m semtune.enhance``).

Frames are restored in overlapping tiles of the network's own training size, blended
(``semtune.inference``); the microscope's data bar is pasted back unchanged (or left cropped with
``--crop-bar``); the output has the input's bit depth, format and metadata (JPEG becomes PNG
unless ``--jpeg-quality`` is given), and ``--report`` says what the restoration did.

Size: longer than ~400 lines because of the CLI's checks and messages (never overwriting,
mirrored folders, the report) around the tiled inference of semtune.inference.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from semtune.cli import (
    add_no_bar_detect,
    add_out,
    add_threads,
    add_tracking_uri,
    parser,
    start_threads,
)
from semtune.device import resolve_device
from semtune.inference import (
    enhance_image,
    native_tile,
    restore_batch,
    run_padded,
    tile_weights,
    tiling,
)
from semtune.io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from semtune.metadata import read_metadata
from semtune.report import Assessment, ModelInfo, assess, contact_sheet, summary_lines, write_report
from semtune.train.state import GeneratorFile, load_generator_file

# enhance_image, run_padded and tile_weights live in semtune.inference; re-exported here
__all__ = [
    "build_parser",
    "enhance_image",
    "load_model",
    "load_model_file",
    "main",
    "native_tile",
    "provenance",
    "run_padded",
    "tile_weights",
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


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _under(p: Path, folder: Path) -> bool:
    return p.resolve().is_relative_to(folder.resolve())


def _inputs(
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


def _plan_outputs(
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
        target = out / rel / f"{f.stem}{_suffix(f, 8, jpeg_quality)}"
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


_EXAMPLES = """\
examples:
  python -m semtune.enhance my_images/ -o restored/ --model models:/semtune-generator@champion
  python -m semtune.enhance img.tif -o restored/ --model runs/cpu/generator.pt --report
  python -m semtune.enhance scans/*.jpg -o restored/ --model g.pt --jpeg-quality 95
  python -m semtune.enhance session/ --recursive -o restored/ --model g.pt   # and sub-folders
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (also read by ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.enhance",
        "Restore SEM micrographs at full size with a trained generator. The output keeps the "
        "input's size, bit depth, data bar and metadata (TIFF tags such as FEI and Zeiss "
        "records, pixel size, EXIF), with a provenance line added to its description.",
        _EXAMPLES,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="IMAGE_OR_DIR",
        help="image files (PNG, JPEG, 8/16-bit TIFF) or folders of them (a folder's "
        "sub-folders only with --recursive)",
    )
    p.add_argument(
        "--model",
        required=True,
        help="generator: a checkpoint file (generator.pt / best.pt) or models:/NAME@ALIAS, "
        "models:/NAME/VERSION, runs:/RUN_ID/PATH (read from --tracking-uri)",
    )
    add_out(
        p,
        "output folder (never an input's folder; existing outputs are kept unless --overwrite)",
        required=True,
    )
    p.add_argument(
        "--recursive",
        action="store_true",
        help="also restore the images in the sub-folders of a folder given, into the same "
        "sub-folders under --out",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace restored images (and a report) already in the output folder",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="also measure what the restoration did to each image, without ground truth "
        "(flat-area texture, noise, halos, grey levels, a self-check of the model on your "
        "images), flag harm and poor fit, and write OUT/report/report.html with contact sheets",
    )
    p.add_argument(
        "--jpeg-quality",
        type=int,
        default=0,
        metavar="Q",
        help="write JPEG inputs as JPEG at this quality (1-95); 0: as PNG, losslessly",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="PX",
        help="tile side in pixels, 0 = whole image (default: the size the network was trained "
        "on, where it behaves as trained; see semtune.inference)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        metavar="PX",
        help="tile overlap in pixels, blended (default: a quarter of the tile)",
    )
    p.add_argument(
        "--crop-bar",
        action="store_true",
        help="drop the microscope's data bar from the output (without it: the bar is kept, "
        "unchanged)",
    )
    add_no_bar_detect(p)
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="skip images with more pixels than this, checked before decoding (default: "
        "$SEMTUNE_MAX_PIXELS, else 16384 x 16384 = 268 M; restoring takes about 10 bytes per "
        "pixel)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    add_threads(p)
    add_tracking_uri(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not 0 <= args.jpeg_quality <= 95:
        p.error(f"--jpeg-quality must be between 1 and 95 (0 = PNG), got {args.jpeg_quality}")
    if args.tile is not None and args.tile < 0:
        p.error(f"--tile must be >= 0 (0 = the whole image), got {args.tile}")
    if args.overlap is not None and (
        args.overlap < 0 or (args.tile and 2 * args.overlap >= args.tile)
    ):
        p.error(f"--overlap must be >= 0 and below half of --tile {args.tile}, got {args.overlap}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0 (0 = the CPUs this process may use), got {args.threads}")
    with _plain_warnings():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The restoration, once the arguments are checked."""
    try:
        device = resolve_device(args.device)
        found, notes = _inputs(args.inputs, recursive=args.recursive, out=args.out)
        targets = _plan_outputs(
            found, args.out, args.jpeg_quality, overwrite=args.overwrite, report=args.report
        )
        files = [f for f, _ in found]
        model = load_model_file(args.model, device, tracking_uri=args.tracking_uri)
    except (ImageReadError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(start_threads(args.threads), file=sys.stderr)
    g = model.g
    try:
        tiling(g, args.tile, args.overlap)  # against the model's own tile if --tile is not set
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = provenance(str(args.model), model)
    info = ModelInfo(str(args.model), model.data_stats, model.degradation)
    assessments: list[Assessment] = []
    failed = 0
    for path in tqdm(files, desc="enhance", unit="image", disable=len(files) < 2, file=sys.stderr):
        try:
            img = read_image(path, crop_bar=args.bar_detect, max_pixels=args.max_pixels)
        except ImageReadError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        h, w = img.data.shape[-2:]
        keep_bar = img.bar is not None and img.bar_rows and not args.crop_bar
        try:
            # one frame for the result and the data bar: restored in place, never copied
            frame = torch.empty(1, h + (img.bar_rows if keep_bar else 0), w, device=device)
            enhance_image(g, img.data, tile=args.tile, overlap=args.overlap, out=frame[None, :, :h])
        except (MemoryError, RuntimeError) as exc:  # torch: RuntimeError / OutOfMemoryError
            if not isinstance(exc, MemoryError | torch.OutOfMemoryError) and (
                "can't allocate memory" not in str(exc)
            ):
                raise
            print(
                f"skipped: {path}: not enough memory to restore it ({h}x{w}; a smaller --tile "
                "lowers the network's share)",
                file=sys.stderr,
            )
            failed += 1
            continue
        if keep_bar:
            assert img.bar is not None
            frame[:, h:] = img.bar.to(frame.device, frame.dtype)
        frame = frame.cpu()
        restored = frame[:, :h]
        if args.report:
            rel = targets[path].parent.relative_to(args.out)  # the input's sub-folder
            a = assess(
                (rel / path.name).as_posix(),
                img.data[None],
                restored[None],
                info,
                lambda x: restore_batch(g, x),
            )
            # named after the whole input name: x.tif and x.png of one folder get a sheet each
            sheet = contact_sheet(
                img.data[None], restored[None], args.out / "report" / rel / f"{path.name}.png"
            )
            a.sheet = (rel / sheet.name).as_posix()
            assessments.append(a)
        target = targets[path].with_suffix(_suffix(path, img.bit_depth, args.jpeg_quality))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target != targets[path] and target.exists() and not args.overwrite:
            print(f"skipped: {path}: {target} exists (--overwrite replaces it)", file=sys.stderr)
            failed += 1
            continue
        write_image(
            target,
            frame,
            bit_depth=img.bit_depth,
            metadata=read_metadata(path),
            provenance=stamp,
            quality=args.jpeg_quality or 95,
        )
        if len(files) == 1:
            print(f"wrote {target}")
    print(f"enhanced {len(files) - failed} of {len(files)} images into {args.out}")
    if args.report and assessments:
        paths = write_report(assessments, args.out / "report", info)
        print("\n".join(summary_lines(assessments)))
        print(f"report: {paths['html']} (and {paths['csv'].name}, a contact sheet per image)")
    return 1 if failed else 0


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
    """Warnings as one line each (``warning: ...``), without the line of source code Python
    prints under them by default; the previous behaviour is back afterwards."""

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _suffix(path: Path, bit_depth: int, jpeg_quality: int) -> str:
    """The output's extension: the input's, except JPEG (PNG unless a quality is given, and
    TIFF for 16-bit data JPEG cannot hold)."""
    suffix = path.suffix
    if suffix.lower() in (".jpg", ".jpeg"):
        if bit_depth == 16:
            return ".tif"
        return suffix if jpeg_quality else ".png"
    return suffix


if __name__ == "__main__":
    sys.exit(main())
