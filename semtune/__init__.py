"""semtune: hyperparameter studies for unsupervised restoration of SEM images."""

__version__ = "0.1.0"
