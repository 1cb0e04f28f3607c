"""An objective that logs an ONNX model and a checkpoint directory by path, on whatever
worker runs it; trial 0's save fails (joblib cannot pickle a lock) and fails the trial."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import optuna

import sweep


def objective(trial: optuna.Trial) -> float:
    from tests.flavor_models import onnx_affine

    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        sweep.log_model(threading.Lock())
    sweep.log_model(onnx_affine(scale=x))  # "model": the one the sweep registers
    checkpoint = Path(tempfile.mkdtemp()) / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "x.txt").write_text(repr(x))
    sweep.log_model(str(checkpoint), "weights")  # a path: stored as is, never pickled
    return x
