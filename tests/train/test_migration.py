"""Configs, checkpoints and study files written before the trainer config was pruned and F's
settings gathered (issue 13) still load, to the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from semtune.config import ConfigError
from semtune.train.config import (
    REMOVED,
    RENAMED,
    config_from_dict,
    load_train_config,
    migrate,
)
from semtune.train.state import (
    build_state,
    checkpoint_config,
    load_checkpoint,
    load_generator_file,
    save_checkpoint,
)
from semtune.tune.space import parse_space

# the config dicts of a tiny run and of the cpu preset, as the code before the change wrote them
OLD = json.loads((Path(__file__).parent / "fixtures" / "config_before_issue13.json").read_text())


def test_an_old_config_loads_to_todays_preset() -> None:
    assert config_from_dict(OLD["cpu_preset"], strict=False) == load_train_config("cpu")
    assert config_from_dict(OLD["tiny_run_config"], strict=False) == load_train_config("tiny")


def test_every_renamed_and_removed_key_of_the_old_config_is_handled() -> None:
    old_paths = {
        f"{section}.{key}"
        for section, body in OLD["cpu_preset"].items()
        if isinstance(body, dict)
        for key in body
    }
    new_paths = set(_paths(load_train_config("cpu").to_dict()))
    assert old_paths - new_paths == set(RENAMED) | (set(REMOVED) & old_paths)
    # removed since the fixtures were written (tried in main for one commit, never in a preset)
    assert set(REMOVED) - old_paths == {"f.soft_target_share"}
    assert set(RENAMED.values()) <= new_paths


def _paths(cfg: dict) -> list[str]:
    return [f"{s}.{k}" for s, body in cfg.items() if isinstance(body, dict) for k in body]


def test_a_checkpoint_and_a_generator_file_of_the_old_code_load(tmp_path: Path) -> None:
    """Weights are unchanged; the files differ in their config and in the image pools (gone)."""
    cfg = load_train_config("tiny")
    ckpt = build_state(cfg, torch.device("cpu")).to_checkpoint()
    ckpt["config"] = OLD["tiny_run_config"]
    ckpt["pools"] = {"clean": [], "blur": []}
    save_checkpoint(ckpt, tmp_path / "last.pt")
    assert checkpoint_config(tmp_path / "last.pt") == cfg
    assert load_checkpoint(tmp_path / "last.pt", torch.device("cpu")).config == cfg
    assert load_generator_file(tmp_path / "last.pt").config == cfg


def test_old_names_in_settings_and_study_files_are_read_as_the_new_ones() -> None:
    cfg = load_train_config("cpu", ["model.physics_noise=false", "optim.lr_f_ratio=3"])
    assert cfg.f.noise is False and cfg.f.lr_ratio == 3
    # an old name in a file does not undo a new name given after it
    base = {"model": {"physics_init_sigma": 1.5}}
    assert load_train_config("cpu", ["f.init_sigma=0.7"], base=base).f.init_sigma == 0.7
    spec = parse_space(
        {
            "study": "old-names",
            "base": {"config": "cpu", "overrides": {"loss.identity_f_weight": 0.5}},
            "objective": {"metric": "ssim", "mode": "max"},
            "trials": 2,
            "space": {"optim.lr_f_ratio": {"distribution": "choice", "values": [5, 10]}},
        }
    )
    assert spec.train_config().f.identity_weight == 0.5
    assert [p.path for p in spec.space] == ["f.lr_ratio"]


def test_a_removed_option_set_to_another_behaviour_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"schedule.decay_from=0.5: this option was removed"):
        load_train_config("cpu", ["schedule.decay_from=0.5"])
    # the behaviour that stayed is accepted and dropped
    assert load_train_config("cpu", ["schedule.decay_from=1"]) == load_train_config("cpu")
    with pytest.raises(ConfigError, match="space.loss.partial_blur: this option was removed"):
        parse_space(
            {
                "study": "removed",
                "base": {"config": "cpu"},
                "objective": {"metric": "ssim", "mode": "max"},
                "trials": 2,
                "space": {"loss.partial_blur": {"distribution": "uniform", "low": 0, "high": 1}},
            }
        )
    # a checkpoint trained with one is read with a warning, not refused
    old = migrate(OLD["cpu_preset"], strict=False)
    old_with = {**OLD["cpu_preset"], "loss": {**OLD["cpu_preset"]["loss"], "clean_share": 0.25}}
    with pytest.warns(UserWarning, match="loss.clean_share=0.25"):
        assert migrate(old_with, source="old.pt", strict=False) == old


def test_a_study_folder_of_the_old_code_resumes_with_the_same_file(
    tmp_path: Path, sample_train_dir: Path
) -> None:
    """study.json of a study started before (old key names in base.overrides, no confirm:)
    matches the same file read today, so --resume does not refuse it as changed."""
    from semtune.tune.folder import _as_today, _compare
    from semtune.tune.space import load_space, spec_to_dict

    text = OLD["study_file"].replace("/work/main/data/sample/train", str(sample_train_dir))
    (tmp_path / "old.yaml").write_text(text)
    now = {k: v for k, v in spec_to_dict(load_space(tmp_path / "old.yaml")).items()}
    now.pop("source")
    saved = json.loads(
        json.dumps(OLD["study_spec"]).replace("/work/main/data/sample/train", str(sample_train_dir))
    )
    assert _compare(_as_today(saved), now) == []
    assert ["f.noise", False] in now["base_overrides"]
