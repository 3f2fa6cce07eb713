"""enhance --report: harm and fit flags from hand-made restorers whose effect is known."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from semtune.data.degrade import convolve, gaussian_blur, gaussian_kernel
from semtune.enhance import main
from semtune.report import ModelInfo, assess, contact_sheet, self_check
from semtune.train.config import load_train_config
from semtune.train.loop import export_generator
from semtune.train.state import build_state


def _micrograph(seed: int = 0, size: int = 256) -> torch.Tensor:
    """Disks on a background, slightly blurred, with pixel noise: edges and flat areas."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.full((size, size), 0.3)
    for _ in range(8):
        cy, cx, r = (int(v) for v in torch.randint(20, size - 20, (3,), generator=g))
        x[(yy - cy) ** 2 + (xx - cx) ** 2 <= (r % 25 + 8) ** 2] = 0.75
    x = gaussian_blur(x[None, None], 5, 0.8)
    return (x + 0.008 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _unsharp(x: torch.Tensor) -> torch.Tensor:
    return (x + 2.0 * (x - gaussian_blur(x, 9, 1.5))).clamp(0, 1)


INFO = ModelInfo("test", data_stats={"blurred_noise": [0.004, 0.008, 0.012]})


def test_the_identity_raises_no_flag() -> None:
    x = _micrograph()
    a = assess("x", x, x.clone(), INFO, restore=lambda t: t)
    assert a.flags == []
    assert a.measures["flat_texture_ratio"] == pytest.approx(1.0)
    assert a.measures["self_check_psnr_gain"] == pytest.approx(0.0, abs=1e-6)


def test_an_unsharp_mask_is_flagged_for_grain_and_halos() -> None:
    x = _micrograph()
    a = assess("x", x, _unsharp(x), INFO)
    text = " ".join(a.flags)
    assert "adds texture in flat areas" in text
    assert "halos" in text
    assert "amplifies noise" in text


def test_a_restorer_that_undoes_the_models_blur_passes_the_self_check() -> None:
    # an oracle: it knows the blur the self-check applies (set A's Gaussian here)
    psf = gaussian_kernel(7, 1.0)
    from semtune.baselines import restore

    gain = self_check(
        lambda t: restore("wiener_oracle", t, psf=psf[None, None]), _micrograph(), INFO
    )
    assert gain["self_check_psnr_gain_blur"] > 0.5


def test_a_restorer_that_blurs_is_a_poor_fit() -> None:
    x = _micrograph()
    blur = lambda t: gaussian_blur(t, 5, 1.0)  # noqa: E731
    a = assess("x", x, blur(x), INFO, restore=blur)
    assert a.measures["self_check_psnr_gain"] < 0
    assert any(f.startswith("poor fit: on crops of this image") for f in a.flags)


def test_noise_far_outside_the_training_range_is_a_poor_fit() -> None:
    g = torch.Generator().manual_seed(3)
    x = (_micrograph() + 0.05 * torch.randn(1, 1, 256, 256, generator=g)).clamp(0, 1)
    a = assess("x", x, x.clone(), INFO)
    assert any("far outside what the model was trained on" in f for f in a.flags)


def test_the_self_check_uses_the_models_own_blur() -> None:
    wide = ModelInfo("w", degradation={"psf": gaussian_kernel(11, 2.0)})
    x = _micrograph()
    # a restorer that knows only set A's sigma-1 blur gains less against F's sigma-2 blur
    psf = gaussian_kernel(7, 1.0)
    from semtune.baselines import restore

    def wiener_a(t: torch.Tensor) -> torch.Tensor:
        return restore("wiener_oracle", t, psf=psf[None, None])

    own = self_check(wiener_a, x, INFO)["self_check_psnr_gain_blur"]
    other = self_check(wiener_a, x, wide)["self_check_psnr_gain_blur"]
    assert other < own
    torch.testing.assert_close(
        convolve(torch.ones(1, 1, 32, 32), gaussian_kernel(11, 2.0)), torch.ones(1, 1, 32, 32)
    )


def test_contact_sheet_shows_full_frame_and_two_zoomed_crops(tmp_path: Path) -> None:
    x = _micrograph()
    path = contact_sheet(x, _unsharp(x), tmp_path / "sheet.png", zoom=3)
    with Image.open(path) as im:
        # three rows: the full frame at 256 px, then two 128 px crops at 3x
        assert im.height > 256 + 2 * 384 and im.width >= 3 * 384


def test_enhance_report_writes_a_page_a_table_and_sheets(
    tmp_path: Path,
    sample_train_dir: Path,
    sample_test_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    model = export_generator(build_state(cfg, torch.device("cpu")), tmp_path / "g.pt")
    images = sorted(sample_test_dir.glob("*.jpg"))[:2]
    # the same name with another extension in the same folder: its own sheet, none written over
    twin = tmp_path / "twin"
    twin.mkdir()
    for suffix in (".png", ".tif"):
        Image.open(images[0]).convert("L").save(twin / f"same{suffix}")
    images += sorted(twin.iterdir())
    out = tmp_path / "out"
    assert main([*map(str, images), "--model", str(model), "-o", str(out), "--report"]) == 0
    report = out / "report"
    page = (report / "report.html").read_text()
    rows = list(csv.DictReader((report / "report.csv").open()))
    assert [r["image"] for r in rows] == [p.name for p in images]
    for p in images:
        assert (report / f"{p.name}.png").exists()
        assert p.name in page
    assert "self_check_psnr_gain" in rows[0] and "flat_texture_ratio" in rows[0]
    printed = capsys.readouterr().out
    assert "4 images" in printed and "report.html" in printed
