"""The objective of rehearsal.yaml: a few reported steps, a model to register."""

from __future__ import annotations

import time

import optuna

import sweep


def objective(trial: optuna.Trial) -> float:
    x = trial.params["x"]
    value = 0.0
    for step in range(1, 4):
        time.sleep(0.15)
        value = (1.0 - (x - 0.6) ** 2) * step / 3
        trial.report(value, step)
    sweep.log_model({"x": x, "value": value})
    return value
