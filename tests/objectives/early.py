"""Objectives and callbacks for the stop-rule, warm-start and callback tests: values
fixed by trial number, so that when a sweep ends is known in advance."""

from __future__ import annotations

import json
import os
import time

import optuna

#: Values by trial number: best at trial 1, then none better until trial 6.
PLATEAU = [0.5, 0.7, 0.6, 0.65, 0.6, 0.62, 0.9, 0.9, 0.9, 0.9]


def by_number(trial: optuna.Trial) -> float:
    """Trial n returns n / 10, after 0.1 s (long enough to run one at a time)."""
    trial.suggest_float("x", 0.0, 1.0)
    time.sleep(0.1)
    return trial.number / 10


def plateau(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    time.sleep(0.1)
    return PLATEAU[trial.number % len(PLATEAU)]


def echo(trial: optuna.Trial) -> float:
    """Returns x + y of the declared params (enqueued or sampled)."""
    return float(trial.params["x"]) + float(trial.params["y"])


def record(event: object) -> None:
    """A callback: one JSON line per event in $SWEEP_TEST_EVENTS."""
    fields = {
        k: getattr(event, k)
        for k in ("kind", "state", "trial_number", "value", "best_value", "params")
    }
    with open(os.environ["SWEEP_TEST_EVENTS"], "a") as out:
        out.write(json.dumps(fields) + "\n")


def explode(event: object) -> None:
    """A callback that always fails."""
    raise RuntimeError("notification service down")


def first_wins(trial: optuna.Trial) -> float:
    """Trial 0 returns 1.0 at once; every other trial runs for a minute."""
    trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        time.sleep(0.5)  # the other worker's trial has started
        return 1.0
    for step in range(600):
        time.sleep(0.1)
        trial.report(0.0, step)
    return 0.0
