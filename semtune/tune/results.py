"""A study's results: the table of trials, the best trial at an equal budget, the exported
generator, the printed summary, and checkpoints slimmed once nothing will continue them.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd

from semtune.atomic import write_atomically, write_text_atomically
from semtune.tune.budget import Budget, at_equal_budget, trial_histories
from semtune.tune.confirm import Confirmation
from semtune.tune.keys import RESUMED_FROM_KEY
from semtune.tune.progress import describe_status, short_name
from semtune.tune.report import pareto_mask, write_plots
from semtune.tune.searcher import TUNE_TRIAL_ATTR
from semtune.tune.space import StudySpec
from semtune.uncertainty import CI_BOUNDS, gain_name

if TYPE_CHECKING:
    from ray.tune import Result

__all__ = [
    "StudyResult",
    "export_generator",
    "record_winner",
    "results_frame",
    "slim_checkpoints",
    "summarise",
]


@dataclass(frozen=True)
class StudyResult:
    """What a finished (or interrupted) study leaves behind.

    Attributes:
        out_dir: the study folder.
        table: one row per trial (``results.csv``).
        best: the best trial's row, or the Pareto front's rows for several objectives.
        best_generator: ``best_generator.pt`` (None when no trial produced a score).
        plots: the PNG files written.
        complete: whether every trial ended (False after an interruption: ``--resume``),
            the confirmation's included.
        confirmation: the confirmation stage's outcome, when the study file asks for one.
    """

    out_dir: Path
    table: pd.DataFrame
    best: pd.DataFrame
    best_generator: Path | None
    plots: list[Path]
    complete: bool
    confirmation: Confirmation | None = None


def results_frame(results: Iterable[Result], spec: StudySpec, study: optuna.Study) -> pd.DataFrame:
    """One row per trial: Optuna number and state, status, parameters, step and metrics."""
    by_tune_id = {t.user_attrs.get(TUNE_TRIAL_ATTR): t for t in study.get_trials(deepcopy=False)}
    params = [p.path for p in spec.space]
    metrics = spec.columns
    rows = []
    for r in results:
        last = dict(r.metrics or {})
        trial_id = last.get("trial_id") or Path(r.path).name.removeprefix("trial_")
        ot = by_tune_id.get(trial_id)
        status = describe_status("TERMINATED", last, r.error is not None)
        row: dict[str, Any] = {
            "number": ot.number if ot is not None else -1,
            "trial_id": trial_id,
            "status": status,
            "optuna_state": ot.state.name if ot is not None else "",
        }
        for p in params:
            row[p] = r.config.get(p) if r.config else None
        row["step"] = int(last.get("step", 0))
        for m in metrics:
            row[m] = float(last[m]) if m in last else math.nan
        for m in metrics:  # 95% intervals over the validation images (semtune.uncertainty)
            for bound in CI_BOUNDS:
                if f"{m}{bound}" in last:
                    row[f"{m}{bound}"] = float(last[f"{m}{bound}"])
        row["train_seconds"] = float(last.get("train_seconds", math.nan))
        row[RESUMED_FROM_KEY] = int(last.get(RESUMED_FROM_KEY, 0))
        row["error"] = "" if r.error is None else str(r.error).strip().splitlines()[-1][:200]
        row["path"] = r.path
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values("number", kind="stable").reset_index(drop=True)
    return table


def _best(
    table: pd.DataFrame, spec: StudySpec, histories: Mapping[str, pd.DataFrame] | None = None
) -> tuple[pd.DataFrame, Budget | None, pd.DataFrame]:
    """The best trial (or Pareto front), ranked at an equal budget (semtune.tune.budget), and
    every trial scored at that budget, best first (what the confirmation takes its top from)."""
    columns = spec.columns
    bounds = [c for c in table.columns if c.endswith(CI_BOUNDS)]
    scored, budget = at_equal_budget(table, histories or {}, columns, carry=bounds)
    if scored.empty:
        return scored, budget, scored
    obj = spec.objectives[0]
    ranked = scored.sort_values(obj.metric, ascending=obj.mode == "min", kind="stable")
    return _rank(scored, spec), budget, ranked


def _rank(scored: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    if spec.multi_objective:
        mask = pareto_mask(scored[spec.metrics].to_numpy(), spec.modes)
        front = scored[mask]
        obj = spec.objectives[0]
        return front.sort_values(obj.metric, ascending=obj.mode == "min")
    obj = spec.objectives[0]
    idx = scored[obj.metric].idxmax() if obj.mode == "max" else scored[obj.metric].idxmin()
    return scored.loc[[idx]]


def export_generator(results: Iterable[Result], trial_id: str, dest: Path) -> Path | None:
    for r in results:
        rid = (r.metrics or {}).get("trial_id")
        if rid != trial_id or r.checkpoint is None:
            continue
        with r.checkpoint.as_directory() as d:
            src = Path(d) / "generator.pt"
            if src.is_file():
                shutil.copyfile(src, dest)
                return dest
    return None


# What only continuing a trial needs: the trainer's state (networks, optimizers, RNG), ~55 MB
# at the cpu preset. Once a study is complete no trial continues, so each trial that ended
# without an error keeps only its latest snapshot's generator, metrics and state file.
_TRAINING_STATE = "last.pt"


def slim_checkpoints(
    results: Iterable[Result], printer: Callable[[str], None], what: str = "the finished trials"
) -> None:
    """Drop what no one will read from a complete study's checkpoints (local storage only).

    Kept: every trial's latest snapshot minus the training state (its ``generator.pt`` is the
    trial's best evaluation, what the export and the registry take), and everything of trials
    that failed (``--resume`` retries them from their checkpoint). Tune's own bookkeeping of
    the checkpoints (``num_to_keep``) is untouched: the folders stay, only files go.
    """
    before = after = 0
    for r in results:
        if r.error is not None or r.checkpoint is None or not Path(r.path).is_dir():
            continue
        latest = Path(r.checkpoint.path).resolve()
        for ckpt in sorted(Path(r.path).glob("checkpoint_*")):
            for f in ckpt.iterdir():
                if not f.is_file():
                    continue
                size = f.stat().st_size
                before += size
                if f.name == _TRAINING_STATE or (ckpt.resolve() != latest and f.suffix == ".pt"):
                    f.unlink()
                else:
                    after += size
    if before > after:
        printer(
            f"checkpoints of {what}: {before / 2**20:.0f} MB -> {after / 2**20:.0f} "
            "MB (kept each trial's latest generator.pt and metrics; dropped the training state "
            "that only continuing a trial needs)"
        )


def _table_text(table: pd.DataFrame, spec: StudySpec) -> str:
    params = [p.path for p in spec.space]
    cols = ["number", "trial_id", "status", *params, "step"]
    cols += spec.columns
    view = table[[c for c in cols if c in table]].rename(
        columns={p: short_name(p, params) for p in params}
    )
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        return view.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def summarise(
    results: Iterable[Result],
    spec: StudySpec,
    study: optuna.Study,
    out: Path,
    complete: bool,
    printer: Callable[[str], None],
) -> tuple[StudyResult, pd.DataFrame]:
    table = results_frame(results, spec, study)
    write_atomically(out / "results.csv", lambda tmp: table.to_csv(tmp, index=False))
    printer(f"\nresults ({len(table)} trials, {out / 'results.csv'}):")
    printer(_table_text(table, spec))
    columns = spec.columns
    bounds = [f"{m}{b}" for m in columns for b in CI_BOUNDS]
    best, budget, ranked = _best(table, spec, trial_histories(results, [*columns, *bounds]))
    best_generator: Path | None = None
    if best.empty:
        printer("no trial produced a score: nothing to export")
    else:
        top = best.iloc[0]
        params = {p.path: top[p.path] for p in spec.space if p.path in best}
        metrics = {m: float(top[m]) for m in spec.columns}
        ci95 = {
            m: [float(top[f"{m}_ci_low"]), float(top[f"{m}_ci_high"])]
            for m in metrics
            if f"{m}_ci_low" in top.index and pd.notna(top[f"{m}_ci_low"])
        }
        best_generator = export_generator(results, str(top["trial_id"]), out / "best_generator.pt")
        info = {
            "trial_id": top["trial_id"],
            "number": int(top["number"]),
            "params": {k: _plain(v) for k, v in params.items()},
            "metrics": metrics,
            # 95% intervals by a bootstrap over the validation images (semtune.uncertainty)
            "ci95": ci95,
            "step": int(top["step"]),
            "budget": {
                "step": budget.step if budget else None,
                "trials": budget.trials if budget else 0,
                "furthest_step": budget.top_step if budget else None,
                "rule": "trials ranked by their evaluation at the highest step that at least "
                "two scored trials reached (equal budget); metrics are the best trial's there",
            },
            "generator": str(best_generator) if best_generator else None,
            "note": "best_generator.pt is the trial's best evaluation by the trainer's "
            "validation score (generator.pt of its run)",
        }
        write_text_atomically(out / "best_trial.json", json.dumps(info, indent=2))
        if spec.multi_objective:
            write_atomically(out / "pareto_front.csv", lambda tmp: best.to_csv(tmp, index=False))
            printer(f"\nPareto front ({len(best)} trials, {out / 'pareto_front.csv'}):")
            printer(_table_text(best, spec))
            printer(f"exported: the front's best {spec.metrics[0]} (trial {top['trial_id']})")
            if budget is not None:
                printer(f"compared {budget.describe()}")
        else:
            obj = spec.objectives[0]
            printer(
                f"\nbest trial {top['trial_id']} (#{int(top['number'])}): {obj.metric} = "
                f"{float(top[obj.metric]):.4f}"
                + _gain_interval(obj.metric, metrics, ci95)
                + " with "
                + ", ".join(f"{k} = {_plain(v)}" for k, v in params.items())
                + (f"; compared {budget.describe()}" if budget is not None else "")
            )
        if best_generator is not None:
            printer(f"best generator: {best_generator}")
    if complete:
        slim_checkpoints(results, printer)
    plots, notes = write_plots(table, spec, study, out)
    for note in notes:
        printer(note)
    if plots:
        printer("figures: " + ", ".join(str(p.name) for p in plots))
    if not complete:
        printer(f"study interrupted: continue it with --resume --out {out}")
    result = StudyResult(
        out_dir=out,
        table=table,
        best=best,
        best_generator=best_generator,
        plots=plots,
        complete=complete,
    )
    return result, ranked


def _gain_interval(metric: str, metrics: dict[str, float], ci95: dict[str, list[float]]) -> str:
    """ " (gain +0.0179, 95% CI +0.0121 to +0.0235 over the validation images)" for the
    objective: the gain's interval is what tells trials apart (the images are common to all)."""
    gain = gain_name(metric)
    if gain not in ci95 or gain not in metrics:
        return ""
    low, high = ci95[gain]
    return (
        f" (gain over the input {metrics[gain]:+.4f}, 95% CI {low:+.4f} to {high:+.4f} over "
        "the validation images)"
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def record_winner(
    out: Path, conf: Confirmation, results: Iterable[Result], spec: StudySpec
) -> None:
    """best_trial.json names the confirmed winner (the search's best is kept under
    ``search_best``): what MLflow registers."""
    path = out / "best_trial.json"
    searched = json.loads(path.read_text()) if path.is_file() else {}
    last: dict[str, Any] = {}
    for r in results:
        if str((r.metrics or {}).get("trial_id")) == conf.winner_trial:
            last = dict(r.metrics or {})
    winner = conf.summary[conf.summary["candidate"] == conf.winner].iloc[0]
    info = {
        "trial_id": conf.winner_trial,
        "number": -1,
        "params": {p.path: _plain(winner[p.path]) for p in spec.space if p.path in winner},
        "metrics": {m: float(last[m]) for m in spec.columns if m in last},
        "step": int(last.get("step", 0)),
        "confirmation": {
            "verdict": conf.verdict,
            "comparisons": conf.comparisons,
            "file": "confirmation.json",
        },
        "generator": str(out / "best_generator.pt"),
        "note": "the confirmed winner's first seed (semtune.tune.confirm); its metrics are its "
        "own validation's, the confirmation's are in confirmation.csv",
        "search_best": searched,
    }
    write_text_atomically(path, json.dumps(info, indent=2, default=str))
