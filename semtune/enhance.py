"""Restore real micrographs at full size with a trained generator (``python -m semtune.enhance``).

Frames are restored in overlapping tiles of the network's own training size, blended
(``semtune.inference``); the microscope's data bar is pasted back unchanged (or left cropped with
``--crop-bar``); the output has the input's bit depth, format and metadata (JPEG becomes PNG
unless ``--jpeg-quality`` is given), and ``--report`` says what the restoration did.

The library under it: ``semtune.restore`` (inputs, outputs, one image restored and written)
and ``semtune.inference`` (tiles).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

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
from semtune.inference import enhance_image, native_tile, run_padded, tile_weights, tiling
from semtune.io import ImageReadError
from semtune.report import Assessment, ModelInfo, summary_lines, write_report
from semtune.restore import (
    RestoreOptions,
    Skipped,
    find_inputs,
    load_model,
    load_model_file,
    plan_outputs,
    provenance,
    restore_file,
)

# the library lives in semtune.inference and semtune.restore; its old names are re-exported here
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
        found, notes = find_inputs(args.inputs, recursive=args.recursive, out=args.out)
        targets = plan_outputs(
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
    try:
        tiling(model.g, args.tile, args.overlap)  # against the model's own tile if not set
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    options = RestoreOptions(
        tile=args.tile,
        overlap=args.overlap,
        crop_bar=args.crop_bar,
        bar_detect=args.bar_detect,
        max_pixels=args.max_pixels,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
        report_dir=args.out / "report" if args.report else None,
    )
    stamp = provenance(str(args.model), model)
    info = ModelInfo(str(args.model), model.data_stats, model.degradation)
    assessments: list[Assessment] = []
    failed = 0
    for path in tqdm(files, desc="enhance", unit="image", disable=len(files) < 2, file=sys.stderr):
        rel = targets[path].parent.relative_to(args.out)  # the input's sub-folder
        try:
            written, assessment = restore_file(
                path,
                targets[path],
                model.g,
                device=device,
                options=options,
                stamp=stamp,
                info=info,
                name=(rel / path.name).as_posix(),
            )
        except Skipped as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        if assessment is not None:
            assessments.append(assessment)
        if len(files) == 1:
            print(f"wrote {written}")
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


if __name__ == "__main__":
    sys.exit(main())
