"""Shared fixtures: a fresh PostgreSQL database or SQLite file per test, a local Ray.

PostgreSQL tests talk to the real server named by SWEEP_TEST_POSTGRES_URL (default: the
local trust-auth server). Without one they skip on a laptop but fail in CI (CI=true).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.helpers import OBJECTIVES_DIR, PG_URL, fresh_postgres_database

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Test objectives (tests/objectives/*.py) are importable here as in the Ray workers.
sys.path.insert(0, str(OBJECTIVES_DIR))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's default store and artifacts out of the working tree."""
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SWEEP_DATABASE_URL", raising=False)
    monkeypatch.delenv("SWEEP_ARTIFACT_ROOT", raising=False)


def _require_postgres() -> None:
    """Skip (fail in CI) where the PostgreSQL server of PG_URL does not answer."""
    admin = sqlalchemy.create_engine(PG_URL)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sqlalchemy.exc.OperationalError as exc:
        message = f"PostgreSQL at {make_url(PG_URL).render_as_string()} is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    _require_postgres()
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database shared by the tests of one module, dropped after
    them: for data that a module-scoped fixture writes once and its tests only read."""
    _require_postgres()
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'sweep.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once per storage backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray for the in-process sweep tests of one module, with 4 logical GPUs.

    Per module, not per session: a Ray left running holds ports that the multi-node
    cluster of the fault-injection tests needs."""
    import ray

    # address="local": never join a cluster some other process started on this machine.
    ray.init(
        address="local", num_cpus=4, num_gpus=4, include_dashboard=False, logging_level="WARNING"
    )
    yield
    ray.shutdown()
