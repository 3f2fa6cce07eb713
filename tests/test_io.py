"""SEM image I/O: formats and bit depths, the data-bar crop, and errors that name the file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from semtune.io import (
    ColourConversionWarning,
    ImageReadError,
    detect_data_bar,
    read_folder,
    read_image,
    write_image,
)


def _texture(h: int = 300, w: int = 400, seed: int = 0) -> np.ndarray:
    """Smooth random SEM-like content in [0.15, 0.75]: no saturated rows anywhere."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 10 + 2, w // 10 + 2))
    big = np.kron(small, np.ones((10, 10)))[:h, :w]
    return 0.15 + 0.6 * big


def _with_bar(img: np.ndarray, rows: int, polarity: str, below: int = 0) -> np.ndarray:
    """Paste an instrument bar: white with black text (ZEISS) or black with white text (FEI)."""
    out = img.copy()
    h = img.shape[0]
    top = h - below - rows
    bg, ink = (1.0, 0.0) if polarity == "white" else (0.0, 1.0)
    out[top : h - below] = bg
    out[top + rows // 3 : top + rows // 3 + 8, 30:200] = ink  # a line of "text"
    out[top + rows // 3 : top + 2 * rows // 3, 250:260] = ink
    return out


def test_the_bar_of_every_real_sample_image_is_found(sample_train_dir: Path, sample_test_dir: Path) -> None:
    for folder in (sample_train_dir, sample_test_dir):
        for f in sorted(folder.glob("*.jpg")):
            full = np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255
            rows = detect_data_bar(full)
            # ZEISS bar: 60 white rows ending ~70 rows above the bottom (both are cut)
            assert 100 <= rows <= 170, (f.name, rows)
            kept = full[: full.shape[0] - rows]
            assert (kept[-5:] > 0.85).mean() < 0.5, f.name  # no bar row left behind
            assert (full[full.shape[0] - rows : full.shape[0] - rows + 5] > 0.85).mean() > 0.6


def test_real_content_without_a_bar_is_left_untouched(sample_train_dir: Path) -> None:
    f = sorted(sample_train_dir.glob("*.jpg"))[0]
    top = np.asarray(Image.open(f).convert("L"), dtype=np.float32)[:500] / 255
    assert detect_data_bar(top) == 0
    assert detect_data_bar(_texture()) == 0


@pytest.mark.parametrize("polarity", ["white", "black"])
def test_synthetic_bars_of_both_polarities_are_found(polarity: str) -> None:
    img = _with_bar(_texture(), 40, polarity)
    assert detect_data_bar(img) == 40


def test_a_white_bar_above_some_image_rows_cuts_both() -> None:
    img = _with_bar(_texture(), 30, "white", below=25)
    assert detect_data_bar(img) == 55


def test_a_dark_band_that_does_not_reach_the_bottom_is_not_a_bar() -> None:
    img = _texture()
    img[200:240] = 0.0  # a dark substrate region, not an FEI bar
    assert detect_data_bar(img) == 0


def test_read_image_crops_the_bar_and_keeps_it(tmp_path: Path) -> None:
    img = _with_bar(_texture(), 40, "black")
    p = tmp_path / "fei.png"
    Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(p)
    sem = read_image(p)
    assert sem.bar_rows == 40 and sem.data.shape == (1, 260, 400)
    assert sem.bar is not None and sem.bar.shape == (1, 40, 400)
    assert read_image(p, crop_bar=False).data.shape == (1, 300, 400)


@pytest.mark.parametrize(("ext", "depth"), [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16)])
def test_lossless_round_trip_at_the_source_bit_depth(tmp_path: Path, ext: str, depth: int) -> None:
    x = torch.from_numpy(_texture(64, 80).astype(np.float32))[None]
    p = tmp_path / f"img{ext}"
    write_image(p, x, bit_depth=depth)
    back = read_image(p, crop_bar=False)
    assert back.bit_depth == depth
    scale = 255 if depth == 8 else 65535
    torch.testing.assert_close(back.data, torch.round(x * scale) / scale, atol=1e-7, rtol=0)
    if ext == ".tif":
        assert tifffile.imread(p).dtype == (np.uint8 if depth == 8 else np.uint16)


def test_jpeg_round_trip_is_close_and_16_bit_jpeg_is_refused(tmp_path: Path) -> None:
    x = torch.from_numpy(_texture(64, 80).astype(np.float32))[None]
    write_image(tmp_path / "a.jpg", x)
    assert (read_image(tmp_path / "a.jpg", crop_bar=False).data - x).abs().mean() < 0.01
    with pytest.raises(ValueError, match="JPEG cannot hold 16-bit"):
        write_image(tmp_path / "b.jpg", x, bit_depth=16)


def test_rgb_stored_gray_reads_silently_and_colour_warns(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    g = np.rint(_texture(50, 60) * 255).astype(np.uint8)
    Image.fromarray(np.stack([g] * 3, -1)).save(tmp_path / "gray.png")
    a = read_image(tmp_path / "gray.png", crop_bar=False)
    assert not [w for w in recwarn if issubclass(w.category, ColourConversionWarning)]
    np.testing.assert_array_equal(np.rint(a.data[0].numpy() * 255), g)
    colour = np.stack([g, 255 - g, g // 2], -1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.warns(ColourConversionWarning, match="true-colour"):
        read_image(tmp_path / "colour.png", crop_bar=False)
    Image.fromarray(np.stack([g, g, g, np.full_like(g, 255)], -1)).save(tmp_path / "rgba.png")
    with pytest.warns(ColourConversionWarning, match="alpha"):
        read_image(tmp_path / "rgba.png", crop_bar=False)


def test_bad_files_raise_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a readable image"):
        read_image(tmp_path / "notes.png")
    good = tmp_path / "ok.png"
    Image.fromarray(np.rint(_texture() * 255).astype(np.uint8)).save(good)
    (tmp_path / "corrupt.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"corrupt\.png"):
        read_image(tmp_path / "corrupt.png")
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ImageReadError, match=r"black\.png: constant image"):
        read_image(tmp_path / "black.png")
    with pytest.raises(ImageReadError, match=r"ok\.png: image is 300x400, smaller than the crop size 512"):
        read_image(good, min_size=512)
    with pytest.raises(ImageReadError, match=r"missing\.tif: no such file"):
        read_image(tmp_path / "missing.tif")


def test_a_folder_with_bad_files_skips_and_reports_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(2):
        Image.fromarray(np.rint(_texture(seed=i) * 255).astype(np.uint8)).save(tmp_path / f"good{i}.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "black.png")
    (tmp_path / "readme.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="semtune.io"):
        got = read_folder(tmp_path)
    assert [im.path.name for im in got.images if im.path] == ["good0.png", "good1.png"]
    assert sorted(p.name for p, _ in got.skipped) == ["bad.jpg", "black.png"]
    assert "bad.jpg" in caplog.text and "black.png" in caplog.text
    with pytest.raises(ImageReadError, match=r"bad\.jpg"):
        read_folder(tmp_path, skip_bad=False)


def test_empty_or_all_bad_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no image files"):
        read_folder(tmp_path)
    (tmp_path / "x.png").write_text("nope")
    with pytest.raises(ImageReadError, match=r"no usable image \(x\.png"):
        read_folder(tmp_path)
    with pytest.raises(ImageReadError, match="not a folder"):
        read_folder(tmp_path / "x.png")
