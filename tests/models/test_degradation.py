"""The physics degradation generator F: a real blur from the first step, few weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy import ndimage

from semtune.models.degradation import PhysicsDegradation, estimate_degradation


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_starts_as_the_gaussian_blur_of_its_init_sigma(sigma: float) -> None:
    f = PhysicsDegradation(kernel_size=15, init_sigma=sigma, init_transmission=0.5)
    with torch.no_grad():
        f.transmission_logit.fill_(20.0)  # t = 1: the blur alone
    x = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    got = f(x)[0, 0].detach().numpy()
    # scipy's Gaussian truncated at the same 7-pixel radius, mirrored borders as F's reflect pad
    ref = ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="mirror", truncate=7 / sigma)
    assert abs(got - ref).max() < 1e-5
    assert f.kernel_sigma() == pytest.approx(sigma, rel=0.02)


def test_kernel_stays_a_psf_and_the_output_in_range_after_any_update() -> None:
    f = PhysicsDegradation(kernel_size=9, init_sigma=1.5)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn_like(p) * 5)
    k = f.kernel()
    assert (k >= 0).all() and k.sum().item() == pytest.approx(1.0, abs=1e-6)
    y = f(torch.rand(2, 1, 16, 16))
    assert y.min() >= 0 and y.max() <= 1


def test_blurs_a_step_edge_and_lowers_contrast_by_its_transmission() -> None:
    f = PhysicsDegradation(kernel_size=9, init_sigma=2.0, init_transmission=0.8)
    x = torch.zeros(1, 1, 32, 32)
    x[..., 16:] = 1.0
    y = f(x).detach()
    row = y[0, 0, 8]
    # the jump is spread over several pixels, and the range shrinks to t
    assert (row[1:] - row[:-1]).max() < 0.5
    assert (row.max() - row.min()).item() == pytest.approx(0.8, abs=0.02)


def test_has_only_the_kernel_and_two_contrast_weights() -> None:
    f = PhysicsDegradation(kernel_size=15)
    assert sum(p.numel() for p in f.parameters()) == 15 * 15 + 2


def test_rejects_even_kernels_and_bad_inputs() -> None:
    with pytest.raises(ValueError, match="odd"):
        PhysicsDegradation(kernel_size=8)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        PhysicsDegradation()(torch.rand(1, 3, 16, 16))


def test_estimate_recovers_a_known_blur_and_fog_from_the_two_domains(
    sample_train_dir: Path,
) -> None:
    from semtune.data.degrade import gaussian_blur
    from semtune.io import read_folder

    images = [im.data for im in read_folder(sample_train_dir).images[:8]]
    clean = [x[:, :384, :384] for x in images]
    blurred = [0.7 * gaussian_blur(x[None], kernel_size=9, sigma=1.5)[0] + 0.3 * 0.2 for x in clean]
    est = estimate_degradation(blurred, clean)
    assert est.sigma == pytest.approx(1.5, abs=0.35)
    assert est.transmission == pytest.approx(0.7, abs=0.05)
    assert est.airlight == pytest.approx(0.2, abs=0.1)
    assert est.sigma_blurred > est.sigma_clean


def test_the_spectral_estimate_finds_set_a_blur_where_edge_widths_were_biased(
    sample_train_dir: Path,
) -> None:
    """Two disjoint halves of a dozen scenes differ in their own sharpness: the edge-width
    estimate read that difference as blur (0.63 px for set A's 1.0, docs/restoration.md item
    8). The ratio of the domains' mean power spectra, which F now starts from, reads set A's blur
    on shuffled domains and on halves alike."""
    from semtune.data.unpaired import build_training_data
    from semtune.train.config import load_train_config

    estimates = {}
    for domains in ("shuffled", "halves"):
        cfg = load_train_config(
            "cpu",
            [
                f"data.clean_dir={sample_train_dir}",
                f"data.domains={domains}",
                "data.synthetic_set=A",
            ],
        )
        data = build_training_data(cfg.data)
        estimates[domains] = estimate_degradation(data.blurred, data.clean)
    for est in estimates.values():
        assert est.sigma == pytest.approx(1.0, abs=0.15)  # set A: Gaussian, sigma 1
        assert not est.problems


def test_the_estimate_says_when_it_cannot_measure_the_blur(sample_train_dir: Path) -> None:
    from semtune.io import read_folder

    images = [im.data[:, :256, :256] for im in read_folder(sample_train_dir).images[:6]]
    same = estimate_degradation(images, images)  # no blur between the domains
    assert same.sigma is None
    assert "falls no faster than the clean ones'" in same.problems[0]
    flat = [torch.full((1, 128, 128), 0.4) for _ in range(4)]
    blank = estimate_degradation(flat, images)
    assert blank.sigma is None and blank.measured_blurred == 0
    assert "only 0 of 4 blurred images have edges" in blank.problems[0]
    assert "not measured" in blank.describe()
