"""The SEM noise model and the noisy sets A+n, B+n, C+n."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from semtune.data.degrade import ALL_SETS, NOISY_SETS, DegradeConfig, degrade
from semtune.data.noise import NoiseConfig, add_noise, draw_noise
from semtune.quality import line_noise_sigma, noise_sigma


def _flat(value: float = 0.5, n: int = 4, size: int = 128) -> torch.Tensor:
    return torch.full((n, 1, size, size), value)


def _fixed(**ranges: tuple[float, float]) -> NoiseConfig:
    """A config whose draws are fixed: every range (low, low)."""
    base = {"sigma": (0.01, 0.01), "shot_fraction": (0.0, 0.0), "correlated": (0.0, 0.0)}
    base["line"] = (0.0, 0.0)
    base.update(ranges)
    return NoiseConfig(**base)


@pytest.mark.parametrize("set_name", ["A", "B", "C"])
def test_a_noisy_set_is_its_paper_set_plus_noise(set_name: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(6, 1, 128, 128, generator=g)
    plain = degrade(x, set_name, seed=3)
    noisy = degrade(x, f"{set_name}+n", seed=3)
    torch.testing.assert_close(noisy.psfs, plain.psfs)  # same blur drawn
    diff = noisy.blurred - plain.blurred
    assert float(diff.abs().mean()) > 1e-3
    # noise has zero mean: the blur and fog are the same image by image
    assert float(diff.mean((1, 2, 3)).abs().max()) < 6e-3


def test_the_paper_sets_are_unchanged_by_the_noise_config() -> None:
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    loud = DegradeConfig(noise=NoiseConfig(sigma=(0.2, 0.3)))
    for set_name in ("A", "B", "C"):
        torch.testing.assert_close(
            degrade(x, set_name, seed=2).blurred, degrade(x, set_name, seed=2, config=loud).blurred
        )


def test_white_noise_level_is_what_was_drawn() -> None:
    noisy, draw = add_noise(_flat(), generator=torch.Generator().manual_seed(0), config=_fixed())
    assert torch.allclose(draw.sigma, torch.full((4,), 0.01))
    assert torch.allclose(noise_sigma(noisy), torch.full((4,), 0.01), rtol=0.05)
    assert torch.allclose((noisy - 0.5).flatten(1).std(1), torch.full((4,), 0.01), rtol=0.05)


def test_shot_noise_grows_with_the_signal() -> None:
    config = _fixed(shot_fraction=(1.0, 1.0))
    dark, _ = add_noise(_flat(0.1), generator=torch.Generator().manual_seed(0), config=config)
    bright, _ = add_noise(_flat(0.9), generator=torch.Generator().manual_seed(0), config=config)
    ratio = float((bright - 0.9).std() / (dark - 0.1).std())
    assert ratio == pytest.approx(math.sqrt(0.9 / 0.1), rel=0.05)  # variance ~ signal


def test_correlated_noise_keeps_the_pixel_estimate_and_adds_its_own_variance() -> None:
    config = _fixed(correlated=(2.0, 2.0))
    noisy, _ = add_noise(_flat(), generator=torch.Generator().manual_seed(0), config=config)
    total = (noisy - 0.5).flatten(1).std(1)
    # white 0.01 plus a correlated part of std 0.02: sqrt(0.01^2 + 0.02^2) in all
    assert torch.allclose(total, torch.full((4,), math.sqrt(5) * 0.01), rtol=0.1)
    # neighbouring pixels now share part of their noise
    d = noisy - 0.5
    lag1 = float((d[..., 1:] * d[..., :-1]).mean() / d.pow(2).mean())
    assert 0.3 < lag1 < 0.9


def test_line_noise_is_one_offset_per_row() -> None:
    config = _fixed(line=(2.0, 2.0))
    noisy, _ = add_noise(_flat(), generator=torch.Generator().manual_seed(0), config=config)
    assert torch.allclose(line_noise_sigma(noisy), torch.full((4,), 0.02), rtol=0.25)


def test_draws_are_per_image_so_a_set_can_be_made_in_chunks() -> None:
    x = torch.rand(6, 1, 48, 48, generator=torch.Generator().manual_seed(4))
    whole = degrade(x, "C+n", seed=5).blurred
    part = degrade(x[2:5], "C+n", seed=5, index_offset=2).blurred
    torch.testing.assert_close(part, whole[2:5])


def test_sigma_is_drawn_log_uniformly_within_its_range() -> None:
    gens = [torch.Generator().manual_seed(i) for i in range(400)]
    draw = draw_noise(gens, NoiseConfig(sigma=(0.001, 0.1)))
    logs = draw.sigma.log10()
    assert float(draw.sigma.min()) >= 0.001 and float(draw.sigma.max()) <= 0.1
    assert float(logs.mean()) == pytest.approx(-2.0, abs=0.1)  # midpoint in log space


def test_noisy_sets_are_listed_with_the_papers() -> None:
    assert NOISY_SETS == ("A+n", "B+n", "C+n")
    assert ALL_SETS[:3] == ("A", "B", "C")
    with pytest.raises(ValueError, match=r"'D\+n'.*A\+n"):
        degrade(torch.rand(1, 1, 32, 32), "D+n", seed=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sigma", (0.03, 0.01)),
        ("sigma", (0.0, math.nan)),
        ("shot_fraction", (0.0, 1.5)),
        ("correlated", (-1.0, 1.0)),
        ("line", (0.0,)),
        ("correlation_px", 0.0),
    ],
)
def test_config_rejects_bad_ranges_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(NoiseConfig(), **{field: value})
