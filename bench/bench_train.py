"""Training throughput and enhance speed, against references measured in the same run.

Training: images/s of one full semtune CycleGAN step (G and F forward/backward/update, both
discriminators) at several crop sizes and widths, next to the well-known reference CycleGAN step
(ResNet-9-block generator + 70x70 PatchGAN of Zhu et al. 2017, written below), and the achieved
GFLOP/s of our step against this machine's dense matmul GFLOP/s.

Enhance: seconds per megapixel of ``semtune.enhance.enhance_image`` on a full 1024x768 frame,
tiled vs untiled, and the peak resident memory of each (measured in a fresh subprocess).

    python bench/bench_train.py                 # everything (several minutes on 2 cores)
    python bench/bench_train.py --sizes 64 --widths 0.25 --steps 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semtune.train.config import load_train_config  # noqa: E402
from semtune.train.state import build_state  # noqa: E402
from semtune.train.step import Precision, train_step  # noqa: E402


# --- the reference: the original CycleGAN networks (Zhu et al. 2017), one channel -------------
class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9_generator(ngf: int = 64) -> nn.Module:
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(1, ngf, 7),
        nn.InstanceNorm2d(ngf),
        nn.ReLU(True),
        nn.Conv2d(ngf, 2 * ngf, 3, 2, 1),
        nn.InstanceNorm2d(2 * ngf),
        nn.ReLU(True),
        nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1),
        nn.InstanceNorm2d(4 * ngf),
        nn.ReLU(True),
    ]
    layers += [_ResBlock(4 * ngf) for _ in range(9)]
    layers += [
        nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, output_padding=1),
        nn.InstanceNorm2d(2 * ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1),
        nn.InstanceNorm2d(ngf),
        nn.ReLU(True),
        nn.ReflectionPad2d(3),
        nn.Conv2d(ngf, 1, 7),
        nn.Tanh(),
    ]
    return nn.Sequential(*layers)


def patchgan70(ndf: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, ndf, 4, 2, 1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, 2 * ndf, 4, 2, 1),
        nn.InstanceNorm2d(2 * ndf),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * ndf, 4 * ndf, 4, 2, 1),
        nn.InstanceNorm2d(4 * ndf),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(4 * ndf, 8 * ndf, 4, 1, 1),
        nn.InstanceNorm2d(8 * ndf),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(8 * ndf, 1, 4, 1, 1),
    )


def reference_step_fn(size: int, batch: int):  # type: ignore[no-untyped-def]
    """The textbook CycleGAN step (LSGAN + L1 cycle + L1 identity) with the reference networks."""
    g, f, da, db = resnet9_generator(), resnet9_generator(), patchgan70(), patchgan70()
    opt_g = torch.optim.Adam([*g.parameters(), *f.parameters()], 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*da.parameters(), *db.parameters()], 2e-4, betas=(0.5, 0.999))
    a, b = torch.rand(batch, 1, size, size), torch.rand(batch, 1, size, size)
    l1, mse = nn.L1Loss(), nn.MSELoss()

    def step() -> None:
        fb, fa = g(a), f(b)
        pb, pa = db(fb), da(fa)
        loss = (
            mse(pb, torch.ones_like(pb))
            + mse(pa, torch.ones_like(pa))
            + 10 * (l1(f(fb), a) + l1(g(fa), b))
            + 5 * (l1(g(b), b) + l1(f(a), a))
        )
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        rb, ra, fbd, fad = db(b), da(a), db(fb.detach()), da(fa.detach())
        loss_d = (
            mse(rb, torch.ones_like(rb))
            + mse(fbd, torch.zeros_like(fbd))
            + mse(ra, torch.ones_like(ra))
            + mse(fad, torch.zeros_like(fad))
        )
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

    return step


def semtune_step_fn(size: int, width: float, batch: int, degradation: str):  # type: ignore[no-untyped-def]
    cfg = load_train_config(
        "cpu",
        [
            f"data.crop_size={size}",
            f"model.width={width}",
            f"model.disc_width={width}",
            f"f.kind={degradation}",
            f"schedule.batch_size={batch}",
        ],
    )
    state = build_state(cfg, torch.device("cpu"))
    prec = Precision.resolve(torch.device("cpu"), "fp32")
    a, b = torch.rand(batch, 1, size, size), torch.rand(batch, 1, size, size)
    return lambda: train_step(state, a, b, prec)


def time_fn(fn, steps: int, warmup: int = 1) -> float:  # type: ignore[no-untyped-def]
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def count_flops(fn) -> float:  # type: ignore[no-untyped-def]
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_fn(lambda: a @ b, repeats, warmup=2)
    return 2 * n**3 / t / 1e9


ENHANCE_CHILD = r"""
import json, resource, sys, time, torch
from semtune.enhance import enhance_image
from semtune.train.config import load_train_config
from semtune.train.state import build_state
torch.set_num_threads(int(sys.argv[3]))
cfg = load_train_config("cpu", [f"model.width={sys.argv[2]}"])
g = build_state(cfg, torch.device("cpu")).g.eval()
x = torch.rand(1, 1, 768, 1024)
tile = int(sys.argv[1])
enhance_image(g, x[..., :256, :256], tile=0)  # warm-up
t = time.perf_counter()
enhance_image(g, x, tile=tile, overlap=64 if tile else 0)
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "peak_rss_mib": rss}))
"""


def enhance_run(tile: int, width: float, threads: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", ENHANCE_CHILD, str(tile), str(width), str(threads)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-enhance", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    peak = matmul_gflops()
    print(f"machine: dense fp32 matmul 1024^3: {peak:.1f} GFLOP/s ({args.threads} threads)")
    print(
        f"{'size':>5} {'model':<28} {'img/s':>8} {'vs ref':>7} {'GFLOP/step':>11} "
        f"{'GFLOP/s':>8} {'of matmul':>9}"
    )
    for size in args.sizes:
        ref = reference_step_fn(size, args.batch)
        ref_t = time_fn(ref, max(2, args.steps // 2))
        ref_flops = count_flops(ref)
        ref_ips = args.batch / ref_t
        print(
            f"{size:>5} {'reference ResNet-9 CycleGAN':<28} {ref_ips:>8.2f} {'1.00x':>7} "
            f"{ref_flops / 1e9:>11.2f} {ref_flops / ref_t / 1e9:>8.1f} "
            f"{ref_flops / ref_t / 1e9 / peak:>8.0%}"
        )
        for width in args.widths:
            for degradation in ("physics", "unet"):
                fn = semtune_step_fn(size, width, args.batch, degradation)
                t = time_fn(fn, args.steps)
                flops = count_flops(fn)
                ips = args.batch / t
                name = f"semtune w={width} F={degradation}"
                print(
                    f"{size:>5} {name:<28} {ips:>8.2f} {ips / ref_ips:>6.2f}x {flops / 1e9:>11.2f} "
                    f"{flops / t / 1e9:>8.1f} {flops / t / 1e9 / peak:>8.0%}"
                )
    if args.skip_enhance:
        return
    print("\nenhance: full 1024x768 frame (0.79 MP), generator width 0.25")
    mp = 1024 * 768 / 1e6
    base = None
    for tile in (0, 512, 256):
        r = enhance_run(tile, 0.25, args.threads)
        base = base or r["seconds"]
        label = "untiled" if tile == 0 else f"tiles {tile} overlap 64"
        print(
            f"  {label:<22} {r['seconds'] / mp:6.2f} s/MP  ({r['seconds'] / base:.2f}x untiled)  "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
