"""The config loader names the source and key of every mistake, and presets round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from semtune.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    get_path,
    parse_override,
    replace_path,
    to_dict,
)
from semtune.train.config import PRESETS, TrainConfig, load_train_config


def test_every_preset_loads_and_round_trips() -> None:
    for name in PRESETS:
        cfg = load_train_config(name)
        assert cfg.preset == name
        assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("loss:\n  gama: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*loss\.'?gama"):
        load_train_config(f)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a number, got 'fast'"):
        load_train_config(f)


def test_out_of_range_value_is_rejected_with_its_name() -> None:
    with pytest.raises(ConfigError, match="lr must be > 0"):
        load_train_config("cpu", ["optim.lr=-1"])


def test_literal_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="'canny' is not one of 'sobel'"):
        load_train_config("cpu", ["loss.edge_operator=canny"])


def test_overrides_parse_yaml_values_and_win_over_the_preset() -> None:
    cfg = load_train_config(
        "cpu", ["loss.gamma=3", "loss.edge_operator=kirsch", "data.val_dir=null"]
    )
    assert cfg.loss.gamma == 3.0 and isinstance(cfg.loss.gamma, float)
    assert cfg.loss.edge_operator == "kirsch"
    assert cfg.data.val_dir is None
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


def test_a_yaml_file_can_start_from_a_preset(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("preset: cpu\nloss:\n  gamma: 2.5\n")
    cfg = load_train_config(f)
    assert cfg.loss.gamma == 2.5
    assert cfg.model.width == load_train_config("cpu").model.width


def test_unknown_preset_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'gpu'"):
        load_train_config("gpu")
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")


def test_get_and_replace_path() -> None:
    cfg = load_train_config("cpu")
    assert get_path(cfg, "loss.gamma") == cfg.loss.gamma
    assert replace_path(cfg, "optim.lr", 1e-3).optim.lr == 1e-3
    with pytest.raises(ConfigError, match="loss has no 'gamme'"):
        get_path(cfg, "loss.gamme")


def test_override_into_a_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"loss": 3}, ["loss.gamma=1"])
    with pytest.raises(ConfigError, match="expected PATH=VALUE"):
        parse_override("loss.gamma")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
@pytest.mark.parametrize("key", ["loss.gamma", "optim.lr", "loss.pseudo_noise"])
def test_yaml_nan_and_inf_are_refused_with_the_key(key: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: must be a finite number"):
        load_train_config("tiny", [f"{key}={value}"])
    section, name = key.split(".")
    f = tmp_path / "c.yaml"
    f.write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError, match=rf"c\.yaml: {key}: must be a finite number"):
        load_train_config(f)


def test_numbers_in_exponent_form_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads 1e-3 without a dot as a string
    assert load_train_config("tiny", ["optim.lr=1e-3"]).optim.lr == pytest.approx(1e-3)
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 2e-4\n")
    assert load_train_config(f).optim.lr == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match="lr must be > 0, got -0.001"):
        load_train_config("tiny", ["optim.lr=-1e-3"])
    with pytest.raises(
        ConfigError, match=r"model\.width: (expected an integer|must be a finite number)"
    ):
        load_train_config("tiny", ["model.width=.nan"])
