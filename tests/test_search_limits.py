"""Searches cannot pin the database (issue 18): many conditions cost little, a filter's
size is capped, the server cancels a search past its statement timeout, numeric options
are checked."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy

from sweep.errors import FilterError, InvalidValueError, SearchTimeoutError
from sweep.storage import Database
from sweep.tracking import TrackingStore
from sweep.tracking._filter import parse_filter
from sweep.tracking._filter_limits import MAX_CONDITIONS, MAX_FILTER_LENGTH
from sweep.tracking._search import search_timeout_s
from tests import test_search
from tests.test_cli import SWEEP, run_cli
from tests.test_search import World

world = test_search.world  # the fixture: five runs of one parent, on every backend


def _many_conditions(n: int) -> str:
    """``n`` conditions over params, metrics and tags, several on the same key, that
    trial-1 and trial-2 of the search world meet and no other run does."""
    templates = [
        "params.lr < {hi}",
        "metrics.val_acc > 0.{lo}",
        "tags.model_type = 'sgd'",
        "params.layers >= 9",
        "metrics.loss < 1",
        "params.optimizer in ('sgd', 'adam')",
    ]
    conditions = []
    for i in range(n):
        template = templates[i % len(templates)]
        conditions.append(template.format(hi=0.01 + i / 1000, lo=1 + i % 8))
    return " and ".join(conditions)


def test_ninety_conditions_return_the_right_runs_quickly(world: World) -> None:
    """Each condition used to be a correlated EXISTS; about 90 of them kept PostgreSQL's
    planner busy for minutes. Now each keyed table is one grouped subquery."""
    text = _many_conditions(90)
    assert len(parse_filter(text)) == 90
    started = time.monotonic()
    assert world.matching(text) == {"trial-1", "trial-2"}
    assert world.matching(text + " and params.lr < 0.003") == {"trial-1"}
    assert world.matching(text + " and tags.model_type != 'sgd'") == set()
    assert time.monotonic() - started < 10


def test_a_filter_too_long_or_with_too_many_conditions_is_refused(world: World) -> None:
    too_many = _many_conditions(MAX_CONDITIONS + 1)
    with pytest.raises(FilterError, match=f"at most {MAX_CONDITIONS} are accepted"):
        world.names(too_many)
    too_long = "params.lr < 1 and " * (MAX_FILTER_LENGTH // 10) + "params.lr < 1"
    with pytest.raises(FilterError, match="characters long") as caught:
        world.names(too_long)
    assert len(str(caught.value)) < 600  # the message quotes a stretch, not 100 kB
    values = ", ".join(str(i) for i in range(1_001))
    with pytest.raises(FilterError, match="in-lists hold more than 1,000 values"):
        world.names(f"params.layers in ({values})")


def test_max_results_past_int64_is_a_clear_error(world: World) -> None:
    for bad in (0, 2**63, -1):
        with pytest.raises(InvalidValueError, match="max_results must be between 1 and"):
            world.names(max_results=bad)
    assert world.names(max_results=2**63 - 1)  # the largest LIMIT the database takes


def test_search_timeout_is_configurable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert search_timeout_s() == 30
    monkeypatch.setenv("SWEEP_SEARCH_TIMEOUT", "2.5")
    assert search_timeout_s() == 2.5
    assert search_timeout_s(7) == 7
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("SWEEP_SEARCH_TIMEOUT", bad)
        with pytest.raises(InvalidValueError, match="SWEEP_SEARCH_TIMEOUT"):
            search_timeout_s()


def _lock_params(url: str) -> tuple[sqlalchemy.Engine, sqlalchemy.Connection]:
    """Another session holding an exclusive lock on the params table: a search waits."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    conn = engine.connect()
    conn.exec_driver_sql("LOCK TABLE sweep_params IN ACCESS EXCLUSIVE MODE")
    return engine, conn


def _searches_running(url: str) -> int:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND strpos(query, 'sweep_params') > 0 "
                    "AND pid <> pg_backend_pid()"
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_postgresql_cancels_a_search_past_its_timeout(postgres_url: str, tmp_path: Path) -> None:
    db = Database(postgres_url)
    db.ensure_schema()
    store = TrackingStore(db)
    experiment = store.get_or_create_experiment("exp", tmp_path)
    store.create_run(experiment, "r", params={"lr": 0.1})
    engine, conn = _lock_params(postgres_url)
    try:
        started = time.monotonic()
        with pytest.raises(SearchTimeoutError, match="timeout of 0.5 s"):
            store.search_runs("params.lr < 1", timeout_s=0.5)
        assert time.monotonic() - started < 5
        # The session is usable afterwards, and a search within its time works.
        conn.rollback()
        assert [r.name for r in store.search_runs("params.lr < 1", timeout_s=5)] == ["r"]
    finally:
        conn.close()
        engine.dispose()
        db.dispose()


def test_the_server_ends_a_search_whose_client_was_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    """Killing `sweep runs` used to leave its query running on the server; the statement
    timeout set with the query ends it there."""
    db = Database(postgres_url)
    db.ensure_schema()
    store = TrackingStore(db)
    experiment = store.get_or_create_experiment("exp", tmp_path)
    store.create_run(experiment, "r", params={"lr": 0.1})
    db.dispose()
    engine, conn = _lock_params(postgres_url)
    try:
        cli = subprocess.Popen(
            [*SWEEP, "runs", "exp", "--filter", "params.lr < 1", "--storage", postgres_url]
            + ["--timeout", "3"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while _searches_running(postgres_url) == 0:  # the CLI is slow to import
            assert time.monotonic() < deadline and cli.poll() is None
            time.sleep(0.2)
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        gone_by = time.monotonic() + 8
        while _searches_running(postgres_url):
            assert time.monotonic() < gone_by, "the killed client's search still runs"
            time.sleep(0.2)
    finally:
        conn.close()
        engine.dispose()


def test_cli_checks_numeric_options_and_filter_size(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    for args in (
        ["--max-results", str(2**63)],
        ["--max-results", "99999999999999999999999"],
        ["--max-results", "0"],
        ["--timeout", "0"],
        ["--filter", "params.lr < 1 and " * 700 + "params.lr < 1"],
    ):
        result = run_cli("runs", "exp", *args, "--storage", store, cwd=tmp_path)
        assert result.returncode == 2, (args[0], result.stdout + result.stderr)
        assert "Traceback" not in result.stderr
        assert "Invalid value" in result.stderr or "invalid filter" in result.stderr


def test_sqlite_interrupts_a_search_past_its_timeout(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url)
    db.ensure_schema()
    store = TrackingStore(db)
    experiment = store.get_or_create_experiment("exp", tmp_path)
    for i in range(200):
        store.create_run(experiment, f"r{i}", params={f"p{j}": i + j for j in range(10)})
    text = " and ".join(f"params.p{j} >= 0" for j in range(10))
    with pytest.raises(SearchTimeoutError):
        store.search_runs(text, timeout_s=1e-6)
    # The connection goes back to the pool without the interrupting handler.
    assert len(store.search_runs(text, timeout_s=30, max_results=500)) == 200
    db.dispose()
