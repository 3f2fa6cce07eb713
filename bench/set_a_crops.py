"""Set-A crops restored by several models next to the blurred input and the ground truth.

One row per crop (its 80 px centre, magnified 3x): input | each model | ground truth, each
stretched to the ground truth's grey range. The crops are those ``semtune.evaluate`` scores
(``--data``, 256 px, 64 crops, seed 0), chosen by index. docs/restoration.md (item 27) shows
where models gain or lose on set A of a collection whose ground truth is itself noisy.

    python bench/set_a_crops.py --data HELD_OUT --crops 4 32 49 --out docs/img/set_a_nasa.png \\
        --model runs/nasa/generator.pt runs/item25/generator.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from semtune.inference import restore_batch  # noqa: E402
from semtune.restore import load_model  # noqa: E402
from semtune.scoring import load_scoring_data  # noqa: E402

WINDOW = 80  # px of each crop's centre shown
ZOOM = 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="folders of clean images")
    p.add_argument("--crops", required=True, nargs="+", type=int, help="crop indices")
    p.add_argument("--model", required=True, nargs="+", help="generator files, one column each")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    models = [load_model(m, "cpu") for m in args.model]
    paired = load_scoring_data(args.data, ["A"], crop_size=256, n_crops=64, seed=0).sets["A"]
    lo_px = (256 - WINDOW) // 2
    rows = []
    for i in args.crops:
        b, c = paired.blurred[i : i + 1], paired.clean[i : i + 1]
        lo, hi = float(c.min()), float(c.max())

        def shown(t: torch.Tensor, lo: float = lo, hi: float = hi) -> torch.Tensor:
            w = t[0, 0, lo_px : lo_px + WINDOW, lo_px : lo_px + WINDOW]
            return ((w - lo) / max(hi - lo, 1e-6)).clamp(0, 1)

        cols = [shown(b)]
        for g in models:
            with torch.no_grad():
                cols.append(shown(restore_batch(g, b)))
        cols.append(shown(c))
        gap = torch.ones(WINDOW, 2)
        rows.append(torch.cat([torch.cat([x, gap], 1) for x in cols], 1))
    im = (torch.cat(rows, 0).numpy() * 255).astype(np.uint8)
    size = (im.shape[1] * ZOOM, im.shape[0] * ZOOM)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).resize(size, Image.NEAREST).save(args.out, optimize=True)
    print(f"wrote {args.out}: columns input, {', '.join(args.model)}, ground truth")


if __name__ == "__main__":
    main()
