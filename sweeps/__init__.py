"""Hyperparameter sweeps: Hydra-composed Optuna studies, one MLflow child run per trial.

    python -m sweeps run +sweep=lr sweep.n_trials=50 train.epochs=5

Modules: `space` (YAML search spaces → trial.suggest_*), `storage` (Optuna storages, dead-trial
clean-up), `tracking` (MLflow parent/child runs), `objective` (one trial), `driver` (the command).
"""
