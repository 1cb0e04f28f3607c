"""Launch a benchmark sweep on a fresh PostgreSQL database and keep what it left."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

import sweep
from sweep.spec import load_spec_from_dict
from tests.helpers import OBJECTIVES_DIR, fresh_postgres_database


@dataclass
class Launched:
    result: Any  # sweep.SweepResult
    trials: list[optuna.trial.FrozenTrial]
    wall_s: float
    database: dict[str, int]


def database_stats(url: str) -> dict[str, int]:
    """What PostgreSQL counted for the database of ``url``: transactions committed and
    rows written and read, by every connection so far (backends report at most once a
    second and when they end: call it after the run, past a second)."""
    time.sleep(1.5)
    name = make_url(url).database
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            found = conn.execute(
                sqlalchemy.text(
                    "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, "
                    "tup_deleted, tup_returned, tup_fetched FROM pg_stat_database "
                    "WHERE datname = :name"
                ),
                {"name": name},
            ).one()
    finally:
        engine.dispose()
    return dict(found._mapping)


def trivial_spec(
    name: str, trials: int, workers: int, seed: int, executor: str = "auto", **more: Any
) -> dict[str, Any]:
    """The throughput benchmark's spec: ``toy:trivial``, TPE, no pruner; on the
    executor a user gets (local processes), or on Ray with ``executor="ray"``."""
    spec: dict[str, Any] = {
        "name": name,
        "objective": "toy:trivial",
        "code_dir": str(OBJECTIVES_DIR),
        "metric": {"name": "value", "direction": "minimize"},
        "sampler": {"name": "tpe", "seed": seed},
        "pruner": "none",
        "budget": {"n_trials": trials},
        "parallelism": workers,
    }
    if executor == "ray":
        # Logical CPUs: a benchmark may ask for more workers than there are cores.
        spec.update(executor="ray", ray={"num_cpus": max(workers, 2)})
    spec.update(more)
    return spec


def launch_fresh(
    data: dict[str, Any],
    on_trial: Callable[[Any, Any], None] | None = None,
    on_return: Callable[[], None] | None = None,
) -> Launched:
    """``sweep.launch`` of the spec ``data`` against a fresh database (artifacts in a
    temporary folder); returns the result and the study's trials before the database
    is dropped. ``on_return`` is called as the launch returns, before this reads the
    trials back."""
    with fresh_postgres_database() as url, tempfile.TemporaryDirectory() as root:
        data = {**data, "tracking": {**data.get("tracking", {}), "artifact_root": root}}
        spec = load_spec_from_dict(data, check_objective=True)
        started = time.perf_counter()
        result = sweep.launch(spec, storage=url, on_trial=on_trial)
        wall = time.perf_counter() - started
        if on_return:
            on_return()
        storage = optuna.storages.RDBStorage(url)
        try:
            study = optuna.load_study(study_name=spec.name, storage=storage)
            trials = study.get_trials(deepcopy=False)
        finally:
            storage.engine.dispose()
        stats = database_stats(url)
    return Launched(result, trials, wall, stats)
