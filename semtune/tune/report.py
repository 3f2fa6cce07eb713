"""Study figures: metrics against each searched parameter (the paper's Fig. 5a for gamma),
the optimisation history, and Optuna's parameter importances. PNG files, no pyplot state."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from semtune.tune.space import PAPER_VALUES, StudySpec
from semtune.uncertainty import CI_BOUNDS, gain_name

__all__ = [
    "pareto_mask",
    "plot_history",
    "plot_importances",
    "plot_vs_param",
    "write_plots",
]

_SCORED = ("done", "stopped")


def pareto_mask(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """Rows of ``values`` (n, k) not dominated by any other row (NaN rows never are).

    Args:
        values: objective values, one row per trial.
        modes: ``max``/``min`` per column.
    """
    v = np.asarray(values, dtype=float) * np.array([1.0 if m == "max" else -1.0 for m in modes])
    ok = np.all(np.isfinite(v), axis=1)
    mask = np.zeros(len(v), dtype=bool)
    for i in np.flatnonzero(ok):
        others = v[ok]
        dominated = np.any(np.all(others >= v[i], axis=1) & np.any(others > v[i], axis=1))
        mask[i] = not dominated
    return mask


def plot_vs_param(table: pd.DataFrame, param: str, path: Path, spec: StudySpec) -> Path:
    """SSIM (left axis) and PSNR (right axis) of each trial against one parameter.

    Trials that ran their whole schedule are filled, those stopped early hollow, diverged ones
    left out; error bars are the 95% confidence interval of each trial's gain over its input,
    over the validation images, when the table has them. The paper's value of the parameter, if
    it has one, is a dashed line.
    """
    p = spec.param(param)
    scored = table[table["status"].isin(_SCORED)].copy()
    numeric = p.distribution in ("uniform", "loguniform", "int") or all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in p.values
    )
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    if numeric:
        x = scored[param].astype(float)
    else:
        cats = [str(v) for v in p.values]
        x = scored[param].astype(str).map({c: i for i, c in enumerate(cats)}).astype(float)
    done = (scored["status"] == "done").to_numpy()
    series = ((ax, "ssim", "SSIM", "tab:blue", "o"), (ax2, "psnr", "PSNR (dB)", "tab:red", "s"))
    bars = False
    for axis, metric, label, color, marker in series:
        y = scored[metric].astype(float)
        gain = gain_name(metric)
        low, high = (f"{gain}{bound}" for bound in CI_BOUNDS)
        if {gain, low, high} <= set(scored) and scored[[gain, low, high]].notna().all(axis=None):
            bars = True
            # 95% interval of the trial's gain over its input, over the validation images
            # (semtune.uncertainty): every trial is scored on the same images, so how hard
            # each image is (most of the spread of the absolute score) is common to all
            # trials and left out; the gain's spread is what tells trials apart
            g = scored[gain].astype(float)
            axis.errorbar(
                x,
                y,
                yerr=[g - scored[low].astype(float), scored[high].astype(float) - g],
                fmt="none",
                ecolor=color,
                alpha=0.35,
                capsize=2,
            )
        axis.scatter(x[done], y[done], color=color, marker=marker, label=label)
        if (~done).any():
            axis.scatter(
                x[~done],
                y[~done],
                facecolors="none",
                edgecolors=color,
                marker=marker,
                label=f"{label}, stopped early",
            )
        if numeric and done.sum() >= 2:
            order = np.argsort(x[done].to_numpy())
            axis.plot(x[done].to_numpy()[order], y[done].to_numpy()[order], color=color, alpha=0.4)
        axis.set_ylabel(label, color=color)
    paper = PAPER_VALUES.get(param)
    if paper is not None and numeric:
        ax.axvline(paper, color="0.3", linestyle="--", linewidth=1, label=f"paper: {paper:g}")
    if numeric and p.low is not None and p.high is not None:
        pad = 0.03 * (p.high - p.low)
        ax.set_xlim(p.low - pad, p.high + pad)
    if p.distribution == "loguniform":
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(p.values)), [str(v) for v in p.values])
    ax.set_xlabel(param)
    title = f"{spec.study}: validation SSIM and PSNR against {param}"
    if bars:
        title += "\nbars: 95% interval of the gain over the input, across validation images"
    ax.set_title(title, fontsize=9)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_history(table: pd.DataFrame, spec: StudySpec, path: Path) -> Path:
    """Each objective per trial (in the order Optuna created them) with the best so far.

    Trials stopped early are hollow; failed ones are red crosses on the lower edge.
    """
    k = len(spec.objectives)
    fig = Figure(figsize=(6.4, 2.8 * k), dpi=120)
    rows = table.sort_values("number")
    n = rows["number"].to_numpy()
    done = (rows["status"] == "done").to_numpy()
    stopped = (rows["status"] == "stopped").to_numpy()
    failed = rows["status"].isin(("diverged", "error")).to_numpy()
    for i, obj in enumerate(spec.objectives):
        ax = fig.add_subplot(k, 1, i + 1)
        y = rows[obj.metric].astype(float).where(done | stopped)
        ax.scatter(n[done], y[done], color="tab:blue", label="trial")
        if stopped.any():
            ax.scatter(
                n[stopped],
                y[stopped],
                facecolors="none",
                edgecolors="tab:blue",
                label="stopped early",
            )
        best = y.cummax() if obj.mode == "max" else y.cummin()
        ax.step(n, best.ffill(), where="post", color="tab:orange", label=f"best ({obj.mode})")
        if failed.any() and y.notna().any():
            ax.scatter(
                n[failed],
                np.full(failed.sum(), np.nanmin(y)),
                marker="x",
                color="tab:red",
                label="failed",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(obj.metric)
        ax.legend(fontsize=7)
        if i == k - 1:
            ax.set_xlabel("trial number (Optuna)")
    fig.suptitle(f"{spec.study}: optimisation history", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_importances(study: optuna.Study, spec: StudySpec, path: Path) -> tuple[Path | None, str]:
    """Optuna's parameter importances (PED-ANOVA) per objective; skipped when not meaningful.

    Returns:
        The file (or None) and a sentence saying what was done.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = [p.path for p in spec.space]
    if len(params) < 2:
        return None, "importances skipped: the space has a single parameter"
    if len(complete) < 3:
        return None, f"importances skipped: {len(complete)} complete trial(s), need at least 3"
    results: list[tuple[str, dict[str, float]]] = []
    for i, obj in enumerate(spec.objectives):
        target: Callable[[FrozenTrial], float] | None = None
        if spec.multi_objective:
            # PED-ANOVA (Optuna's default evaluator) ranks parameters by how they lead to LOW
            # target values; a single objective gets the direction from the study.
            target = _value_getter(i, -1.0 if obj.mode == "max" else 1.0)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*importances of params to achieve")
                imp = optuna.importance.get_param_importances(study, target=target)
        except (RuntimeError, ValueError) as exc:  # e.g. zero variance among the values
            return None, f"importances skipped: {exc}"
        results.append((obj.metric, imp))
    fig = Figure(figsize=(6.4, 1.2 + 0.5 * len(params) * len(results)), dpi=120)
    for j, (metric, imp) in enumerate(results):
        ax = fig.add_subplot(len(results), 1, j + 1)
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="tab:blue")
        ax.set_xlabel(f"importance for {metric} (PED-ANOVA, sums to 1)")
    fig.suptitle(f"{spec.study}: parameter importances ({len(complete)} trials)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path, f"importances from {len(complete)} complete trials"


def _value_getter(i: int, sign: float) -> Callable[[FrozenTrial], float]:
    def get(t: FrozenTrial) -> float:
        return sign * float(t.values[i]) if t.values else math.nan

    return get


def write_plots(
    table: pd.DataFrame, spec: StudySpec, study: optuna.Study, out: Path
) -> tuple[list[Path], list[str]]:
    """All figures of a finished study into ``out``; returns files and notes on skipped ones."""
    files: list[Path] = []
    notes: list[str] = []
    scored = table[table["status"].isin(_SCORED)]
    if scored.empty:
        return files, ["plots skipped: no trial produced a score"]
    for p in spec.space:
        if p.path in table and table.loc[scored.index, p.path].notna().any():
            files.append(plot_vs_param(table, p.path, out / f"ssim_psnr_vs_{p.path}.png", spec))
    files.append(plot_history(table, spec, out / "history.png"))
    imp_path, note = plot_importances(study, spec, out / "importances.png")
    notes.append(note)
    if imp_path is not None:
        files.append(imp_path)
    return files, notes
