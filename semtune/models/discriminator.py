"""The paper's 5-layer PatchGAN discriminator (Gao et al. 2024, Fig. 1c).

Five 4x4 convolutions with 64, 128, 256, 512 (times ``width``) and 1 output channels; strides
2, 2, 2, 1, 1; padding 1; InstanceNorm + LeakyReLU(0.2) after all but the last. This is
pix2pix's 70x70 PatchGAN (``n_layers=3``), except that the paper also normalises the first
layer (pix2pix does not). A 256x256 input gives a 30x30 map of patch scores, 64x64 gives 6x6;
the output side is ``floor(side / 8) - 2``, so sides below 24 are refused. 2.77M parameters at
width 1.

Inputs are (B, C, H, W) in [0, 1], seen internally as ``2x - 1`` (the [-1, 1] convention of the
paper's TF code; with ``first_norm=True`` InstanceNorm removes the shift anyway).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator"]

_CHANNELS = (64, 128, 256, 512)
_STRIDES = (2, 2, 2, 1, 1)
_NEGATIVE_SLOPE = 0.2
_MIN_SIDE = 24  # floor(24 / 8) - 2 = 1 output pixel


class PatchDiscriminator(nn.Module):
    """Fully convolutional PatchGAN: an image in, a map of real/fake scores out (no sigmoid).

    Args:
        width: channel multiplier on 64, 128, 256, 512 (1 = the paper).
        first_norm: InstanceNorm after the first conv (the paper: True). It removes most of a
            tile's global brightness and contrast (all but what leaks through the zero-padded
            borders) before the critic sees it; pix2pix leaves the first layer unnormalised.
        channels: image channels.

    Raises:
        ValueError: a non-positive width or channel count.
    """

    def __init__(self, width: float = 1.0, *, first_norm: bool = True, channels: int = 1) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels!r}")
        self.channels = channels
        widths = [max(1, round(c * width)) for c in _CHANNELS]
        layers: list[nn.Module] = []
        c_prev = channels
        for i, c in enumerate(widths):
            norm = first_norm or i > 0
            # A bias before InstanceNorm is cancelled by it (and would get zero gradient).
            layers.append(nn.Conv2d(c_prev, c, 4, stride=_STRIDES[i], padding=1, bias=not norm))
            if norm:
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(_NEGATIVE_SLOPE))
            c_prev = c
        layers.append(nn.Conv2d(c_prev, 1, 4, stride=_STRIDES[-1], padding=1))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def output_shape(height: int, width: int) -> tuple[int, int]:
        """Side lengths of the score map for an ``height`` x ``width`` input."""
        return height // 8 - 2, width // 8 - 2

    def forward(self, x: Tensor) -> Tensor:
        """Score each overlapping 70x70 patch.

        Args:
            x: (B, C, H, W) in [0, 1], H and W >= 24.

        Returns:
            (B, 1, H // 8 - 2, W // 8 - 2) raw scores (LSGAN targets: 1 real, 0 fake).
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected a (B, {self.channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < _MIN_SIDE:
            raise ValueError(
                f"the discriminator needs H, W >= {_MIN_SIDE}, got {tuple(x.shape[-2:])}"
            )
        return self.net(2 * x - 1)
