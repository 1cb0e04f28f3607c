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

OBJECTIVES_DIR = Path(__file__).parent / "objectives"
PG_URL = os.environ.get(
    "SWEEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the PG_URL server, dropped afterwards."""
    admin = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
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
