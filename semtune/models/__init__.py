"""Networks: the paper's multi-scale U-Net generator (and registry) and PatchGAN discriminator."""

from semtune.models.discriminator import PatchDiscriminator
from semtune.models.generator import GENERATORS, MultiBlock, MultiScaleUNet, build_generator

__all__ = ["GENERATORS", "MultiBlock", "MultiScaleUNet", "PatchDiscriminator", "build_generator"]
