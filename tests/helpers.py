"""Helpers shared by the tests and the benchmarks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
import yaml
from sqlalchemy.engine import make_url

from sweep.spec import load_spec_from_dict
from sweep.storage import Database
from sweep.study import open_study, open_sweep_record
from sweep.tracking import TrackingStore
from sweep.trial import SweepContext, TrialOutcome, TrialRunner

OBJECTIVES_DIR = Path(__file__).parent / "objectives"
PG_URL = os.environ.get(
    "SWEEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the PG_URL server, dropped afterwards."""
    # No pool: a test may restart the server, which would leave a pooled connection dead.
    admin = sqlalchemy.create_engine(
        PG_URL, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool
    )
    name = f"sweep_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def write_toy_spec(tmp_path: Path, **overrides: object) -> Path:
    """A small sweep of ``toy:learning_curve`` (Hyperband, 2 workers); keys overridable."""
    spec: dict[str, object] = {
        "name": "toy",
        "objective": "toy:learning_curve",
        "code_dir": str(OBJECTIVES_DIR),
        "parameters": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "metric": {"name": "score", "direction": "maximize"},
        "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 4},
        "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": 9},
        "budget": {"n_trials": 24},
        "parallelism": 2,
        "registry": {"model_name": "toy-model", "required": True},
    }
    spec.update(overrides)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_invariants(url: str, name: str) -> dict[str, int]:
    """Check what crash safety promises of a finished sweep, and return its counts.

    Nothing RUNNING or WAITING, in the study or in tracking; every trial's run agrees
    with its state; every retried trial has exactly one retry; at most one attempt of
    each lineage counts. Returns counted, retried, killed and runs.
    """
    import optuna
    from optuna.trial import TrialState

    from sweep.storage import Database
    from sweep.study import get_sweep_record
    from sweep.tracking import RunStatus, TrackingStore

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    database = Database(url)
    tracking = TrackingStore(database)
    record = get_sweep_record(database, name)
    assert record is not None
    runs = {r.run_id: r for r in tracking.list_runs(parent_run_id=record.parent_run_id)}
    database.dispose()
    assert not [r.name for r in runs.values() if r.status is RunStatus.RUNNING]
    by_number = {t.number: t for t in trials}
    retries: dict[int, list[int]] = {}
    for t in trials:
        if "sweep:retry_of" in t.system_attrs:
            retries.setdefault(int(t.system_attrs["sweep:retry_of"]), []).append(t.number)
    counted = killed = retried = 0
    for t in trials:
        attrs = t.system_attrs
        if attrs.get("sweep:superseded"):
            retried += 1
            assert t.state == TrialState.FAIL
            assert len(retries.get(t.number, [])) == 1, f"trial {t.number} retried twice"
        elif attrs.get("sweep:killed"):
            killed += 1
        else:
            counted += 1
        run_id = attrs.get("sweep:run_id")
        if run_id and (run_id in runs or t.state != TrialState.FAIL):
            # (A lost trial may name a run its worker died before opening.)
            run = runs[run_id]
            expected = {
                TrialState.COMPLETE: {RunStatus.FINISHED},
                TrialState.PRUNED: {RunStatus.FINISHED},
                TrialState.FAIL: {RunStatus.FAILED, RunStatus.KILLED},
            }[t.state]
            assert run.status in expected, (t.number, t.state, run.status)
            assert run.tags["sweep.trial_number"] == str(t.number)
    # A lineage (a trial and its retries) counts once at most.
    for original, numbers in retries.items():
        chain = [original, *numbers]
        counting = [
            n
            for n in chain
            if not by_number[n].system_attrs.get("sweep:superseded")
            and not by_number[n].system_attrs.get("sweep:killed")
        ]
        assert len(counting) <= 1, f"lineage {chain} counted {len(counting)} times"
    return {"counted": counted, "retried": retried, "killed": killed, "runs": len(runs)}


def sweep_context(
    url: str, root: Path, name: str, objective: str, **spec_keys: object
) -> SweepContext:
    """What a launch sets up before its workers start (the study, the experiment with
    its artifacts under ``root``, the sweep's parent run), for a worker's runner.
    ``spec_keys`` override the spec's keys."""
    spec = load_spec_from_dict(
        {
            "name": name,
            "objective": objective,
            "code_dir": str(OBJECTIVES_DIR),
            "metric": {"name": "score", "direction": "maximize"},
            "sampler": {"name": "tpe", "seed": 7},
            "pruner": "none",
            "budget": {"n_trials": 4},
            "parallelism": 1,
            **spec_keys,
        }
    )
    database = Database(url)
    database.ensure_schema()
    tracking = TrackingStore(database)
    open_study(spec, database, database.optuna_storage())
    experiment = tracking.get_or_create_experiment(name, str(root))
    record = open_sweep_record(
        spec, database, tracking, experiment, spec_text="", parent_tags={}, parent_params={}
    )
    database.dispose()
    return SweepContext(spec, url, experiment.experiment_id, record.parent_run_id, "test")


def run_one_trial(runner: TrialRunner) -> TrialOutcome:
    """Claim one trial for a new agent worker of ``runner``, run it, close the runner."""
    claim = runner.claim(runner.coordinator.register_worker("agent"))
    assert claim is not None
    try:
        return runner.run(claim)
    finally:
        runner.close()
