"""The training loop: outputs on disk, exact resume, NaN handling, checkpoint round trip."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from semtune.data.unpaired import TrainingData, build_training_data
from semtune.train.config import TrainConfig, load_train_config
from semtune.train.loop import evaluate_generator, train
from semtune.train.state import build_state, load_checkpoint, load_generator, save_checkpoint
from semtune.train.step import NonFiniteLossError


@pytest.fixture(scope="module")
def tiny_cfg(sample_train_dir: Path) -> TrainConfig:
    return load_train_config(
        "tiny", [f"data.clean_dir={sample_train_dir}", "schedule.log_every=1", "runtime.threads=1"]
    )


@pytest.fixture(scope="module")
def tiny_data(tiny_cfg: TrainConfig) -> TrainingData:
    return build_training_data(tiny_cfg.data)


class Recorder:
    def __init__(self, fail_after_eval_at: int | None = None) -> None:
        self.losses: dict[int, dict[str, float]] = {}
        self.evals: dict[int, dict[str, float]] = {}
        self.fail_after_eval_at = fail_after_eval_at

    def log(self, step: int, losses: dict[str, float]) -> None:
        self.losses[step] = dict(losses)

    def evaluate(self, step, metrics, checkpoint, samples) -> None:  # type: ignore[no-untyped-def]
        assert checkpoint.exists()
        assert samples.ndim == 4 and samples.shape[-1] == 3 * samples.shape[-2]
        self.evals[step] = dict(metrics)
        if step == self.fail_after_eval_at:
            raise KeyboardInterrupt  # the run is interrupted right after a checkpoint


def test_a_short_run_writes_checkpoints_metrics_and_a_loadable_generator(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path
) -> None:
    rec = Recorder()
    result = train(tiny_cfg, tmp_path, reporter=rec, data=tiny_data, printer=None)
    assert result.step == tiny_cfg.schedule.steps
    for name in ("last.pt", "best.pt", "generator.pt", "metrics.csv"):
        assert (tmp_path / name).exists(), name
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(float(r["step"])) for r in rows] == sorted(rec.evals)
    assert {"ssim", "psnr", "ag", "con", "sf", "blurry_ssim", "blurry_psnr"} <= set(rows[0])
    g, cfg = load_generator(tmp_path / "generator.pt")
    assert cfg == tiny_cfg
    x = tiny_data.val.blurred[:2]
    assert g(x).shape == x.shape
    # the last evaluation per validation image, named; its crop-weighted mean is the metric
    per_image = list(csv.DictReader((tmp_path / "val_scores.csv").open()))
    names = {Path(p).name for p in tiny_data.files["val"]}
    assert {r["image"] for r in per_image} == names and len(per_image) == len(names)
    assert {int(r["step"]) for r in per_image} == {result.step}
    crops = [int(r["crops"]) for r in per_image]
    assert sum(crops) == len(tiny_data.val)
    for key in ("ssim", "psnr", "psnr_gain"):
        mean = sum(n * float(r[key]) for n, r in zip(crops, per_image, strict=True)) / sum(crops)
        assert mean == pytest.approx(float(rows[-1][key]), rel=1e-4)
    # with its 95% interval over those images
    assert float(rows[-1]["ssim_ci_low"]) <= float(rows[-1]["ssim_ci_high"])


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        # the weight average and noise draws are state too
        ["optim.ema=0.9", "loss.pseudo_noise=0.01"],
        # F's measured noise levels (a buffer) and its noise draws
        ["f.noise=true", "loss.forward_cycle=0"],
    ],
    ids=["plain", "ema+noise", "f-noise"],
)
def test_an_interrupted_run_resumes_with_exactly_the_same_losses(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path, overrides: list[str]
) -> None:
    tiny_cfg = load_train_config("tiny", overrides, base=tiny_cfg.to_dict())
    full = Recorder()
    train(tiny_cfg, tmp_path / "full", reporter=full, data=tiny_data, printer=None)

    cut = Recorder(fail_after_eval_at=3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg, tmp_path / "cut", reporter=cut, data=tiny_data, printer=None)
    assert max(cut.losses) == 3
    resumed = Recorder()
    train(
        tiny_cfg,
        tmp_path / "cut",
        reporter=resumed,
        data=tiny_data,
        printer=None,
        resume=tmp_path / "cut" / "last.pt",
    )
    assert sorted(resumed.losses) == [4, 5, 6]
    for step in (4, 5, 6):
        assert resumed.losses[step] == full.losses[step], step
    assert resumed.evals[6]["psnr"] == full.evals[6]["psnr"]


def test_a_nan_loss_stops_the_run_with_a_clear_error(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path
) -> None:
    poisoned = replace(
        tiny_data, blurred=[torch.full_like(im, float("nan")) for im in tiny_data.blurred]
    )
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1"):
        train(tiny_cfg, tmp_path, data=poisoned, printer=None)


def test_checkpoint_round_trip_restores_every_tensor(tiny_cfg: TrainConfig, tmp_path: Path) -> None:
    state = build_state(tiny_cfg, torch.device("cpu"))
    state.step = 17
    state.best = {"score": 1.5}
    path = save_checkpoint(state.to_checkpoint(), tmp_path / "c.pt")
    loaded = load_checkpoint(path, torch.device("cpu"))
    assert loaded.step == 17 and loaded.best == {"score": 1.5} and loaded.config == tiny_cfg
    for name, module in state.modules().items():
        other = loaded.modules()[name].state_dict()
        for k, v in module.state_dict().items():
            assert torch.equal(v, other[k]), (name, k)
    # plain dict of tensors and python values: loadable without pickled classes
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["loss"]["gamma"] == tiny_cfg.loss.gamma


def test_a_corrupt_checkpoint_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_generator(bad)


def test_validation_images_are_never_trained_on(tiny_data: TrainingData) -> None:
    val = set(tiny_data.files["val"])
    assert val and not val & set(tiny_data.files["blurred"])
    assert not val & set(tiny_data.files["clean"])
    # and the two training domains show different scenes (unpaired in fact)
    assert not set(tiny_data.files["blurred"]) & set(tiny_data.files["clean"])


def test_the_weight_average_is_what_is_validated_and_exported(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path
) -> None:
    cfg = load_train_config("tiny", ["optim.ema=0.9"], base=tiny_cfg.to_dict())
    train(cfg, tmp_path, data=tiny_data, printer=None)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    exported = torch.load(tmp_path / "generator.pt", weights_only=True)
    g, g_ema = best["models"]["g"], best["models"]["g_ema"]
    assert all(torch.equal(exported["generator"][k], g_ema[k]) for k in g_ema)
    assert any(not torch.equal(g[k], g_ema[k]) for k in g)  # it is an average, not a copy
    # the metrics stored with the generator are those of exactly these weights
    restorer, _ = load_generator(tmp_path / "generator.pt")
    again = evaluate_generator(restorer, tiny_data.val)
    assert again["psnr"] == pytest.approx(exported["metrics"]["psnr"], abs=1e-4)


def test_shuffled_domains_hold_every_training_image_in_both_and_no_validation_image(
    tiny_cfg: TrainConfig, tiny_data: TrainingData
) -> None:
    cfg = load_train_config("tiny", ["data.domains=shuffled"], base=tiny_cfg.to_dict())
    data = build_training_data(cfg.data)
    train_files = sorted(tiny_data.files["blurred"] + tiny_data.files["clean"])
    assert sorted(data.files["blurred"]) == sorted(data.files["clean"]) == train_files
    assert not set(data.files["val"]) & set(train_files)
    assert data.val.clean.shape == tiny_data.val.clean.shape  # the same validation split
    assert data.fingerprint != tiny_data.fingerprint


def test_pseudo_noise_reaches_the_backward_cycle(
    tiny_cfg: TrainConfig, tiny_data: TrainingData
) -> None:
    from semtune.data.unpaired import sample_crops
    from semtune.train.step import Precision, train_step

    cycles = []
    for noise in (0.0, 0.05):
        cfg = load_train_config("tiny", [f"loss.pseudo_noise={noise}"], base=tiny_cfg.to_dict())
        state = build_state(cfg, torch.device("cpu"))
        gen = torch.Generator().manual_seed(1)
        a = sample_crops(tiny_data.blurred, 2, cfg.data.crop_size, gen, augment=False)
        b = sample_crops(tiny_data.clean, 2, cfg.data.crop_size, gen, augment=False)
        cycles.append(
            train_step(state, a, b, Precision.resolve(torch.device("cpu"), "fp32"))["loss_cycle"]
        )
    assert cycles[1] > cycles[0]  # G, near the identity, cannot undo the added noise


def _one_step(cfg: TrainConfig, data: TrainingData) -> tuple[dict[str, float], object]:
    from semtune.data.unpaired import sample_crops
    from semtune.train.step import Precision, train_step

    state = build_state(cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    a = sample_crops(data.blurred, 2, cfg.data.crop_size, gen, augment=False)
    b = sample_crops(data.clean, 2, cfg.data.crop_size, gen, augment=False)
    return train_step(state, a, b, Precision.resolve(torch.device("cpu"), "fp32")), state


def test_f_adds_noise_at_the_levels_measured_on_the_blurred_images(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path
) -> None:
    from semtune.data.estimate import noise_levels

    cfg = load_train_config("tiny", ["f.noise=true"], base=tiny_cfg.to_dict())
    lines: list[str] = []
    train(cfg, tmp_path, data=tiny_data, printer=lines.append)
    f = load_checkpoint(tmp_path / "last.pt", torch.device("cpu")).f
    measured = noise_levels(tiny_data.blurred)
    q = f.noise_quantiles
    assert float(q[0]) == pytest.approx(float(measured.min()), rel=1e-5)
    assert float(q[-1]) == pytest.approx(float(measured.max()), rel=1e-5)
    assert any(line.startswith("F adds the blurred images' noise") for line in lines)
    # these blurred images are set A's (noise-free): the run says what such a model will do
    warnings = [line for line in lines if "carry almost no pixel noise" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: ")
    assert "paint grain into real, noisy ones" in warnings[0]
    # each crop of F's noise has one of those pixel stds (white part, read back by Immerkaer)
    from semtune.quality import noise_sigma

    flat = torch.full((8, 1, 64, 64), 0.5)
    noise = f.noise(flat, torch.Generator().manual_seed(0), cfg.data.degrade.noise)
    assert noise is not None
    got = noise_sigma(flat + noise)
    assert float(got.min()) >= 0.9 * float(q[0]) and float(got.max()) <= 1.1 * float(q[-1])


def test_without_the_forward_cycle_only_the_backward_cycle_counts(
    tiny_cfg: TrainConfig, tiny_data: TrainingData
) -> None:
    both, _ = _one_step(tiny_cfg, tiny_data)
    cfg = load_train_config("tiny", ["loss.forward_cycle=0"], base=tiny_cfg.to_dict())
    backward, _ = _one_step(cfg, tiny_data)
    assert 0 < backward["loss_cycle"] < both["loss_cycle"]


def test_a_resumed_run_counts_the_time_already_trained_against_its_budget(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path
) -> None:
    """Without this, every retry or resume of a trial got a fresh time_budget_s and trained
    longer than the trials that never failed."""
    import torch

    from semtune.train.state import save_checkpoint

    cfg = load_train_config("tiny", ["schedule.time_budget_s=5000"], base=tiny_cfg.to_dict())
    cut = Recorder(fail_after_eval_at=3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path, reporter=cut, data=tiny_data, printer=None)
    assert cut.evals[3]["train_seconds"] < 100
    # the checkpoint says the whole budget was trained before the interruption
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    ckpt["history"][-1]["train_seconds"] = 5000.0
    save_checkpoint(ckpt, tmp_path / "last.pt")
    resumed = Recorder()
    result = train(
        cfg, tmp_path, reporter=resumed, data=tiny_data, printer=None, resume=tmp_path / "last.pt"
    )
    assert cfg.schedule.steps > 4
    assert result.step == 4  # no budget left: it stops after its first step
    assert resumed.evals[4]["train_seconds"] >= 5000


def test_the_generator_file_carries_what_its_training_data_was_like(
    tiny_cfg: TrainConfig, tiny_data: TrainingData, tmp_path: Path
) -> None:
    from semtune.data.estimate import noise_levels
    from semtune.train.state import load_generator_file

    train(tiny_cfg, tmp_path, data=tiny_data, printer=None)
    file = load_generator_file(tmp_path / "generator.pt")
    stats = file.data_stats
    assert stats["fingerprint"] == tiny_data.fingerprint
    q = torch.quantile(noise_levels(tiny_data.blurred), torch.tensor([0.1, 0.5, 0.9]))
    assert stats["blurred_noise"] == pytest.approx(q.tolist())
    assert stats["n_blurred"] == len(tiny_data.blurred)
    # F's kernel, normalised, for the report's self-check
    psf = file.degradation["psf"]
    assert psf.shape == (9, 9) and float(psf.sum()) == pytest.approx(1.0, abs=1e-5)
    assert file.degradation["sigma"] > 0


def test_own_validation_imitates_the_blurred_folder(
    sample_train_dir: Path, sample_test_dir: Path
) -> None:
    from semtune.data.estimate import noise_levels

    cfg = load_train_config(
        "tiny",
        [
            f"data.clean_dir={sample_train_dir}",
            f"data.blurred_dir={sample_test_dir}",
            "data.val_set=own",
        ],
    )
    data = build_training_data(cfg.data)
    assert data.estimate is not None
    assert data.val_label.startswith("own (")
    # the pairs carry noise in the blurred folder's measured range
    q = torch.quantile(noise_levels(data.blurred), torch.tensor([0.1, 0.9]))
    from semtune.quality import noise_sigma

    got = noise_sigma(data.val.blurred).median()
    assert 0.5 * float(q[0]) < float(got) < 2 * float(q[1])
    if data.estimate.sigma is None:  # these are not blurred: the fallback is said
        assert any("could not be measured" in n for n in data.notes)


def test_train_cli_takes_blurred_and_clean_folders_and_warns_when_the_blur_is_unmeasurable(
    sample_train_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from semtune.train.__main__ import main

    # two folders of sharp images: there is no blur between them to measure
    out = tmp_path / "run"
    code = main(
        [
            "--config",
            "tiny",
            "--blurred",
            str(sample_train_dir),
            "--clean",
            str(sample_train_dir),
            "--set",
            "f.init=estimate",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "WARNING: the blur between the two folders could not be measured" in printed
    assert "F starts from f.init_sigma" in printed
    assert "degraded as own (" in printed
    saved = (out / "config.json").read_text()
    assert str(sample_train_dir) in saved and '"val_set": "own"' in saved
    # the same --out again without --resume: refused, the run's files untouched
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", "tiny", "--clean", str(sample_train_dir), "--out", str(out)])
    assert exit_info.value.code == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
