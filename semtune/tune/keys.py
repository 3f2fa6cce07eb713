"""Keys the trainable adds to the trainer's metrics in every result it reports to Tune.

Kept apart from the trainable so that tables and searchers can read results without importing
the trainer (and torch's models) in the driver.
"""

from __future__ import annotations

__all__ = ["CANDIDATE_KEY", "FINISHED_KEY", "NONFINITE_KEY", "POINT_KEY", "RESUMED_FROM_KEY"]

# 1.0 on the last evaluation of a run that reached the end of its schedule or time budget.
FINISHED_KEY = "finished"
# 1.0 on the final result of a trial whose loss became NaN/Inf (its metrics are NaN).
NONFINITE_KEY = "nonfinite_loss"
# The training step this session of the trial started from (0 = from scratch).
RESUMED_FROM_KEY = "resumed_from"

# A confirmation trial's config (semtune.tune.confirm): {POINT_KEY: {config path: value, ...,
# CANDIDATE_KEY: index of the configuration it trains}}.
POINT_KEY = "point"
CANDIDATE_KEY = "candidate"
