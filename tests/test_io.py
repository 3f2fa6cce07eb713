"""SEM image I/O: formats and bit depths, the data-bar crop, and errors that name the file.

References are computed independently of semtune.io: pixel values through Pillow/tifffile and
numpy, bar rows from plain row statistics of the real sample images.
"""

from __future__ import annotations

import logging
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from semtune.io import (
    IMAGE_EXTENSIONS,
    ColourConversionWarning,
    FolderImages,
    ImageReadError,
    SEMImage,
    detect_data_bar,
    read_folder,
    read_image,
    write_image,
)

LUMA = np.array([0.299, 0.587, 0.114])
# Sample images whose substrate is nearly black (0.6-0.85 of pixels <= 0.05 in every row).
DARK_SAMPLE = "L2_1f89fd8ef98bb70ab7df9f95a443c592.jpg"


# --------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------


def _luma_of_file(path: Path) -> np.ndarray:
    """Reference gray values of an 8-bit file: Rec. 601 luma of Pillow's RGB decode, / 255."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return rgb @ LUMA / 255.0


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """SEM-like content in [0.15, 0.8]: smooth blobs plus pixel noise, no saturated rows."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2))
    blobs = np.kron(small, np.ones((8, 8)))[:h, :w]
    return np.clip(0.2 + 0.5 * blobs + rng.normal(0, 0.03, (h, w)), 0.15, 0.8)


def _synthetic_bar(rows: int, width: int, polarity: str, *, frame: bool, seed: int) -> np.ndarray:
    """An instrument bar: white with black text (ZEISS/NFFA) or black with white text (FEI).

    Two lines of glyph-like blocks, a scale bar at the left, and (``frame``) 1-pixel lines of
    the text colour along the top and bottom edges, as on the NFFA bars.
    """
    rng = np.random.default_rng(seed)
    background, ink = (1.0, 0.0) if polarity == "white" else (0.0, 1.0)
    bar = np.full((rows, width), background)
    glyph_h = max(2, rows // 6)
    for line_top in (rows // 5, rows // 2 + 2):
        x = width // 6
        while x < width - 10:
            glyph_w = int(rng.integers(2, 9))
            if rng.random() < 0.8:
                bar[line_top : line_top + glyph_h, x : x + glyph_w] = ink
            x += glyph_w + int(rng.integers(2, 8))
    bar[rows // 2 : rows // 2 + 2, width // 50 : width // 10] = ink  # scale bar
    if frame:
        bar[0] = ink
        bar[-1] = ink
    return bar


def _paste_bar(content: np.ndarray, bar: np.ndarray, below: int = 0) -> np.ndarray:
    """Overlay ``bar`` across the full width, ``below`` rows above the bottom edge."""
    out = content.copy()
    h = content.shape[0]
    out[h - below - bar.shape[0] : h - below] = bar
    return out


def _bar_band(full: np.ndarray) -> tuple[int, int]:
    """First and last row where at least half the pixels are >= 0.9: the white band itself."""
    rows = np.flatnonzero((full >= 0.9).mean(axis=1) >= 0.5)
    return int(rows.min()), int(rows.max())


def _write_png16_colour(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit RGB PNG written byte by byte (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(_png_bytes(h, w, depth=16, colour_type=2, compressed=zlib.compress(raw)))


def _png_bytes(h: int, w: int, *, depth: int, colour_type: int, compressed: bytes) -> bytes:
    """A PNG file of one IDAT chunk, its header saying h x w at ``depth`` bits."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed)
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def sample_files(sample_train_dir: Path, sample_test_dir: Path) -> list[Path]:
    files = sorted(sample_train_dir.glob("*.jpg")) + sorted(sample_test_dir.glob("*.jpg"))
    assert len(files) == 24
    return files


@pytest.fixture(scope="module")
def sample_gray(sample_files: list[Path]) -> dict[str, np.ndarray]:
    return {f.name: _luma_of_file(f) for f in sample_files}


@pytest.fixture(scope="module")
def sample_content(sample_gray: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bar-free real content: every sample image above its white band (and its frame line)."""
    return {name: full[: _bar_band(full)[0] - 2] for name, full in sample_gray.items()}


# --------------------------------------------------------------------------------------------
# detect_data_bar on the real sample images
# --------------------------------------------------------------------------------------------


def test_the_white_bar_of_every_sample_image_is_cut_with_the_rows_below_it(
    sample_gray: dict[str, np.ndarray],
) -> None:
    for name, full in sample_gray.items():
        h = full.shape[0]
        rows = detect_data_bar(full)
        band_top, band_bottom = _bar_band(full)
        # NFFA layout: a ~60-row white band floating 67-99 rows above the bottom edge.
        assert 120 <= rows <= 170, (name, rows)
        assert band_bottom < h - 60, name
        # The cut starts at the band's black frame line: at most 3 rows above the band.
        assert 0 <= band_top - (h - rows) <= 3, (name, band_top, h - rows)
        kept = full[: h - rows]
        assert (kept[-3:] >= 0.9).mean(axis=1).max() < 0.5, name  # no white bar row left
        assert (kept[-3:] <= 0.1).mean(axis=1).max() < 0.95, name  # no frame line left


def test_a_cropped_sample_image_has_no_bar_left(sample_gray: dict[str, np.ndarray]) -> None:
    for name, full in sample_gray.items():
        kept = full[: full.shape[0] - detect_data_bar(full)]
        assert detect_data_bar(kept) == 0, name


def test_real_content_without_a_bar_is_left_untouched(
    sample_content: dict[str, np.ndarray],
) -> None:
    for name, content in sample_content.items():
        assert detect_data_bar(content) == 0, name
        assert detect_data_bar(np.ascontiguousarray(content[::-1])) == 0, name
        assert detect_data_bar(np.ascontiguousarray(content.T)) == 0, name
        assert detect_data_bar(content[:300, :500]) == 0, name


# --------------------------------------------------------------------------------------------
# detect_data_bar on synthetic bars and textures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("polarity", "frame", "below"),
    [
        ("white", True, 0),
        ("white", False, 0),
        ("white", True, 70),  # the NFFA layout: scan rows continue under the bar
        ("black", False, 0),  # the FEI/Thermo layout
        ("black", True, 0),
        ("black", False, 40),
    ],
)
def test_a_synthetic_bar_on_real_content_is_found_to_the_row(
    sample_content: dict[str, np.ndarray], polarity: str, frame: bool, below: int
) -> None:
    names = sorted(sample_content)
    for i, name in enumerate(names[::4]):
        content = sample_content[name][:560]
        bar_h = 30 + 9 * i  # 30..75 rows of 560
        bar = _synthetic_bar(bar_h, content.shape[1], polarity, frame=frame, seed=i)
        image = _paste_bar(content, bar, below)
        assert detect_data_bar(image) == bar_h + below, (name, bar_h)


def test_a_black_bar_under_a_dark_background_is_split_at_its_top_edge(
    sample_content: dict[str, np.ndarray],
) -> None:
    # The substrate's rows are 60-85% black, so they join the bar's band of mostly black rows.
    content = sample_content[DARK_SAMPLE][:560]
    assert (content[-40:] <= 0.05).mean() > 0.6  # the premise: a nearly black substrate
    for bar_h in (30, 45, 60):
        bar = _synthetic_bar(bar_h, content.shape[1], "black", frame=False, seed=bar_h)
        assert detect_data_bar(_paste_bar(content, bar)) == bar_h


@pytest.mark.parametrize("polarity", ["white", "black"])
def test_a_bar_survives_jpeg_compression_within_two_rows(tmp_path: Path, polarity: str) -> None:
    content = _texture(480, 640, seed=3)
    image = _paste_bar(content, _synthetic_bar(40, 640, polarity, frame=True, seed=1))
    path = tmp_path / "bar.jpg"
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, quality=80)
    assert abs(read_image(path).bar_rows - 40) <= 2


def test_a_downscaled_sample_bar_is_still_found(sample_files: list[Path]) -> None:
    for path in sample_files[:6]:
        im = Image.open(path).convert("L")
        full = np.asarray(im, dtype=np.float64) / 255
        small = np.asarray(im.resize((256, 192), Image.Resampling.BILINEAR), dtype=np.float64)
        expected = detect_data_bar(full) / 4
        # Averaging blurs the 1-pixel frame line; a row or two of it may stay.
        assert 0 <= expected - detect_data_bar(small / 255) <= 2.5, path.name


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda r: r.random((300, 400)), id="uniform-noise"),
        pytest.param(lambda r: _texture(300, 400, 1), id="blobs"),
        # Charging: brightness ramps up and saturates over the bottom rows, with no text.
        pytest.param(
            lambda r: np.tile(np.clip(np.linspace(0, 1.3, 300), 0, 1)[:, None], (1, 400)),
            id="saturating-ramp",
        ),
        pytest.param(lambda r: np.tile(np.linspace(1, 0, 300)[:, None], (1, 400)), id="dark-ramp"),
        pytest.param(
            lambda r: (np.indices((300, 400)).sum(0) // 16 % 2).astype(float), id="checkerboard"
        ),
        pytest.param(lambda r: np.zeros((300, 400)), id="all-black"),
        pytest.param(lambda r: np.ones((300, 400)), id="all-white"),
        pytest.param(lambda r: r.random((3, 3)), id="tiny"),
    ],
)
def test_images_without_a_bar_give_zero(make) -> None:  # type: ignore[no-untyped-def]
    assert detect_data_bar(make(np.random.default_rng(0))) == 0


def test_detect_data_bar_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        detect_data_bar(np.zeros((4, 5, 3)))
    with pytest.raises(TypeError, match="uint8"):
        detect_data_bar(np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="numpy"):
        detect_data_bar([[0.0, 1.0]])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# read_image on the sample images
# --------------------------------------------------------------------------------------------


def test_a_sample_image_reads_as_gray_silently_and_its_crop_is_reversible(
    sample_files: list[Path], sample_gray: dict[str, np.ndarray]
) -> None:
    for path in sample_files[:4]:
        with warnings.catch_warnings():
            # RGB-stored gray; its coloured logo sits inside the bar, so no colour warning.
            warnings.simplefilter("error")
            cropped = read_image(path)
            whole = read_image(path, crop_bar=False)
        full = sample_gray[path.name]
        assert whole.bit_depth == cropped.bit_depth == 8
        assert whole.bar_rows == 0 and whole.bar is None
        assert whole.path == path
        np.testing.assert_allclose(whole.data[0].numpy(), full, atol=1e-6)
        h = full.shape[0]
        assert cropped.bar_rows == detect_data_bar(full)
        assert cropped.data.shape == (1, h - cropped.bar_rows, 1024)
        assert cropped.bar is not None and cropped.bar.shape == (1, cropped.bar_rows, 1024)
        assert cropped.data.dtype == torch.float32
        assert torch.equal(torch.cat([cropped.data, cropped.bar], dim=1), whole.data)


def test_min_size_applies_to_the_cropped_image(sample_files: list[Path]) -> None:
    path = sample_files[0]
    assert read_image(path, crop_bar=False, min_size=700).data.shape[1] == 768
    with pytest.raises(ImageReadError, match="after cropping the data bar") as info:
        read_image(path, min_size=700)
    assert str(path) in str(info.value)


def test_read_folder_reads_the_sample_test_set(sample_test_dir: Path) -> None:
    got = read_folder(sample_test_dir)
    assert isinstance(got, FolderImages)
    assert [im.path.name for im in got.images if im.path] == sorted(
        p.name for p in sample_test_dir.glob("*.jpg")
    )
    assert got.skipped == []
    assert all(120 <= im.bar_rows <= 170 for im in got.images)


# --------------------------------------------------------------------------------------------
# Formats, bit depths and conversions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ext", "depth"), [(".png", 8), (".png", 16), (".tif", 8), (".tiff", 16)])
def test_write_then_read_is_exact_at_the_source_bit_depth(
    tmp_path: Path, ext: str, depth: int
) -> None:
    values = _texture(50, 70, seed=2)
    values[0, 0], values[0, 1] = 0.0, 1.0
    path = tmp_path / f"x{ext}"
    write_image(path, torch.from_numpy(values).float()[None], bit_depth=depth)
    top = 2**depth - 1
    expected = np.round(values.astype(np.float32).astype(np.float64) * top)
    stored = tifffile.imread(path) if ext != ".png" else np.asarray(Image.open(path))
    assert stored.dtype == (np.uint8 if depth == 8 else np.uint16)
    np.testing.assert_array_equal(stored, expected)
    back = read_image(path, crop_bar=False)
    assert back.bit_depth == depth
    np.testing.assert_allclose(back.data[0].numpy(), expected / top, rtol=0, atol=1e-7)


def test_files_written_by_other_tools_read_as_value_over_max(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    u16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(u8).save(tmp_path / "a.png")
    Image.fromarray(u16).save(tmp_path / "b.png")  # Pillow mode I;16
    tifffile.imwrite(tmp_path / "c.tif", u16)
    np.testing.assert_allclose(read_image(tmp_path / "a.png", crop_bar=False).data[0], u8 / 255)
    for name in ("b.png", "c.tif"):
        got = read_image(tmp_path / name, crop_bar=False)
        assert got.bit_depth == 16
        np.testing.assert_allclose(got.data[0].numpy(), u16 / 65535, rtol=0, atol=1e-7)


def test_jpeg_round_trip_is_close_and_16_bit_jpeg_is_refused(tmp_path: Path) -> None:
    values = torch.from_numpy(_texture(64, 96, seed=5)).float()
    write_image(tmp_path / "x.jpg", values, bit_depth=8)
    back = read_image(tmp_path / "x.jpg", crop_bar=False)
    assert back.bit_depth == 8
    error = (back.data[0] - values).abs()
    assert error.mean() < 0.01 and error.max() < 0.1
    with pytest.raises(ValueError, match="JPEG"):
        write_image(tmp_path / "y.jpeg", values, bit_depth=16)


def test_rgb_stored_gray_reads_without_warning(tmp_path: Path) -> None:
    gray = np.random.default_rng(1).integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "g.png")
    tifffile.imwrite(tmp_path / "g.tif", np.stack([gray.astype(np.uint16) * 257] * 3, axis=-1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = read_image(tmp_path / "g.png", crop_bar=False)
        tif = read_image(tmp_path / "g.tif", crop_bar=False)
    np.testing.assert_allclose(png.data[0].numpy(), gray / 255, atol=1e-6)
    np.testing.assert_allclose(tif.data[0].numpy(), gray / 255, atol=1e-6)
    assert (png.bit_depth, tif.bit_depth) == (8, 16)


def test_a_planar_rgb_tiff_is_read_like_an_interleaved_one(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 65536, (3, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "p.tif", rgb, photometric="rgb", planarconfig="separate")
    with pytest.warns(ColourConversionWarning, match="colour"):
        got = read_image(tmp_path / "p.tif", crop_bar=False)
    expected = np.moveaxis(rgb, 0, -1).astype(np.float64) @ LUMA / 65535
    np.testing.assert_allclose(got.data[0].numpy(), expected, atol=1e-6)


def test_a_colour_logo_inside_the_bar_does_not_count_as_colour(tmp_path: Path) -> None:
    image = _paste_bar(_texture(300, 400, 4), _synthetic_bar(30, 400, "white", frame=True, seed=0))
    rgb = np.repeat(np.round(image * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb[280:295, 370:390] = (200, 30, 30)  # a red logo in the bar
    Image.fromarray(rgb).save(tmp_path / "logo.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "logo.png").bar_rows == 30
        read_image(tmp_path / "logo.png", crop_bar=False)


def test_true_colour_is_converted_to_luma_with_a_warning(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.warns(ColourConversionWarning, match="colour") as record:
        got = read_image(tmp_path / "c.png", crop_bar=False)
    assert str(tmp_path / "c.png") in str(record[0].message)
    np.testing.assert_allclose(got.data[0].numpy(), rgb @ LUMA / 255, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_an_alpha_channel_is_dropped_with_a_warning(tmp_path: Path, mode: str) -> None:
    gray = np.random.default_rng(4).integers(0, 256, (30, 40), dtype=np.uint8)
    alpha = np.full_like(gray, 128)
    channels = [gray, gray, gray, alpha] if mode == "RGBA" else [gray, alpha]
    Image.fromarray(np.stack(channels, axis=-1), mode=mode).save(tmp_path / "a.png")
    with pytest.warns(ColourConversionWarning, match="alpha"):
        got = read_image(tmp_path / "a.png", crop_bar=False)
    np.testing.assert_allclose(got.data[0].numpy(), gray / 255, atol=1e-6)


def test_a_16_bit_colour_png_warns_that_pillow_keeps_8_bits(tmp_path: Path) -> None:
    gray = np.random.default_rng(5).integers(0, 65536, (12, 16), dtype=np.uint16)
    _write_png16_colour(tmp_path / "c16.png", np.stack([gray] * 3, axis=-1))
    with pytest.warns(ColourConversionWarning, match="16-bit colour PNG"):
        got = read_image(tmp_path / "c16.png", crop_bar=False)
    assert got.bit_depth == 16
    np.testing.assert_allclose(got.data[0].numpy(), (gray >> 8) / 255, atol=1e-6)


def test_float_tiff_in_unit_range_is_kept_and_written_back_at_16_bits(tmp_path: Path) -> None:
    values = _texture(20, 30, seed=6).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = read_image(tmp_path / "f.tif", crop_bar=False)
    assert got.bit_depth == 16
    np.testing.assert_array_equal(got.data[0].numpy(), values)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_samples_outside_the_known_ranges_are_min_max_normalised_with_a_warning(
    tmp_path: Path, dtype: type
) -> None:
    values = np.round(_texture(20, 30, seed=7) * 4000 - 1000).astype(dtype)  # -400..2200
    tifffile.imwrite(tmp_path / "v.tif", values)
    with pytest.warns(ColourConversionWarning, match="min-max"):
        got = read_image(tmp_path / "v.tif", crop_bar=False)
    v = values.astype(np.float64)
    expected = (v - v.min()) / (v.max() - v.min())
    assert got.bit_depth == 16
    np.testing.assert_allclose(got.data[0].numpy(), expected, atol=1e-6)


def test_int32_samples_within_16_bits_are_divided_by_65535(tmp_path: Path) -> None:
    values = np.random.default_rng(8).integers(0, 65536, (20, 30)).astype(np.int32)
    tifffile.imwrite(tmp_path / "i.tif", values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = read_image(tmp_path / "i.tif", crop_bar=False)
    np.testing.assert_allclose(got.data[0].numpy(), values / 65535, atol=1e-7)


def test_a_multi_page_tiff_reads_its_first_page_with_a_warning(tmp_path: Path) -> None:
    pages = np.random.default_rng(9).integers(0, 256, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", pages, photometric="minisblack")
    with pytest.warns(ColourConversionWarning, match="3 pages"):
        got = read_image(tmp_path / "s.tif", crop_bar=False)
    np.testing.assert_allclose(got.data[0].numpy(), pages[0] / 255, atol=1e-7)


def test_write_image_clamps_and_accepts_both_shapes(tmp_path: Path) -> None:
    values = torch.tensor([[-0.5, 0.0, 0.25], [0.5, 1.0, 1.5]])
    write_image(tmp_path / "two_d.png", values)
    write_image(tmp_path / "new" / "dir" / "three_d.png", values[None])  # parents are created
    expected = [[0, 0, 64], [128, 255, 255]]
    for name in ("two_d.png", "new/dir/three_d.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), expected)


def test_write_image_rejects_bad_arguments(tmp_path: Path) -> None:
    ok = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match="bmp"):
        write_image(tmp_path / "x.bmp", ok)
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "x.png", ok, bit_depth=12)
    with pytest.raises(ValueError, match=r"\(2, 8, 8\)"):
        write_image(tmp_path / "x.png", torch.rand(2, 8, 8))
    with pytest.raises(TypeError, match="float"):
        write_image(tmp_path / "x.png", torch.zeros(8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="Tensor"):
        write_image(tmp_path / "x.png", np.zeros((8, 8)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "x.png", torch.full((8, 8), float("nan")))
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------------------------
# Bad input: errors name the file and the reason
# --------------------------------------------------------------------------------------------


def _valid_bytes(tmp_path: Path, ext: str) -> bytes:
    path = tmp_path / f"valid{ext}"
    write_image(path, torch.from_numpy(_texture(64, 64, seed=0)).float())
    return path.read_bytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_a_truncated_file_is_an_error_naming_it(tmp_path: Path, ext: str) -> None:
    data = _valid_bytes(tmp_path, ext)
    path = tmp_path / f"broken{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="not a readable image") as info:
        read_image(path)
    assert info.value.path == path and str(path) in str(info.value)


@pytest.mark.parametrize("ext", [".png", ".jpeg", ".tiff"])
def test_a_text_file_with_an_image_extension_is_an_error_naming_it(
    tmp_path: Path, ext: str
) -> None:
    path = tmp_path / f"notes{ext}"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match="not a readable image") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_files_folders_and_unknown_extensions_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(ImageReadError, match=r"\.bmp.*\.png"):
        read_image(tmp_path / "x.bmp")


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_a_constant_image_is_an_error(tmp_path: Path, value: float) -> None:
    path = tmp_path / "flat.png"
    write_image(path, torch.full((40, 50), value))
    with pytest.raises(ImageReadError, match="constant") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_an_image_smaller_than_min_size_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    write_image(path, torch.from_numpy(_texture(32, 48, seed=1)).float())
    assert read_image(path, min_size=32).data.shape == (1, 32, 48)
    with pytest.raises(ImageReadError, match=r"32x48.*smaller than 64") as info:
        read_image(path, min_size=64)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_min_size_must_be_a_positive_int(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="min_size"):
        read_image(tmp_path / "whatever.png", min_size=bad)  # type: ignore[arg-type]


def test_image_read_error_is_a_value_error_that_survives_pickling() -> None:
    err = ImageReadError(Path("/data/a.png"), "image is constant")
    assert isinstance(err, ValueError)
    assert str(err) == "/data/a.png: image is constant"
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))
    # The one-argument form (a message that already names the file) is accepted too.
    plain = pickle.loads(pickle.dumps(ImageReadError("/data/b.png: unreadable")))
    assert (plain.path, str(plain)) == (None, "/data/b.png: unreadable")


def test_sem_image_rejects_inconsistent_fields() -> None:
    data = torch.zeros(1, 10, 12)
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        SEMImage(data=torch.zeros(10, 12), bit_depth=8)
    with pytest.raises(ValueError, match=r"\(1, 3, 12\)"):
        SEMImage(data=data, bit_depth=8, bar_rows=3, bar=torch.zeros(1, 3, 11))
    with pytest.raises(ValueError, match="None"):
        SEMImage(data=data, bit_depth=8, bar_rows=0, bar=torch.zeros(1, 3, 12))
    with pytest.raises(ValueError, match="bit_depth"):
        SEMImage(data=data, bit_depth=12)


# --------------------------------------------------------------------------------------------
# read_folder
# --------------------------------------------------------------------------------------------


def _good(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, torch.from_numpy(_texture(40, 50, seed=seed)).float())


def test_a_folder_with_bad_files_skips_and_reports_each_of_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _good(tmp_path / "d.PNG", 1)  # extensions match case-insensitively
    _good(tmp_path / "b.tif", 2)
    (tmp_path / "a_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_image(tmp_path / "c_black.png", torch.zeros(40, 50))
    (tmp_path / "readme.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="semtune.io"):
        got = read_folder(tmp_path)
    assert [im.path.name for im in got.images if im.path] == ["b.tif", "d.PNG"]
    assert [p.name for p, _ in got.skipped] == ["a_corrupt.jpg", "c_black.png"]
    assert "constant" in got.skipped[1][1]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    for (path, reason), line in zip(got.skipped, warned, strict=True):
        assert str(path) in line and reason in line


def test_a_folder_with_skip_bad_off_raises_on_the_first_bad_file(tmp_path: Path) -> None:
    _good(tmp_path / "a.png", 1)
    (tmp_path / "b.png").write_text("no")
    (tmp_path / "c.png").write_text("no")
    with pytest.raises(ImageReadError) as info:
        read_folder(tmp_path, skip_bad=False)
    assert info.value.path == tmp_path / "b.png"


def test_a_folder_of_only_bad_files_is_an_error_listing_them(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("no")
    write_image(tmp_path / "y.png", torch.ones(10, 10))
    with pytest.raises(ImageReadError, match=r"x\.png.*y\.png") as info:
        read_folder(tmp_path)
    assert info.value.path == tmp_path


def test_empty_missing_and_non_folders_are_errors_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no image files") as info:
        read_folder(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageReadError, match="no image files"):
        read_folder(tmp_path)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_folder(tmp_path / "missing")
    with pytest.raises(ImageReadError, match="not a folder"):
        read_folder(tmp_path / "notes.txt")


def test_sub_folders_are_read_only_when_recursive(tmp_path: Path) -> None:
    _good(tmp_path / "z.png", 1)
    _good(tmp_path / "sub" / "a.png", 2)
    _good(tmp_path / "sub" / "deeper" / "b.tiff", 3)
    flat = read_folder(tmp_path)
    deep = read_folder(tmp_path, recursive=True)
    assert [im.path.name for im in flat.images if im.path] == ["z.png"]
    assert [im.path.relative_to(tmp_path).as_posix() for im in deep.images if im.path] == [
        "sub/a.png",
        "sub/deeper/b.tiff",
        "z.png",
    ]


def test_image_extensions_are_the_documented_ones() -> None:
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------
# Size limits: checked from the header, before decoding
# --------------------------------------------------------------------------------------------


def _png_claiming(path: Path, h: int, w: int) -> None:
    """A PNG whose header claims h x w 8-bit gray pixels, with a few compressed rows of zeros:
    a decompression bomb's header (decoding it would take h * w bytes)."""
    rows = zlib.compress(b"\0" * (w + 1) * 4)
    path.write_bytes(_png_bytes(h, w, depth=8, colour_type=0, compressed=rows))


def test_images_over_the_pixel_limit_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = tmp_path / "bomb.png"
    _png_claiming(bomb, 60000, 60000)  # 3.6 G pixels claimed, 1 kB on disk
    with pytest.raises(ImageReadError, match=r"60000x60000 .* above the limit of 268 M"):
        read_image(bomb)
    for ext in (".png", ".jpg", ".tif"):
        f = tmp_path / f"ok{ext}"
        write_image(f, torch.from_numpy(_texture(300, 400, seed=1)).float()[None])
        with pytest.raises(ImageReadError, match=r"300x400 \(HxW\), 0 M pixels, above"):
            read_image(f, max_pixels=300 * 400 - 1)
        assert read_image(f, max_pixels=300 * 400, crop_bar=False).data.shape == (1, 300, 400)
        monkeypatch.setenv("SEMTUNE_MAX_PIXELS", "1000")
        with pytest.raises(ImageReadError, match="SEMTUNE_MAX_PIXELS"):
            read_image(f)
        monkeypatch.delenv("SEMTUNE_MAX_PIXELS")
    # in a folder, the bomb is skipped and reported, the rest is read
    got = read_folder(tmp_path, crop_bar=False)
    assert [p.name for p, _ in got.skipped] == ["bomb.png"]
    assert len(got.images) == 3


def test_pillows_own_bomb_check_becomes_a_skip_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow refuses images over twice its MAX_IMAGE_PIXELS while opening, before our check
    import semtune.io as io

    bomb = tmp_path / "bomb.png"
    _png_claiming(bomb, 30000, 30000)
    monkeypatch.setattr(io.Image, "open", _opening_raises_a_bomb_error)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(bomb)


def _opening_raises_a_bomb_error(*_args: object, **_kwargs: object) -> Image.Image:
    raise Image.DecompressionBombError("Image size (900000000 pixels) exceeds limit")
