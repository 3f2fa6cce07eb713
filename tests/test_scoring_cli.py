"""benchmark and evaluate: the same crops and columns, and neither writes over the other."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from semtune.benchmark import main as benchmark_main
from semtune.evaluate import main as evaluate_main
from semtune.train.config import load_train_config
from semtune.train.loop import export_generator
from semtune.train.state import build_state


def test_benchmark_and_evaluate_share_crops_and_never_clobber_each_other(
    tmp_path: Path, sample_train_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    model = export_generator(build_state(cfg, torch.device("cpu")), tmp_path / "g.pt")
    common = ["--data", str(sample_train_dir), "--sets", "A", "--crop-size", "64", "--crops", "4"]
    out = tmp_path / "scores"
    assert benchmark_main([*common, "--out", str(out), "--no-oracle"]) == 0
    bench = (out / "table.csv").read_bytes()
    # an evaluation into the same folder is refused before any work, the benchmark kept
    assert evaluate_main([*common, "--out", str(out), "--model", str(model)]) == 2
    assert "table.csv exists" in capsys.readouterr().err
    assert (out / "table.csv").read_bytes() == bench
    # into its own folder it scores the same crops: the blurry rows agree exactly
    assert evaluate_main([*common, "--out", str(tmp_path / "eval"), "--model", str(model)]) == 0
    b, e = pd.read_csv(out / "table.csv"), pd.read_csv(tmp_path / "eval" / "table.csv")
    pd.testing.assert_frame_equal(
        b[b.method == "blurry"].reset_index(drop=True),
        e[e.method == "blurry"].reset_index(drop=True),
    )
    assert "cyclegan" in set(e.method)
    # --overwrite replaces
    assert benchmark_main([*common, "--out", str(out), "--no-oracle", "--overwrite"]) == 0
