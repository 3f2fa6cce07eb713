"""Find the microscope's data bar at the bottom of an SEM image (``detect_data_bar``).

The data bar. The NFFA (ZEISS SUPRA 40) images carry a white band of 56-62 rows framed by 1-pixel
black lines, overlaid on the scan ~70-100 rows above the bottom edge, so on a 1024x768 image it
spans about rows 607-700 and real scan rows continue below it. FEI/Thermo instruments write a black
band with white text at the very bottom. :func:`detect_data_bar` finds the band of either polarity
and returns the number of bottom rows from the band's top down to the last row: the strip under
an NFFA bar is cut with it because it is no longer contiguous with the field of view above (on
the NFFA images this is 125-161 rows). :func:`read_image` crops those rows unless
``crop_bar=False`` and keeps them in :attr:`SEMImage.bar` so that they can be pasted back.

The thresholds below were measured on the 100 NFFA "Particles" images; the tests check them on
the bundled images, on synthetic bars of both polarities and on bar-free textures.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["detect_data_bar"]

# --- data-bar detection thresholds (measured on the 100 NFFA "Particles" images, see
# detect_data_bar) ---
_SEARCH_FRACTION = 1 / 3  # the bar's top must lie in the bottom third
_EXTREME_TOL = 0.05  # "at the extreme": >= 0.95 (white) or <= 0.05 (black)
_BAR_ROW = 0.5  # a bar row has at least half its pixels at the bar's extreme
_BRIDGE_ROW = 0.25  # text rows of a downscaled bar may drop to here without splitting the bar
_SOLID_ROW = 0.95  # a solid row: bar background (or a border line) over the full width
_MAX_GAP = 3  # rows of anything that may interrupt a bar (dense text, frame lines)
_EDGE_ROWS = 3  # a solid row must appear this close to the bar's top (blur, JPEG)
_TEXT_MIN = 0.005  # a bar carries text: some row with >= 0.5% pixels of the other polarity
_MIN_BAR_FRACTION = 0.02  # minimum bar height as a fraction of H (and at least _MIN_BAR_ROWS)
_MIN_BAR_ROWS = 4
_STEP_BELOW = 0.9  # dark background merged with a black bar: rows above the step stay below this
_STEP_JUMP = 0.1  # ... and the bar's first row exceeds the row above by at least this much
_STEP_CONTEXT = 0.04  # ... over this many rows (fraction of H) above the step
_STEP_SOLID_SHARE = 0.3  # ... and at least this share of the bar's rows is solid


# ---------------------------------------------------------------------------------------------
# Data-bar detection
# ---------------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the True runs of a 1-D boolean array."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def _bands(s_bar: np.ndarray) -> list[tuple[int, int]]:
    """Runs of bar rows, joined across short gaps and across faint text rows."""
    bands: list[tuple[int, int]] = []
    for start, end in _runs(s_bar >= _BAR_ROW):
        if bands:
            prev_end = bands[-1][1]
            gap = s_bar[prev_end + 1 : start]
            if gap.size <= _MAX_GAP or bool((gap >= _BRIDGE_ROW).all()):
                bands[-1] = (bands[-1][0], end)
                continue
        bands.append((start, end))
    return bands


def _has_text(s_text: np.ndarray, top: int, bottom: int) -> bool:
    # A band of saturated rows without any marks is saturation (charging, a clipped gradient),
    # not a data bar: every bar carries at least a scale bar or a label.
    rows = s_text[top : bottom + 1]
    return bool(((rows >= _TEXT_MIN) & (rows < _SOLID_ROW)).any())


def _step_top(s_bar: np.ndarray, top: int, bottom: int, first_allowed: int) -> int | None:
    """Top of a bar whose band merged with dark (or bright) background above it, or None.

    The band then starts above the search window. Accept the first row where the fraction of
    extreme pixels jumps to solid from a region that stayed clearly below it, for long enough
    that the text lines inside the bar itself (shorter than ~4% of H) cannot pass as that region.
    """
    context = max(8, math.ceil(_STEP_CONTEXT * s_bar.size))
    for row in range(max(top, first_allowed, 1), bottom - 1):
        if s_bar[row] < _SOLID_ROW:
            continue
        above = s_bar[max(0, row - context) : row]
        if s_bar[row - 1] >= _STEP_BELOW or s_bar[row] - s_bar[row - 1] < _STEP_JUMP:
            continue
        if above.mean() >= _STEP_BELOW or above.max() >= _SOLID_ROW:
            continue
        if (s_bar[row : bottom + 1] >= _SOLID_ROW).mean() < _STEP_SOLID_SHARE:
            continue
        return row
    return None


def _bar_top(s_bar: np.ndarray, s_line: np.ndarray, s_text: np.ndarray, window: int) -> int | None:
    """Top row of the highest valid bar of one polarity, or None.

    Args:
        s_bar: Per row, fraction of pixels at the bar's extreme.
        s_line: Per row, fraction at the opposite extreme (frame lines are full rows of it).
        s_text: Per row, fraction of pixels on the text side of 0.5.
        window: First row of the search window.
    """
    height = s_bar.size
    min_rows = max(_MIN_BAR_ROWS, math.ceil(_MIN_BAR_FRACTION * height))
    best: int | None = None
    for top, bottom in _bands(s_bar):
        if bottom < window:
            continue
        if top <= window:
            # The band reaches above the window: the image itself is bar-like there (a dark
            # background over a black bar). Only a sharp step can separate the two.
            step = _step_top(s_bar, top, bottom, window + 1)
            if step is None:
                continue
            top = step
        else:
            sharp = s_bar[top - 1] < _BRIDGE_ROW and s_bar[top] >= 1 - _BRIDGE_ROW
            solid_near_top = bool((s_bar[top : top + _EDGE_ROWS] >= _SOLID_ROW).any())
            if not (sharp or solid_near_top):
                continue
            above = s_bar[max(0, top - (bottom - top + 1)) : top]
            if above.size and above.mean() >= _BAR_ROW:
                continue
        if bottom - top + 1 < min_rows or not _has_text(s_text, top, bottom):
            continue
        # Include the bar's frame: up to _MAX_GAP full-width lines of the other polarity.
        for _ in range(_MAX_GAP):
            if top == 0 or s_line[top - 1] < _SOLID_ROW:
                break
            top -= 1
        best = top if best is None else min(best, top)
    return best


def detect_data_bar(image: np.ndarray) -> int:
    """Number of bottom rows taken by the microscope's information bar (0 if there is none).

    A bar is a full-width band, white with dark text (NFFA/ZEISS) or black with light text
    (FEI/Thermo), whose top lies in the bottom third of the image. Row by row, the detector
    measures the fraction of pixels at the extreme (>= 0.95 or <= 0.05). A band of rows where at
    least half the pixels sit at one extreme counts as a bar when it

    - is at least 2% of H (and 4 rows) high,
    - starts with a sharp edge: a solid row (>= 95% at the extreme) within its first 3 rows, or a
      jump from < 25% to >= 75% in one row,
    - carries marks of the other polarity (text, scale bar),
    - lies under content that is not itself bar-like.

    A black bar under a dark background merges with it; then the top is the first sharp step
    from rows that stayed below 90% into solid rows. Where the background is clipped to pure
    black the two cannot be told apart and no bar is reported. Up to 3 full-width lines of the
    other polarity above the band (the NFFA frame) belong to the bar. The count runs from the
    bar's top to the last image row, so a bar that floats above a strip of scan rows (NFFA)
    takes that strip with it. Gray (non-saturated) bars are not detected.

    Measured on the 100 NFFA "Particles" images (``/work/shared/data/nffa-particles``): every
    bar is found (125-161 rows; on the two images with a clipped-black background the cut also
    takes the 2 background rows above the frame); the one image without a bar gives 0, and so do
    600 bar-free crops, flips and transposes of their content and 200 synthetic textures. In
    copies downscaled to 1/2 and 1/4 the cut misses at most 2.5 rows (the blurred frame line).
    Synthetic bars (30-90 rows) pasted on each image's content, JPEG-compressed: white ones are
    found to the row on 98 (2 rows more on the other 2); black ones on 98, the other 2 (clipped
    black backgrounds) are missed.

    Args:
        image: ``(H, W)`` float array with values in [0, 1].

    Returns:
        Rows to remove at the bottom, in ``[0, H)``.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"detect_data_bar expects a numpy array, got {type(image)}")
    if image.ndim != 2:
        raise ValueError(f"detect_data_bar expects an (H, W) array, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"detect_data_bar expects float values in [0, 1], got dtype {image.dtype}")
    height, width = image.shape
    if height == 0 or width == 0:
        return 0
    window = height - math.ceil(height * _SEARCH_FRACTION)
    white = (image >= 1 - _EXTREME_TOL).mean(axis=1)
    black = (image <= _EXTREME_TOL).mean(axis=1)
    darkish = (image < 0.5).mean(axis=1)
    tops = [
        _bar_top(white, black, darkish, window),
        _bar_top(black, white, 1.0 - darkish, window),
    ]
    found = [t for t in tops if t is not None]
    # Two candidates (a white NFFA bar over a dark strip that looks like a black bar): cut from
    # the higher one, so no bar pixel stays in the image.
    return height - min(found) if found else 0
