"""Objectives with several values (multi-objective sweeps); trivial and fast."""

from __future__ import annotations

import optuna
from sklearn.linear_model import LinearRegression

import sweep


def three(trial: optuna.Trial) -> dict[str, float]:
    """Accuracy (maximize) against latency and size (minimize), by name; logs a model.
    The level ``x`` trades them off; ``y`` makes all three worse, so of each level only
    the trial with the lowest ``y`` is on the Pareto front."""
    x, y = trial.params["x"], trial.params["y"]
    sweep.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, x]))
    return {
        "acc": 0.5 + 0.1 * x - 0.2 * y,
        "latency_ms": 2.0 + 3.0 * x + y,
        "size_mb": 10.0 + 5.0 * (x - 1.5) ** 2 + y,
    }


def two_as_tuple(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    return x, 1.0 - x
