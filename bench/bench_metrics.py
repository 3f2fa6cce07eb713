"""SSIM + PSNR + AG + CON + SF for 256 images of 256x256, semtune vs a scikit-image/NumPy loop.

Goal: at least 10x faster. The reference is what one would write without semtune: a loop over
images calling ``skimage.metrics.structural_similarity`` with the paper's window and constants
(Gaussian, sigma 1.5, population covariance, data range 1, K1 0.01, K2 0.02 so C1 = 1e-4 and
C2 = 4e-4) and NumPy transcriptions of PSNR (eq. 7-8) and AG, CON, SF (eq. 1-5, 0-255 scale).
Both sides get the same float32 images: random crops of the bar-cropped sample SEM images
("clean") and the same crops blurred by a 7x7 Gaussian of sigma 1 ("restored", the paper's set
A). semtune runs with ``--threads`` torch threads; the reference is single-threaded as written.
``--reference-dtype float64`` hands the reference float64 copies instead (scikit-image's usual
``img_as_float`` input); float32, the same bits semtune gets, is the default.
Each side is timed ``--repeats`` times and the best run kept; the ratio is taken in this run.

OpenMP threads that wait at a barrier spin by default; on a machine whose cores are busy with
other processes a spinning thread burns the time slice its partner needs, and every torch call
becomes that slow (seen here: 2-8 s instead of 0.3 s for the semtune side). So this script sets
``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it; the line printed first says
which policy and load average the figures were taken under.

    python bench/bench_metrics.py
    python bench/bench_metrics.py --n 64 --size 512 --repeats 5
    OMP_WAIT_POLICY=ACTIVE python bench/bench_metrics.py   # OpenMP's spinning default
"""

from __future__ import annotations

import os

# Before torch loads its OpenMP runtime, which reads the policy once (see the docstring).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from semtune.metrics import all_metrics  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BAR_ROWS = 80  # the information bar at the bottom of the sample images
KEYS = ("ssim", "psnr", "ag", "con", "sf")
# Agreement limits (absolute for SSIM and PSNR in dB, relative for the sharpness metrics):
# float32 moments against scikit-image's float64 filters, float32 sums against NumPy's.
TOLERANCE = {"ssim": 1e-4, "psnr": 1e-3, "ag": 1e-4, "con": 1e-4, "sf": 1e-4}


def load_images(folder: Path) -> list[np.ndarray]:
    """Bar-cropped gray images in [0, 1] (float32). Not semtune.io: the benchmark stands alone."""
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no .jpg images in {folder}")
    return [
        np.asarray(Image.open(p).convert("L"), dtype=np.float32)[:-BAR_ROWS] / 255.0 for p in paths
    ]


def make_batch(images: list[np.ndarray], n: int, size: int, seed: int) -> tuple[np.ndarray, ...]:
    """``n`` random ``size`` x ``size`` crops (clean) and their set-A blur (restored)."""
    rng = np.random.default_rng(seed)
    clean = np.empty((n, size, size), dtype=np.float32)
    for i in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape
        if h < size or w < size:
            raise SystemExit(f"--size {size} is larger than an image ({h}x{w})")
        r, c = rng.integers(h - size + 1), rng.integers(w - size + 1)
        clean[i] = img[r : r + size, c : c + size]
    # truncate=3 with sigma 1: the 7x7 kernel of the paper's set A.
    restored = gaussian_filter(clean, sigma=(0, 1, 1), truncate=3.0, mode="mirror")
    return restored.astype(np.float32), clean


def reference_metrics(restored: np.ndarray, clean: np.ndarray) -> dict[str, np.ndarray]:
    """The five metrics image by image with scikit-image and NumPy: (N, H, W) -> (N,) each."""
    out = {k: np.empty(len(restored)) for k in KEYS}
    for i, (r, c) in enumerate(zip(restored, clean, strict=True)):
        out["ssim"][i] = structural_similarity(
            r,
            c,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            K1=0.01,
            K2=0.02,
        )
        diff = r.astype(np.float64) - c
        out["psnr"][i] = 10 * np.log10(1.0 / np.mean(diff * diff))
        f = r.astype(np.float64) * 255.0
        dh = f[:, 1:] - f[:, :-1]  # horizontal neighbours
        dv = f[1:, :] - f[:-1, :]  # vertical neighbours
        out["ag"][i] = np.mean(np.sqrt((dh[:-1, :] ** 2 + dv[:, :-1] ** 2) / 2))
        sh, sv = np.sum(dh**2), np.sum(dv**2)
        out["con"][i] = (sh + sv) / (dh.size + dv.size)
        out["sf"][i] = np.sqrt(sh / f.size + sv / f.size)
    return out


def semtune_metrics(restored: torch.Tensor, clean: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.double().numpy() for k, v in all_metrics(restored, clean).items()}


def _minor_faults() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, AttributeError):  # not on Windows
        return 0


def best_of(repeats: int, run: Callable[[], object]) -> tuple[float, int]:
    """Best wall time of ``repeats`` runs and the minor page faults of that run."""
    best = (math.inf, 0)
    for _ in range(repeats):
        faults = _minor_faults()
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        best = min(best, (elapsed, _minor_faults() - faults))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "sample" / "train")
    parser.add_argument("--n", type=int, default=256, help="number of images")
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for semtune")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference-dtype",
        choices=("float32", "float64"),
        default="float32",
        help="dtype of the reference's copies of the images (semtune always gets float32)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    restored, clean = make_batch(load_images(args.data), args.n, args.size, args.seed)
    restored_t = torch.from_numpy(restored)[:, None]
    clean_t = torch.from_numpy(clean)[:, None]
    try:
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = ""
    print(
        f"{args.n} images {args.size}x{args.size} from {args.data}, torch threads "
        f"{args.threads}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, reference "
        f"{args.reference_dtype}{load}"
    )

    ref_restored = restored.astype(args.reference_dtype)
    ref_clean = clean.astype(args.reference_dtype)
    ours = semtune_metrics(restored_t, clean_t)
    ref = reference_metrics(ref_restored, ref_clean)
    agree = True
    for k in KEYS:
        err = np.abs(ours[k] - ref[k])
        if k in ("ag", "con", "sf"):
            err = err / np.maximum(np.abs(ref[k]), 1e-12)
        ok = bool(err.max() <= TOLERANCE[k])
        agree &= ok
        kind = "abs" if k in ("ssim", "psnr") else "rel"
        print(
            f"  {k:4s} mean {ours[k].mean():9.4f} (reference {ref[k].mean():9.4f}), "
            f"max {kind} diff {err.max():.1e} {'ok' if ok else 'TOO LARGE'}"
        )

    t_ours, f_ours = best_of(args.repeats, lambda: semtune_metrics(restored_t, clean_t))
    t_ref, f_ref = best_of(args.repeats, lambda: reference_metrics(ref_restored, ref_clean))
    # Re-faulting memory the allocator returned to the OS costs time that is not arithmetic.
    print(f"  minor page faults in the best runs: semtune {f_ours}, reference {f_ref}")
    print(
        f"metrics: semtune {t_ours:.2f} s, reference {t_ref:.2f} s, "
        f"speed-up {t_ref / t_ours:.1f}x ({args.n} images {args.size}x{args.size})"
        + ("" if agree else ", VALUES DISAGREE")
    )
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
