"""``python -m semtune.train``: train the CycleGAN from a preset or YAML config."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from semtune.config import ConfigError
from semtune.train.config import PRESETS, load_train_config
from semtune.train.loop import train
from semtune.train.step import NonFiniteLossError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m semtune.train",
        description="Train the unpaired CycleGAN (edge loss) that restores blurred SEM images.",
    )
    p.add_argument(
        "--config",
        default="cpu",
        help=f"a preset ({', '.join(PRESETS)}) or a YAML file (default: cpu)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set loss.gamma=5 --set schedule.steps=500",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, metrics.csv)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (same crops, same RNG as uninterrupted)",
    )
    args = p.parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.overrides)
    except ConfigError as exc:
        p.error(str(exc))
    resume = None
    if args.resume:
        resume = args.out / "last.pt"
        if not resume.exists():
            p.error(f"--resume: {resume} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    try:
        result = train(cfg, args.out, resume=resume, printer=lambda s: print(s, flush=True))
    except NonFiniteLossError as exc:
        print(f"error: {exc}; the last good state is in {args.out / 'last.pt'}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best = result.best
    print(
        f"done: {result.step} steps. best validation (held-out images, set "
        f"{cfg.data.val_set}) at step {int(best.get('step', 0))}: SSIM {best.get('ssim', 0):.4f} "
        f"(input {best.get('blurry_ssim', 0):.4f}), PSNR {best.get('psnr', 0):.2f} dB "
        f"(input {best.get('blurry_psnr', 0):.2f} dB)"
    )
    print(f"generator: {result.generator}   checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
