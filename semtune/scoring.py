"""Score restoration methods on paired synthetic sets made from any folder of clean SEM images.

Shared by ``python -m semtune.benchmark`` (classical methods, Table 1 of the paper) and
``python -m semtune.evaluate`` (a trained generator): both make the *same* crops and degraded
sets for the same seed, so their ``table.csv`` rows stand in one table.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from semtune.cli import add_no_bar_detect, add_out, add_threads
from semtune.data.datasets import PairedSet, make_paired_set, random_crops
from semtune.data.degrade import ALL_SETS, SETS, DegradeConfig
from semtune.io import read_folder
from semtune.metric_names import IMAGE_METRICS
from semtune.metrics import all_metrics

__all__ = [
    "add_scoring_args",
    "COLUMNS",
    "Method",
    "ScoringData",
    "load_scoring_data",
    "score",
    "to_markdown",
    "write_outputs",
]

log = logging.getLogger(__name__)

COLUMNS = ["set", "method", *IMAGE_METRICS]

# A method restores a batch (B, 1, H, W) in [0, 1]; it receives the paired set so that oracle
# variants can read the true PSFs. Non-oracle methods must not.
Method = Callable[[Tensor, PairedSet], Tensor]


@dataclass(frozen=True)
class ScoringData:
    """The clean crops every method is scored on, and the paired sets made from them."""

    crops: Tensor
    sets: dict[str, PairedSet]
    files: list[str]
    skipped: list[tuple[Path, str]]


def load_scoring_data(
    folders: Sequence[str | Path],
    sets: Sequence[str],
    *,
    crop_size: int = 256,
    n_crops: int = 64,
    seed: int = 0,
    crop_bar: bool = True,
    degrade: DegradeConfig | None = None,
) -> ScoringData:
    """Read the folders, crop the data bars, cut ``n_crops`` crops and degrade them per set."""
    images: list[torch.Tensor] = []
    files: list[str] = []
    skipped: list[tuple[Path, str]] = []
    for folder in folders:
        got = read_folder(folder, crop_bar=crop_bar, min_size=crop_size)
        images.extend(img.data for img in got.images)
        files.extend(str(img.path) for img in got.images)
        skipped.extend(got.skipped)
    crops = random_crops(images, crop_size, n_crops, seed=seed)
    cfg = degrade or DegradeConfig()
    paired = {s: make_paired_set(crops, s, seed=seed, config=cfg) for s in sets}
    return ScoringData(crops=crops, sets=paired, files=files, skipped=skipped)


def _mean_metrics(restored: Tensor, clean: Tensor | None) -> dict[str, float]:
    return {k: float(v.double().mean()) for k, v in all_metrics(restored, clean).items()}


def score(
    data: ScoringData,
    methods: Mapping[str, Method],
    *,
    batch_size: int = 16,
    include_reference_rows: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, dict[str, Tensor]]]:
    """Mean metrics of every method on every set (long form, columns ``COLUMNS``).

    Returns:
        The table, and for each set the first few restored images per method (for figures).
    """
    rows = []
    examples: dict[str, dict[str, Tensor]] = {}
    for set_name, paired in data.sets.items():
        ex = examples.setdefault(set_name, {})
        ex["ground_truth"] = paired.clean[:3]
        ex["blurry"] = paired.blurred[:3]
        if include_reference_rows:
            rows.append(
                {"set": set_name, "method": "blurry", **_mean_metrics(paired.blurred, paired.clean)}
            )
            gt = _mean_metrics(paired.clean, None)
            rows.append(
                {
                    "set": set_name,
                    "method": "ground_truth",
                    "ssim": math.nan,
                    "psnr": math.nan,
                    **gt,
                }
            )
        for name, method in methods.items():
            if progress is not None:
                progress(f"set {set_name}: {name}")
            outs = []
            for i in range(0, paired.blurred.shape[0], batch_size):
                sub = PairedSet(
                    set_name=paired.set_name,
                    clean=paired.clean[i : i + batch_size],
                    blurred=paired.blurred[i : i + batch_size],
                    psfs=paired.psfs[i : i + batch_size],
                )
                with torch.no_grad():
                    outs.append(method(sub.blurred, sub).float().clamp(0, 1).cpu())
            restored = torch.cat(outs)
            ex[name] = restored[:3]
            rows.append({"set": set_name, "method": name, **_mean_metrics(restored, paired.clean)})
    return pd.DataFrame(rows, columns=COLUMNS), examples


def to_markdown(table: pd.DataFrame) -> str:
    """Wide markdown: one row per method, ``SSIM / PSNR`` per set, then AG/CON/SF per set."""
    sets = list(dict.fromkeys(table["set"]))
    methods = list(dict.fromkeys(table["method"]))
    head = (
        "| method | " + " | ".join(f"{s}: SSIM / PSNR dB | {s}: AG / CON / SF" for s in sets) + " |"
    )
    sep = "|---|" + "---|---|" * len(sets)
    lines = [head, sep]
    for m in methods:
        cells = []
        for s in sets:
            r = table[(table["set"] == s) & (table["method"] == m)]
            if r.empty:
                cells += ["", ""]
                continue
            r0 = r.iloc[0]
            ref = "-" if math.isnan(r0.ssim) else f"{r0.ssim:.3f} / {r0.psnr:.2f}"
            cells += [ref, f"{r0.ag:.2f} / {r0.con:.1f} / {r0.sf:.2f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


OUTPUT_NAMES = {"csv": "table.csv", "md": "table.md", "png": "examples.png"}


def check_outputs(out: str | Path, *, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` naming the file when ``out`` already holds a scoring output
    (of a benchmark or an evaluation) and ``overwrite`` is off: call it before the work."""
    if overwrite:
        return
    for name in OUTPUT_NAMES.values():
        if (Path(out) / name).exists():
            raise FileExistsError(
                f"{Path(out) / name} exists (an earlier benchmark or evaluation): pass "
                "--overwrite to replace it, or name another --out"
            )


def write_outputs(
    table: pd.DataFrame,
    examples: dict[str, dict[str, Tensor]],
    out: str | Path,
    *,
    title: str = "",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``table.csv``, ``table.md`` and ``examples.png`` into ``out`` (see
    ``check_outputs``: existing ones are replaced only with ``overwrite``)."""
    out = Path(out)
    check_outputs(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in OUTPUT_NAMES.items()}
    table.to_csv(paths["csv"], index=False, float_format="%.6g")
    paths["md"].write_text((f"{title}\n\n" if title else "") + to_markdown(table))
    _figure(examples, paths["png"])
    return paths


def _figure(examples: dict[str, dict[str, Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(examples)
    methods = list(next(iter(examples.values())))
    fig, axes = plt.subplots(
        len(sets), len(methods), figsize=(2.2 * len(methods), 2.4 * len(sets)), squeeze=False
    )
    for i, s in enumerate(sets):
        for j, m in enumerate(methods):
            ax = axes[i][j]
            img = examples[s].get(m)
            if img is not None:
                ax.imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(m, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"set {s}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_scoring_args(p: argparse.ArgumentParser) -> None:
    """The options benchmark and evaluate share, so that they make the same crops."""
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder(s) of clean SEM images (PNG/JPEG/TIFF); their data bars are cropped "
        "(unless --no-bar-detect)",
    )
    p.add_argument(
        "--sets",
        nargs="+",
        default=list(SETS),
        choices=ALL_SETS,
        metavar="SET",
        help="synthetic sets: the paper's A B C and their noisy variants A+n B+n C+n",
    )
    add_out(
        p,
        "output folder (table.csv, table.md, examples.png; kept unless --overwrite)",
        required=True,
    )
    p.add_argument("--overwrite", action="store_true", help="replace the tables already in --out")
    p.add_argument("--crop-size", type=int, default=256, metavar="PX", help="crop side in pixels")
    p.add_argument("--crops", type=int, default=64, metavar="N", help="number of test crops")
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the crops and degradations"
    )
    add_no_bar_detect(p, old=["--no-bar-crop"])
    add_threads(p)
