"""Full-frame enhancement: seamless tiling, any image size, bit depth and data bar preserved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as nnf
from torch import nn

from semtune.enhance import enhance_image, main, run_padded, tile_weights
from semtune.io import write_image
from semtune.train.config import load_train_config
from semtune.train.loop import export_generator
from semtune.train.state import build_state


class Pointwise(nn.Module):
    """A generator with no spatial context: tiling must not change its output at all."""

    size_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a * x**2 + 0.1).clamp(0, 1)


class Blur(nn.Module):
    """A 5x5 box blur with zero padding: tiles see false borders, which blending must hide."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((1, 1, 5, 5), 1 / 25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nnf.conv2d(x, self.w, padding=2)


def _image(h: int = 300, w: int = 420) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 1, h, w, generator=g)


def test_weights_ramp_and_never_vanish() -> None:
    w = tile_weights(64, 16)
    assert w.min() > 0 and w.max() == 1
    assert torch.all(w[:16].diff() > 0) and torch.all(w[-16:].diff() < 0)
    assert torch.allclose(w, w.flip(0))


def test_tiling_leaves_a_pointwise_generator_unchanged() -> None:
    x = _image()
    g = Pointwise()
    whole = enhance_image(g, x, tile=0)
    tiled = enhance_image(g, x, tile=128, overlap=32)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def test_overlap_blending_hides_the_seams_of_a_spatial_generator() -> None:
    x = nnf.avg_pool2d(_image(), 3, stride=1, padding=1)  # smooth content, like a micrograph
    g = Blur()
    whole = enhance_image(g, x, tile=0)
    hard = enhance_image(g, x, tile=128, overlap=0)
    blended = enhance_image(g, x, tile=128, overlap=32)
    err_hard = (hard - whole).abs().max()
    err_blended = (blended - whole).abs().max()
    # zero-padded tile borders darken hard-tiled seams visibly; blending removes most of it
    assert err_hard > 0.1
    assert err_blended < err_hard / 4


def test_any_size_runs_through_padding(tmp_path: Path, sample_train_dir: Path) -> None:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    g = build_state(cfg, torch.device("cpu")).g.eval()
    for h, w in ((37, 50), (64, 64), (101, 77)):
        y = run_padded(g, torch.rand(1, 1, h, w))
        assert y.shape == (1, 1, h, w)


def test_cli_keeps_bit_depth_size_and_the_data_bar(tmp_path: Path, sample_train_dir: Path) -> None:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    model = export_generator(build_state(cfg, torch.device("cpu")), tmp_path / "g.pt")
    rng = np.random.default_rng(0)
    img = (rng.random((200, 260)) * 30000 + 10000).astype(np.uint16)
    img[170:] = 65535  # a white data bar with black text, as on the NFFA microscope
    img[180:190, 20:120] = 0
    src = tmp_path / "in" / "frame.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, img)
    assert main([str(src.parent), "--model", str(model), "-o", str(tmp_path / "keep")]) == 0
    out = tifffile.imread(tmp_path / "keep" / "frame.tif")
    assert out.dtype == np.uint16 and out.shape == img.shape
    np.testing.assert_array_equal(out[175:], img[175:])  # the bar comes back unchanged
    assert main([str(src), "--model", str(model), "-o", str(tmp_path / "crop"), "--crop-bar"]) == 0
    cropped = tifffile.imread(tmp_path / "crop" / "frame.tif")
    assert cropped.dtype == np.uint16 and cropped.shape[1] == 260 and cropped.shape[0] < 175


def test_cli_names_a_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.png"), "--model", "x.pt", "-o", str(tmp_path)]) == 2
    assert "nope.png" in capsys.readouterr().err


def _tiny_model(tmp_path: Path, sample_train_dir: Path) -> Path:
    cfg = load_train_config("tiny", [f"data.clean_dir={sample_train_dir}"])
    return export_generator(build_state(cfg, torch.device("cpu")), tmp_path / "g.pt")


def test_cli_never_writes_over_originals_or_earlier_outputs(
    tmp_path: Path, sample_train_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(_tiny_model(tmp_path, sample_train_dir))
    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "x.tif", (rng.random((64, 80)) * 255).astype(np.uint8))
    original = (tmp_path / "a" / "x.tif").read_bytes()
    # -o naming an input's folder: refused, with or without --overwrite
    for extra in ([], ["--overwrite"]):
        assert main([str(tmp_path / "a"), "--model", model, "-o", str(tmp_path / "a"), *extra]) == 2
        assert "originals are never written over" in capsys.readouterr().err
    assert (tmp_path / "a" / "x.tif").read_bytes() == original
    # two inputs with one name: refused before anything is written
    assert (
        main(
            [str(tmp_path / "a"), str(tmp_path / "b"), "--model", model, "-o", str(tmp_path / "o")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "would both be written to" in err and str(tmp_path / "b" / "x.tif") in err
    assert not (tmp_path / "o").exists()
    # an existing output is kept unless --overwrite
    out = tmp_path / "o"
    assert main([str(tmp_path / "a"), "--model", model, "-o", str(out)]) == 0
    (out / "x.tif").write_bytes(b"earlier work")
    assert main([str(tmp_path / "a"), "--model", model, "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "x.tif").read_bytes() == b"earlier work"
    assert main([str(tmp_path / "a"), "--model", model, "-o", str(out), "--overwrite"]) == 0
    assert tifffile.imread(out / "x.tif").shape == (64, 80)
    # -o naming a file: a message, not a traceback
    assert main([str(tmp_path / "a"), "--model", model, "-o", str(out / "x.tif")]) == 2
    assert "is a file" in capsys.readouterr().err


def _peak_rss(enhance_args: list[str]) -> int:
    """Peak resident memory of ``semtune.enhance`` in its own process, bytes: VmHWM read inside
    it (ru_maxrss would carry this test process's own size into the child's at the fork)."""
    import subprocess
    import sys

    measured = (
        "import sys\n"
        "from semtune.enhance import main\n"
        "code = main(sys.argv[1:])\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", measured, *enhance_args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split("VmHWM:")[-1].split()[0]) * 1024  # kB


def test_enhance_memory_grows_by_the_image_not_by_copies_of_it(
    tmp_path: Path, sample_train_dir: Path
) -> None:
    """Per pixel, enhance holds the input and the result as float32 and the 16-bit output:
    8.9 bytes measured here; it held three more float32 and two float64 copies before (27.0
    bytes). The slope between two sizes leaves out Python, torch and the model."""

    model = str(_tiny_model(tmp_path, sample_train_dir))
    rng = np.random.default_rng(0)
    peaks = {}
    for side in (1500, 3000):
        src = tmp_path / f"in{side}" / "big.tif"
        src.parent.mkdir()
        tifffile.imwrite(src, rng.integers(20000, 40000, (side, side), dtype=np.uint16))
        peaks[side] = _peak_rss(
            [str(src), "--model", model, "-o", str(tmp_path / f"out{side}"), "--no-bar-detect"]
        )
        assert tifffile.imread(tmp_path / f"out{side}" / "big.tif").shape == (side, side)
    per_pixel = (peaks[3000] - peaks[1500]) / (3000**2 - 1500**2)
    assert per_pixel < 16, per_pixel


def test_cli_mistakes_get_messages_not_tracebacks(
    tmp_path: Path,
    sample_train_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image

    model = str(_tiny_model(tmp_path, sample_train_dir))  # trained on 32 px crops
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src)
    run = [str(src), "-o", str(tmp_path / "out"), "--no-bar-detect"]
    # a device that is not here
    if not torch.cuda.is_available():
        assert main([*run, "--model", model, "--device", "cuda"]) == 2
        assert "no CUDA device here" in capsys.readouterr().err
    assert main([*run, "--model", model, "--device", "tpu9"]) == 2
    assert "not a device" in capsys.readouterr().err
    # tiles: refused before any model is loaded (this one does not exist)
    with pytest.raises(SystemExit):
        main([*run, "--model", "missing.pt", "--tile", "128", "--overlap", "100"])
    assert "--overlap must be >= 0 and below half of --tile 128" in capsys.readouterr().err
    # ... and against the model's own tile when --tile is not given
    assert main([*run, "--model", model, "--overlap", "40"]) == 2
    assert "below half of the tile, 32 px" in capsys.readouterr().err
    # a file that is not a semtune checkpoint: never the advice to unpickle it anyway
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": Pointwise()}, foreign)  # a whole pickled module, as some tools save
    assert main([*run, "--model", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert "never unpickles" in err and "weights_only" not in err
    # a colour image: one warning line, no line of source code under it
    assert main([*run, "--model", model]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "colour image converted to gray" in err
    assert "_warn(" not in err and "warnings.warn" not in err


def test_a_registry_model_named_outside_the_project_creates_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 64, 64))
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    assert main([*args, "--model", "models:/semtune-generator@champion"]) == 2
    err = capsys.readouterr().err
    assert f"no MLflow store at {tmp_path.resolve()}/mlruns/mlflow.db" in err
    assert "--tracking-uri" in err and "MLFLOW_TRACKING_URI" in err
    assert not (tmp_path / "mlruns").exists()  # reading created nothing
    elsewhere = tmp_path / "other" / "mlflow.db"
    assert main([*args, "--model", "models:/m@champion", "--tracking-uri", str(elsewhere)]) == 2
    assert f"no MLflow store at {elsewhere}" in capsys.readouterr().err
    assert not elsewhere.parent.exists()


def test_sub_folders_are_named_when_skipped_and_mirrored_with_recursive(
    tmp_path: Path, sample_train_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(_tiny_model(tmp_path, sample_train_dir))
    rng = np.random.default_rng(0)
    src = tmp_path / "session"
    for rel in ("top.tif", "a/x.tif", "a/deep/x.tif", "b/x.tif"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(src / rel, (rng.random((64, 80)) * 255).astype(np.uint8))
    (src / "empty").mkdir()
    (src / "notes").mkdir()
    (src / "notes" / "readme.txt").write_text("not an image")

    def outputs(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*.tif")}

    # without --recursive: the folder's own images, and one line naming what was left out
    flat = tmp_path / "flat"
    assert main([str(src), "--model", model, "-o", str(flat)]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: {src}: 2 sub-folder(s) with images skipped (a, b); --recursive includes them"
    ]
    assert err.count("threads: ") == 1  # said once, at start
    assert outputs(flat) == {"top.tif"}
    # with it: every image, into the same sub-folders under -o
    out = tmp_path / "restored"
    assert main([str(src), "--recursive", "--model", model, "-o", str(out), "--report"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert outputs(out) == {"top.tif", "a/x.tif", "a/deep/x.tif", "b/x.tif"}
    assert tifffile.imread(out / "a" / "deep" / "x.tif").shape == (64, 80)
    # two x.tif in two sub-folders: two contact sheets, neither written over the other
    sheets = out / "report"
    assert (sheets / "a" / "x.tif.png").is_file() and (sheets / "b" / "x.tif.png").is_file()
    assert "a/x.tif" in (out / "report" / "report.csv").read_text()
    # again: nothing is written over without --overwrite
    (out / "a" / "x.tif").write_bytes(b"earlier work")
    assert main([str(src), "--recursive", "--model", model, "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "a" / "x.tif").read_bytes() == b"earlier work"
    # -o inside the input folder: an earlier run's outputs are never taken as inputs
    inside = src / "restored"
    for extra in ([], ["--overwrite"]):
        assert main([str(src), "--recursive", "--model", model, "-o", str(inside), *extra]) == 0
    assert outputs(inside) == {"top.tif", "a/x.tif", "a/deep/x.tif", "b/x.tif"}
    # a folder with images only in its sub-folders: the error says how to include them
    capsys.readouterr()
    only_subs = tmp_path / "only-subs"
    (only_subs / "day1").mkdir(parents=True)
    tifffile.imwrite(only_subs / "day1" / "y.tif", np.zeros((64, 80), np.uint8))
    assert main([str(only_subs), "--model", model, "-o", str(tmp_path / "o2")]) == 2
    assert "add --recursive" in capsys.readouterr().err


def test_threads_follow_the_flag_then_omp_num_threads(
    tmp_path: Path,
    sample_train_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = str(_tiny_model(tmp_path, sample_train_dir))
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 64, 64))
    run = [str(tmp_path / "in"), "--model", model, "--overwrite", "-o", str(tmp_path / "out")]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(run) == 0
    assert "threads: 1 (OMP_NUM_THREADS)" in capsys.readouterr().err
    assert main([*run, "--threads", "2"]) == 0
    assert "threads: 2 (--threads)" in capsys.readouterr().err
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert main(run) == 0
    assert "(the CPUs this process may use; --threads N to change)" in capsys.readouterr().err
