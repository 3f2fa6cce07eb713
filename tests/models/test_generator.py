"""The multi-scale U-Net: hand-counted architecture, stride plan, output modes, init, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semtune.models.generator import GENERATORS, MultiScaleUNet, build_generator


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _hand_count(image_size: int) -> int:
    """Parameters of the width-1 generator, counted from the documented architecture."""
    enc = [64, 128, 256, 512, 512, 512, 512, 512]
    num_down = {64: 5, 256: 7}[image_size]
    total = 0
    c_prev = 1
    for i, c in enumerate(enc):
        k = 4 if i < num_down else 3
        total += c_prev * c * k * k + 2 * c  # conv (no bias) + InstanceNorm affine
        c_prev = c

    def multi(c: int) -> int:  # 1x1 and 3x3 branches (no bias), IN affine, 1x1 fuse + bias
        return c * (c // 2) + c * (c - c // 2) * 9 + 2 * c + c * c + c

    total += sum(multi(c) for c in enc[:7])
    dec_out = [512, 512, 512, 512, 256, 128, 64, 1]
    c_prev = 512
    for j, c in enumerate(dec_out):
        c_in = c_prev if j == 0 else c_prev + enc[7 - j]
        stride2 = j > 0 and 7 - j < num_down
        k = 4 if stride2 else 3
        if j < 7:
            total += c_in * c * k * k + 2 * c + multi(c)
        else:
            total += c_in * c * k * k + c  # output deconv with bias
        c_prev = c
    return total


@pytest.fixture(scope="module")
def nets() -> dict[float, MultiScaleUNet]:
    torch.manual_seed(0)
    return {
        w: MultiScaleUNet(w, image_size=64, zero_init_last=False, output="none")
        for w in (0.25, 0.5)
    }


@pytest.mark.parametrize("width", [0.25, 0.5])
@pytest.mark.parametrize(
    "shape", [(2, 1, 64, 64), (1, 1, 128, 128), (1, 1, 64, 128), (1, 1, 256, 256)]
)
def test_one_network_built_for_64px_runs_at_larger_and_non_square_sizes(
    nets: dict[float, MultiScaleUNet], width: float, shape: tuple[int, ...]
) -> None:
    x = torch.rand(shape)
    with torch.no_grad():
        y = nets[width](x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert not torch.allclose(y, x)  # a non-zero last layer really changes the image


@pytest.mark.parametrize("image_size", [64, 256])
def test_width_one_parameter_count_matches_the_hand_count(image_size: int) -> None:
    net = MultiScaleUNet(1.0, image_size=image_size)
    assert _n_params(net) == _hand_count(image_size)


def test_paper_size_has_64_4m_parameters_as_measured_in_the_notes() -> None:
    assert round(_n_params(MultiScaleUNet(1.0, image_size=256)) / 1e6, 1) == 64.4


def test_fourteen_multi_blocks() -> None:
    from semtune.models.generator import MultiBlock

    net = MultiScaleUNet(0.25, image_size=64)
    assert sum(isinstance(m, MultiBlock) for m in net.modules()) == 14


@pytest.mark.parametrize(
    ("image_size", "input_hw", "bottleneck_hw", "num_down"),
    [
        (256, (256, 256), (2, 2), 7),  # the paper: seven stride-2 convs, 2x2 at the bottom
        (128, (128, 128), (2, 2), 6),
        (64, (64, 64), (2, 2), 5),  # 7 stride-2 convs would reach 0.5 px; stop at 2x2
        (64, (256, 256), (8, 8), 5),  # the plan is fixed at build time, not per input
        (64, (64, 128), (2, 4), 5),
    ],
)
def test_encoder_stops_downsampling_at_a_2x2_bottleneck(
    image_size: int, input_hw: tuple[int, int], bottleneck_hw: tuple[int, int], num_down: int
) -> None:
    net = MultiScaleUNet(0.25, image_size=image_size)
    assert net.num_down == num_down
    seen: list[tuple[int, ...]] = []
    net.encoder[-1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        net(torch.rand(1, 1, *input_hw))
    assert seen == [bottleneck_hw]


def test_paper_sized_network_refuses_inputs_it_cannot_halve_seven_times() -> None:
    net = MultiScaleUNet(0.25, image_size=256)
    with pytest.raises(ValueError, match="multiples of 128 and at least 256; got 64x64"):
        net(torch.rand(1, 1, 64, 64))


@pytest.mark.parametrize(
    "shape", [(1, 1, 80, 64), (1, 1, 32, 32), (1, 64, 64), (1, 2, 64, 64)], ids=str
)
def test_bad_input_shapes_raise_value_error(shape: tuple[int, ...]) -> None:
    net = MultiScaleUNet(0.25, image_size=64)
    with pytest.raises(ValueError, match="got"):
        net(torch.rand(shape))


def test_image_size_that_cannot_be_halved_evenly_is_refused() -> None:
    with pytest.raises(ValueError, match="image_size"):
        MultiScaleUNet(0.25, image_size=100)  # 100 -> 50 -> 25: not divisible by 2**5


@pytest.mark.parametrize("first_norm", [True, False])
def test_residual_generator_with_zero_last_layer_starts_as_the_exact_identity(
    first_norm: bool,
) -> None:
    net = MultiScaleUNet(0.25, image_size=64, first_norm=first_norm)  # defaults: residual, zero
    x = torch.rand(2, 1, 64, 128)
    assert torch.equal(net(x), x)


def test_direct_generator_with_zero_last_layer_starts_as_mid_grey() -> None:
    net = MultiScaleUNet(0.25, image_size=64, residual=False, output="tanh")
    y = net(torch.rand(1, 1, 64, 64))
    assert torch.equal(y, torch.full_like(y, 0.5))  # (tanh(0) + 1) / 2


@pytest.mark.parametrize("output", ["sigmoid", "tanh", "clamp"])
def test_direct_outputs_stay_in_unit_range(output: str) -> None:
    torch.manual_seed(1)
    net = MultiScaleUNet(0.25, image_size=64, residual=False, zero_init_last=False, output=output)  # type: ignore[arg-type]
    with torch.no_grad():
        # Scale the output layer up so that the mapping, not the init, bounds the values.
        net.decoder[-1].weight.mul_(100)
        y = net(torch.rand(1, 1, 64, 64))
    assert y.min() >= 0 and y.max() <= 1
    assert y.max() - y.min() > 0.5


def test_residual_clamp_keeps_outputs_in_unit_range() -> None:
    torch.manual_seed(2)
    net = MultiScaleUNet(0.25, image_size=64, zero_init_last=False)
    with torch.no_grad():
        net.decoder[-1].weight.mul_(100)
        y = net(torch.rand(1, 1, 64, 64))
    assert y.min() == 0 and y.max() == 1


@pytest.mark.parametrize(
    ("residual", "output"), [(True, "tanh"), (True, "sigmoid"), (False, "relu")]
)
def test_invalid_output_modes_raise_value_error(residual: bool, output: str) -> None:
    with pytest.raises(ValueError, match="output"):
        MultiScaleUNet(0.25, image_size=64, residual=residual, output=output)  # type: ignore[arg-type]


@pytest.mark.parametrize("first_norm", [True, False])
def test_gradients_reach_every_parameter(first_norm: bool) -> None:
    torch.manual_seed(3)
    net = MultiScaleUNet(
        0.25, image_size=64, zero_init_last=False, first_norm=first_norm, output="none"
    )
    x, target = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    (net(x) - target).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_zero_initialised_generator_trains_every_parameter_after_one_step() -> None:
    # At init only the output layer has a gradient (everything else is multiplied by its zero
    # weights); one step later the whole network learns.
    torch.manual_seed(4)
    net = MultiScaleUNet(0.25, image_size=64, output="none")
    x, target = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    (net(x) - target).square().mean().backward()
    live = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert live == {"decoder.7.weight", "decoder.7.bias"}
    with torch.no_grad():  # one plain SGD step
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
                p.grad = None
    (net(x) - target).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_channels_last_gives_the_same_output() -> None:
    torch.manual_seed(5)
    net = MultiScaleUNet(0.25, image_size=64, zero_init_last=False, output="none")
    x = torch.rand(1, 1, 64, 128)
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_runs_on_any_device_without_hard_coded_tensors() -> None:
    # The meta device has no data: any tensor created on the CPU inside forward would clash.
    with torch.device("meta"):
        net = MultiScaleUNet(0.25, image_size=64)
    y = net(torch.empty(2, 1, 64, 128, device="meta"))
    assert y.device.type == "meta" and y.shape == (2, 1, 64, 128)


def test_registry_builds_the_unet_by_name() -> None:
    net = build_generator("unet", width=0.25, image_size=64, residual=False, output="sigmoid")
    assert isinstance(net, MultiScaleUNet) and not net.residual
    assert GENERATORS["unet"] is MultiScaleUNet


def test_unknown_generator_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid names: \['unet'"):
        build_generator("resnet9")


def test_unknown_generator_argument_names_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match="image_size"):
        build_generator("unet", widht=0.25)


def test_registry_accepts_new_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GENERATORS, "identity", lambda: nn.Identity())
    assert isinstance(build_generator("identity"), nn.Identity)


def test_highpass_residual_changes_no_slow_grey_level() -> None:
    torch.manual_seed(0)
    kw = {"image_size": 64, "zero_init_last": False, "output": "none"}
    g = MultiScaleUNet(0.25, highpass_sigma=4.0, **kw).eval()  # type: ignore[arg-type]
    plain = MultiScaleUNet(0.25, **kw).eval()  # type: ignore[arg-type]
    plain.load_state_dict(g.state_dict())
    x = torch.rand(2, 1, 64, 64) * 0.5 + 0.25
    with torch.no_grad():
        d_hp, d_plain = g(x) - x, plain(x) - x
    # the mean grey level of each image (its DC): what a high-pass residual cannot move
    slow = lambda d: d.mean(dim=(1, 2, 3)).abs().mean().item()  # noqa: E731
    assert slow(d_plain) > 5 * slow(d_hp)
    assert d_hp.abs().mean().item() > 0.2 * d_plain.abs().mean().item()  # still corrects


def test_highpass_needs_a_residual_generator() -> None:
    with pytest.raises(ValueError, match="residual"):
        MultiScaleUNet(0.25, image_size=64, residual=False, output="sigmoid", highpass_sigma=2.0)


def test_noise_film_starts_as_the_plain_network_and_then_reads_the_noise_level() -> None:
    from semtune.models.generator import NoiseFiLMNorm, noise_features

    torch.manual_seed(0)
    g = MultiScaleUNet(0.125, image_size=64, zero_init_last=False, noise_film=True)
    norms = [m for m in g.modules() if isinstance(m, NoiseFiLMNorm)]
    assert norms and all(float(m.film.weight.detach().abs().sum()) == 0 for m in norms)
    base = torch.full((1, 1, 64, 64), 0.5) + 0.1 * torch.sin(torch.arange(64.0) / 3)
    quiet = base + 0.002 * torch.randn(1, 1, 64, 64)
    loud = base + 0.03 * torch.randn(1, 1, 64, 64)

    def plain(x: torch.Tensor) -> torch.Tensor:
        for m in norms:
            m.cond = None
        saved = g.noise_film
        g.noise_film = False
        try:
            return g(x)
        finally:
            g.noise_film = saved

    # zero-initialised FiLM: exactly the unconditioned network
    torch.testing.assert_close(g(loud), plain(loud))
    for m in norms:
        torch.nn.init.normal_(m.film.weight, std=0.5)
    # now the same content at two noise levels goes through differently modulated norms
    assert not torch.allclose(g(quiet) - plain(quiet), g(loud) - plain(loud), atol=1e-4)
    # below the floor of 0.0003 (under what noise-free blurred crops read) every input reads
    # as the floor; a real micrograph's quiet 0.002 does not
    clean = base.clone()
    cleaner = base + 0.0001 * torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(noise_features(clean), noise_features(cleaner))
    assert float(noise_features(quiet)[0, 0]) > float(noise_features(clean)[0, 0]) + 1.0
