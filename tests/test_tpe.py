"""Tests of sweep.tpe: CachingTPESampler draws exactly what Optuna's TPESampler draws.

Each test drives two studies through the same asks and tells, one sampled by Optuna's
TPESampler and one by ours, both seeded alike, and compares every param drawn. TPE's
draws depend on every trial's params, values, states, intermediate values and
constraints, so a cached value that went stale or a split that differed would show as
a different draw within a few trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
import pytest

from sweep.spec import load_spec_from_dict
from sweep.tpe import CachingTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

Objective = Callable[[optuna.Trial], Any]
MakeSampler = Callable[..., optuna.samplers.TPESampler]


def _run(
    make: MakeSampler,
    objective: Objective,
    n_trials: int,
    *,
    directions: tuple[str, ...] = ("minimize",),
    pruner: optuna.pruners.BasePruner | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    study = optuna.create_study(
        directions=list(directions), sampler=make(seed=3, **options), pruner=pruner
    )
    study.optimize(objective, n_trials=n_trials)
    return [trial.params for trial in study.trials]


def _same_draws(objective: Objective, n_trials: int, **kwargs: Any) -> list[dict[str, Any]]:
    ours = _run(CachingTPESampler, objective, n_trials, **kwargs)
    optunas = _run(optuna.samplers.TPESampler, objective, n_trials, **kwargs)
    assert ours == optunas
    return ours


def _mixed(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_float("y", 1e-3, 1.0, log=True)
    n = trial.suggest_int("n", 1, 9, step=2)
    c = trial.suggest_categorical("c", ["a", "b", None])
    return x * x + y + n + (0.5 if c == "a" else 0.0)


def test_the_same_params_as_optunas_tpe_on_a_mixed_space() -> None:
    draws = _same_draws(_mixed, 60, n_startup_trials=5)
    assert len({d["x"] for d in draws}) == 60  # TPE did draw (not one value replayed)


def test_the_same_params_as_optunas_independent_tpe() -> None:
    _same_draws(_mixed, 40, n_startup_trials=5, multivariate=False)


def test_the_same_params_with_pruned_trials_ranked_by_their_last_step() -> None:
    """Most trials pruned, at different steps: TPE's good group is filled from pruned
    trials, ranked by their last step and then their value there."""

    def curve(trial: optuna.Trial) -> float:
        rate = trial.suggest_float("rate", 0.01, 1.0, log=True)
        width = trial.suggest_int("width", 1, 64, log=True)
        last = 1 + int(rate * 10) % 6
        value = 0.0
        for step in range(last + 1):
            value = (1 - (1 - rate) ** (step + 1)) * (1 - abs(width - 20) / 64)
            # A NaN now and then: Optuna ranks a pruned trial whose last value is NaN last.
            trial.report(math.nan if trial.number % 7 == 3 and step == last else value, step)
        if trial.number % 25 != 0:
            raise optuna.TrialPruned()
        return value

    _same_draws(curve, 50, directions=("maximize",), n_startup_trials=5)


def test_the_same_params_with_infeasible_trials() -> None:
    def constrained(trial: optuna.Trial) -> float:
        value = _mixed(trial)
        # The unconstrained best (x near 0) is infeasible: TPE must rank it apart.
        trial.set_constraint("x_at_least_1", 1.0 - trial.params["x"])
        trial.set_constraint("y_small", trial.params["y"] - 0.5)
        return value

    _same_draws(constrained, 50, n_startup_trials=5)


def test_the_same_params_on_a_define_by_run_space_that_grows() -> None:
    def branching(trial: optuna.Trial) -> float:
        kind = trial.suggest_categorical("kind", ["linear", "tree"])
        if kind == "linear":
            return trial.suggest_float("alpha", 1e-4, 1.0, log=True)
        depth = trial.suggest_int("depth", 1, 12)
        if depth > 6:
            return depth / 12 + trial.suggest_float("eta", 0.0, 1.0)
        return depth / 12

    _same_draws(branching, 60, n_startup_trials=5)


def test_the_same_params_for_multi_objective() -> None:
    def two(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 5.0)
        y = trial.suggest_float("y", 0.0, 3.0)
        return 4 * x * x + 4 * y * y, (x - 5) ** 2 + (y - 5) ** 2

    _same_draws(two, 40, directions=("minimize", "minimize"), n_startup_trials=5)


@pytest.mark.parametrize("multivariate", [True, False])
def test_the_same_params_while_other_trials_run_constant_liar(multivariate: bool) -> None:
    """Trials still running count as the constant liar's: read afresh each time, and
    cached only once they finish (a running trial has not asked for ``c`` yet)."""

    def drive(make: MakeSampler) -> list[dict[str, Any]]:
        study = optuna.create_study(
            sampler=make(seed=5, n_startup_trials=4, multivariate=multivariate)
        )
        running: list[optuna.Trial] = []
        for step in range(45):
            trial = study.ask()
            trial.suggest_float("x", -5.0, 5.0)
            running.append(trial)
            if step % 3 != 2:
                continue  # three at a time in flight, told oldest first
            for done in running[:2]:
                c = done.suggest_categorical("c", ["p", "q"])
                x = done.params["x"]
                if done.number % 5 == 0:
                    study.tell(done, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(done, x * x + (1.0 if c == "p" else 0.0))
            running = running[2:]
        return [t.params for t in study.trials]

    assert drive(CachingTPESampler) == drive(optuna.samplers.TPESampler)


def test_a_sampler_moved_to_another_study_forgets_the_first() -> None:
    """Trial ids repeat across storages (in memory, each starts at 0): what the sampler
    kept about the first study's trial 0 must not stand for the second's."""

    def two_studies(make: MakeSampler) -> list[dict[str, Any]]:
        sampler = make(seed=11, n_startup_trials=3)
        draws = []
        for shift in (0.0, 7.0):
            study = optuna.create_study(sampler=sampler)
            study.optimize(
                lambda t, shift=shift: (t.suggest_float("x", -10, 10) - shift) ** 2, n_trials=20
            )
            draws += [t.params for t in study.trials]
        return draws

    assert two_studies(CachingTPESampler) == two_studies(optuna.samplers.TPESampler)


@pytest.mark.parametrize("offset", [0, 4])
def test_a_specs_tpe_draws_as_optunas_with_the_workers_seed(offset: int) -> None:
    spec = load_spec_from_dict(
        {
            "name": "tpe-spec",
            "objective": "objectives:objective",
            "metric": {"name": "loss", "direction": "minimize"},
            "sampler": {"name": "tpe", "seed": 7, "n_startup_trials": 4},
            "budget": {"n_trials": 15},
        }
    )
    sampler = spec.sampler.build(seed_offset=offset)
    assert isinstance(sampler, CachingTPESampler)

    def draws(sampler: optuna.samplers.BaseSampler) -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=sampler)
        study.optimize(_mixed, n_trials=15)
        return [t.params for t in study.trials]

    expected = optuna.samplers.TPESampler(seed=7 + offset, n_startup_trials=4)
    assert draws(sampler) == draws(expected)
