"""semtune: hyperparameter studies for unsupervised restoration of SEM images."""

import os

# OpenMP threads spin at barriers by default; on a busy machine that made torch 5-10x slower
# (issue 15). Every `python -m semtune.*` imports this package before torch, so the passive
# policy is in place when the OpenMP runtime starts; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
