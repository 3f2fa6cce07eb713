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


def test_both_take_the_shared_flags_and_the_old_bar_flag_still_works(
    tmp_path: Path, sample_train_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    model = str(export_generator(build_state(cfg, torch.device("cpu")), tmp_path / "g.pt"))
    common = ["--data", str(sample_train_dir), "--sets", "A", "--crop-size", "64", "--crops", "2"]
    new, old = tmp_path / "new", tmp_path / "old"
    assert evaluate_main([*common, "-o", str(new), "--model", model, "--no-bar-detect"]) == 0
    assert evaluate_main([*common, "-o", str(old), "--model", model, "--no-bar-crop"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(new / "table.csv"), pd.read_csv(old / "table.csv"))
    capsys.readouterr()
    # benchmark scores a generator given as a plain string too, and says its threads once
    bench = tmp_path / "bench"
    args = [*common, "-o", str(bench), "--no-oracle", "--no-bar-crop", "--model", model]
    assert benchmark_main([*args, "--threads", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("threads: ") == 1 and "threads: 2 (--threads)" in err
    assert torch.get_num_threads() == 2
    b = pd.read_csv(bench / "table.csv")
    e = pd.read_csv(new / "table.csv")
    pd.testing.assert_frame_equal(
        b[b.method == "cyclegan"].reset_index(drop=True),
        e[e.method == "cyclegan"].reset_index(drop=True),
    )


def test_a_negative_thread_count_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for cli in (benchmark_main, evaluate_main):
        with pytest.raises(SystemExit):
            cli(["--data", "d", "-o", "o", "--model", "g.pt", "--threads", "-1"])
        assert "--threads must be >= 0" in capsys.readouterr().err
