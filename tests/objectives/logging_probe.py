"""Objectives that log many metric points without flushing, for the logging tests."""

from __future__ import annotations

import optuna

import sweep

#: Points each objective logs (more than one background batch, fewer than two seconds).
POINTS = 12_345


def log_then_return(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    for step in range(POINTS):
        sweep.log_metric("loss", 1.0 / (step + 1), step=step)
    return x


def log_then_raise(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    for step in range(POINTS):
        sweep.log_metric("loss", 1.0 / (step + 1), step=step)
    raise RuntimeError("diverged after logging")
