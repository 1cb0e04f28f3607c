"""One database handle: the engine, the session helper, the schema check, Optuna's storage."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sweep.errors import SchemaVersionError, StorageError
from sweep.storage._retrying import RetryingRDBStorage, is_transient, retry_transient
from sweep.storage._url import mask_url, normalise_url, redact

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "sweep_alembic_version"
#: Optuna's table recording the version that created its tables.
OPTUNA_VERSION_TABLE = "version_info"
#: pg_advisory_xact_lock key serialising schema creation ("sweep" in ASCII).
SCHEMA_LOCK_KEY = 0x7377656570
#: Seconds a SQLite writer waits for another process's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60
#: PostgreSQL's errors when another transaction created the same table or type first:
#: unique_violation (in its catalog), duplicate_table, duplicate_object.
CREATED_MEANWHILE_SQLSTATES = frozenset({"23505", "42P07", "42710"})

T = TypeVar("T")
StorageT = TypeVar("StorageT", bound=optuna.storages.RDBStorage)


#: Environment variable: seconds to wait for a PostgreSQL server to answer a new
#: connection (libpq's ``connect_timeout``); a ``connect_timeout`` in the URL wins.
CONNECT_TIMEOUT_ENV = "SWEEP_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S = 10


def connect_timeout_s() -> int:
    """Seconds a new PostgreSQL connection may take: ``SWEEP_CONNECT_TIMEOUT`` or 10."""
    raw = os.environ.get(CONNECT_TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise StorageError(
            f"{CONNECT_TIMEOUT_ENV}={raw!r} is not a whole number of seconds of at least 1"
        )
    return value


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local processes (controller + Ray workers) share the file: wait for
        # locks instead of failing at once.
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    # pool_pre_ping replaces connections that a database restart has closed. A server
    # that accepts TCP and never answers fails the connection after connect_timeout
    # (libpq has none by default and waits for the kernel, minutes).
    connect_args = {} if "connect_timeout=" in url else {"connect_timeout": connect_timeout_s()}
    return {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 5,
        "connect_args": connect_args,
    }


class Database:
    """A connection to the store that holds studies, runs and the model registry.

    Thread-safe: sessions are created per call. ``url`` keeps the password;
    use :attr:`display_url` for anything shown to a person.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.display_url = mask_url(self.url)
        self.is_sqlite = self.url.startswith("sqlite")
        try:
            self.engine: Engine = sqlalchemy.create_engine(self.url, **_engine_kwargs(self.url))
        except (SQLAlchemyError, ImportError) as exc:
            raise StorageError(f"cannot open the store {self.display_url}: {_short(exc)}") from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
        self._sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # Whether this process created Optuna's tables itself (at their newest schema),
        # so that opening its storage needs no check (each check loads Optuna's 40-odd
        # migration scripts: about 0.1 s of a launch on a new database).
        self._optuna_schema_made = False

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, and turns database
        errors into :class:`StorageError` without leaking the URL's password."""
        session = self._sessionmaker()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StorageError(
                f"database operation on {self.display_url} failed: {_short(exc)}"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def retrying(self, operation: Callable[[], T], what: str = "database operation") -> T:
        """Run ``operation`` again while the database is briefly unavailable (a restart,
        a dropped connection, a locked SQLite file)."""
        return retry_transient(operation, what=what)

    def check_connection(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            hint = (
                "check that the server is up and the URL is right"
                if not self.is_sqlite
                else "check that the folder is writable"
            )
            raise StorageError(
                f"cannot connect to the store {self.display_url}: {_short(exc)}; {hint}"
            ) from exc

    # -- schema ---------------------------------------------------------------------

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("version_table", VERSION_TABLE)
        return config

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()

    def head_revision(self) -> str:
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    def upgrade(self) -> None:
        """Bring sweep's tables to the newest schema (what ``sweep db upgrade`` runs)."""
        self.check_connection()
        config = self._alembic_config()
        # Two processes setting up one new database take turns; the second finds the
        # schema at head and does nothing.
        with self._schema_lock():
            # Optuna's tables first (it creates them on first use): a process that sees
            # our schema at head skips this lock and opens Optuna's storage at once, and
            # two creating Optuna's tables together collide in PostgreSQL's catalog.
            with self.engine.connect() as conn:
                fresh = not sqlalchemy.inspect(conn).has_table(OPTUNA_VERSION_TABLE)
            # Tables Optuna creates now are at its newest schema: no check needed.
            made = self._open_optuna(optuna.storages.RDBStorage, checked=fresh)
            made.engine.dispose()
            self._optuna_schema_made = fresh
            with self.engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """A PostgreSQL advisory lock, or a file lock beside a SQLite database."""
        if not self.is_sqlite:
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
                try:
                    yield
                finally:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})")
                    conn.commit()
            return
        from filelock import FileLock

        path = self.url.split(":///", 1)[-1]
        with FileLock(f"{Path(path).resolve()}.schema.lock" if path else "/tmp/sweep.schema.lock"):
            yield

    def ensure_schema(self) -> None:
        """Create the tables in a new database; refuse an old or newer schema with the fix.

        Creating is automatic so that ``sweep launch`` works on a fresh machine; upgrading
        an existing schema is a deliberate step because other users may share the store.
        """
        self.check_connection()
        current = self.schema_revision()
        head = self.head_revision()
        if current == head:
            return
        if current is None:
            self.upgrade()
            return
        script = ScriptDirectory.from_config(self._alembic_config())
        known = {rev.revision for rev in script.walk_revisions()}
        if current in known:
            raise SchemaVersionError(
                f"the store {self.display_url} has sweep schema {current}, older than this "
                f"version of sweep ({head}); upgrade it with: "
                f"sweep db upgrade --storage '{self.display_url}'"
            )
        raise SchemaVersionError(
            f"the store {self.display_url} has sweep schema {current}, newer than this "
            "version of sweep knows; upgrade sweep (pip install -U sweep)"
        )

    # -- Optuna -----------------------------------------------------------------------

    def optuna_storage(self, *, schema_ready: bool = False) -> optuna.storages.RDBStorage:
        """Optuna's RDB storage on the same database, tuned like our own engine, and
        retrying its operations while the database restarts. ``schema_ready``: whoever
        started this process checked the schema (a worker): Optuna's own table creation
        and version check are skipped (round trips a worker would make before its
        first trial)."""
        schema_ready = schema_ready or self._optuna_schema_made
        try:
            return self._open_optuna(RetryingRDBStorage, schema_ready=schema_ready)
        except (SQLAlchemyError, RuntimeError, ValueError) as exc:
            raise StorageError(
                f"cannot open the Optuna study storage at {self.display_url}: {_short(exc)}"
            ) from exc

    def _open_optuna(
        self, storage_class: type[StorageT], *, schema_ready: bool = False, checked: bool = False
    ) -> StorageT:
        """``storage_class`` (Optuna's RDB storage) on this database, tried again while
        the database is unreachable. Optuna creates its tables on first use; when a
        process that does not take turns with us (a plain Optuna script, a watcher)
        creates them at the same moment, the loser's CREATE fails once the winner
        commits, and another try finds them made. ``schema_ready``: neither create nor
        check; ``checked``: create, without the check (tables it creates are stamped
        at Optuna's newest schema)."""
        return retry_transient(
            lambda: storage_class(
                self.url,
                engine_kwargs=_engine_kwargs(self.url),
                skip_compatibility_check=schema_ready or checked,
                skip_table_creation=schema_ready,
            ),
            what="opening the Optuna storage",
            retry_if=lambda exc: is_transient(exc) or _created_meanwhile(exc),
        )

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once; it is a property of the file.
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL syncs the WAL at each commit: a finished trial survives the machine losing
    # power, not only its process dying. NORMAL (sync at checkpoints) saves about 5 ms a
    # commit but may undo every commit since the last checkpoint on a power loss, and
    # losing finished trials when a machine dies is what sweep exists to prevent.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _created_meanwhile(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's refusal of a CREATE that another transaction made
    first."""
    return (
        isinstance(exc, DBAPIError)
        and getattr(exc.orig, "sqlstate", None) in CREATED_MEANWHILE_SQLSTATES
    )


def _short(exc: BaseException) -> str:
    """The first line of a database error, without SQL and parameters (which may hold data)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__
