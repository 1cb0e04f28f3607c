"""The trivial objective as the peers run it; light on imports, for their workers.

The same search space and formula as ``tests/objectives/toy.py:trivial`` (x float,
y log-float, c categorical), split the way Ray Tune wants it: a define-by-run space for
``OptunaSearch`` and a trainable that reports one result.
"""

from __future__ import annotations

from typing import Any


def trivial_value(x: float, y: float, c: str) -> float:
    return x * x + y + (0.5 if c == "a" else 0.0)


def trivial_space(trial: Any) -> None:
    """``OptunaSearch``'s define-by-run space: the trivial objective's three params."""
    trial.suggest_float("x", -10.0, 10.0)
    trial.suggest_float("y", 1e-3, 1.0, log=True)
    trial.suggest_categorical("c", ["a", "b", "c"])


def trivial_trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable that reports one result (and the process it ran in,
    so that the harness can tell how many of Ray Tune's actors ran trials)."""
    import os

    from ray import tune

    tune.report({"value": trivial_value(config["x"], config["y"], config["c"]), "pid": os.getpid()})


def optuna_process(url: str, study_name: str, n_trials: int, seed: int) -> None:
    """One of Optuna's own worker processes: ``study.optimize`` on the shared study."""
    import optuna

    from tests.objectives.toy import trivial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=optuna.storages.RDBStorage(url),
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    study.optimize(trivial, n_trials=n_trials)
