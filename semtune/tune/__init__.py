"""Hyperparameter studies: search-space YAML -> Optuna (via Ray Tune's OptunaSearch) -> trials.

- ``spec`` / ``space``: the typed ``StudySpec``, and the study file parsed into it
  (``load_space``);
- ``trainable``: ``semtune.train.loop.train`` as a Tune function trainable (``run_trial``);
- ``searcher``: ``OptunaSearch`` with Tune ids on Optuna trials and failed diverged trials;
- ``study``: ``run_study`` (new or ``resume``), the results table and the exported generator;
- ``progress`` / ``report``: the live table, the figures and the Pareto front;
- ``confirm``: the confirmation stage (top configurations retrained with fresh seeds);
- ``tracked``: a study logged to MLflow, its best generator registered (``semtune.search``);
- ``jobs``: a study as a Ray job on a cluster (``semtune.submit``).

Nothing is imported here, so ``import semtune.tune.space`` does not start torch or Ray.
"""
