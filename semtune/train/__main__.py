"""``python -m semtune.train``: train the CycleGAN from a preset or YAML config."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from semtune.cli import add_out, add_set, parser, start_threads
from semtune.config import ConfigError
from semtune.train.config import PRESETS, TrainConfig, load_train_config
from semtune.train.loop import train
from semtune.train.state import checkpoint_config
from semtune.train.step import NonFiniteLossError

__all__ = ["build_parser", "main"]

_EXAMPLES = """\
examples:
  python -m semtune.train --config cpu --out runs/cpu         # the bundled images, ~10 min
  python -m semtune.train --config tiny --out runs/tiny       # seconds: a smoke test
  python -m semtune.train --blurred my_blurred/ --clean my_clear/ --out runs/mine
  python -m semtune.train --config cpu --set loss.gamma=5 --out runs/g5
  python -m semtune.train --out runs/cpu --resume             # after Ctrl-C, a crash or a kill

A run folder holds last.pt (what --resume continues), best.pt, generator.pt (for
python -m semtune.enhance / semtune.evaluate), metrics.csv and config.json.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's parser (also read by ``python -m semtune.cli`` for docs/cli.md)."""
    p = parser(
        "python -m semtune.train",
        "Train the unpaired CycleGAN (edge loss) that restores blurred SEM images.",
        _EXAMPLES,
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="PRESET_OR_FILE",
        help=f"a preset ({', '.join(PRESETS)}) or a YAML file (default: cpu; with --resume, "
        "the run's own)",
    )
    add_set(
        p,
        "override a config value by its path, e.g. --set loss.gamma=5 --set "
        "schedule.steps=500 (repeatable)",
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
    add_out(p, "run folder (checkpoints, metrics.csv, config.json)", required=True)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (same crops, same RNG as "
        "uninterrupted); settings given with it must be the run's own",
    )
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.clean:
        overrides.insert(0, f"data.clean_dir={args.clean}")
    if args.blurred:
        overrides.insert(0, f"data.blurred_dir={args.blurred}")
        if not any(o.split("=", 1)[0].strip() == "data.val_set" for o in overrides):
            overrides.insert(0, "data.val_set=own")
    return overrides


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_conflicts(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """The config paths where ``given`` (the command line) differs from the run's ``saved``
    config, each as ``path (VALUE in the run, VALUE given)``."""
    was, now = _flat(saved.to_dict()), _flat(given.to_dict())
    return [
        f"{k} ({was.get(k)!r} in the run, {now.get(k)!r} given)"
        for k in sorted(set(was) | set(now))
        if _value(k, was.get(k)) != _value(k, now.get(k))
    ]


def _value(key: str, value: Any) -> Any:
    # a folder named relative or absolute is the same folder
    if key.endswith("_dir") and isinstance(value, str) and value:
        return Path(value).expanduser().resolve()
    return value


def _resume_config(
    p: argparse.ArgumentParser, args: argparse.Namespace, overrides: Sequence[str]
) -> tuple[TrainConfig, Path]:
    """The run's saved config, after checking that what the command line says agrees with it."""
    last = args.out / "last.pt"
    if not last.exists():
        p.error(f"--resume: {last} does not exist (nothing to resume in --out {args.out})")
    try:
        saved = checkpoint_config(last)
    except (FileNotFoundError, ValueError) as exc:
        p.error(f"--resume: {exc}")
    if args.config is None and not overrides:
        return saved, last
    try:
        if args.config is None:  # --set/--blurred/--clean alone: checked on top of the run's
            given = load_train_config(None, list(overrides), base=saved.to_dict())
        else:
            given = load_train_config(args.config, list(overrides))
    except ConfigError as exc:
        p.error(str(exc))
    diff = resume_conflicts(saved, given)
    if diff:
        p.error(
            f"--resume continues the run in {args.out} as it started; the settings given "
            f"(--config/--set/--blurred/--clean) differ from its saved config (changed: "
            f"{', '.join(diff)}); resume without them (or with the ones it started with), or "
            "start a new run in another --out"
        )
    return saved, last


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    overrides = _overrides(args)
    resume = None
    if args.resume:
        cfg, resume = _resume_config(p, args, overrides)
    else:
        try:
            cfg = load_train_config(args.config or "cpu", overrides)
        except ConfigError as exc:
            p.error(str(exc))
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            held = (
                ", ".join(sorted(f.name for f in args.out.iterdir())[:4])
                if args.out.is_dir()
                else ""
            )
            p.error(
                f"--out {args.out} is not an empty folder ({held or 'a file'}): --resume "
                "continues the run in it; name another folder for a new run (nothing was "
                "overwritten)"
            )
    # runtime.threads 0 = auto; a set value is passed on to the loop, which sets it again
    print(
        start_threads(
            cfg.runtime.threads, flag="runtime.threads", change="--set runtime.threads=N"
        ),
        flush=True,
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
