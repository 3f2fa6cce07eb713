"""Study files: every mistake is caught before Ray starts, naming the file and the key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from semtune.config import ConfigError
from semtune.tune.progress import describe_status, short_name
from semtune.tune.report import pareto_mask
from semtune.tune.space import SpaceSampler, build_sampler, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

GOOD: dict[str, Any] = {
    "study": "unit",
    "base": {"config": "tiny", "overrides": {"schedule.steps": 4}},
    "space": {
        "loss.gamma": {"distribution": "uniform", "low": 0.0, "high": 20.0},
        "optim.lr": {"distribution": "loguniform", "low": 1.0e-5, "high": 1.0e-3},
        "loss.edge_operator": {"distribution": "choice", "values": ["sobel", "kirsch"]},
    },
    "objective": {"metric": "ssim", "mode": "max"},
    "trials": 3,
}


def _write(tmp_path: Path, data: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _with(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD, sort_keys=False))  # deep copy
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return data


_DELETE = object()


def test_a_valid_file_loads_with_its_base_config_and_parameters(tmp_path: Path) -> None:
    spec = load_space(_write(tmp_path, GOOD))
    assert spec.study == "unit" and spec.trials == 3
    assert [p.path for p in spec.space] == ["loss.gamma", "optim.lr", "loss.edge_operator"]
    assert spec.train_config().schedule.steps == 4
    assert spec.metrics == ["ssim"] and spec.modes == ["max"]


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"trails": 3}, r"unknown key trails \(valid keys: study"),
        ({"sampler": {"name": "tpe", "sed": 1}}, r"unknown key sampler\.sed"),
        (
            {"space__loss.gamma__hgh": 3},
            r"unknown key space\.loss\.gamma\.hgh \(valid keys in space\.loss\.gamma",
        ),
    ],
)
def test_an_unknown_key_is_named_with_the_file(
    tmp_path: Path, changes: dict[str, Any], pattern: str
) -> None:
    path = _write(tmp_path, _with(**changes))
    with pytest.raises(ConfigError, match=rf"study\.yaml: {pattern}"):
        load_space(path)


def test_an_unknown_config_path_lists_the_valid_keys(tmp_path: Path) -> None:
    data = _with()
    data["space"]["loss.gama"] = {"distribution": "uniform", "low": 0, "high": 1}
    with pytest.raises(ConfigError, match=r"study\.yaml: space\.loss\.gama: .*valid: .*gamma"):
        load_space(_write(tmp_path, data))


def test_an_unknown_override_path_is_named(tmp_path: Path) -> None:
    data = _with(base__overrides={"schedule.stepz": 3})
    with pytest.raises(ConfigError, match=r"study\.yaml: base\.overrides\.schedule\.stepz"):
        load_space(_write(tmp_path, data))


def test_an_unknown_distribution_lists_the_valid_ones(tmp_path: Path) -> None:
    data = _with(**{"space__loss.gamma__distribution": "normal"})
    with pytest.raises(
        ConfigError, match=r"study\.yaml: space\.loss\.gamma\.distribution: .*'normal'.*uniform"
    ):
        load_space(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("param", "spec", "pattern"),
    [
        ("loss.gamma", {"distribution": "uniform", "low": 5, "high": 5}, "low must be below high"),
        ("loss.gamma", {"distribution": "uniform", "low": -1, "high": 5}, "gamma must be >= 0"),
        (
            "optim.lr",
            {"distribution": "loguniform", "low": 0, "high": 1},
            "log scale needs low > 0",
        ),
        ("schedule.steps", {"distribution": "uniform", "low": 2, "high": 9}, "expected an integer"),
        ("schedule.steps", {"distribution": "int", "low": 2, "high": 9.5}, "expected an integer"),
        (
            "loss.edge_operator",
            {"distribution": "choice", "values": ["sobel", "canny"]},
            "'canny' is not one of",
        ),
        ("loss.edge_operator", {"distribution": "choice", "values": []}, "non-empty list"),
    ],
)
def test_a_bad_range_or_value_is_rejected_with_the_trainer_reason(
    tmp_path: Path, param: str, spec: dict[str, Any], pattern: str
) -> None:
    data = _with()
    data["space"][param] = spec
    with pytest.raises(ConfigError, match=rf"study\.yaml: space\.{param}.*{pattern}"):
        load_space(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"objective": _DELETE}, "missing required key 'objective'"),
        ({"trials": _DELETE}, "missing required key 'trials'"),
        ({"space__loss.gamma__high": _DELETE}, r"space\.loss\.gamma: missing required key 'high'"),
        (
            {"space__loss.gamma__distribution": _DELETE},
            r"space\.loss\.gamma: missing required key 'distribution'",
        ),
    ],
)
def test_a_missing_field_is_named(tmp_path: Path, changes: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=rf"study\.yaml: {pattern}"):
        load_space(_write(tmp_path, _with(**changes)))


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"objective": {"metric": "sharpness"}}, r"objective\.metric: unknown metric 'sharpness'"),
        ({"objective": {"metric": "ssim", "mode": "up"}}, r"objective\.mode: expected max or min"),
        ({"sampler": {"name": "cmaes"}}, r"sampler\.name: 'cmaes' is not one of"),
        (
            {"sampler": {"name": "random", "n_startup_trials": 2}},
            r"sampler\.n_startup_trials: not an option of the random",
        ),
        ({"sampler": "grid"}, r"space\.loss\.gamma: the grid sampler needs every parameter"),
        ({"resources": {"cpu": 0}}, r"resources: cpu must be > 0"),
        ({"trials": 0}, r"trials: expected an integer >= 1"),
        ({"base__config": "missing.yaml"}, r"base\.config: 'missing\.yaml' is neither a preset"),
        ({"enqueue": [{"loss.gamma": 30.0}]}, r"enqueue\[0\]\.loss\.gamma: 30\.0 is outside"),
        ({"storage": "optuna.db"}, r"storage: expected an SQLAlchemy URL"),
    ],
)
def test_other_sections_are_checked_by_name(
    tmp_path: Path, changes: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ConfigError, match=rf"study\.yaml: {pattern}"):
        load_space(_write(tmp_path, _with(**changes)))


def test_a_grid_parameter_needs_the_grid_sampler_and_sets_the_trial_count(tmp_path: Path) -> None:
    data = _with(space={"loss.gamma": {"distribution": "grid", "values": [0.0, 5.0, 10.0]}})
    with pytest.raises(ConfigError, match=r"'distribution: grid' needs 'sampler: grid'"):
        load_space(_write(tmp_path, data))
    data["sampler"] = "grid"
    del data["trials"]
    assert load_space(_write(tmp_path, data)).trials == 3
    data["trials"] = 4
    with pytest.raises(ConfigError, match=r"trials: 4 trials but the grid has only 3 points"):
        load_space(_write(tmp_path, data))


def test_cli_overrides_apply_after_the_file_and_are_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    assert load_space(path, ["schedule.steps=9"]).train_config().schedule.steps == 9
    with pytest.raises(ConfigError, match=r"base\.overrides\.loss\.gama"):
        load_space(path, ["loss.gama=1"])


def test_a_conditional_parameter_is_sampled_only_when_its_condition_holds(
    tmp_path: Path,
) -> None:
    data = _with()
    data["space"]["loss.lambda_identity"] = {
        "distribution": "uniform",
        "low": 0.0,
        "high": 5.0,
        "when": {"loss.edge_operator": "kirsch"},
    }
    spec = load_space(_write(tmp_path, data))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    sampler = SpaceSampler(spec.space)
    seen = {"sobel": 0, "kirsch": 0}
    for _ in range(20):
        trial = study.ask()
        sampler(trial)
        op = trial.params["loss.edge_operator"]
        seen[op] += 1
        assert ("loss.lambda_identity" in trial.params) == (op == "kirsch")
        study.tell(trial, 0.0)
    assert seen["sobel"] and seen["kirsch"]


def test_a_condition_must_name_an_earlier_choice_parameter(tmp_path: Path) -> None:
    data = _with()
    data["space"]["loss.gamma"]["when"] = {"loss.edge_operator": "kirsch"}  # listed later
    with pytest.raises(ConfigError, match=r"space\.loss\.gamma\.when: 'loss\.edge_operator' must"):
        load_space(_write(tmp_path, data))


def test_the_same_seed_samples_the_same_trials(tmp_path: Path) -> None:
    spec = load_space(_write(tmp_path, GOOD))

    def first_params() -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=build_sampler(spec), direction="maximize")
        out = []
        for _ in range(3):
            t = study.ask()
            SpaceSampler(spec.space)(t)
            out.append(dict(t.params))
            study.tell(t, 0.5)
        return out

    assert first_params() == first_params()


def test_the_shipped_search_spaces_are_valid(repo_root: Path) -> None:
    files = sorted((repo_root / "search_spaces").glob("*.yaml"))
    assert {f.name for f in files} >= {"gamma.yaml", "full.yaml", "pareto.yaml"}
    for f in files:
        spec = load_space(f)
        assert spec.study == f.stem
    gamma = load_space(repo_root / "search_spaces" / "gamma.yaml").param("loss.gamma")
    assert (gamma.low, gamma.high) == (0.0, 20.0)
    pareto = load_space(repo_root / "search_spaces" / "pareto.yaml")
    assert pareto.metrics == ["ssim", "psnr"]


def test_the_pareto_mask_keeps_exactly_the_non_dominated_points() -> None:
    # Hand-worked: (0.9, 30) and (0.95, 28) trade off; (0.85, 29) is dominated by (0.9, 30);
    # (0.95, 27) by (0.95, 28); the NaN row never enters the front.
    values = np.array([[0.9, 30.0], [0.95, 28.0], [0.85, 29.0], [0.95, 27.0], [math.nan, 40.0]])
    assert pareto_mask(values, ["max", "max"]).tolist() == [True, True, False, False, False]
    # Minimising the second column instead: (0.95, 27) dominates every other finite row.
    assert pareto_mask(values, ["max", "min"]).tolist() == [False, False, False, True, False]


def test_trial_status_words_follow_the_last_result() -> None:
    assert describe_status("TERMINATED", {"finished": 1.0}, False) == "done"
    assert describe_status("TERMINATED", {"finished": 0.0}, False) == "stopped"
    assert describe_status("TERMINATED", {"finished": 1.0, "nonfinite_loss": 1.0}, False) == (
        "diverged"
    )
    assert describe_status("ERROR", {}, True) == "error"
    assert describe_status("RUNNING", {}, False) == "running"
    assert short_name("loss.gamma", ["loss.gamma", "optim.lr"]) == "gamma"
    assert short_name("a.lr", ["a.lr", "b.lr"]) == "a.lr"


def test_importances_are_skipped_for_too_few_trials_or_a_single_parameter(tmp_path: Path) -> None:
    from semtune.tune.report import plot_importances

    spec = load_space(_write(tmp_path, GOOD))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def run(n: int) -> None:
        for _ in range(n):
            t = study.ask()
            SpaceSampler(spec.space)(t)
            study.tell(t, t.params["loss.gamma"] / 20)  # only gamma matters

    run(2)
    path, note = plot_importances(study, spec, tmp_path / "imp.png")
    assert path is None and "2 complete trial(s), need at least 3" in note
    run(18)
    path, note = plot_importances(study, spec, tmp_path / "imp.png")
    assert path is not None and path.is_file() and "20 complete trials" in note
    imp = optuna.importance.get_param_importances(study)
    assert max(imp, key=imp.get) == "loss.gamma"
    single = load_space(_write(tmp_path, _with(space={"loss.gamma": GOOD["space"]["loss.gamma"]})))
    assert plot_importances(study, single, tmp_path / "x.png")[0] is None


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"scheduler": {"name": "asha", "reduction_factor": float("nan")}}, "reduction_factor"),
        ({"time_budget_s": float("nan")}, "time_budget_s"),
        ({"time_budget_s": float("inf")}, "time_budget_s"),
        ({"space__loss.gamma__low": float("nan")}, r"space\.loss\.gamma\.low"),
        ({"space__loss.gamma__high": float("inf")}, r"space\.loss\.gamma\.high"),
    ],
)
def test_nan_and_inf_in_a_study_file_are_refused_with_the_key(
    tmp_path: Path, changes: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_space(_write(tmp_path, _with(**changes)))


def test_exponent_form_bounds_in_a_study_file_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    text = yaml.safe_dump(GOOD, sort_keys=False)
    path.write_text(text.replace("low: 1.0e-05", "low: 5e-5"))
    assert "low: 5e-5" in path.read_text()
    lr = next(p for p in load_space(path).space if p.path == "optim.lr")
    assert lr.low == pytest.approx(5e-5)
