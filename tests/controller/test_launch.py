"""End-to-end sweeps on a real local Ray, on the embedded SQLite store and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import sweep
from sweep.registry import ModelRegistry
from sweep.storage import Database
from sweep.study import RUN_ID_ATTR
from sweep.tracking import RunStatus, TrackingStore
from tests.helpers import write_toy_spec as write_spec

pytestmark = pytest.mark.usefixtures("local_ray")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sweep_runs_to_an_exact_budget_and_registers_the_best_model(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    result = sweep.launch(write_spec(tmp_path), storage=url)

    study = optuna.load_study(study_name="toy", storage=url)
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 24 and TrialState.RUNNING not in states
    assert result.counts.finished == 24
    assert states.count(TrialState.PRUNED) >= 1, "Hyperband pruned nothing"
    assert result.counts.pruned == states.count(TrialState.PRUNED)

    db = Database(url)
    tracking = TrackingStore(db)
    parent = tracking.get_run(result.parent_run_id)
    assert parent.status is RunStatus.FINISHED and parent.parent_run_id is None
    children = tracking.list_runs(parent_run_id=parent.run_id)
    assert len(children) == 24
    by_id = {run.run_id: run for run in children}
    for trial in trials:
        run = by_id[trial.system_attrs[RUN_ID_ATTR]]
        assert run.status is RunStatus.FINISHED
        assert run.tags["sweep.trial_number"] == str(trial.number)
        assert run.tags["sweep.state"] == trial.state.name
        searched = {k: v for k, v in run.params.items() if not k.startswith("sweep.")}
        assert searched == {k: str(v) for k, v in trial.params.items()}
        # The spec's sampler seed, and the seed of the worker's sampler (seed + index + 1).
        assert run.params["sweep.seed"] == "1" and run.params["sweep.sampler_seed"] in {"2", "3"}
        history = tracking.metric_history(run.run_id, "score")
        assert {p.step: p.value for p in history} == trial.intermediate_values
        assert "sweep.python" in run.tags and "sweep.host" in run.tags
        if trial.state == TrialState.COMPLETE:
            assert run.metrics["objective_value"] == pytest.approx(trial.value)

    best = study.best_trial
    assert result.best_trial_number == best.number
    version = ModelRegistry(db).get_by_alias("toy-model", "challenger")
    assert version.run_id == best.system_attrs[RUN_ID_ATTR]
    assert version.trial_number == best.number
    assert version.metric_value == pytest.approx(best.value)
    assert result.model_version is not None and result.model_version.version == version.version
    model = sweep.load_model("models:/toy-model@challenger", storage=url)
    assert model.predict([[1.0]])[0] == pytest.approx(best.params["x"])
    db.dispose()


def test_launching_again_continues_the_study(sqlite_url: str, tmp_path: Path) -> None:
    first = sweep.launch(write_spec(tmp_path, budget={"n_trials": 6}), storage=sqlite_url)
    assert first.counts.finished == 6
    again = sweep.launch(write_spec(tmp_path, budget={"n_trials": 6}), storage=sqlite_url)
    assert again.trials_this_launch == 0 and again.counts.finished == 6
    more = sweep.launch(write_spec(tmp_path, budget={"n_trials": 10}), storage=sqlite_url)
    assert more.trials_this_launch == 4
    assert more.parent_run_id == first.parent_run_id

    study = optuna.load_study(study_name="toy", storage=sqlite_url)
    assert sorted(t.number for t in study.get_trials()) == list(range(10))
    children = TrackingStore(Database(sqlite_url)).list_runs(parent_run_id=first.parent_run_id)
    assert len(children) == 10


def test_failing_objectives_are_recorded_and_the_sweep_goes_on(
    postgres_url: str, tmp_path: Path
) -> None:
    spec = write_spec(
        tmp_path,
        objective="toy:flaky",
        parameters={},
        pruner={"name": "none"},
        budget={"n_trials": 8},
        registry={"model_name": "flaky", "required": False},
    )
    result = sweep.launch(spec, storage=postgres_url)
    assert (result.counts.complete, result.counts.failed) == (2, 6)
    assert result.model_version is None
    assert "logged no model" in result.registration

    study = optuna.load_study(study_name="toy", storage=postgres_url)
    tracking = TrackingStore(Database(postgres_url))
    errors = {}
    for trial in study.get_trials():
        run = tracking.get_run(trial.system_attrs[RUN_ID_ATTR])
        if trial.number % 4 == 0:
            assert trial.state == TrialState.COMPLETE and run.status is RunStatus.FINISHED
            continue
        assert trial.state == TrialState.FAIL and run.status is RunStatus.FAILED
        errors[trial.number % 4] = run.tags["sweep.error"]
        assert trial.system_attrs["sweep:error"] == run.tags["sweep.error"]
    assert errors[1].startswith("ValueError: boom in trial")
    assert errors[2] == "objective returned NaN"
    assert "not a number" in errors[3]
    failed_run = next(
        tracking.get_run(t.system_attrs[RUN_ID_ATTR]) for t in study.get_trials() if t.number == 1
    )
    artifacts = [a.path for a in tracking.list_artifacts(failed_run.run_id)]
    # (lineage/ files are there too when the run was its worker's first)
    assert [a for a in artifacts if not a.startswith("lineage/")] == ["traceback.txt"]


def test_required_registration_without_a_model_raises(sqlite_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, objective="toy:no_model", parameters={}, budget={"n_trials": 2})
    with pytest.raises(sweep.RegistrationError, match="logged no model") as info:
        sweep.launch(spec, storage=sqlite_url)
    assert info.value.result.counts.complete == 2  # type: ignore[attr-defined]


def test_gpu_trials_get_distinct_cuda_visible_devices(sqlite_url: str, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        objective="toy:gpu_probe",
        parameters={},
        pruner={"name": "none"},
        budget={"n_trials": 8},
        parallelism=4,
        resources={"cpu": 0.5, "gpu": 1},
        registry=None,
    )
    result = sweep.launch(spec, storage=sqlite_url)
    runs = TrackingStore(Database(sqlite_url)).list_runs(parent_run_id=result.parent_run_id)
    devices = {run.tags["devices"] for run in runs}
    assert devices == {"0", "1", "2", "3"}
    # Each worker keeps its GPU: the devices recorded per worker process never change.
    by_pid: dict[str, set[str]] = {}
    for run in runs:
        by_pid.setdefault(run.tags["sweep.pid"], set()).add(run.tags["devices"])
    assert all(len(d) == 1 for d in by_pid.values()) and len(by_pid) == 4


def test_more_gpus_than_the_cluster_has_is_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, resources={"cpu": 1, "gpu": 8}, budget={"n_trials": 2})
    with pytest.raises(sweep.ExecutionError, match="gpu: 8.0 but the Ray cluster has 4 GPUs"):
        sweep.launch(spec, storage=sqlite_url)


def test_registration_gates_refuse_a_worse_challenger(sqlite_url: str, tmp_path: Path) -> None:
    good = {"x": {"type": "uniform", "low": 0.25, "high": 0.35}}  # scores near 1.0
    poor = {"x": {"type": "uniform", "low": 0.9, "high": 1.0}}  # scores at most 0.64

    unreachable = write_spec(
        tmp_path,
        name="gated",
        budget={"n_trials": 4},
        registry={
            "model_name": "gated-model",
            "required": True,
            "threshold": 2.0,
        },
    )
    refused = sweep.launch(unreachable, storage=sqlite_url)  # a closed gate is no failure
    assert refused.model_version is None
    assert "does not pass registry.threshold 2 (rule: threshold)" in refused.registration

    first = write_spec(
        tmp_path,
        name="first",
        parameters=good,
        budget={"n_trials": 4},
        registry={"model_name": "m", "threshold": 0.5},
    )
    registered = sweep.launch(first, storage=sqlite_url)
    assert registered.model_version is not None
    assert registered.registration.endswith("(passed threshold)")
    registry = ModelRegistry(Database(sqlite_url))
    champion = registry.promote("m")

    second = write_spec(
        tmp_path,
        name="second",
        parameters=poor,
        budget={"n_trials": 4},
        registry={"model_name": "m", "beat_champion": True},
    )
    worse = sweep.launch(second, storage=sqlite_url)
    assert worse.model_version is None
    assert f"does not beat @champion version {champion.version}" in worse.registration
    assert [v.version for v in registry.list_versions("m")] == [champion.version]
