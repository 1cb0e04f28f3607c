"""A sweep's control state, its lease settings, and its claim lock."""

from __future__ import annotations

import enum
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, select
from sqlalchemy.orm import Session

from sweep.storage import Database, SweepRow
from sweep.study import sweep_not_found


class SweepState(str, enum.Enum):
    """A sweep's control state, in its row of ``sweep_sweeps``: whether its workers may
    start trials (``RUNNING``), wait (``PAUSED``), let running trials finish
    (``STOPPED``) or kill them (``CANCELLED``); and how its controller ended
    (``FINISHED``, ``FAILED``, ``KILLED``)."""

    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    CANCELLED = "CANCELLED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def claims(self) -> bool:
        """Whether workers may start new trials in this state."""
        return self is SweepState.RUNNING


@dataclass(frozen=True)
class LeaseSettings:
    """How often a worker beats, how long a lease outlives its last beat, and how many
    times a lost trial is retried (the spec's ``lease`` section)."""

    heartbeat_interval: float = 5.0
    timeout: float = 30.0
    max_retries: int = 1


def read_state(db: Database, sweep_name: str) -> tuple[SweepState, int | None]:
    """The sweep's control state and its budget (``n_trials``, None for no limit).

    Raises :class:`~sweep.errors.NotFoundError` when the store holds no such sweep."""
    with db.session() as session:
        row = session.get(SweepRow, sweep_name)
        if row is None:
            raise sweep_not_found(sweep_name, db.display_url)
        return SweepState(row.status), row.n_trials


# DeclarativeBase types ``__table__`` as any FromClause; SweepRow maps one Table.
_SWEEPS = cast(Table, SweepRow.__table__)
#: The sweep's state and budget, read by every claim: built once, on the table rather
#: than the mapped class, because building and running an ORM statement cost several
#: times more than the query itself.
_STATE = select(_SWEEPS.c.status, _SWEEPS.c.n_trials).where(_SWEEPS.c.name == bindparam("name"))
_STATE_LOCKED: Select[Any] = _STATE.with_for_update()


class ClaimLock:
    """The sweep's claim lock: a row lock on its ``sweep_sweeps`` row on PostgreSQL, a
    file lock beside the database file on SQLite. Every claim and every recovery of the
    sweep holds it, so they run one at a time, whichever process runs them."""

    def __init__(self, db: Database, sweep_name: str) -> None:
        self.db = db
        self.sweep_name = sweep_name
        self._file_lock = (
            _FileLock(_sqlite_path(db.url) + f".{sweep_name}.claim.lock") if db.is_sqlite else None
        )

    @contextmanager
    def held(self) -> Iterator[tuple[Session, SweepState, int | None]]:
        """Hold the lock; yields a session (one transaction) under it, and the sweep's
        state and budget read under the lock. Work done in other sessions inside is
        committed before the lock is released, so the next holder sees all of it.

        Raises :class:`~sweep.errors.NotFoundError` when the store holds no such sweep."""
        name = {"name": self.sweep_name}
        if self._file_lock is not None:
            # SQLite: a file lock, because a write transaction held here would block
            # Optuna's own connection (recovery reads the lost trial through it).
            with self._file_lock, self.db.session() as session:
                yield (session, *self._state_of(session.execute(_STATE, name).first()))
            return
        with self.db.session() as session:
            row = session.execute(_STATE_LOCKED, name).first()
            yield (session, *self._state_of(row))

    def _state_of(self, row: Any) -> tuple[SweepState, int | None]:
        if row is None:
            raise sweep_not_found(self.sweep_name, self.db.display_url)
        return SweepState(row[0]), row[1]


class _FileLock:
    """An exclusive ``flock`` on a file kept open, shared by this process's threads
    through a thread lock. Every claim on SQLite takes it: the ``filelock`` package,
    which opens the file anew and logs at each acquire, cost a claim about 0.4 ms."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():
                # A forked child opens its own: a descriptor it inherited shares its
                # parent's lock rather than excluding it.
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _sqlite_path(url: str) -> str:
    path = url.split(":///", 1)[1] if ":///" in url else "sweep.db"
    return str(Path(path).resolve()) if path and path != ":memory:" else "/tmp/sweep-memory"
