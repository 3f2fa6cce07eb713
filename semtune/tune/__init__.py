"""Hyperparameter studies: search-space YAML -> Optuna (via Ray Tune's OptunaSearch) -> trials.

- ``space``: the study file format, validated into a typed ``StudySpec`` (``load_space``);
- ``trainable``: ``semtune.train.loop.train`` as a Tune function trainable (``run_trial``);
- ``searcher``: ``OptunaSearch`` with Tune ids on Optuna trials and failed diverged trials;
- ``study``: ``run_study`` (new or ``resume``), the results table and the exported generator;
- ``progress`` / ``report``: the live table, the figures and the Pareto front.

Nothing is imported here, so ``import semtune.tune.space`` does not start torch or Ray.
"""
