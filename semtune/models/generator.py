"""The paper's multi-scale U-Net generator (Gao et al. 2024, Fig. 1b) and the generator registry.

Architecture at ``width=1`` and ``image_size=256`` (the paper's setting):

- Encoder: 8 convolutions, each followed by InstanceNorm + LeakyReLU(0.2). Convs 1-7 are 4x4,
  stride 2 (pix2pix-style, halving the map exactly); conv 8 is 3x3, stride 1. Channels
  64, 128, 256, 512, 512, 512, 512, 512. The paper's Fig. 1b (which prints the counts) is not
  available to us, so this is pix2pix's progression.
- Decoder: 8 deconvolutions. Deconv 1 is 3x3, stride 1; deconvs 2-8 are 4x4, stride 2. Deconv
  ``j >= 2`` reads ``cat(d[j-1], e[9-j])`` (U-Net skips); deconvs 1-7 are followed by
  InstanceNorm + LeakyReLU, deconv 8 is the output layer. Channels 512, 512, 512, 512, 256, 128,
  64, then 1.
- 14 Multi blocks: one after each of encoder convs 1-7 and one after each of decoder deconvs 1-7,
  i.e. after every layer except the bottleneck conv 8 and the output deconv 8, so that each of
  the 7 scales has one block on the way down and one on the way up. The skip tensors ``e[i]`` are
  taken after the block. A block is ``x + fuse(LReLU(IN(cat(conv1x1(x), conv3x3(x)))))``: half
  the channels from each branch, fused by a 1x1 conv, with a residual skip (the paper's inset is
  not available either; its text says parallel 1x1/3x3 convs, stride 1, fused, with skips).

This gives 64.4M parameters at 256 px and width 1, the figure measured for the paper's generator
in NOTES.md. Convolutions followed by InstanceNorm carry no bias (the norm's affine shift makes
it redundant, and a bias there would get exactly zero gradient).

Small inputs: seven stride-2 convs need 256 px to end at a 2x2 bottleneck; at 64 px they would
reach 0.5 px. The stride plan is therefore fixed at construction from ``image_size`` (the smallest
image side the network is built for): conv ``i`` downsamples only while its output stays at
least 2x2 (InstanceNorm needs more than one value per channel), and every conv that would go
below that becomes a 3x3 stride-1 conv, as does its mirrored deconv. So ``image_size=64`` gives
5 downsamplings and a 2x2 bottleneck. The plan does not change with the input, so a network
trained on 64 px tiles computes the same thing on 256 px or 64x128 inputs (any H, W that are
multiples of ``2**num_down`` and at least ``2**(num_down + 1)``); parameter counts depend on
``image_size`` because the stride-1 layers have 3x3 rather than 4x4 kernels.

Interface: (B, C, H, W) in [0, 1] in and out (C = 1 for SEM). The paper's TF code most likely
worked on [-1, 1]; the network sees ``2x - 1`` internally (this matters when
``first_norm=False``; with it, InstanceNorm cancels the shift except at the zero-padded
borders). Output modes:

- ``residual=True`` (default): ``y = x + correction``, with ``output='clamp'`` (clip to [0, 1];
  pixels pushed out of range get no gradient) or ``'none'``. With ``zero_init_last=True`` the
  output layer starts at zero and the generator starts as the exact identity: measured in
  NOTES.md, a from-scratch direct U-Net spent a 12-minute CPU budget relearning to reproduce
  images at all, while a residual generator started from its input.
- ``highpass_sigma > 0`` (residual only): the correction loses its Gaussian low-pass of that
  sigma before it is added, ``y = x + (c - blur(c))``. A blur keeps local means and removes
  high frequencies, so undoing it needs no slow change of grey level; measured on the ``cpu``
  preset, the plain residual G cut the high-frequency error of its input by a third but
  more than doubled its low-frequency error (a drift of grey levels worth 1 dB of PSNR).
  The price: a global loss of contrast (fog) cannot be undone either.
- ``residual=False``: the paper's direct output through ``output``: ``'tanh'`` ((tanh + 1) / 2,
  the [0, 1] image of a TF-style tanh output), ``'sigmoid'``, ``'clamp'`` or ``'none'``.

To add a generator (e.g. a degradation-side model): write an ``nn.Module`` mapping (B, 1, H, W)
in [0, 1] to the same, import it here and add one line to ``GENERATORS``.

Size: longer than ~400 lines because of the U-Net with its blocks, output modes and the noise-
conditioned norm.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

__all__ = [
    "GENERATORS",
    "MultiBlock",
    "MultiScaleUNet",
    "NoiseFiLMNorm",
    "OutputMode",
    "build_generator",
    "noise_features",
]

OutputMode = Literal["sigmoid", "tanh", "clamp", "none"]

_ENCODER_CHANNELS = (64, 128, 256, 512, 512, 512, 512, 512)
_NEGATIVE_SLOPE = 0.2
_MIN_BOTTLENECK = 2  # InstanceNorm needs more than one value per channel


def _scaled(channels: int, width: float) -> int:
    # At least 2 so that a Multi block can give one channel to each branch.
    return max(2, round(channels * width))


def _num_down(image_size: int, max_down: int) -> int:
    """How many stride-2 convs keep a map of side ``image_size`` at least 2x2."""
    n, side = 0, image_size
    while n < max_down and side // 2 >= _MIN_BOTTLENECK:
        side //= 2
        n += 1
    return n


class NoiseFiLMNorm(nn.InstanceNorm2d):
    """InstanceNorm whose affine scale and shift also depend on the input's noise level.

    ``y = IN(x) * (weight + a(s)) + (bias + b(s))`` with ``s`` the (B, k) noise features the
    owning network sets in ``cond`` before each forward, and ``a``, ``b`` one linear map,
    zero-initialised: the layer starts as the plain InstanceNorm.
    """

    def __init__(self, channels: int, features: int) -> None:
        super().__init__(channels, affine=True)
        self.film = nn.Linear(features, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.cond: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        if self.cond is None:
            return y
        scale, shift = self.film(self.cond.to(y.dtype)).chunk(2, dim=1)
        return y * (1 + scale[..., None, None]) + shift[..., None, None]


def _norm(channels: int, features: int) -> nn.InstanceNorm2d:
    return (
        NoiseFiLMNorm(channels, features) if features else nn.InstanceNorm2d(channels, affine=True)
    )


def noise_features(x: Tensor) -> Tensor:
    """(B, 3) features of each input's pixel-noise level (``semtune.quality.noise_sigma``):
    its log, centred on 0.01, and two saturating versions, so that FiLM layers can respond to
    the range 0.0003-0.1 without large weights."""
    from semtune.quality import noise_sigma

    with torch.no_grad():
        # below the floor (under the 0.0004-0.0005 the estimator reads on noise-free blurred
        # crops, docs/synthetic_sets.md) G acts as at the floor
        s = noise_sigma(x.detach().float()).clamp_min(_NOISE_FLOOR)
        z = torch.log(s / 0.01)
    return torch.stack([z, torch.tanh(z), torch.tanh(z / 3)], dim=1)


NOISE_FEATURES = 3
# 0.003 until f.low_noise_share (issue 11, item 24): G had not trained below loss.pseudo_noise
_NOISE_FLOOR = 0.0003


class MultiBlock(nn.Module):
    """Parallel 1x1 and 3x3 convs (stride 1), fused by a 1x1 conv, with a residual skip.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int, features: int = 0) -> None:
        super().__init__()
        half = channels // 2
        self.branch1 = nn.Conv2d(channels, half, 1, bias=False)
        self.branch3 = nn.Conv2d(channels, channels - half, 3, padding=1, bias=False)
        self.norm = _norm(channels, features)
        self.act = nn.LeakyReLU(_NEGATIVE_SLOPE)
        self.fuse = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        y = self.act(self.norm(torch.cat([self.branch1(x), self.branch3(x)], dim=1)))
        return x + self.fuse(y)


def _down(c_in: int, c_out: int, *, stride2: bool, norm: bool, features: int = 0) -> nn.Sequential:
    conv = (
        nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)
        if stride2
        else nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=not norm)
    )
    layers: list[nn.Module] = [conv]
    if norm:
        layers.append(_norm(c_out, features))
    layers.append(nn.LeakyReLU(_NEGATIVE_SLOPE))
    return nn.Sequential(*layers)


def _up_conv(c_in: int, c_out: int, *, stride2: bool, bias: bool) -> nn.ConvTranspose2d:
    if stride2:
        return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)
    return nn.ConvTranspose2d(c_in, c_out, 3, stride=1, padding=1, bias=bias)


class MultiScaleUNet(nn.Module):
    """The paper's U-Net with 14 Multi blocks, with a width multiplier and output options.

    Args:
        width: channel multiplier (1 = the paper; 0.25 runs on a CPU).
        image_size: smallest image side the network is built for; sets how many of the 7
            stride-2 convs really downsample (see the module docstring). 256 = the paper.
        residual: output ``x + correction`` instead of the image itself.
        zero_init_last: zero the output layer, so that a residual generator starts as the
            identity (a direct one starts as the constant ``output(0)``).
        first_norm: InstanceNorm after the first encoder conv (the paper: True).
        output: output mapping; with ``residual=True`` only ``'clamp'`` or ``'none'``.
        channels: image channels in and out.

    Raises:
        ValueError: a non-positive width, an ``image_size`` smaller than 4 or not divisible by
            ``2**num_down``, an unknown ``output``, or sigmoid/tanh with ``residual=True``.
    """

    lowpass: Tensor  # a buffer, when highpass_sigma > 0

    def __init__(
        self,
        width: float = 1.0,
        *,
        image_size: int = 256,
        residual: bool = True,
        zero_init_last: bool = True,
        first_norm: bool = True,
        output: OutputMode = "clamp",
        channels: int = 1,
        highpass_sigma: float = 0.0,
        noise_film: bool = False,
    ) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        if output not in get_args(OutputMode):
            raise ValueError(f"output must be one of {get_args(OutputMode)}, got {output!r}")
        if residual and output not in ("clamp", "none"):
            raise ValueError(
                f"output={output!r} needs residual=False; a residual generator takes 'clamp' or "
                "'none'"
            )
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels!r}")
        if highpass_sigma < 0 or (highpass_sigma > 0 and not residual):
            raise ValueError(
                f"highpass_sigma must be >= 0 and needs residual=True, got {highpass_sigma!r} "
                f"with residual={residual}"
            )
        n_layers = len(_ENCODER_CHANNELS)
        num_down = _num_down(image_size, n_layers - 1)
        if image_size < 2 * _MIN_BOTTLENECK or image_size % 2**num_down:
            raise ValueError(
                f"image_size must be >= {2 * _MIN_BOTTLENECK} and divisible by 2**num_down; got "
                f"{image_size} (num_down would be {num_down})"
            )
        self.width = width
        self.image_size = image_size
        self.residual = residual
        self.output = output
        self.channels = channels
        self.num_down = num_down
        self.highpass_sigma = highpass_sigma
        self.noise_film = noise_film
        features = NOISE_FEATURES if noise_film else 0
        if highpass_sigma > 0:
            radius = math.ceil(3 * highpass_sigma)
            t = torch.arange(-radius, radius + 1, dtype=torch.float32)
            k = torch.exp(-(t**2) / (2 * highpass_sigma**2))
            self.register_buffer("lowpass", (k / k.sum()).view(1, 1, 1, -1), persistent=False)

        enc = [_scaled(c, width) for c in _ENCODER_CHANNELS]
        self.encoder = nn.ModuleList()
        c_prev = channels
        for i, c in enumerate(enc):
            self.encoder.append(
                _down(c_prev, c, stride2=i < num_down, norm=first_norm or i > 0, features=features),
            )
            c_prev = c
        self.encoder_blocks = nn.ModuleList(MultiBlock(c, features) for c in enc[:-1])

        # Deconv j (0-based) undoes encoder conv n_layers - 1 - j; deconv 0 mirrors the
        # stride-1 bottleneck conv. Deconvs 1.. read the previous output and the skip e[6 - j].
        self.decoder = nn.ModuleList()
        dec_out = [*reversed(enc[:-1]), channels]
        c_prev = enc[-1]
        for j, c in enumerate(dec_out):
            mirrored = n_layers - 1 - j
            c_in = c_prev if j == 0 else c_prev + enc[mirrored]
            last = j == n_layers - 1
            conv = _up_conv(c_in, c, stride2=0 < j and mirrored < num_down, bias=last)
            if last:
                self.decoder.append(conv)
                out_conv = conv
            else:
                self.decoder.append(
                    nn.Sequential(conv, _norm(c, features), nn.LeakyReLU(_NEGATIVE_SLOPE))
                )
            c_prev = c
        self.decoder_blocks = nn.ModuleList(MultiBlock(c, features) for c in dec_out[:-1])

        if zero_init_last:
            # Zero weights and bias: the correction (or the pre-activation) starts at exactly 0.
            for p in out_conv.parameters():
                nn.init.zeros_(p)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (``2**num_down``)."""
        return int(2**self.num_down)

    @property
    def min_size(self) -> int:
        """Smallest valid input side: the one that ends at a 2x2 bottleneck."""
        return _MIN_BOTTLENECK * self.size_multiple

    def check_input(self, x: Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` naming what is wrong with ``x`` for this network."""
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected a (B, {self.channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        h, w = int(x.shape[-2]), int(x.shape[-1])
        m = self.size_multiple
        if h % m or w % m or min(h, w) < self.min_size:
            raise ValueError(
                f"this generator (image_size={self.image_size}, {self.num_down} downsamplings) "
                f"takes H and W that are multiples of {m} and at least {self.min_size}; got "
                f"{h}x{w}. Pad the input, or build it with image_size=<your smallest side>."
            )

    def forward(self, x: Tensor) -> Tensor:
        """Restore (or degrade) an image batch.

        Args:
            x: (B, C, H, W) in [0, 1]; H, W multiples of ``size_multiple``, >= ``min_size``.

        Returns:
            (B, C, H, W), in [0, 1] unless ``output='none'``.
        """
        self.check_input(x)
        if self.noise_film:
            # every norm reads the input's own noise level, measured here: the network needs
            # no extra input, and tiles, crops and whole images are treated alike
            cond = noise_features(x)
            for m in self.modules():
                if isinstance(m, NoiseFiLMNorm):
                    m.cond = cond
        h = 2 * x - 1
        skips: list[Tensor] = []
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i < len(self.encoder_blocks):
                h = self.encoder_blocks[i](h)
                skips.append(h)
        for j, layer in enumerate(self.decoder):
            if j > 0:
                h = torch.cat([h, skips[-j]], dim=1)
            h = layer(h)
            if j < len(self.decoder_blocks):
                h = self.decoder_blocks[j](h)
        if self.residual:
            if self.highpass_sigma > 0:
                h = h - self._lowpass(h)
            h = x + h
            return h.clamp(0.0, 1.0) if self.output == "clamp" else h
        return _OUTPUTS[self.output](h)

    def _lowpass(self, h: Tensor) -> Tensor:
        # separable Gaussian, reflect-padded, one channel at a time (depthwise)
        b, c, hh, ww = h.shape
        k = self.lowpass.to(h.dtype)
        r = k.shape[-1] // 2
        z = h.reshape(b * c, 1, hh, ww)
        # reflect padding needs the pad smaller than the side; replicate beyond that
        mode = "reflect" if r < min(hh, ww) else "replicate"
        z = nnf.conv2d(nnf.pad(z, (r, r, 0, 0), mode=mode), k)
        z = nnf.conv2d(nnf.pad(z, (0, 0, r, r), mode=mode), k.transpose(-1, -2))
        return z.reshape(b, c, hh, ww)


def _tanh01(z: Tensor) -> Tensor:
    return 0.5 * (torch.tanh(z) + 1.0)


def _clamp01(z: Tensor) -> Tensor:
    return z.clamp(0.0, 1.0)


def _identity(z: Tensor) -> Tensor:
    return z


_OUTPUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": _tanh01,
    "clamp": _clamp01,
    "none": _identity,
}

# Name -> constructor. Every entry maps (B, 1, H, W) in [0, 1] to the same.
GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "unet": MultiScaleUNet,
}


def build_generator(name: str, **kwargs: object) -> nn.Module:
    """Build the generator registered as ``name`` with constructor arguments ``kwargs``.

    Args:
        name: a key of ``GENERATORS``.
        **kwargs: passed to the constructor (checked against its signature first).

    Returns:
        The generator module.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names).
        TypeError: an argument the constructor does not take (the message lists those it does).
    """
    try:
        cls = GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; valid names: {sorted(GENERATORS)}") from None
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise TypeError(
            f"generator {name!r} does not take {sorted(kwargs)}: {exc}; its arguments are "
            f"{list(signature.parameters)}"
        ) from None
    return cls(**kwargs)
