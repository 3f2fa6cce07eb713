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
