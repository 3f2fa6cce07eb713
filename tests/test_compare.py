"""Two runs compared image by image (python -m semtune.compare)."""

from __future__ import annotations

from pathlib import Path

import pytest

from semtune.compare import compare, main, read_scores

HEADER = "step,image,crops,ssim,psnr,blurry_ssim,blurry_psnr,ssim_gain,psnr_gain,score"


def _scores(path: Path, gains: dict[str, float], step: int = 240) -> Path:
    lines = [HEADER]
    for name, g in gains.items():
        # each image has its own difficulty (psnr) but the gain is what the run made of it
        base = 30.0 + 3 * len(lines)
        lines.append(f"{step},{name},12,0.8,{base + g},0.79,{base},0.01,{g},{1 + g}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_consistent_gain_on_every_image_is_told_apart(tmp_path: Path) -> None:
    a = _scores(tmp_path / "a" / "val_scores.csv", {f"im{i}.png": 0.30 for i in range(6)})
    b = _scores(tmp_path / "b" / "val_scores.csv", {f"im{i}.png": 0.30 + 0.05 for i in range(6)})
    c = compare(read_scores(a), read_scores(b), "psnr_gain")
    assert c.images == 6 and c.mean == pytest.approx(0.05)
    assert c.ci_low == pytest.approx(0.05) and c.b_ahead == 6 and c.a_ahead == 0
    assert c.verdict().startswith("B is better")


def test_differences_that_change_sign_are_not_told_apart(tmp_path: Path) -> None:
    a = _scores(tmp_path / "a.csv", {f"im{i}.png": 0.3 for i in range(6)})
    b = _scores(
        tmp_path / "b.csv", {f"im{i}.png": 0.3 + (0.1 if i % 2 else -0.09) for i in range(6)}
    )
    c = compare(read_scores(a), read_scores(b), "psnr_gain")
    assert c.ci_low < 0 < c.ci_high and c.b_ahead == 3 and c.a_ahead == 3
    assert c.verdict().startswith("not told apart")


def test_the_command_reads_trial_folders_and_refuses_other_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a Tune trial folder: its latest checkpoint's table
    trial = tmp_path / "tune" / "trial_a"
    _scores(trial / "checkpoint_000000" / "val_scores.csv", {"x.png": 0.0, "y.png": 0.0})
    _scores(trial / "checkpoint_000001" / "val_scores.csv", {"x.png": 0.2, "y.png": 0.3})
    other = _scores(tmp_path / "b.csv", {"x.png": 0.1, "y.png": 0.1})
    assert main([str(trial), str(other)]) == 0
    out = capsys.readouterr().out
    assert "psnr_gain, B minus A over 2 images: -0.1500" in out and "A on 2" in out
    assert "note:" not in out
    # a trial stopped early against one that ran on: compared, and said
    early = _scores(tmp_path / "early.csv", {"x.png": 0.1, "y.png": 0.1}, step=80)
    assert main([str(early), str(other)]) == 0
    assert "note: A was scored at step 80, B at step 240: different budgets" in (
        capsys.readouterr().out
    )
    elsewhere = _scores(tmp_path / "c.csv", {"x.png": 0.1, "z.png": 0.1})
    assert main([str(other), str(elsewhere)]) == 2
    assert "scored on different validation images" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), str(other)]) == 2
    assert "no such file" in capsys.readouterr().err
