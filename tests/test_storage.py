"""The storage suite: schema, tracking store and registry, run against every backend."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sklearn.linear_model import LinearRegression

import sweep
from sweep.errors import ArtifactPathError, NotFoundError, SchemaVersionError, StorageError
from sweep.registry import ModelRegistry
from sweep.storage import Database
from sweep.storage._database import VERSION_TABLE
from sweep.storage._schema import Base
from sweep.tracking import ActiveRun, MetricPoint, RunStatus, TrackingStore, activate


@pytest.fixture
def db(storage_url: str) -> Database:
    database = Database(storage_url)
    database.ensure_schema()
    yield database
    database.dispose()


@pytest.fixture
def store(db: Database) -> TrackingStore:
    return TrackingStore(db)


def test_schema_is_created_once_and_matches_the_models(db: Database) -> None:
    db.ensure_schema()  # a second start changes nothing
    assert db.schema_revision() == db.head_revision()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, type_, _p: (
                    type_ != "table" or (name.startswith("sweep_") and name != VERSION_TABLE)
                )
            },
        )
        assert compare_metadata(context, Base.metadata) == []


def test_an_old_schema_is_refused_with_the_upgrade_command(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = 'ffffffff'")
    with pytest.raises(SchemaVersionError, match="newer than this version"):
        db.ensure_schema()


def test_unreachable_postgres_error_hides_the_password() -> None:
    database = Database("postgresql+psycopg://bob:s3cret-pw@127.0.0.1:1/nowhere")
    with pytest.raises(StorageError) as info:
        database.ensure_schema()
    assert "s3cret-pw" not in str(info.value)
    assert "bob:***@127.0.0.1:1/nowhere" in str(info.value)


def test_nested_runs_with_params_metrics_tags(store: TrackingStore, tmp_path: Path) -> None:
    experiment = store.get_or_create_experiment("exp", tmp_path / "artifacts")
    assert store.get_or_create_experiment("exp", tmp_path / "elsewhere") == experiment
    parent = store.create_run(experiment, "sweep", params={"sampler": "tpe"})
    child = store.create_run(
        experiment, "trial-0", parent_run_id=parent.run_id, params={"lr": 0.1}, tags={"a": "b"}
    )
    store.log_metrics(
        child.run_id,
        [MetricPoint("acc", v, step, 1000 + step) for step, v in enumerate([0.5, 0.7, 0.6])],
    )
    store.log_params(child.run_id, {"batch": 32})
    store.set_tags(child.run_id, {"a": "c", "note": "x" * 10_000})
    assert store.end_run(child.run_id, RunStatus.FINISHED)
    assert not store.end_run(child.run_id, RunStatus.FAILED)  # finished runs stay finished

    run = store.get_run(child.run_id)
    assert run.parent_run_id == parent.run_id
    assert run.status is RunStatus.FINISHED and run.end_time is not None
    assert run.params == {"lr": "0.1", "batch": "32"}
    assert run.tags["a"] == "c" and run.tags["note"].endswith("[truncated]")
    assert run.metrics == {"acc": 0.6}  # the latest step
    assert [(p.step, p.value) for p in store.metric_history(child.run_id, "acc")] == [
        (0, 0.5),
        (1, 0.7),
        (2, 0.6),
    ]
    children = store.list_runs(parent_run_id=parent.run_id)
    assert [r.run_id for r in children] == [child.run_id]
    assert store.end_running_children(parent.run_id, RunStatus.KILLED) == 0
    with pytest.raises(NotFoundError):
        store.get_run("0" * 32)


def test_running_children_end_killed(store: TrackingStore, tmp_path: Path) -> None:
    experiment = store.get_or_create_experiment("exp", tmp_path)
    parent = store.create_run(experiment, "sweep")
    running = [store.create_run(experiment, f"t{i}", parent_run_id=parent.run_id) for i in range(3)]
    store.end_run(running[0].run_id, RunStatus.FINISHED)
    assert store.end_running_children(parent.run_id, RunStatus.KILLED) == 2
    statuses = {r.name: r.status for r in store.list_runs(parent_run_id=parent.run_id)}
    assert statuses == {"t0": RunStatus.FINISHED, "t1": RunStatus.KILLED, "t2": RunStatus.KILLED}


def test_logging_api_buffers_and_flushes_on_exit(store: TrackingStore, tmp_path: Path) -> None:
    experiment = store.get_or_create_experiment("exp", tmp_path / "art")
    run = store.create_run(experiment, "r")
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    with activate(ActiveRun(store, run)):
        for step in range(50):
            sweep.log_metric("loss", 1.0 / (step + 1))
        sweep.log_metric("loss", float("nan"))  # dropped: not every backend stores NaN
        sweep.log_param("depth", 3)
        sweep.set_tag("kind", "demo")
        stored = sweep.log_artifact(source, "docs/notes.txt")
        with pytest.raises(ArtifactPathError):
            sweep.log_artifact(source, "../escape.txt")
        with pytest.raises(ArtifactPathError):
            sweep.log_artifact(source, "/etc/passwd")
    history = store.metric_history(run.run_id, "loss")
    assert [p.step for p in history] == list(range(50))
    loaded = store.get_run(run.run_id)
    assert loaded.params == {"depth": "3"} and loaded.tags == {"kind": "demo"}
    assert Path(stored).read_text() == "hello"
    assert Path(stored).is_relative_to(Path(run.artifact_uri))
    assert [(a.path, a.kind, a.size) for a in store.list_artifacts(run.run_id)] == [
        ("docs/notes.txt", "file", 5)
    ]
    assert not (tmp_path / "art" / "escape.txt").exists()


def test_logging_outside_a_run_says_what_to_do() -> None:
    with pytest.raises(sweep.NoActiveRunError, match="inside an objective"):
        sweep.log_metric("x", 1.0)


def _model_version(db: Database, store: TrackingStore, tmp_path: Path, coef: float):
    experiment = store.get_or_create_experiment("exp", tmp_path / "art")
    run = store.create_run(experiment, "trial")
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, coef])
    with activate(ActiveRun(store, run)):
        sweep.log_model(model)
    registry = ModelRegistry(db)
    return registry.create_model_version(
        "toy",
        str(Path(run.artifact_uri) / "model"),
        run_id=run.run_id,
        metric_name="acc",
        metric_value=coef,
        trial_number=int(coef),
    )


def test_registry_versions_aliases_and_audit(
    db: Database, store: TrackingStore, tmp_path: Path, storage_url: str
) -> None:
    registry = ModelRegistry(db)
    v1 = _model_version(db, store, tmp_path, 1.0)
    v2 = _model_version(db, store, tmp_path, 2.0)
    assert (v1.version, v2.version) == (1, 2)
    registry.set_alias("toy", "challenger", 1)
    registry.set_alias("toy", "challenger", 2, reason="better")
    assert registry.get_by_alias("toy", "challenger").version == 2
    assert registry.resolve("models:/toy/1").run_id == v1.run_id
    assert registry.get_version("toy", 2).aliases == ("challenger",)

    model = sweep.load_model("models:/toy@challenger", storage=storage_url)
    assert model.predict([[1.0]])[0] == pytest.approx(2.0)

    events = [(e.action, e.alias, e.from_version, e.to_version) for e in registry.history("toy")]
    assert events == [
        ("register", None, None, 1),
        ("register", None, None, 2),
        ("set_alias", "challenger", None, 1),
        ("set_alias", "challenger", 1, 2),
    ]
    assert registry.history("toy")[-1].reason == "better"

    registry.delete_alias("toy", "challenger")
    with pytest.raises(NotFoundError, match="no alias 'challenger'"):
        registry.resolve("models:/toy@challenger")
    with pytest.raises(NotFoundError, match="no version 9"):
        registry.set_alias("toy", "champion", 9)
    with pytest.raises(sweep.RegistryError, match="not a model URI"):
        registry.resolve("toy@champion")


def test_sqlite_default_store_lives_under_sweep_home(tmp_path: Path) -> None:
    from sweep.storage import resolve_storage_url

    url = resolve_storage_url()
    assert url == f"sqlite:///{tmp_path / 'home' / 'sweep.db'}"
    assert resolve_storage_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(StorageError, match="unsupported database"):
        resolve_storage_url("mysql://u@h/db")
    assert isinstance(sqlalchemy.engine.make_url(url), sqlalchemy.engine.URL)


def test_promote_and_rollback_move_aliases_with_an_audit_trail(
    db: Database, store: TrackingStore, tmp_path: Path
) -> None:
    registry = ModelRegistry(db)
    for coef in (1.0, 2.0, 3.0):
        _model_version(db, store, tmp_path, coef)
    with pytest.raises(NotFoundError, match="no @challenger to promote"):
        registry.promote("toy")

    registry.set_alias("toy", "challenger", 1)
    assert registry.promote("toy").version == 1
    registry.set_alias("toy", "challenger", 2)
    assert registry.promote("toy", reason="better on holdout").version == 2
    aliases = {a: registry.get_by_alias("toy", a).version for a in ("champion", "rollback")}
    assert aliases == {"champion": 2, "rollback": 1}
    with pytest.raises(NotFoundError):
        registry.get_by_alias("toy", "challenger")  # moved, not copied

    assert registry.rollback("toy", reason="latency regression").version == 1
    assert registry.get_by_alias("toy", "champion").version == 1
    with pytest.raises(NotFoundError, match="no @rollback"):
        registry.rollback("toy")

    moves = [
        (e.action, e.alias, e.from_version, e.to_version, e.reason)
        for e in registry.history("toy")
        if e.action != "register"
    ]
    assert moves[-5:] == [
        ("set_alias", "rollback", None, 1, "better on holdout"),
        ("set_alias", "champion", 1, 2, "better on holdout"),
        ("delete_alias", "challenger", 2, None, "better on holdout"),
        ("set_alias", "champion", 2, 1, "latency regression"),
        ("delete_alias", "rollback", 1, None, "latency regression"),
    ]
    event = registry.history("toy")[-1]
    assert event.user and event.host and event.at > 0


def _promote_in_child(url: str, results: Any) -> None:
    try:
        results.put(ModelRegistry(Database(url)).promote("toy").version)
    except sweep.SweepError as exc:
        results.put(type(exc).__name__)


def test_racing_promotions_leave_one_champion(
    db: Database, store: TrackingStore, tmp_path: Path, storage_url: str
) -> None:
    registry = ModelRegistry(db)
    for coef in (1.0, 2.0):
        _model_version(db, store, tmp_path, coef)
    registry.set_alias("toy", "champion", 1)
    registry.set_alias("toy", "challenger", 2)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    racers = [context.Process(target=_promote_in_child, args=(storage_url, results)) for _ in "ab"]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=120)
    outcomes = sorted(str(results.get(timeout=10)) for _ in racers)
    assert outcomes == ["2", "NotFoundError"]  # one promoted, the other found no challenger
    assert registry.get_by_alias("toy", "champion").version == 2
    assert registry.get_by_alias("toy", "rollback").version == 1
    assert {a for v in registry.list_versions("toy") for a in v.aliases} == {
        "champion",
        "rollback",
    }
    listed = registry.list_models()
    assert [(m.name, m.latest_version, m.aliases) for m in listed] == [
        ("toy", 2, {"champion": 2, "rollback": 1})
    ]


def test_a_saved_0001_database_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    """`sweep db upgrade` on a store written by the first release: nothing is lost, old
    numeric params become searchable numbers, the latest metrics are filled in."""
    import shutil

    old = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "assets" / "sweep-0001.db", old)
    database = Database(f"sqlite:///{old}")
    with pytest.raises(SchemaVersionError, match="sweep db upgrade"):
        database.ensure_schema()
    database.upgrade()
    assert database.schema_revision() == database.head_revision()
    run = TrackingStore(database).get_run("33b67a5a737b4942be260979fedb008c")
    assert run.params == {"lr": "0.01", "opt": "sgd"} and run.tags == {"team": "a"}
    # acc: step 2 was logged twice; the later point wins.
    assert run.metrics == {"acc": 0.6, "loss": 1.0}
    with database.engine.connect() as conn:
        numbers = dict(conn.exec_driver_sql("SELECT key, value_num FROM sweep_params").all())
    assert numbers == {"lr": 0.01, "opt": None}
    database.dispose()
