"""The confirmation stage of a study (issue 12): the search's verdict tested on fresh seeds and
unseen images.

A search ranks many configurations by one noisy evaluation each (one seed, a few validation
images, the best of several checkpoints), so its best is partly luck. After it, the ``top_k``
configurations (at an equal budget, ``semtune.tune.budget``) and a control (the paper's values
of the searched parameters, or an ``enqueue``d point) are trained again from scratch with
``seeds`` fresh seeds each, as Ray trials side by side (the full schedule, no early stopping),
and each resulting generator is scored on a confirmation set cut from images that neither the
training nor the search's validation used (checked by content). The study's verdict comes from
these runs:

- per configuration: the objective's mean over seeds and images, with a 95% interval from a
  two-way bootstrap (``semtune.uncertainty.seeds_images_ci``);
- the winner against the control and the runner-up: the paired difference (same images, seed
  for seed), with its interval; the winner "beats" another only if the interval lies above 0.

Files: ``confirmation_scores.csv`` (configuration x seed x image), ``confirmation.csv`` (one row
per configuration), ``confirmation.json`` (the verdict), ``confirmation.png``.

Size: longer than ~400 lines because of the stage's candidates, data check, scoring and verdict,
which change together.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from semtune.atomic import write_atomically, write_text_atomically
from semtune.io import IMAGE_EXTENSIONS
from semtune.scoring import load_scoring_data
from semtune.train.config import TrainConfig
from semtune.train.loop import score_images
from semtune.train.state import load_generator
from semtune.tune.keys import CANDIDATE_KEY, POINT_KEY
from semtune.tune.progress import short_name
from semtune.tune.space import PAPER_VALUES, StudySpec
from semtune.uncertainty import gain_name, seeds_images_ci

if TYPE_CHECKING:
    from ray.tune import Result

__all__ = [
    "CONFIRM_DIR",
    "SEED_PATH",
    "Candidate",
    "Confirmation",
    "candidates",
    "check_confirmation_images",
    "confirmation_points",
    "summarise_confirmation",
]

CONFIRM_DIR = "tune_confirm"  # Tune's experiment of the confirmation, beside the search's
SEED_PATH = "runtime.seed"


class ConfirmationError(ValueError):
    """The confirmation cannot run as asked (the message names the file or setting)."""


@dataclass(frozen=True)
class Candidate:
    """A configuration the confirmation trains again: its searched parameters, a label for
    people (``gamma 0.41``) and its role (``search #1``, ``control``, ``search #2 = control``)."""

    params: dict[str, Any]
    label: str
    role: str


def _label(params: Mapping[str, Any], paths: Sequence[str]) -> str:
    return ", ".join(f"{short_name(p, paths)} {_value(params[p])}" for p in paths if p in params)


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return set(a) == set(b) and all(
        math.isclose(a[k], b[k]) if isinstance(a[k], float) else a[k] == b[k] for k in a
    )


def control_params(spec: StudySpec) -> dict[str, Any] | None:
    """The control's parameters (see ``ConfirmSpec.control``), None if there is none."""
    paths = [p.path for p in spec.space]
    paper = {p: PAPER_VALUES[p] for p in paths if p in PAPER_VALUES}
    enqueued = dict(spec.enqueue[0]) if spec.enqueue else None
    choice = spec.confirm.control
    if choice == "none":
        return None
    if choice == "paper" or (choice == "auto" and len(paper) == len(paths)):
        if len(paper) != len(paths):
            missing = [p for p in paths if p not in paper]
            raise ConfirmationError(
                f"confirm.control: paper: the paper gives no value for {', '.join(missing)}; "
                "enqueue a control point instead (control: enqueue)"
            )
        return paper
    if enqueued is None:
        if choice == "enqueue":
            raise ConfirmationError("confirm.control: enqueue: the study file enqueues no point")
        return None
    return enqueued


def candidates(spec: StudySpec, ranked: pd.DataFrame) -> list[Candidate]:
    """The ``top_k`` distinct configurations of the search (``ranked``: scored trials, best
    first) and the control, which is added when it is not among them."""
    paths = [p.path for p in spec.space]
    out: list[Candidate] = []
    for _, row in ranked.iterrows():
        params = {p: _plain(row[p]) for p in paths if p in row and pd.notna(row[p])}
        if any(_same(params, c.params) for c in out):
            continue
        out.append(Candidate(params, _label(params, paths), f"search #{len(out) + 1}"))
        if len(out) == spec.confirm.top_k:
            break
    control = control_params(spec)
    if control is not None:
        for i, c in enumerate(out):
            if _same(c.params, control):
                out[i] = Candidate(c.params, c.label, f"{c.role} = control")
                break
        else:
            out.append(Candidate(control, _label(control, paths), "control"))
    return out


def confirmation_points(
    cands: Sequence[Candidate], seeds: int, base_seed: int
) -> list[dict[str, Any]]:
    """Each candidate with each fresh seed (the search trained every trial with ``base_seed``):
    the parameters of the confirmation trials, seed by seed so that the first round of trials
    covers every candidate once."""
    return [
        {**c.params, SEED_PATH: base_seed + 1 + s, CANDIDATE_KEY: i}
        for s in range(seeds)
        for i, c in enumerate(cands)
    ]


def _files(folder: str | Path | None) -> list[Path]:
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(
        f for f in Path(folder).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_confirmation_images(spec: StudySpec, base: TrainConfig) -> list[Path]:
    """The confirmation folders' images; refused if missing, empty, or sharing an image (by
    content, whatever its name) with the folders the search trains and validates on."""
    data = base.data
    if data.val_set == "own":
        raise ConfirmationError(
            "confirm: data.val_set is 'own' (blur and noise estimated from your blurred folder); "
            "the confirmation degrades its images like a synthetic set: set data.val_set (e.g. "
            "A+n) or remove confirm:"
        )
    used = {
        _digest(f): f
        for key in ("clean_dir", "blurred_dir", "val_dir")
        for f in _files(getattr(data, key))
    }
    files: list[Path] = []
    for folder in spec.confirm.data:
        path = Path(folder).expanduser().resolve()
        found = _files(path)
        if not found:
            raise ConfirmationError(f"confirm.data: {path} holds no images")
        for f in found:
            if (h := _digest(f)) in used:
                raise ConfirmationError(
                    f"confirm.data: {f} is also {used[h]}, an image the search trains or "
                    "validates on; the confirmation must be scored on images it never saw"
                )
        files.extend(found)
    return files


@dataclass(frozen=True)
class Confirmation:
    """The confirmation's outcome; ``verdict`` is the sentence the study prints."""

    summary: pd.DataFrame
    scores: pd.DataFrame
    winner: int
    verdict: str
    comparisons: list[dict[str, Any]]
    winner_trial: str


def _score_trials(
    results: Iterable[Result], cands: Sequence[Candidate], base: TrainConfig, spec: StudySpec
) -> pd.DataFrame:
    data = base.data
    scoring = load_scoring_data(
        list(spec.confirm.data),
        [data.val_set],
        crop_size=data.val_crop_size,
        n_crops=spec.confirm.crops,
        seed=data.seed,
        crop_bar=data.crop_bar,
        degrade=data.degrade,
    )
    paired = scoring.sets[data.val_set]
    n_images = len(scoring.files)
    groups = [j % n_images for j in range(paired.clean.shape[0])]
    names = [Path(f).name for f in scoring.files]
    rows = []
    for r in results:
        if r.error is not None or r.checkpoint is None:
            continue
        point = dict((r.config or {}).get(POINT_KEY, {}))
        with r.checkpoint.as_directory() as d:
            src = Path(d) / "generator.pt"
            if not src.is_file():
                continue
            g, _ = load_generator(src, "cpu")
        per_image = score_images(g, paired, groups)
        trial_id = str((r.metrics or {}).get("trial_id") or Path(r.path).name)
        c = int(point[CANDIDATE_KEY])
        for row, image in enumerate(sorted(set(groups))):
            rows.append(
                {
                    "candidate": c,
                    "label": cands[c].label,
                    "role": cands[c].role,
                    "seed": int(point[SEED_PATH]),
                    "trial_id": trial_id,
                    "image": names[image],
                    **{k: float(v[row]) for k, v in per_image.items()},
                }
            )
    return pd.DataFrame(rows)


def _frame(scores: pd.DataFrame, candidate: int, metric: str) -> pd.DataFrame:
    """``metric`` of one candidate as a (seeds, images) table, seeds and images in order."""
    sub = scores[scores["candidate"] == candidate]
    return sub.pivot(index="seed", columns="image", values=metric).sort_index()


def _table(scores: pd.DataFrame, candidate: int, metric: str) -> torch.Tensor:
    return torch.tensor(_frame(scores, candidate, metric).to_numpy(), dtype=torch.float64)


def summarise_confirmation(
    results: Iterable[Result],
    cands: Sequence[Candidate],
    base: TrainConfig,
    spec: StudySpec,
    out: Path,
    printer: Callable[[str], None],
) -> Confirmation | None:
    """Score every confirmation trial, write the files and say the verdict."""
    scores = _score_trials(results, cands, base, spec)
    if scores.empty:
        printer("confirmation: no trial produced a generator; no verdict")
        return None
    obj = spec.objectives[0]
    metric = obj.metric
    if metric not in scores.columns:
        raise ConfirmationError(
            f"confirm: the objective {metric!r} is not scored per image (per-image scores: "
            "ssim, psnr, ssim_gain, psnr_gain, score)"
        )
    # each configuration's score, and its gain over the input: the images' own difficulty
    # widens the score's interval, and is common to all (the same crops): the gain's is narrower
    gain = gain_name(metric)
    rows = []
    for c in sorted(scores["candidate"].unique()):
        row: dict[str, Any] = {
            "candidate": c,
            "label": cands[c].label,
            "role": cands[c].role,
            **{k: v for k, v in cands[c].params.items()},
        }
        for m in dict.fromkeys([metric, gain]):
            t = _table(scores, c, m)
            low, high = seeds_images_ci(t)
            row.update({"seeds": t.shape[0], "images": t.shape[1], m: float(t.mean())})
            row.update({f"{m}_ci_low": low, f"{m}_ci_high": high})
        for m in ("ssim", "psnr", "ssim_gain", "psnr_gain"):
            row.setdefault(m, float(scores.loc[scores["candidate"] == c, m].mean()))
        rows.append(row)
    summary = pd.DataFrame(rows).sort_values(metric, ascending=obj.mode == "min")
    winner = int(summary.iloc[0]["candidate"])
    others: list[tuple[str, int]] = []
    control = next((c for c in summary["candidate"] if "control" in cands[c].role), None)
    if control is not None and control != winner:
        others.append(("control", int(control)))
    if len(summary) > 1:
        runner_up = int(summary.iloc[1]["candidate"])
        if runner_up != control:
            others.append(("runner-up", runner_up))
    comparisons = []
    for name, other in others:
        fa, fb = _frame(scores, winner, metric), _frame(scores, other, metric)
        seeds = fa.index.intersection(fb.index)  # a failed trial: pair the seeds both have
        d = torch.tensor((fa.loc[seeds] - fb.loc[seeds]).to_numpy(), dtype=torch.float64)
        # d: winner minus the other, seed for seed, image by image
        low, high = seeds_images_ci(d)
        comparisons.append(
            {
                "against": name,
                "other": cands[other].label,
                "difference": float(d.mean()),
                "ci_low": low,
                "ci_high": high,
                # better only if the whole interval is on the winner's side of 0
                "better": bool(low > 0 if obj.mode == "max" else high < 0),
                "seeds": d.shape[0],
                "images": d.shape[1],
            }
        )
    verdict = _verdict(cands, winner, control, comparisons, metric)
    # the winner's generator: its first seed's (no choice among seeds on the confirmation set)
    first = scores[scores["candidate"] == winner].sort_values("seed").iloc[0]
    write_atomically(out / "confirmation_scores.csv", lambda t: scores.to_csv(t, index=False))
    write_atomically(out / "confirmation.csv", lambda t: summary.to_csv(t, index=False))
    record = {
        "objective": metric,
        "mode": obj.mode,
        "winner": cands[winner].label,
        "winner_params": cands[winner].params,
        "winner_trial": first["trial_id"],
        "verdict": verdict,
        "comparisons": comparisons,
        "configurations": json.loads(summary.to_json(orient="records")),
        "images": sorted(scores["image"].unique().tolist()),
        "rule": "each configuration trained again with fresh seeds for the full schedule and "
        "scored on images neither its training nor the search's validation used; intervals "
        "by a two-way bootstrap over seeds and images",
    }
    write_text_atomically(out / "confirmation.json", json.dumps(record, indent=2, default=str))
    reference = int(control) if control is not None else winner
    _plot(summary, scores, cands, reference, metric, out / "confirmation.png")
    printer(f"\nconfirmation ({out / 'confirmation.csv'}):")
    shown = ["label", "role", "seeds", "images", metric, gain, f"{gain}_ci_low", f"{gain}_ci_high"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        printer(summary[list(dict.fromkeys(shown))].to_string(index=False, float_format=_num))
    printer(verdict)
    return Confirmation(
        summary=summary,
        scores=scores,
        winner=winner,
        verdict=verdict,
        comparisons=comparisons,
        winner_trial=str(first["trial_id"]),
    )


def _verdict(
    cands: Sequence[Candidate],
    winner: int,
    control: Any,
    comparisons: Sequence[Mapping[str, Any]],
    metric: str,
) -> str:
    def said(c: Mapping[str, Any]) -> str:
        return (
            f"{c['difference']:+.4f} {metric} (95% CI {c['ci_low']:+.4f}..{c['ci_high']:+.4f}; "
            f"{c['seeds']} seeds x {c['images']} images)"
        )

    name = cands[winner].label
    by = {c["against"]: c for c in comparisons}
    if "control" in by:
        c = by["control"]
        if c["better"]:
            return f"verdict: {name} beats the control {c['other']} by {said(c)}"
        return (
            f"verdict: no configuration is distinguishable from the control {c['other']} "
            f"(best, {name}: {said(c)})"
        )
    if control is not None:  # the winner is the control
        tail = f"; the runner-up {by['runner-up']['other']}: {said(by['runner-up'])}"
        return f"verdict: the control {name} is best{tail if 'runner-up' in by else ''}"
    if "runner-up" in by:
        c = by["runner-up"]
        rel = "beats" if c["better"] else "is not distinguishable from"
        return f"verdict: {name} {rel} the runner-up {c['other']}: {said(c)}"
    return f"verdict: {name} (the only configuration confirmed)"


def _num(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.2f}"


def _plot(
    summary: pd.DataFrame,
    scores: pd.DataFrame,
    cands: Sequence[Candidate],
    reference: int,
    metric: str,
    path: Path,
) -> None:
    """Each configuration minus the reference (the control, else the winner), paired seed for
    seed and image by image, with its 95% interval: the absolute scores' intervals are mostly
    the images' own difficulty, common to all, and would hide the differences."""
    rows = [int(c) for c in summary["candidate"] if int(c) != reference]
    fig = Figure(figsize=(7.0, 1.2 + 0.45 * max(len(rows), 1)))
    ax = fig.add_subplot()
    ref = _frame(scores, reference, metric)
    y = list(range(len(rows)))[::-1]
    for yi, c in zip(y, rows, strict=True):
        f = _frame(scores, c, metric)
        seeds = f.index.intersection(ref.index)
        d = torch.tensor((f.loc[seeds] - ref.loc[seeds]).to_numpy(), dtype=torch.float64)
        low, high = seeds_images_ci(d)
        mean = float(d.mean())
        ax.errorbar([mean], [yi], xerr=[[mean - low], [high - mean]], fmt="o", capsize=4)
    ax.axvline(0.0, color="0.4", lw=1)
    ax.set_yticks(y, [f"{cands[c].label} ({cands[c].role})" for c in rows])
    ax.set_title(f"{metric} minus {cands[reference].label} ({cands[reference].role})", fontsize=10)
    ax.set_xlabel("paired difference: mean over seeds and images, 95% CI")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    write_atomically(path, lambda t: fig.savefig(t, format="png", dpi=120))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
