"""Peak memory of ``semtune.enhance`` on one large synthetic 16-bit TIFF, per pixel.

Writes a SIDE x SIDE 16-bit TIFF of smooth random texture into a temporary folder, then runs, each
in its own process: the reference (Python, semtune, torch and the model loaded, nothing restored:
``--max-pixels 1`` makes enhance skip the image before decoding it) and the restoration. The peak
resident memory of each (``ru_maxrss``) is printed with the difference per pixel of the image, the
figure that bounds what image fits in a machine's memory. Also the time of the restoration and the
load average before it.

    python bench/bench_enhance_memory.py --model runs/default/generator.pt            # 16384 px
    python bench/bench_enhance_memory.py --model runs/default/generator.pt --side 4096
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile


def write_texture(path: Path, side: int) -> None:
    """A smooth random 16-bit texture, written in strips (never a float copy of the frame)."""
    rng = np.random.default_rng(0)
    coarse = rng.random((side // 64 + 2, side // 64 + 2))
    cols = np.linspace(0, coarse.shape[1] - 1.001, side)
    c0 = cols.astype(int)
    fc = cols - c0

    def strips():  # type: ignore[no-untyped-def]
        for r0 in range(0, side, 1024):
            rows = np.linspace(0, coarse.shape[0] - 1.001, side)[r0 : r0 + 1024]
            i0 = rows.astype(int)
            fr = (rows - i0)[:, None]
            top = coarse[i0][:, c0] * (1 - fc) + coarse[i0][:, c0 + 1] * fc
            bottom = coarse[i0 + 1][:, c0] * (1 - fc) + coarse[i0 + 1][:, c0 + 1] * fc
            smooth = top * (1 - fr) + bottom * fr
            noise = rng.normal(0, 0.01, smooth.shape)
            yield np.clip((0.2 + 0.6 * smooth + noise) * 65535, 0, 65535).astype(np.uint16)

    tifffile.imwrite(path, strips(), shape=(side, side), dtype=np.uint16, bigtiff=side > 20000)


# The peak is read inside the child from /proc/self/status (VmHWM, the high-water mark of its
# own memory since exec). ru_maxrss is not used: Linux carries the parent's resident size at the
# fork into the child's, so a large parent would hide the child's own peak.
_MEASURED = (
    "import sys\n"
    "from semtune.enhance import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "print('VmHWM', int(hwm.split()[1]) * 1024)\n"
    "sys.exit(code)\n"
)


def peak_rss(enhance_args: list[str]) -> tuple[int, float, str]:
    """Peak resident memory in bytes of ``semtune.enhance`` run with these arguments in its
    own process, its wall time and the tail of its output."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, *enhance_args], capture_output=True, text=True
    )
    seconds = time.monotonic() - t0
    marks = [line for line in proc.stdout.splitlines() if line.startswith("VmHWM ")]
    if not marks:
        raise RuntimeError(f"enhance did not finish: {proc.stdout[-300:]}{proc.stderr[-600:]}")
    return int(marks[-1].split()[1]), seconds, proc.stdout[-300:] + proc.stderr[-600:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="generator checkpoint or models:/ URI")
    p.add_argument("--side", type=int, default=16384, help="image side in pixels")
    p.add_argument("--tile", type=int, default=None, help="passed to enhance (default: its own)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="semtune-bench-memory-") as tmp:
        src = Path(tmp) / "in" / "large.tif"
        src.parent.mkdir()
        write_texture(src, args.side)
        pixels = args.side * args.side
        base = [str(src), "--model", args.model]
        if args.tile is not None:
            base += ["--tile", str(args.tile)]
        ref, _, _ = peak_rss([*base, "-o", f"{tmp}/ref", "--max-pixels", "1"])
        load = os.getloadavg()[0]
        peak, seconds, tail = peak_rss([*base, "-o", f"{tmp}/out", "--max-pixels", str(pixels)])
        ok = (Path(tmp) / "out" / "large.tif").exists()
        print(f"image: {args.side}x{args.side} 16-bit, {pixels / 1e6:.0f} M pixels, "
              f"{src.stat().st_size / 1e9:.2f} GB on disk")  # fmt: skip
        print(f"reference (model loaded, nothing restored): peak RSS {ref / 1e9:.2f} GB")
        print(f"enhance: peak RSS {peak / 1e9:.2f} GB, {seconds:.0f} s (load before {load:.1f})"
              f"{'' if ok else ' -- FAILED: ' + tail}")  # fmt: skip
        print(f"difference: {(peak - ref) / 1e9:.2f} GB = {(peak - ref) / pixels:.1f} bytes/pixel")


if __name__ == "__main__":
    main()
