"""Objective for sweeps/quickstart.yaml: a linear classifier on scikit-learn's bundled
digits data, trained epoch by epoch so Hyperband can stop bad trials early."""

from __future__ import annotations

import functools

import numpy as np
import optuna

import sweep

EPOCHS = 30


@functools.lru_cache(maxsize=1)
def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation split of the 8x8 digits, scaled; cached per worker process."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_val), y_train, y_val


def objective(trial: optuna.Trial) -> float:
    from sklearn.linear_model import SGDClassifier

    x_train, x_val, y_train, y_val = load_data()
    # Declared in the spec's `parameters:` block: sweep has suggested them already.
    params = trial.params
    # Define-by-run: this one only exists when the schedule needs it.
    power_t = (
        trial.suggest_float("power_t", 0.1, 0.9) if params["learning_rate"] == "invscaling" else 0.5
    )
    model = SGDClassifier(
        loss=params["loss"],
        penalty=params["penalty"],
        alpha=params["alpha"],
        learning_rate=params["learning_rate"],
        eta0=params["eta0"],
        power_t=power_t,
        random_state=trial.number,
    )
    classes = np.unique(y_train)
    rng = np.random.default_rng(trial.number)
    accuracy = 0.0
    for epoch in range(1, EPOCHS + 1):
        order = rng.permutation(len(x_train))
        model.partial_fit(x_train[order], y_train[order], classes=classes)
        accuracy = float(model.score(x_val, y_val))
        sweep.log_metric("train_accuracy", model.score(x_train, y_train), step=epoch)
        trial.report(accuracy, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    sweep.log_model(model)
    return accuracy
