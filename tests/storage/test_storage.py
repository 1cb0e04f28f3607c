"""The storage suite: schema, tracking store and registry, run against every backend."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sklearn.linear_model import LinearRegression

import sweep
from sweep.errors import (
    ArtifactPathError,
    NotFoundError,
    RegistryError,
    SchemaVersionError,
    StorageError,
)
from sweep.registry import CHALLENGER, DatasetInput, ModelRegistry
from sweep.storage import Database, _database
from sweep.storage._database import VERSION_TABLE
from sweep.storage.schema import Base, ModelVersionRow, RunInputRow
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


def test_a_store_shows_our_schema_at_head_only_once_optunas_tables_are_there(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second launch on a new store that finds our schema at head opens Optuna's
    # storage without waiting its turn; had Optuna's tables still been in the making,
    # its own create_all collided with them ("duplicate key ... pg_type").
    database = Database(storage_url)
    optuna_tables_before_head: list[bool] = []

    def upgrade(config: Any, revision: str) -> None:
        optuna_tables_before_head.append(sqlalchemy.inspect(database.engine).has_table("trials"))
        real_upgrade(config, revision)

    real_upgrade = _database.command.upgrade
    monkeypatch.setattr(_database.command, "upgrade", upgrade)
    database.ensure_schema()
    database.dispose()
    assert optuna_tables_before_head == [True]


def test_a_store_is_set_up_while_another_process_creates_optunas_tables(
    postgres_url: str,
) -> None:
    # A plain Optuna process (or a watcher) creates Optuna's tables in the new database
    # at the same moment; ours waits on its uncommitted CREATE, which then collides in
    # PostgreSQL's catalog once it commits. Setting up must try again, not fail.
    from optuna.storages._rdb import models

    other = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    conn = other.connect()
    transaction = conn.begin()
    models.BaseModel.metadata.create_all(conn)  # not committed yet
    setup_errors: list[BaseException] = []

    def set_up() -> None:
        database = Database(postgres_url)
        try:
            database.ensure_schema()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            setup_errors.append(exc)
        finally:
            database.dispose()

    setting_up = threading.Thread(target=set_up)
    setting_up.start()
    time.sleep(1.0)  # ours is now blocked on the other's CREATE
    transaction.commit()
    conn.close()
    other.dispose()
    setting_up.join(timeout=60)
    assert not setting_up.is_alive() and setup_errors == []
    database = Database(postgres_url)
    assert database.schema_revision() == database.head_revision()
    database.optuna_storage().engine.dispose()
    database.dispose()


def test_optunas_tables_made_here_go_unchecked_and_those_an_older_optuna_made_are_refused(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.storages._rdb.storage import _VersionManager

    heads: list[str] = []  # each one loads Optuna's 40-odd migration scripts
    real_head = _VersionManager.get_head_version
    monkeypatch.setattr(
        _VersionManager, "get_head_version", lambda self: heads.append(real_head(self)) or heads[-1]
    )
    database = Database(storage_url)
    database.ensure_schema()
    database.optuna_storage().engine.dispose()
    database.dispose()
    assert len(heads) == 1  # to stamp the tables made here, not to check them
    # Optuna's tables as an older Optuna left them, under sweep's schema at head.
    with database.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'v2.4.0.a'")
    later = Database(storage_url)
    later.ensure_schema()
    with pytest.raises(StorageError, match="optuna storage upgrade"):
        later.optuna_storage()
    later.dispose()


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


def test_rows_written_in_one_statement_end_as_if_written_one_by_one(
    db: Database, store: TrackingStore, tmp_path: Path
) -> None:
    # PostgreSQL gets many rows as one statement of arrays; the outcome must be that of
    # writing them one after the other, as SQLite does.
    from sweep.storage.sql import insert_rows, upsert
    from sweep.tracking._rows import LATEST_METRIC_TABLE as _LATEST_METRIC_TABLE
    from sweep.tracking._rows import METRIC_TABLE as _METRIC_TABLE
    from sweep.tracking._rows import TAG_TABLE as _TAG_TABLE

    experiment = store.get_or_create_experiment("exp", tmp_path / "artifacts")
    run_id = store.create_run(experiment, "trial-0").run_id
    point = {"run_id": run_id, "key": "acc", "timestamp": 1000}
    with db.session() as session:
        tags = [("k", "first"), ("other", "x"), ("k", "second"), ("quote", "a'b\"c{},")]
        upsert(
            session,
            _TAG_TABLE,
            [{"run_id": run_id, "key": k, "value": v} for k, v in tags],
            ("run_id", "key"),
        )
        # The latest point: the highest step, the last given among equal steps.
        steps = [(5, 0.5), (3, 0.3), (5, 0.55), (4, 0.4)]
        upsert(
            session,
            _LATEST_METRIC_TABLE,
            [{**point, "step": s, "value": v} for s, v in steps],
            ("run_id", "key"),
            only_if_step_not_lower=True,
        )
        # A float column given ints and floats together.
        values = [1, 2.5, -3]
        insert_rows(
            session, _METRIC_TABLE, [{**point, "step": i, "value": v} for i, v in enumerate(values)]
        )
    with db.session() as session:  # a later, lower step leaves the latest as it is
        upsert(
            session,
            _LATEST_METRIC_TABLE,
            [{**point, "step": 4, "value": 0.9}],
            ("run_id", "key"),
            only_if_step_not_lower=True,
        )
    run = store.get_run(run_id)
    assert run.tags == {"k": "second", "other": "x", "quote": "a'b\"c{},"}
    assert run.metrics == {"acc": 0.55}
    history = [(p.step, p.value) for p in store.metric_history(run_id, "acc")]
    assert history == [(0, 1.0), (1, 2.5), (2, -3.0)]


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
    model = sweep.load_model("models:/toy/1", storage=storage_url)
    assert model.predict([[1.0]])[0] == pytest.approx(1.0)

    events = [(e.action, e.alias, e.from_version, e.to_version) for e in registry.history("toy")]
    assert events == [
        ("register", None, None, 1),
        ("register", None, None, 2),
        ("set_alias", "challenger", None, 1),
        ("set_alias", "challenger", 1, 2),
    ]
    assert registry.history("toy")[-1].reason == "better"

    registry.delete_alias("toy", "challenger", reason="withdrawn")
    with pytest.raises(NotFoundError, match="no alias 'challenger'"):
        registry.resolve("models:/toy@challenger")
    with pytest.raises(NotFoundError, match="no alias 'challenger'.*sweep models show toy"):
        registry.delete_alias("toy", "challenger")
    assert registry.history("toy")[-1].action == "delete_alias"
    assert registry.history("toy")[-1].reason == "withdrawn"
    with pytest.raises(NotFoundError, match="no version 9"):
        registry.set_alias("toy", "champion", 9)
    with pytest.raises(NotFoundError, match="no registered model 'nope'.*sweep models list"):
        registry.resolve("models:/nope@champion")
    with pytest.raises(sweep.RegistryError, match="not a model URI"):
        registry.resolve("toy@champion")


def test_any_alias_a_user_names_is_set_moved_deleted_and_loads(
    db: Database, store: TrackingStore, tmp_path: Path, storage_url: str
) -> None:
    registry = ModelRegistry(db)
    for coef in (1.0, 2.0):
        _model_version(db, store, tmp_path, coef)
    registry.set_alias("toy", "staging-eu.v2", 1, reason="canary")
    registry.set_alias("toy", "staging-eu.v2", 2, reason="canary passed")
    registry.set_alias("toy", "shadow", 2)
    assert registry.get_version("toy", 2).aliases == ("shadow", "staging-eu.v2")
    assert registry.get_model("toy").aliases == {"shadow": 2, "staging-eu.v2": 2}
    model = sweep.load_model("models:/toy@staging-eu.v2", storage=storage_url)
    assert model.predict([[1.0]])[0] == pytest.approx(2.0)

    registry.delete_alias("toy", "shadow")
    assert registry.get_version("toy", 2).aliases == ("staging-eu.v2",)
    with pytest.raises(NotFoundError, match="no alias 'shadow'"):
        sweep.load_model("models:/toy@shadow", storage=storage_url)
    for bad in ("a/b", "a@b", "with space", ""):
        with pytest.raises(RegistryError, match="not a valid alias"):
            registry.set_alias("toy", bad, 1)
    moves = [
        (e.action, e.alias, e.from_version, e.to_version, e.reason) for e in registry.history("toy")
    ]
    assert moves[2:] == [
        ("set_alias", "staging-eu.v2", None, 1, "canary"),
        ("set_alias", "staging-eu.v2", 1, 2, "canary passed"),
        ("set_alias", "shadow", None, 2, None),
        ("delete_alias", "shadow", 2, None, None),
    ]


def test_version_tags_and_descriptions_are_set_later_and_audited(db: Database) -> None:
    registry = ModelRegistry(db)
    registry.create_model_version("toy", "/models/1", tags={"framework": "sklearn"})
    assert registry.set_version_tag("toy", 1, "stage", "qa", reason="handed to QA").tags == {
        "framework": "sklearn",
        "stage": "qa",
    }
    registry.set_version_tag("toy", 1, "stage", "approved")
    registry.set_version_tag("toy", 1, "latency_ms", 12.5)
    registry.delete_version_tag("toy", 1, "framework", reason="wrong")
    registry.set_version_description("toy", 1, "baseline, trained on the 2026 split")
    registry.set_model_description("toy", "digits classifier", reason="for the catalogue")

    version = registry.get_version("toy", 1)
    assert version.tags == {"latency_ms": "12.5", "stage": "approved"}
    assert version.description == "baseline, trained on the 2026 split"
    assert registry.get_model("toy").description == "digits classifier"
    assert [m.description for m in registry.list_models()] == ["digits classifier"]
    registry.set_version_description("toy", 1, "")  # empty removes it
    assert registry.get_version("toy", 1).description is None

    events = registry.history("toy")
    assert [(e.action, e.tag, e.alias, e.to_version, e.reason) for e in events] == [
        ("register", None, None, 1, None),
        ("set_tag", "stage", None, 1, "handed to QA"),
        ("set_tag", "stage", None, 1, None),
        ("set_tag", "latency_ms", None, 1, None),
        ("delete_tag", "framework", None, 1, "wrong"),
        ("set_description", None, None, 1, None),
        ("set_description", None, None, None, "for the catalogue"),
        ("set_description", None, None, 1, None),
    ]
    assert all(e.user and e.host and e.at > 0 for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)

    with pytest.raises(NotFoundError, match="no tag 'nope'.*sweep models show toy"):
        registry.delete_version_tag("toy", 1, "nope")
    with pytest.raises(NotFoundError, match="no version 7.*sweep models show toy"):
        registry.set_version_tag("toy", 7, "stage", "qa")
    with pytest.raises(NotFoundError, match="no version 7.*sweep models show toy"):
        registry.set_version_description("toy", 7, "x")
    with pytest.raises(NotFoundError, match="no registered model 'nope'.*sweep models list"):
        registry.set_model_description("nope", "x")
    with pytest.raises(NotFoundError, match="no registered model 'nope'.*sweep models list"):
        registry.history("nope")
    with pytest.raises(RegistryError, match="tag key"):
        registry.set_version_tag("toy", 1, "", "x")
    assert len(registry.history("toy")) == len(events)  # refused changes leave no event


def test_a_version_is_immutable_apart_from_tags_and_description(db: Database) -> None:
    registry = ModelRegistry(db)
    registry.create_model_version("toy", "/models/1", metric_name="acc", metric_value=0.9)
    changes = (("source", "/elsewhere"), ("metric_value", 0.99), ("run_id", "f" * 32))
    for column, value in changes:
        with (
            pytest.raises(RegistryError, match=f"immutable; cannot change {column}"),
            db.session() as session,
        ):
            row = session.get(ModelVersionRow, ("toy", 1))
            assert row is not None
            setattr(row, column, value)
    version = registry.get_version("toy", 1)
    assert (version.source, version.metric_value, version.run_id) == ("/models/1", 0.9, None)


def test_lineage_leads_back_to_sweep_trial_params_code_and_data(
    db: Database, store: TrackingStore, tmp_path: Path
) -> None:
    experiment = store.get_or_create_experiment("exp", tmp_path / "art")
    parent = store.create_run(experiment, "digits", params={"sampler": "tpe"})
    run = store.create_run(
        experiment,
        "trial-3",
        parent_run_id=parent.run_id,
        params={"lr": 0.01, "penalty": "l2"},
        tags={
            "sweep.sweep": "digits",
            "sweep.trial_number": 3,
            "sweep.git.commit": "0123abcd",
            "sweep.git.branch": "main",
            "sweep.git.dirty": "true",
            "sweep.host": "not-lineage",
        },
    )
    with db.session() as session:  # what sweep.log_input records
        for name, context, digest in (
            ("digits-train", "training", "sha256:aa"),
            ("digits-val", "validation", "sha256:bb"),
        ):
            session.add(
                RunInputRow(
                    run_id=run.run_id,
                    name=name,
                    context=context,
                    digest=digest,
                    source=f"s3://data/{name}.parquet",
                    created_at=1,
                )
            )
    registry = ModelRegistry(db)
    registry.create_model_version(
        "toy",
        "/models/1",
        run_id=run.run_id,
        metric_name="acc",
        metric_value=0.93,
        sweep_name="digits",
        trial_number=3,
    )
    # Registered by hand from the same run: sweep and trial come from the run's tags.
    registry.create_model_version("toy", "/models/2", run_id=run.run_id)
    registry.create_model_version("toy", "/models/3")  # no run at all

    first = registry.lineage("toy", 1)
    assert (first.sweep_name, first.trial_number, first.run_id, first.parent_run_id) == (
        "digits",
        3,
        run.run_id,
        parent.run_id,
    )
    assert first.params == {"lr": "0.01", "penalty": "l2"}
    assert (first.metric_name, first.metric_value) == ("acc", 0.93)
    assert (first.git_commit, first.git_branch, first.git_dirty) == ("0123abcd", "main", True)
    assert first.datasets == (
        DatasetInput("digits-train", "training", "sha256:aa", "s3://data/digits-train.parquet"),
        DatasetInput("digits-val", "validation", "sha256:bb", "s3://data/digits-val.parquet"),
    )
    by_hand, bare = registry.lineages("toy")[1:]
    assert (by_hand.sweep_name, by_hand.trial_number, by_hand.git_commit) == (
        "digits",
        3,
        "0123abcd",
    )
    assert (bare.run_id, bare.sweep_name, bare.params, bare.datasets, bare.git_dirty) == (
        None,
        None,
        {},
        (),
        None,
    )
    with pytest.raises(NotFoundError, match="no version 4"):
        registry.lineage("toy", 4)
    with pytest.raises(NotFoundError, match="no registered model"):
        registry.lineages("nope")


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


#: How long each racer holds its promotion open after reading @challenger.
HOLD_S = 1.0


def _promote_in_child(url: str, start_line: Any, results: Any) -> None:
    """Promote ``toy`` once the other racer is ready too, holding the transaction open
    for HOLD_S after reading @challenger, so that the two promotions surely overlap:
    without the lock both would read the same challenger and both would promote."""
    registry = ModelRegistry(Database(url))
    registry.db.check_connection()
    from sweep.registry import _rows

    read_alias = _rows.alias_version

    def slow_read(session: Any, model_name: str, alias: str) -> int | None:
        version = read_alias(session, model_name, alias)
        if alias == CHALLENGER:
            time.sleep(HOLD_S)
        return version

    _rows.alias_version = slow_read
    start_line.wait(timeout=60)
    started = time.time()
    try:
        outcome: Any = registry.promote("toy").version
    except sweep.SweepError as exc:
        outcome = type(exc).__name__
    results.put((str(outcome), started, time.time()))


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
    start_line = context.Barrier(2)
    racers = [
        context.Process(target=_promote_in_child, args=(storage_url, start_line, results))
        for _ in "ab"
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=120)
    (winner, won_at, winner_done), (loser, lost_at, loser_done) = sorted(
        results.get(timeout=10) for _ in racers
    )
    assert (winner, loser) == ("2", "NotFoundError")  # the other found no challenger
    # They raced: both promotions were in flight at once, and the loser could only read
    # @challenger once the winner's transaction had committed.
    assert max(won_at, lost_at) < min(winner_done, loser_done)
    assert loser_done >= winner_done
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
    promotions = [e for e in registry.history("toy") if e.alias == "champion"]
    assert [(e.from_version, e.to_version) for e in promotions] == [(None, 1), (1, 2)]


def test_a_saved_0001_database_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    """`sweep db upgrade` on a store written by the first release: nothing is lost, old
    numeric params become searchable numbers, the latest metrics are filled in."""
    import shutil

    old = tmp_path / "old.db"
    shutil.copy(Path(__file__).parents[1] / "assets" / "sweep-0001.db", old)
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


def test_upgrading_moves_old_tag_events_keys_out_of_the_alias_column(tmp_path: Path) -> None:
    """Stores written before revision 0004 kept a tag event's key in ``alias``; the
    upgrade moves it to ``tag`` and leaves alias events alone."""
    import shutil
    import sqlite3

    old = tmp_path / "old.db"
    shutil.copy(Path(__file__).parents[1] / "assets" / "sweep-0001.db", old)
    # The audit rows the first release wrote for: register, tag, alias, untag.
    with sqlite3.connect(old) as conn:
        conn.execute("INSERT INTO sweep_registered_models VALUES ('toy', NULL, 1)")
        conn.execute(
            "INSERT INTO sweep_model_versions (model_name, version, source, created_at) "
            "VALUES ('toy', 1, '/models/1', 1)"
        )
        conn.executemany(
            "INSERT INTO sweep_registry_events "
            "(model_name, action, alias, from_version, to_version, user, host, reason, at) "
            "VALUES ('toy', ?, ?, ?, ?, 'ann', 'box', NULL, ?)",
            [
                ("register", None, None, 1, 10),
                ("set_tag", "stage", None, 1, 11),
                ("set_alias", "champion", None, 1, 12),
                ("delete_tag", "stage", None, 1, 13),
            ],
        )
    database = Database(f"sqlite:///{old}")
    database.upgrade()
    assert database.schema_revision() == database.head_revision()
    registry = ModelRegistry(database)
    events = [(e.action, e.alias, e.tag) for e in registry.history("toy")]
    assert events == [
        ("register", None, None),
        ("set_tag", None, "stage"),
        ("set_alias", "champion", None),
        ("delete_tag", None, "stage"),
    ]
    registry.set_version_tag("toy", 1, "qa", "ok")  # new events land in the new column
    with database.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT action, alias, tag FROM sweep_registry_events ORDER BY id"
        ).all()
    assert rows[-1] == ("set_tag", None, "qa")
    assert [r for r in rows if r[0].endswith("_tag") and r[1] is not None] == []
    database.dispose()
