"""The confirmation stage (issue 12): the top configurations and a control trained again with
fresh seeds and scored on images the search never saw; the verdict comes from those runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from semtune.train.state import load_generator
from semtune.tune.confirm import (
    Candidate,
    ConfirmationError,
    _verdict,
    candidates,
    check_confirmation_images,
    confirmation_points,
)
from semtune.tune.space import load_space, parse_space
from semtune.tune.study import StudyError, StudyResult, run_study
from semtune.uncertainty import seeds_images_ci

pytestmark = pytest.mark.filterwarnings("ignore")


def _spec_dict(clean: Path, confirm: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "study": "confirm-test",
        "base": {
            "config": "tiny",
            "overrides": {"data.clean_dir": str(clean), "schedule.log_every": 3},
        },
        "space": {"loss.gamma": {"distribution": "grid", "values": [0.0, 1.0, 5.0]}},
        "sampler": {"name": "grid", "seed": 0},
        "objective": {"metric": "ssim", "mode": "max"},
        "scheduler": "none",
        "concurrency": 2,
        "resources": {"cpu": 1},
        "max_failures": 1,
    }
    if confirm is not None:
        data["confirm"] = confirm
    data.update(fields)
    return data


def _ranked(gammas: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"loss.gamma": gammas, "ssim": sorted(range(len(gammas)), reverse=True)})


def test_candidates_are_the_distinct_top_k_and_the_papers_control(
    sample_train_dir: Path, sample_test_dir: Path
) -> None:
    confirm = {"top_k": 2, "seeds": 2, "data": str(sample_test_dir)}
    spec = parse_space(_spec_dict(sample_train_dir, confirm))
    cands = candidates(spec, _ranked([0.41, 0.41, 3.0, 7.0]))
    assert [c.params for c in cands] == [
        {"loss.gamma": 0.41},
        {"loss.gamma": 3.0},
        {"loss.gamma": 10.0},
    ]
    assert [c.role for c in cands] == ["search #1", "search #2", "control"]
    assert cands[0].label == "gamma 0.41"
    # the control among the top: not trained twice
    both = candidates(spec, _ranked([10.0, 3.0]))
    assert [c.role for c in both] == ["search #1 = control", "search #2"]
    # each configuration with each fresh seed (the search trained with seed 0)
    points = confirmation_points(cands, seeds=2, base_seed=0)
    assert len(points) == 6
    assert {p["runtime.seed"] for p in points} == {1, 2}
    assert sorted((p["candidate"], p["runtime.seed"]) for p in points) == [
        (i, s) for i in range(3) for s in (1, 2)
    ]
    # no paper value for the searched path: the first enqueued point is the control
    lr = _spec_dict(sample_train_dir, confirm)
    lr["space"] = {"optim.beta1": {"distribution": "uniform", "low": 0.1, "high": 0.9}}
    lr["sampler"], lr["trials"] = {"name": "tpe", "seed": 0}, 2
    assert (
        candidates(parse_space(lr), pd.DataFrame({"optim.beta1": [0.3], "ssim": [1.0]}))[-1].role
        == "search #1"
    )
    lr["enqueue"] = [{"optim.beta1": 0.5}]
    assert candidates(parse_space(lr), pd.DataFrame({"optim.beta1": [0.3], "ssim": [1.0]}))[
        -1
    ].params == {"optim.beta1": 0.5}


def test_the_confirmation_set_must_be_images_the_search_never_sees(
    tmp_path: Path, sample_train_dir: Path, sample_test_dir: Path
) -> None:
    """Checked by content: a training image copied under another name is refused."""
    folder = tmp_path / "confirm"
    shutil.copytree(sample_test_dir, folder)
    spec = parse_space(_spec_dict(sample_train_dir, {"top_k": 1, "data": str(folder)}))
    base = spec.train_config()
    assert len(check_confirmation_images(spec, base)) == len(list(sample_test_dir.iterdir()))
    train_image = sorted(p for p in sample_train_dir.iterdir() if p.suffix == ".jpg")[0]
    shutil.copyfile(train_image, folder / "renamed.jpg")
    with pytest.raises(ConfirmationError, match=f"renamed.jpg is also .*{train_image.name}"):
        check_confirmation_images(spec, base)
    # refused before the search starts, naming the study file
    with pytest.raises(StudyError, match="an image the search trains or validates on"):
        run_study(spec, tmp_path / "out", printer=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_a_confirmation_needs_its_images_and_one_objective(sample_train_dir: Path) -> None:
    with pytest.raises(Exception, match="confirm.*data: name the folder"):
        parse_space(_spec_dict(sample_train_dir, {"top_k": 2}))
    two = _spec_dict(sample_train_dir, {"top_k": 2, "data": "x"})
    two["objective"] = [{"metric": "ssim", "mode": "max"}, {"metric": "psnr", "mode": "max"}]
    with pytest.raises(Exception, match="the Pareto front"):
        parse_space(two)


def test_the_verdict_says_beats_only_when_the_interval_is_above_zero() -> None:
    cands = [
        Candidate({"g": 0.4}, "gamma 0.4", "search #1"),
        Candidate({"g": 10}, "gamma 10", "control"),
    ]
    real = {
        "against": "control",
        "other": "gamma 10",
        "difference": 0.007,
        "ci_low": 0.003,
        "ci_high": 0.011,
        "better": True,
        "seeds": 3,
        "images": 82,
    }
    said = _verdict(cands, 0, 1, [real], "ssim")
    assert said == (
        "verdict: gamma 0.4 beats the control gamma 10 by +0.0070 ssim (95% CI +0.0030..+0.0110; "
        "3 seeds x 82 images)"
    )
    chance = {**real, "ci_low": -0.001, "better": False}
    assert "no configuration is distinguishable from the control gamma 10" in _verdict(
        cands, 0, 1, [chance], "ssim"
    )
    # the two-way interval: a clear shift excludes 0, noise around 0 does not
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 40, generator=gen, dtype=torch.float64) * 0.01
    assert seeds_images_ci(noise + 0.02)[0] > 0
    low, high = seeds_images_ci(noise)
    assert low < 0 < high


@pytest.fixture(scope="module")
def confirmed(
    ray_session: Any,
    tmp_path_factory: pytest.TempPathFactory,
    sample_train_dir: Path,
    sample_test_dir: Path,
) -> tuple[StudyResult, list[str]]:
    tmp = tmp_path_factory.mktemp("confirm")
    data = _spec_dict(
        sample_train_dir,
        {"top_k": 1, "seeds": 2, "data": str(sample_test_dir), "crops": 12},
        trials=2,
    )
    data["space"] = {"loss.gamma": {"distribution": "grid", "values": [0.0, 1.0]}}
    path = tmp / "confirm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines: list[str] = []
    result = run_study(load_space(path), tmp / "out", printer=lines.append)
    return result, lines


def test_a_confirmed_study_trains_again_scores_unseen_images_and_says_a_verdict(
    confirmed: tuple[StudyResult, list[str]], sample_train_dir: Path, sample_test_dir: Path
) -> None:
    result, lines = confirmed
    out = result.out_dir
    assert result.complete and result.confirmation is not None
    scores = pd.read_csv(out / "confirmation_scores.csv")
    # the search's best and the paper's gamma 10, each with 2 fresh seeds, all scored
    assert sorted(scores.groupby(["label", "seed"]).size().index) == [
        (label, s) for label in sorted(set(scores["label"])) for s in (1, 2)
    ]
    assert "gamma 10" in set(scores["label"]) and len(set(scores["label"])) == 2
    # on the confirmation images only: every one of them, none the search trained or validated on
    assert set(scores["image"]) == {p.name for p in sample_test_dir.iterdir()}
    assert not set(scores["image"]) & {p.name for p in sample_train_dir.iterdir()}
    summary = pd.read_csv(out / "confirmation.csv")
    assert (summary["ssim_ci_low"] <= summary["ssim"]).all()
    assert (summary["ssim"] <= summary["ssim_ci_high"]).all()
    verdict = [line for line in lines if line.startswith("verdict:")]
    assert len(verdict) == 1 and "gamma 10" in verdict[0] and "2 seeds x 6 images" in verdict[0]
    record = json.loads((out / "confirmation.json").read_text())
    assert record["verdict"] == verdict[0]
    # the study's best is the confirmed winner's first seed, not the search's trial
    best = json.loads((out / "best_trial.json").read_text())
    assert best["trial_id"] == record["winner_trial"] != best["search_best"]["trial_id"]
    winner_gamma = record["winner_params"]["loss.gamma"]
    _, cfg = load_generator(out / "best_generator.pt")
    assert cfg.loss.gamma == winner_gamma and cfg.runtime.seed == 1
    assert (out / "confirmation.png").is_file()
