"""Objectives used by the sweep tests; importable in the test process and Ray workers."""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import optuna

import sweep


def _small_model(x: float) -> object:
    """A fitted model that predicts ``x`` at 1. scikit-learn is imported here, not with
    this module: a launch, an agent or `sweep validate` imports the module only to check
    the objective, and would spend a second or more of each start on it."""
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0]], [0.0, x])


def learning_curve(trial: optuna.Trial) -> float:
    """A fast learning curve whose ceiling depends on x; logs a model that predicts x."""
    x = trial.params["x"]  # declared in the spec
    shape = trial.suggest_categorical("shape", ["fast", "slow"])  # define-by-run
    rate = 0.8 if shape == "fast" else 0.4
    ceiling = 1.0 - (x - 0.3) ** 2
    value = 0.0
    for step in range(1, 10):
        value = ceiling * (1.0 - (1.0 - rate) ** step)
        sweep.log_metric("loss", 1.0 - value, step=step)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    sweep.log_model(_small_model(x))
    return value


def flaky(trial: optuna.Trial) -> float:
    """Raises, returns NaN or a string depending on the trial number."""
    x = trial.suggest_float("x", 0.0, 1.0)
    kind = trial.number % 4
    if kind == 1:
        raise ValueError(f"boom in trial {trial.number}")
    if kind == 2:
        return math.nan
    if kind == 3:
        return "not a number"  # type: ignore[return-value]
    return x


def no_model(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def slow(trial: optuna.Trial) -> float:
    """Long enough to be interrupted mid-trial."""
    x = trial.suggest_float("x", 0.0, 1.0)
    for step in range(1, 200):
        time.sleep(0.05)
        trial.report(x, step)
    return x


def gpu_probe(trial: optuna.Trial) -> float:
    """Records the devices Ray gave this worker."""
    trial.suggest_float("x", 0.0, 1.0)
    sweep.set_tag("devices", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    time.sleep(0.2)  # overlap with the other worker
    return 1.0


def trivial(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_float("y", 1e-3, 1.0, log=True)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    return x * x + y + (0.5 if c == "a" else 0.0)


def steady(trial: optuna.Trial) -> float:
    """A few timed steps (about ``SWEEP_TEST_STEP_S`` each), then a small model."""
    x = trial.params["x"] if "x" in trial.params else trial.suggest_float("x", 0.0, 1.0)
    pause = float(os.environ.get("SWEEP_TEST_STEP_S", "0.1"))
    for step in range(1, 6):
        time.sleep(pause)
        trial.report(x * step / 5, step)
    sweep.set_tag("devices", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    sweep.log_model(_small_model(x))
    return x


def hang_or_hog(trial: optuna.Trial) -> float:
    """Trial 1 hangs, trial 2 allocates far more memory than it may; the rest are quick."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 1:
        time.sleep(3600)
    if trial.number == 2:
        hog = bytearray(8 * 1024**3)  # 8 GiB: past resources.memory_mb
        return float(len(hog))
    return x


def marker(event: str, study_name: str) -> Path:
    """The file through which a test and the objective it runs signal ``event`` for one
    study: both run on this machine, in the same temporary directory."""
    return Path(tempfile.gettempdir()) / f"sweep-{event}-{study_name}"


def dies_once(trial: optuna.Trial) -> float:
    """Quick trials; the worker that runs trial 6 dies with it, the first time only
    (a marker file named after the study remembers)."""
    x = trial.suggest_float("x", 0.0, 1.0)
    died = marker("dies-once", trial.study.study_name)
    if trial.number == 6 and not died.exists():
        died.touch()
        os._exit(1)
    return x


def held_first(trial: optuna.Trial) -> float:
    """Trial 0 runs until a marker file named after the study appears (60 s at most);
    the others take a second each."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        release = marker("release", trial.study.study_name)
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        time.sleep(1.0)
    return x


def interrupts_or_exits(trial: optuna.Trial) -> float:
    """Trial 0 raises KeyboardInterrupt, trial 1 calls sys.exit(3), trial 2 returns
    infinity; the rest are quick."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        raise KeyboardInterrupt("the objective gave up")
    if trial.number == 1:
        sys.exit(3)
    if trial.number == 2:
        return float("inf")
    return x


def hang_hog_or_die(trial: optuna.Trial) -> float:
    """Trial 1 hangs, trial 2 allocates 8 GiB, the worker running trial 4 dies with it
    (the first time: a marker file named after the study remembers); the rest are quick."""
    if trial.number == 4:
        died = marker("dies-once", trial.study.study_name)
        if not died.exists():
            died.touch()
            os._exit(1)
    if trial.number in (1, 2):
        return hang_or_hog(trial)
    return trial.suggest_float("x", 0.0, 1.0)
