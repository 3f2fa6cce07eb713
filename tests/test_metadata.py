"""The microscope's metadata survives a restoration: TIFF instrument tags, pixel size, EXIF,
PNG text; and a provenance line says what restored the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from semtune.enhance import main
from semtune.metadata import read_metadata
from semtune.train.config import load_train_config
from semtune.train.loop import export_generator
from semtune.train.state import build_state

# An FEI/Thermo record in the instrument's own INI layout (tag 34682, FEI_HELIOS), and a Zeiss
# SmartSEM record (tag 34118, CZ_SEM), as these microscopes write them.
FEI_RECORD = (
    "[User]\r\nDate=10/27/2016\r\nTime=01:16:51 PM\r\n[System]\r\nType=DualBeam\r\n"
    "Dnumber=D8439\r\n[Beam]\r\nHV=2000\r\nBeam=EBeam\r\n[EBeam]\r\nWD=0.00412\r\n"
    "[Scan]\r\nPixelWidth=7.70833e-009\r\nPixelHeight=7.70833e-009\r\nDwelltime=3e-006\r\n"
)
ZEISS_RECORD = "\r\nAP_PIXEL_SIZE\r\nPixel Size = 7.708 nm\r\nAP_WD\r\nWD = 4.1 mm\r\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, sample_train_dir: Path) -> Path:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    return export_generator(
        build_state(cfg, torch.device("cpu")), tmp_path_factory.mktemp("m") / "g.pt"
    )


def _tagged_tiff(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    pixels = (rng.random((160, 192)) * 40000 + 8000).astype(np.uint16)
    tifffile.imwrite(
        path,
        pixels,
        photometric="minisblack",
        resolution=(1 / 7.70833e-7, 1 / 7.70833e-7),  # pixels per cm
        resolutionunit="CENTIMETER",
        description="Helios NanoLab frame 17",
        metadata=None,
        extratags=[(34682, "s", 0, FEI_RECORD, True), (34118, "s", 0, ZEISS_RECORD, True)],
    )
    return pixels


def test_tiff_instrument_tags_pixel_size_and_description_are_kept(
    tmp_path: Path, model: Path
) -> None:
    src = tmp_path / "in" / "frame.tif"
    src.parent.mkdir()
    _tagged_tiff(src)
    assert main([str(src), "--model", str(model), "-o", str(tmp_path / "out")]) == 0
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(tmp_path / "out" / "frame.tif") as b:
        ta, tb = a.pages.first.tags, b.pages.first.tags
        for code in (34682, 34118, 282, 283, 296):
            assert tb[code].value == ta[code].value, code
        assert b.fei_metadata["Scan"]["PixelWidth"] == pytest.approx(7.70833e-9)
        description = str(tb[270].value)
        assert description.startswith("Helios NanoLab frame 17\nrestored by semtune")
        assert str(model) in description
        assert tb[305].value == "semtune"
        assert b.pages.first.dtype == np.uint16


def test_raw_instrument_record_is_copied_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "a.tif"
    _tagged_tiff(src)
    meta = read_metadata(src)
    by_code = {code: value for code, _, _, value in meta.tiff_tags}
    assert by_code[34682] == FEI_RECORD  # not tifffile's parsed dict
    assert by_code[34118] == ZEISS_RECORD
    assert meta.resolution_unit == 3 and meta.resolution is not None


def test_jpeg_becomes_lossless_png_with_its_exif_unless_a_quality_is_asked(
    tmp_path: Path, model: Path
) -> None:
    src = tmp_path / "in" / "scan.jpg"
    src.parent.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "ZEISS"  # Make
    exif[0x0110] = "SUPRA 40"  # Model
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((96, 128)) * 200 + 20).astype(np.uint8)).save(
        src, quality=95, exif=exif
    )
    assert main([str(src), "--model", str(model), "-o", str(tmp_path / "png")]) == 0
    out = tmp_path / "png" / "scan.png"
    assert out.exists() and not (tmp_path / "png" / "scan.jpg").exists()
    with Image.open(out) as im:
        assert im.getexif()[0x0110] == "SUPRA 40"
        assert "restored by semtune" in im.text["Description"]
    assert (
        main([str(src), "--model", str(model), "-o", str(tmp_path / "jpg"), "--jpeg-quality", "80"])
        == 0
    )
    with Image.open(tmp_path / "jpg" / "scan.jpg") as im:
        assert im.format == "JPEG" and im.getexif()[0x010F] == "ZEISS"


def test_png_text_and_pixel_size_are_kept(tmp_path: Path, model: Path) -> None:
    from PIL import PngImagePlugin

    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("Instrument", "JSM-7800F")
    Image.fromarray((np.random.default_rng(2).random((80, 96)) * 255).astype(np.uint8)).save(
        src, pnginfo=info, dpi=(2540, 2540)
    )
    assert main([str(src), "--model", str(model), "-o", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "a.png") as im:
        assert im.text["Instrument"] == "JSM-7800F"
        assert im.info["dpi"] == pytest.approx((2540, 2540), abs=1)


def test_bad_jpeg_quality_is_refused(tmp_path: Path, model: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--model", str(model), "-o", str(tmp_path), "--jpeg-quality", "100"])
