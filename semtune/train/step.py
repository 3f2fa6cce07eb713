"""One CycleGAN training step, top to bottom: forward, G update, D update.

Domain names: ``real_a`` is a blurred image (domain A), ``real_b`` a clean one (domain B).
G: A -> B restores, F: B -> A degrades; ``d_clean`` judges G's output (the paper's D_B in eq. 9),
``d_blur`` judges F's output (the paper's D_A in eq. 10).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from semtune.losses import cycle_loss, edge_loss, identity_loss, lsgan_d_loss, lsgan_g_loss
from semtune.models.degradation import PhysicsDegradation
from semtune.train.state import TrainState

__all__ = ["LOW_NOISE_MIN", "NonFiniteLossError", "Precision", "low_noise_scale", "train_step"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; the run stops rather than train a garbage model."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
        super().__init__(f"non-finite loss at step {step}: {bad}")
        self.step = step
        self.losses = losses


@dataclass(frozen=True)
class Precision:
    """Autocast settings for a device: bf16 or fp16 on CUDA, fp32 on the CPU by default."""

    device: torch.device
    dtype: torch.dtype | None  # None: fp32, no autocast
    scaler: torch.amp.GradScaler | None

    @classmethod
    def resolve(cls, device: torch.device, precision: str) -> Precision:
        if precision == "auto":
            if device.type == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                # bf16 autocast on CPUs without AMX is slower than fp32 (measured: see README).
                precision = "fp32"
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        return cls(device, dtype, scaler)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.dtype):
                yield

    def backward_step(self, loss: Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()


def _requires_grad(modules: tuple[nn.Module, ...], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def _update(
    state: TrainState,
    prec: Precision,
    losses: dict[str, float],
    key: str,
    loss: Tensor,
    opt: torch.optim.Optimizer,
) -> None:
    """Record ``loss`` as ``losses[key]``, refuse a NaN/Inf, then step ``opt`` on it."""
    losses[key] = float(loss.detach())
    if not math.isfinite(losses[key]):
        raise NonFiniteLossError(state.step + 1, losses)
    prec.backward_step(loss, opt)


def _frozen(m: nn.Module) -> Callable[[Tensor], Tensor]:
    """``m`` with its blur kernel (all weights for a U-Net F) held: gradients flow through it
    to the input and to its contrast parameters, not into the kernel."""
    held = [k for k, _ in m.named_parameters() if k == "kernel_logits"] or [
        k for k, _ in m.named_parameters()
    ]
    params = {k: v.detach() if k in held else v for k, v in m.named_parameters()}
    return lambda x: torch.func.functional_call(m, params, (x,))


LOW_NOISE_MIN = 0.03  # the smallest share of the noise a pseudo-input keeps (f.low_noise_share)


def low_noise_scale(batch: int, share: float, generator: torch.Generator) -> Tensor:
    """(batch,) factors for the noise of G's pseudo-inputs: 1, except for ``share`` of them
    (drawn at random), log-uniform in [LOW_NOISE_MIN, 1]. Draws nothing when ``share`` is 0,
    so that runs without it keep their random streams."""
    if share <= 0:
        return torch.ones(batch)
    low = torch.rand(batch, generator=generator) < share
    s = torch.exp((1 - torch.rand(batch, generator=generator)) * math.log(LOW_NOISE_MIN))
    return torch.where(low, s, torch.ones(batch))


def train_step(
    state: TrainState, real_a: Tensor, real_b: Tensor, prec: Precision
) -> dict[str, float]:
    """One G update then one D update; returns the losses as floats.

    Raises:
        NonFiniteLossError: a loss is NaN/Inf (nothing is updated in that case).
    """
    cfg = state.config
    lc = cfg.loss
    g, f, d_clean, d_blur = state.g, state.f, state.d_clean, state.d_blur

    # --- generators G and F (eq. 16) ---
    _requires_grad((d_clean, d_blur), False)
    # f_gan_only: F's blur kernel learns only from D_blur (is F(b) a believable blurred
    # image?); the cycle and edge losses reach G through the current kernel without moving it,
    # so they cannot pull F towards a weaker blur that a weaker G can undo (measured drift).
    f_cyc = _frozen(f) if cfg.f.gan_only else f
    with prec.autocast():
        fake_b = g(real_a)  # G(a): restored
        rec_a = f_cyc(fake_b)  # F(G(a))
        fake_a = f(real_b)  # F(b): synthetically blurred
        pseudo = f_cyc(real_b) if cfg.f.gan_only else fake_a  # F(b): G's pseudo-blurred input
        f_noise = (
            f.noise(fake_a, state.generator, cfg.data.degrade.noise)
            if isinstance(f, PhysicsDegradation)
            else None
        )
        # f.low_noise_share: some pseudo-inputs carry less noise (D_blur's view keeps it all)
        scale = low_noise_scale(real_b.shape[0], cfg.f.low_noise_share, state.generator)
        scale = scale.view(-1, 1, 1, 1).to(device=pseudo.device, dtype=pseudo.dtype)
        if f_noise is not None:
            # G's pseudo-pairs carry the data's own noise (f.noise), and D_blur sees it too
            pseudo = pseudo + scale * f_noise
            fake_a = fake_a + f_noise
        if lc.pseudo_noise > 0:
            # a noise prior: G must restore F(b) + n to b, so it cannot simply amplify every
            # faint high frequency (what a deconvolution does, and where it paints grain)
            noise = torch.randn(pseudo.shape, generator=state.generator, dtype=pseudo.dtype)
            pseudo = pseudo + scale * lc.pseudo_noise * noise.to(pseudo.device)
        rec_b = g(pseudo)  # G(F(b))
        idt_f = f_cyc(real_a)  # F(a), identity on F
        idt_g = g(real_b)  # G(b), identity on G
        gan = lsgan_g_loss(d_blur(fake_a))
        if lc.gan_weight_g > 0:  # at 0, D_clean has no say and is not run at all
            gan = gan + lc.gan_weight_g * lsgan_g_loss(d_clean(fake_b))
    # SSIM's constants (1e-4) vanish in half precision: the image losses run in fp32.
    real_a32, real_b32 = real_a.float(), real_b.float()
    # forward cycle a -> G(a) -> F(G(a)) and backward cycle b -> F(b) -> G(F(b))
    cyc_a = cycle_loss(rec_a.float(), real_a32)
    cyc_b = cycle_loss(rec_b.float(), real_b32)
    if lc.cycle_l1 > 0:
        cyc_a = cyc_a + lc.cycle_l1 * nnf.l1_loss(rec_a.float(), real_a32)
        cyc_b = cyc_b + lc.cycle_l1 * nnf.l1_loss(rec_b.float(), real_b32)
    cyc = lc.forward_cycle * cyc_a + cyc_b
    idt = cfg.f.identity_weight * identity_loss(idt_f.float(), real_a32) + identity_loss(
        idt_g.float(), real_b32
    )
    edge = edge_loss(rec_a.float(), idt_f.float(), lc.edge_operator) + edge_loss(
        rec_b.float(), idt_g.float(), lc.edge_operator
    )
    loss_g = (
        lc.gan_weight * gan.float()
        + lc.lambda_cycle * cyc
        + lc.lambda_identity * idt
        + lc.gamma * edge
    )
    losses = {
        name: float(value.detach())
        for name, value in (
            ("loss_g", loss_g),
            ("loss_gan", gan),
            ("loss_cycle", cyc),
            ("loss_identity", idt),
            ("loss_edge", edge),
        )
    }
    _update(state, prec, losses, "loss_g", loss_g, state.opt_g)

    # --- discriminators (LSGAN) ---
    _requires_grad((d_clean, d_blur), True)
    fake_b_pool, fake_a_pool = fake_b.detach(), fake_a.detach()
    with prec.autocast():
        loss_d = lsgan_d_loss(d_blur(real_a), d_blur(fake_a_pool))
        if lc.gan_weight_g > 0:
            loss_d = loss_d + lsgan_d_loss(d_clean(real_b), d_clean(fake_b_pool))
    _update(state, prec, losses, "loss_d", loss_d.float(), state.opt_d)
    state.step += 1
    return losses
