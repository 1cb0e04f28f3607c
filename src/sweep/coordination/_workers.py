"""The processes working on a sweep: their registration, their heartbeats, and the
renewal of their trials' leases that a heartbeat carries."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update

from sweep.coordination._state import LeaseSettings, SweepState
from sweep.storage import Database, SweepRow, TrialLeaseRow, WorkerRow
from sweep.tracking import now_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredWorker:
    """A process registered with a sweep (a controller, a Ray worker or an agent's
    worker), as its row in ``sweep_workers`` says: times in ms since the epoch."""

    worker_id: str
    kind: str
    host: str
    pid: int
    gpus: str | None
    started_at: int
    heartbeat_at: int
    stopped_at: int | None


class WorkerRegistry:
    """Registration and heartbeats of one sweep's workers, in ``sweep_workers``."""

    def __init__(self, db: Database, sweep_name: str, settings: LeaseSettings) -> None:
        self.db = db
        self.sweep_name = sweep_name
        self.settings = settings

    def register(self, kind: str, *, gpus: str | None = None, worker_id: str | None = None) -> str:
        """Register this process as a worker of ``kind`` (under ``worker_id``, or a new
        id); returns its id."""
        worker_id = worker_id or uuid.uuid4().hex
        now = now_ms()
        row = WorkerRow(
            worker_id=worker_id,
            sweep_name=self.sweep_name,
            kind=kind,
            host=socket.gethostname(),
            pid=os.getpid(),
            gpus=gpus,
            started_at=now,
            heartbeat_at=now,
        )

        def insert() -> None:
            with self.db.session() as session:
                session.merge(row)

        self.db.retrying(insert, "registering a worker")
        return worker_id

    def unregister(self, worker_id: str) -> None:
        """Mark the worker stopped (its row stays, for `sweep status`)."""

        def mark() -> None:
            with self.db.session() as session:
                session.execute(
                    update(WorkerRow)
                    .where(WorkerRow.worker_id == worker_id)
                    .values(stopped_at=now_ms())
                )

        self.db.retrying(mark, "unregistering a worker")

    def beat(self, worker_id: str) -> SweepState:
        """Renew the worker's heartbeat and the leases of its trials; return the state
        (CANCELLED when the sweep is gone)."""
        now = now_ms()
        with self.db.session() as session:
            session.execute(
                update(WorkerRow).where(WorkerRow.worker_id == worker_id).values(heartbeat_at=now)
            )
            session.execute(
                update(TrialLeaseRow)
                .where(TrialLeaseRow.worker_id == worker_id)
                .values(renewed_at=now)
            )
            status = session.scalar(select(SweepRow.status).where(SweepRow.name == self.sweep_name))
        return SweepState(status) if status else SweepState.CANCELLED

    def workers(self, *, alive_only: bool = False) -> list[RegisteredWorker]:
        """The sweep's workers, oldest first; with ``alive_only``, those not stopped
        that beat within the lease timeout."""
        cutoff = now_ms() - int(self.settings.timeout * 1000)
        with self.db.session() as session:
            stmt = select(WorkerRow).where(WorkerRow.sweep_name == self.sweep_name)
            if alive_only:
                stmt = stmt.where(WorkerRow.stopped_at.is_(None), WorkerRow.heartbeat_at >= cutoff)
            return [_registered(r) for r in session.scalars(stmt.order_by(WorkerRow.started_at))]


class Beats(Protocol):
    """What a :class:`Heartbeat` beats through (a :class:`~sweep.coordination.Coordinator`)."""

    @property
    def settings(self) -> LeaseSettings: ...

    def beat(self, worker_id: str) -> SweepState: ...


class Heartbeat:
    """A daemon thread renewing one worker's heartbeat and leases every interval; the
    latest control state it read is in :attr:`state`."""

    def __init__(self, coordinator: Beats, worker_id: str) -> None:
        self.coordinator = coordinator
        self.worker_id = worker_id
        self.state = SweepState.RUNNING
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = self.coordinator.settings.heartbeat_interval
        while not self._stop.wait(interval):
            try:
                self.state = self.coordinator.beat(self.worker_id)
            except Exception as exc:  # the database is down: keep trying, the lease decides
                logger.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _registered(row: WorkerRow) -> RegisteredWorker:
    return RegisteredWorker(
        row.worker_id,
        row.kind,
        row.host,
        row.pid,
        row.gpus,
        row.started_at,
        row.heartbeat_at,
        row.stopped_at,
    )
