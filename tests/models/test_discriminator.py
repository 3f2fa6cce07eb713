"""The 5-layer PatchGAN: score-map shape, hand-counted size, layer layout, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semtune.models.discriminator import PatchDiscriminator


@pytest.mark.parametrize(
    ("shape", "out_hw"),
    [
        ((2, 1, 256, 256), (30, 30)),  # pix2pix's 70x70 PatchGAN gives 30x30 at 256 px
        ((1, 1, 64, 64), (6, 6)),
        ((2, 1, 64, 128), (6, 14)),
        ((1, 1, 24, 24), (1, 1)),  # the smallest input
    ],
)
@pytest.mark.parametrize("width", [0.25, 0.5])
def test_score_map_shape(shape: tuple[int, ...], out_hw: tuple[int, int], width: float) -> None:
    d = PatchDiscriminator(width)
    with torch.no_grad():
        y = d(torch.rand(shape))
    assert y.shape == (shape[0], 1, *out_hw)
    assert PatchDiscriminator.output_shape(*shape[-2:]) == out_hw


def test_width_one_parameter_count_matches_the_hand_count() -> None:
    # 4x4 convs; no bias before InstanceNorm (affine: 2c); the last conv has a bias.
    chans = [1, 64, 128, 256, 512]
    expected = sum(ci * co * 16 + 2 * co for ci, co in zip(chans, chans[1:], strict=False))
    expected += 512 * 16 + 1
    assert sum(p.numel() for p in PatchDiscriminator(1.0).parameters()) == expected  # 2.76M


def test_layer_layout_follows_the_paper() -> None:
    d = PatchDiscriminator(0.5)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 1]
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 4
    assert sum(isinstance(m, nn.LeakyReLU) for m in d.modules()) == 4
    assert isinstance(list(d.net)[-1], nn.Conv2d)  # raw scores: no norm/activation at the end


def test_without_first_norm_the_first_conv_gets_a_bias_and_no_norm() -> None:
    d = PatchDiscriminator(0.25, first_norm=False)
    layers = list(d.net)
    assert isinstance(layers[0], nn.Conv2d) and layers[0].bias is not None
    assert isinstance(layers[1], nn.LeakyReLU)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 3


def test_first_norm_makes_scores_nearly_blind_to_global_brightness_and_contrast() -> None:
    # InstanceNorm after layer 1 cancels an affine change of the image, except for what leaks
    # through the zero-padded borders; without it the scores move several times more.
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))

    def relative_change(first_norm: bool) -> float:
        torch.manual_seed(0)
        d = PatchDiscriminator(0.25, first_norm=first_norm)
        with torch.no_grad():
            ref = d(x)
            return float((d(0.5 * x + 0.2) - ref).abs().mean() / ref.std())

    assert relative_change(True) < 0.08
    assert relative_change(False) > 0.15


@pytest.mark.parametrize("first_norm", [True, False])
def test_gradients_reach_every_parameter(first_norm: bool) -> None:
    torch.manual_seed(1)
    d = PatchDiscriminator(0.25, first_norm=first_norm)
    (d(torch.rand(2, 1, 64, 64)) - 1).square().mean().backward()
    dead = [n for n, p in d.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_channels_last_gives_the_same_scores() -> None:
    torch.manual_seed(2)
    d = PatchDiscriminator(0.25)
    x = torch.rand(2, 1, 64, 128)
    with torch.no_grad():
        ref = d(x)
        out = d.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_runs_on_any_device_without_hard_coded_tensors() -> None:
    with torch.device("meta"):
        d = PatchDiscriminator(0.25)
    assert d(torch.empty(1, 1, 64, 64, device="meta")).shape == (1, 1, 6, 6)


@pytest.mark.parametrize("shape", [(1, 1, 23, 64), (1, 64, 64), (1, 3, 64, 64)], ids=str)
def test_bad_input_shapes_raise_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="got"):
        PatchDiscriminator(0.25)(torch.rand(shape))


def test_non_positive_width_is_refused() -> None:
    with pytest.raises(ValueError, match="width must be > 0, got 0"):
        PatchDiscriminator(0)
