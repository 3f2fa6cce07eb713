"""Gallery of real micrographs restored by a model: input | restored at 1x, then at 3x.

One PNG per folder, one row per image: a 256 px crop at 1:1 (input, restored), then the 86 px
window of that crop with the strongest edges magnified 3x (input, restored), where halos and
painted grain show first. Crops are chosen from the input alone (centre of the sample area;
strongest edges), never from the result. docs/restoration.md shows the output.

    python bench/gallery.py --model runs/default/generator.pt \\
        --images ../shared/data/nffa-particles/L2_a.jpg ... --out docs/img/gallery_nffa.png
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import kornia  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from semtune.inference import enhance_image  # noqa: E402
from semtune.io import read_image  # noqa: E402
from semtune.restore import load_model  # noqa: E402

CROP = 256
ZOOM = 3
WINDOW = CROP // ZOOM  # 85 px at 3x fills a 256 px panel
GAP = 6
LABEL = 16


def _u8(x: torch.Tensor) -> Image.Image:
    return Image.fromarray((x.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))


def _row(x: torch.Tensor, y: torch.Tensor) -> list[Image.Image]:
    h, w = x.shape
    top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    a, b = x[top : top + CROP, left : left + CROP], y[top : top + CROP, left : left + CROP]
    edges = kornia.filters.sobel(kornia.filters.gaussian_blur2d(a[None, None], 5, (1.0, 1.0)))
    pooled = torch.nn.functional.avg_pool2d(edges, WINDOW, stride=8)[0, 0]
    idx = int(pooled.flatten().argmax())
    wy, wx = (idx // pooled.shape[1]) * 8, (idx % pooled.shape[1]) * 8
    zoom = [
        _u8(t[wy : wy + WINDOW, wx : wx + WINDOW]).resize(
            (WINDOW * ZOOM, WINDOW * ZOOM), Image.Resampling.NEAREST
        )
        for t in (a, b)
    ]
    return [_u8(a), _u8(b), *zoom]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", nargs="+", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--title", default="")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    g = load_model(args.model)
    rows = []
    for path in args.images:
        x = read_image(path).data
        y = enhance_image(g, x)[0, 0]
        rows.append((path.name, _row(x[0], y)))
    width = 4 * CROP + 3 * GAP
    height = LABEL + len(rows) * (CROP + LABEL + GAP)
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    draw.text((2, 2), args.title or "input | restored (1x)  ·  input | restored (3x)", fill=0)
    top = LABEL
    for name, panels in rows:
        draw.text((2, top + 1), name, fill=0)
        top += LABEL
        for i, panel in enumerate(panels):
            sheet.paste(panel, (i * (CROP + GAP), top))
        top += CROP + GAP
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
