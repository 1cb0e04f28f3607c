"""Objective for sweeps/mlp.yaml: a small neural network on scikit-learn's digits,
trained epoch by epoch (50 epochs) so that Hyperband can stop bad trials early. Its
learning curves keep improving for longer than the quickstart's linear model."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from digits import load_data

import sweep

EPOCHS = 50


def objective(trial: optuna.Trial) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, x_val, y_train, y_val = load_data()
    params = trial.params  # declared in the spec's `parameters:` block
    model = MLPClassifier(
        hidden_layer_sizes=(params["hidden"],),
        learning_rate_init=params["learning_rate_init"],
        alpha=params["alpha"],
        batch_size=params["batch_size"],
        random_state=trial.number,
    )
    classes = np.unique(y_train)
    accuracy = 0.0
    for epoch in range(1, EPOCHS + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch per call
            model.partial_fit(x_train, y_train, classes=classes)
        accuracy = float(model.score(x_val, y_val))
        trial.report(accuracy, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    sweep.log_model(model)
    return accuracy
