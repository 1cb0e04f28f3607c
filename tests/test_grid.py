"""Grid search: enumeration from the spec, the budget it implies, and every point run
exactly once through real studies and real sweeps (1, 2 and 4 workers)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import sweep
from sweep.errors import SpecError
from sweep.spec import GridSampler, load_spec_from_dict
from sweep.spec._grid import stored_point
from sweep.storage import Database
from sweep.study import KILLED_ATTR, enqueue_grid
from tests.helpers import write_toy_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def grid_spec(parameters: dict[str, object], **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "grid",
        "objective": "mod:objective",
        "parameters": parameters,
        "metric": {"name": "loss", "direction": "minimize"},
        "sampler": {"name": "grid"},
    }
    data.update(overrides)
    return data


PARAMS = {
    "lr": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
    "layers": {"type": "int", "low": 1, "high": 2},
    "act": {"type": "categorical", "choices": ["relu", [1, 2]]},
    "epochs": {"type": "constant", "value": 5},
}


def test_grid_points_enumerate_every_combination_in_order() -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS))
    points = spec.grid_points()
    assert len(points) == 3 * 2 * 2 == spec.budget.n_trials
    assert points[0] == {"lr": 0.1, "layers": 1, "act": "relu", "epochs": 5}
    assert points[1] == {"lr": 0.1, "layers": 1, "act": [1, 2], "epochs": 5}  # last fastest
    assert points[-1] == {"lr": 0.3, "layers": 2, "act": [1, 2], "epochs": 5}
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    assert {p["lr"] for p in points} == {0.1, 0.2, 0.3}  # no 0.30000000000000004


def test_float_grid_stops_at_high_and_int_steps() -> None:
    spec = load_spec_from_dict(
        grid_spec(
            {
                "a": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.3},
                "b": {"type": "int", "low": 2, "high": 10, "step": 4},
                "c": {"type": "q_log_uniform", "low": 1, "high": 100, "step": 25},
            }
        )
    )
    axes = {name: sorted({p[name] for p in spec.grid_points()}) for name in "abc"}
    assert axes == {"a": [0.0, 0.3, 0.6, 0.9], "b": [2, 6, 10], "c": [25, 50, 75, 100]}


def test_budget_defaults_to_the_grid_size_and_cannot_exceed_it() -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS, budget={"timeout": 60}))
    assert (spec.budget.n_trials, spec.budget.timeout) == (12, 60)
    assert load_spec_from_dict(grid_spec(PARAMS, budget={"n_trials": 5})).budget.n_trials == 5
    with pytest.raises(SpecError) as info:
        load_spec_from_dict(grid_spec(PARAMS, budget={"n_trials": 13}))
    assert info.value.key_path == "budget.n_trials"
    assert "exceeds the grid's 12 combinations" in info.value.reason


def test_a_continuous_parameter_has_no_grid_and_is_named() -> None:
    params = {**PARAMS, "wd": {"type": "log_uniform", "low": 1e-5, "high": 1e-1}}
    with pytest.raises(SpecError) as info:
        load_spec_from_dict(grid_spec(params, budget={"n_trials": 3}))
    assert info.value.key_path == "parameters.wd"
    assert "float without step has infinitely many values" in info.value.reason
    with pytest.raises(SpecError) as info:
        load_spec_from_dict(grid_spec({"n": {"type": "normal"}}, budget={"n_trials": 3}))
    assert info.value.key_path == "parameters.n"


def test_a_grid_without_budget_that_cannot_be_enumerated_says_budget_is_missing() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_from_dict(grid_spec({"n": {"type": "normal"}}))
    assert "budget" in str(info.value)


@pytest.mark.parametrize("name", ["bruteforce", "BruteForceSampler", "grid", "GridSampler"])
def test_bruteforce_is_read_as_the_grid(name: str) -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS, sampler={"name": name}))
    assert spec.sampler.is_grid and spec.budget.n_trials == 12
    assert isinstance(spec.sampler.build(), GridSampler)


def _objective(spec: sweep.spec.SweepSpec, seen: list[dict[str, object]], lock: threading.Lock):
    def objective(trial: optuna.Trial) -> float:
        values = spec.suggest_parameters(trial)
        trial.suggest_float("free", 0.0, 1.0)  # define-by-run, outside the grid
        with lock:
            seen.append(values)
        return 0.0

    return objective


def test_enqueued_grid_runs_each_point_once_across_threads() -> None:
    """Optuna's own optimize loop, 4 threads on one study: the enqueued points are popped
    once each; GridSampler never calls Study.stop nor samples a grid param. (In memory:
    Optuna's RDB storage pops a WAITING trial without a row lock on SQLite, which is why
    sweep claims trials under its own lock; the sweep tests below go through it.)"""
    spec = load_spec_from_dict(grid_spec(PARAMS))
    study = optuna.create_study(sampler=spec.sampler.build())
    assert enqueue_grid(study, spec) == 12
    assert enqueue_grid(study, spec) == 0  # idempotent
    seen: list[dict[str, object]] = []
    study.optimize(_objective(spec, seen, threading.Lock()), n_trials=12, n_jobs=4)
    keys = sorted(json.dumps(p, sort_keys=True) for p in seen)
    assert keys == sorted(json.dumps(p, sort_keys=True) for p in spec.grid_points())
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_killed_trial_gives_its_point_back_and_the_budget_is_respected(tmp_path: Path) -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS, budget={"n_trials": 4}))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'g.db'}")
    assert enqueue_grid(study, spec) == 4  # the first 4 points only
    first = study.ask()
    study._storage.set_trial_system_attr(first._trial_id, KILLED_ATTR, True)
    study.tell(first, state=TrialState.FAIL)
    # The killed trial used no budget: its point is enqueued again, nothing else.
    assert enqueue_grid(study, spec) == 1
    killed_point = study.trials[first.number].system_attrs["fixed_params"]
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting][-1] == killed_point


def test_the_store_takes_the_grid_in_one_transaction_numbered_after_its_trials(
    storage_url: str,
) -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS))
    db = Database(storage_url)
    db.ensure_schema()  # as a launch does (it makes the SQLite file's folder)
    study = optuna.create_study(storage=storage_url, study_name="g")
    study.enqueue_trial({"lr": 0.2, "layers": 2, "act": "relu", "epochs": 5})  # a point held
    try:
        assert enqueue_grid(study, spec, db) == 11
        assert enqueue_grid(optuna.load_study(study_name="g", storage=storage_url), spec, db) == 0
    finally:
        db.dispose()
    trials = optuna.load_study(study_name="g", storage=storage_url).trials
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state == TrialState.WAITING for t in trials)
    fixed = [t.system_attrs["fixed_params"] for t in trials]
    assert fixed[1] == {"lr": 0.1, "layers": 1, "act": "relu", "epochs": 5}
    assert fixed[2]["act"] == "[1, 2]"  # a list choice, as Optuna stores it
    # Optuna asks them in order and they carry their points.
    trial = optuna.load_study(study_name="g", storage=storage_url).ask()
    assert spec.suggest_parameters(trial)["act"] in ("relu", [1, 2])


def test_a_retry_holding_define_by_run_params_still_holds_its_point() -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS))
    study = optuna.create_study()
    point = spec.grid_points()[0]
    # What a retry carries: the failed trial's params, a define-by-run one included.
    study.enqueue_trial({**stored_point(spec.parameters, point), "free": 0.5})
    assert enqueue_grid(study, spec) == 11


def test_grid_sampler_refuses_a_trial_that_carries_no_point() -> None:
    spec = load_spec_from_dict(grid_spec(PARAMS))
    study = optuna.create_study(sampler=spec.sampler.build())
    trial = study.ask()
    with pytest.raises(RuntimeError, match="carries no grid point"):
        spec.suggest_parameters(trial)


@pytest.mark.parametrize(
    ("workers", "backend"),
    [(1, "sqlite"), (2, "sqlite"), (4, "sqlite"), (2, "postgresql")],
)
def test_a_grid_sweep_runs_every_combination_once(
    workers: int, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # On local workers (no Ray): separate processes claim the points, as Ray's would.
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    path = write_toy_spec(
        tmp_path,
        name=f"grid-{workers}",
        parameters={
            "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
            "y": {"type": "categorical", "choices": ["a", "b"]},
        },
        sampler={"name": "bruteforce"},  # read as grid: it once failed and repeated points
        pruner={"name": "none"},
        budget=None,
        parallelism=workers,
        registry=None,
    )
    result = sweep.launch(sweep.load_spec(path), storage=url)
    assert result.counts.complete == 10 and result.counts.failed == 0
    study = optuna.load_study(study_name=f"grid-{workers}", storage=url)
    points = sorted((t.params["x"], t.params["y"]) for t in study.trials)
    assert points == sorted((x, y) for x in (0.0, 0.25, 0.5, 0.75, 1.0) for y in "ab")
    # Launching again finds every point taken: nothing is enqueued, nothing runs.
    again = sweep.launch(sweep.load_spec(path), storage=url)
    assert (
        again.trials_this_launch == 0
        and len(optuna.load_study(study_name=f"grid-{workers}", storage=url).trials) == 10
    )
