"""The NFFA dev / held-out split of docs/restoration.md, as folders of links.

Of the NFFA "Particles" images in neither ``data/sample/train`` nor ``data/sample/test``, the 16
whose file names come first by SHA-1 are the dev images (the third round's choices were made on
them); the others, plus ``data/sample/test``, are the held-out images of the README's tables
(HELD_OUT). Writes OUT/dev and OUT/held_out (symbolic links; nothing is copied).

    python bench/nffa_split.py ../shared/data/nffa-particles --out split/
    python -m semtune.evaluate --model runs/default/generator.pt --data split/held_out ...
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

DEV_COUNT = 16
REPO = Path(__file__).resolve().parents[1]


def split(names: list[str], excluded: set[str]) -> tuple[list[str], list[str]]:
    """(dev, held-out-without-test) names: the first DEV_COUNT by SHA-1 of the name, the rest."""
    pool = sorted(
        (n for n in names if n not in excluded), key=lambda n: hashlib.sha1(n.encode()).hexdigest()
    )
    return pool[:DEV_COUNT], pool[DEV_COUNT:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", type=Path, help="the NFFA 'Particles' folder (*.jpg)")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    sample = REPO / "data" / "sample"
    train = {f.name for f in (sample / "train").glob("*.jpg")}
    test = sorted((sample / "test").glob("*.jpg"))
    names = sorted(f.name for f in args.source.glob("*.jpg"))
    if not names:
        raise SystemExit(f"error: no .jpg images in {args.source}")
    dev, held = split(names, train | {f.name for f in test})
    for sub, files in (
        ("dev", [args.source / n for n in dev]),
        ("held_out", [args.source / n for n in held] + test),
    ):
        folder = args.out / sub
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            link = folder / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
        print(f"{folder}: {len(files)} images")


if __name__ == "__main__":
    main()
