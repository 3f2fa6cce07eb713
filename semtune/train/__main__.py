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
        epilog="""examples:
  python -m semtune.train --config cpu --out runs/cpu        # the bundled images, ~10 min
  python -m semtune.train --blurred my_blurred/ --clean my_clear/ --out runs/mine
  python -m semtune.train --config cpu --set loss.gamma=5 --out runs/g5
  python -m semtune.train --out runs/cpu --resume""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument(
        "--blurred",
        metavar="DIR",
        help="your blurred micrographs (= --set data.blurred_dir=DIR); validation then imitates "
        "them: clear images degraded by the blur and noise measured on this folder "
        "(data.val_set=own) unless --set data.val_set=... says otherwise",
    )
    p.add_argument(
        "--clean",
        metavar="DIR",
        help="clear micrographs, of the same or other samples (= --set data.clean_dir=DIR); "
        "a fifth of them is held out for validation",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, metrics.csv)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (same crops, same RNG as uninterrupted)",
    )
    args = p.parse_args(argv)
    overrides = list(args.overrides)
    if args.clean:
        overrides.insert(0, f"data.clean_dir={args.clean}")
    if args.blurred:
        overrides.insert(0, f"data.blurred_dir={args.blurred}")
        if not any(o.split("=", 1)[0].strip() == "data.val_set" for o in overrides):
            overrides.insert(0, "data.val_set=own")
    try:
        cfg = load_train_config(args.config, overrides)
    except ConfigError as exc:
        p.error(str(exc))
    resume = None
    if args.resume:
        resume = args.out / "last.pt"
        if not resume.exists():
            p.error(f"--resume: {resume} does not exist")
    elif args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        held = (
            ", ".join(sorted(f.name for f in args.out.iterdir())[:4]) if args.out.is_dir() else ""
        )
        p.error(
            f"--out {args.out} is not an empty folder ({held or 'a file'}): --resume continues "
            "the run in it; name another folder for a new run (nothing was overwritten)"
        )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        result = train(cfg, args.out, resume=resume, printer=lambda s: print(s, flush=True))
    except NonFiniteLossError as exc:
        print(f"error: {exc}; the last good state is in {args.out / 'last.pt'}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only or vanished output folder
        last = args.out / "last.pt"
        kept = (
            f"the last whole checkpoint is {last}: make room (or fix the folder) and continue "
            f"with --out {args.out} --resume"
            if last.is_file()
            else "no checkpoint was written yet"
        )
        print(f"error: cannot write the run's files in {args.out}: {exc}; {kept}", file=sys.stderr)
        return 1
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
