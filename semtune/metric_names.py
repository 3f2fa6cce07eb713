"""The names of what semtune measures, in one place (no torch: the trackers and tables read
them too). The measures themselves are in ``semtune.metrics``; the trainer's validation
(``semtune.train.loop``) reports every name in ``VALIDATION_METRICS`` at each evaluation.
"""

from __future__ import annotations

__all__ = [
    "FULL_REFERENCE",
    "GAINS",
    "HEADLINE",
    "IMAGE_METRICS",
    "INPUT_METRICS",
    "NO_REFERENCE",
    "SCORE",
    "VALIDATION_METRICS",
    "score_of",
]

FULL_REFERENCE = ("ssim", "psnr")  # against the clean image
NO_REFERENCE = ("ag", "con", "sf")  # average gradient, contrast, spatial frequency
IMAGE_METRICS = (*FULL_REFERENCE, *NO_REFERENCE)  # semtune.metrics.all_metrics
INPUT_METRICS = ("blurry_ssim", "blurry_psnr")  # the degraded input's own SSIM and PSNR
GAINS = ("ssim_gain", "psnr_gain")  # restored minus input
SCORE = "score"  # one number for ranking: score_of(ssim_gain, psnr_gain)
VALIDATION_METRICS = (*IMAGE_METRICS, *GAINS, SCORE)
# the few a registered version shows as tags and `python -m semtune.models list` as columns
HEADLINE = (SCORE, *FULL_REFERENCE, *GAINS)


def score_of(ssim_gain, psnr_gain):  # type: ignore[no-untyped-def]  # floats or tensors
    """The ``score`` of a restoration: 100 x SSIM gain + PSNR gain (dB); an SSIM gain of 0.01
    weighs as much as 1 dB."""
    return 100 * ssim_gain + psnr_gain
