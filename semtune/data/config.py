"""Where training and validation images come from: the ``data`` section of the trainer config.

It lives with the data code that reads it (``semtune.data.unpaired``); ``semtune.train.config``
gathers it into the whole ``TrainConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from semtune.config import require_positive
from semtune.data.degrade import DegradeConfig

__all__ = ["DataConfig", "SetName", "ValSet"]

SetName = Literal["A", "B", "C", "A+n", "B+n", "C+n"]
# "own": the clean validation crops blurred by the Gaussian estimated between the two training
# folders and given the blurred folder's own measured noise (semtune.data.estimate)
ValSet = Literal["A", "B", "C", "A+n", "B+n", "C+n", "own"]


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where training and validation images come from.

    Two modes: real unpaired training (``blurred_dir`` set: clean and blurred folders of
    different scenes), or the paper's simulated experiment (``blurred_dir`` unset), where
    ``domains`` says how the clean training images make the two domains: ``halves`` splits them
    into two disjoint halves and degrades one with ``synthetic_set`` (the domains never show the
    same scene), ``shuffled`` puts every image in both domains, degraded in one and clean in the
    other, drawn independently (the paper's "randomly shuffled" protocol: never a pair in a
    loss, but both domains have the same scene statistics). Either way, validation is a
    *paired* synthetic split of images that are never trained on: ``val_dir`` if given, else
    ``val_fraction`` of the clean images, held out before training.
    """

    clean_dir: str = "data/sample/train"
    blurred_dir: str | None = None
    synthetic_set: SetName = "A+n"
    domains: Literal["halves", "shuffled"] = "shuffled"
    val_dir: str | None = None
    val_fraction: float = 0.2
    val_set: ValSet = "A+n"
    val_crops: int = 48
    val_crop_size: int = 128
    crop_size: int = 64
    augment: bool = True
    crop_bar: bool = True
    seed: int = 0
    degrade: DegradeConfig = field(default_factory=DegradeConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        for name in ("val_crops", "val_crop_size", "crop_size"):
            require_positive(name, getattr(self, name))
