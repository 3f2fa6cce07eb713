"""One training step's generator loss against a hand computation (the paper's eq. 16)."""

from __future__ import annotations

import pytest
import torch

from semtune.losses import edge_loss
from semtune.metrics import ssim
from semtune.train.config import load_train_config
from semtune.train.state import build_state
from semtune.train.step import Precision, train_step

CPU = torch.device("cpu")
FP32 = Precision.resolve(CPU, "fp32")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two smooth 32 px images per domain: a blurred-looking and a sharp-looking pattern."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    sharp = torch.stack([(x > 0.5).float() * 0.6 + 0.2, (y > 0.3).float() * 0.5 + 0.25])
    soft = torch.stack([0.5 + 0.3 * torch.sin(6 * x), 0.4 + 0.2 * torch.cos(5 * y)])
    return soft[:, None], sharp[:, None]  # real_a (blurred domain), real_b (clean domain)


def _config(*overrides: str):  # type: ignore[no-untyped-def]
    # a physical F from a fixed Gaussian, no noise: every term of eq. 16 is deterministic
    return load_train_config(
        "tiny",
        [
            "f.kind=physics",
            "f.init=sigma",
            "f.init_sigma=1.5",
            "f.noise=false",
            "f.gan_only=false",
            "loss.pseudo_noise=0",
            "loss.cycle_l1=0",
            "loss.gan_weight_g=1",
            *overrides,
        ],
    )


def test_at_the_start_the_losses_are_those_of_an_identity_g_and_the_initial_f() -> None:
    """G starts as the identity (a residual with a zero-initialised last layer), so by hand:
    G(a) = a and F(G(a)) = F(a); G(F(b)) = F(b); G(b) = b. Hence the cycle loss is
    (1 - SSIM(F(a), a)) + (1 - SSIM(F(b), b)), the identity loss is f.identity_weight x
    MSE(F(a), a) (G's own term is 0), and the edge loss compares F(G(a)) = F(a) with F(a) (0)
    and G(F(b)) = F(b) with G(b) = b."""
    cfg = _config("f.identity_weight=0.5", "loss.forward_cycle=1")
    state = build_state(cfg, CPU)
    a, b = _batch()
    with torch.no_grad():
        assert torch.allclose(state.g(a), a, atol=1e-6)  # the identity, checked
        fa, fb = state.f(a), state.f(b)
    cycle = (1 - ssim(fa, a, reduction="mean")) + (1 - ssim(fb, b, reduction="mean"))
    identity = 0.5 * torch.mean((fa - a) ** 2)
    edge = edge_loss(fb, b, cfg.loss.edge_operator)
    losses = train_step(state, a, b, FP32)
    # (SSIM takes another float32 path when gradients are tracked: ~3e-5 apart)
    assert losses["loss_cycle"] == pytest.approx(float(cycle), rel=1e-4)
    assert losses["loss_identity"] == pytest.approx(float(identity), rel=1e-5)
    assert losses["loss_edge"] == pytest.approx(float(edge), rel=1e-5)


def test_the_total_is_eq_16s_weighted_sum_of_its_terms() -> None:
    """loss_g = gan_weight x GAN + lambda_cycle x cycle + lambda_identity x identity + gamma x
    edge, with the terms as reported; the same start and data give the same terms whatever the
    weights, so the weights are checked one at a time as well."""
    a, b = _batch()
    weights = {"gan_weight": 0.7, "lambda_cycle": 3.0, "lambda_identity": 2.0, "gamma": 5.0}
    cfg = _config(*(f"loss.{k}={v}" for k, v in weights.items()), "f.identity_weight=1")
    state = build_state(cfg, CPU)
    # one step first, so that G is no longer the identity and every term is non-zero
    train_step(state, a, b, FP32)
    losses = train_step(state, a, b, FP32)
    terms = {k: losses[f"loss_{k}"] for k in ("gan", "cycle", "identity", "edge")}
    assert all(v > 0 for v in terms.values()), terms
    by_hand = (
        weights["gan_weight"] * terms["gan"]
        + weights["lambda_cycle"] * terms["cycle"]
        + weights["lambda_identity"] * terms["identity"]
        + weights["gamma"] * terms["edge"]
    )
    assert losses["loss_g"] == pytest.approx(by_hand, rel=1e-6)


def test_low_noise_share_scales_that_share_of_the_pseudo_inputs_noise_down_log_uniformly() -> None:
    """f.low_noise_share: the factors are 1 but for about that share of the batch, which gets
    factors spread log-uniformly over [LOW_NOISE_MIN, 1]; at 0 nothing is drawn at all (runs
    without it keep their random streams)."""
    import math

    from semtune.train.step import LOW_NOISE_MIN, low_noise_scale

    g = torch.Generator().manual_seed(0)
    assert torch.equal(low_noise_scale(64, 0.0, g), torch.ones(64))
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())
    s = low_noise_scale(20000, 0.5, g)
    low = s[s < 1]
    assert 0.47 < len(low) / len(s) < 0.53
    assert LOW_NOISE_MIN <= float(low.min()) and float(low.max()) < 1
    # log-uniform: the log of the factor is uniform over [log LOW_NOISE_MIN, 0]
    logs = torch.log(low) / math.log(LOW_NOISE_MIN)
    assert (
        abs(float(logs.mean()) - 0.5) < 0.02
        and abs(float((logs < 0.25).float().mean()) - 0.25) < 0.02
    )
    assert torch.all(low_noise_scale(256, 1.0, g) < 1)


def test_low_noise_share_outside_zero_to_one_is_refused_naming_the_key() -> None:
    from semtune.config import ConfigError

    with pytest.raises(ConfigError, match="low_noise_share"):
        load_train_config("tiny", ["f.low_noise_share=1.5"])
