"""How the processes working on one sweep coordinate through the database alone.

A controller and any number of agents, on any machines, share a sweep through four
things kept in the store:

* **Trial slots.** :meth:`Coordinator.claim` hands out the next trial (a retry waiting
  to run, or a new one) only while the global budget ``n_trials`` has room, holding the
  sweep's *claim lock* (a row lock on PostgreSQL, a file lock beside a SQLite file), so
  the budget is exact whatever number of processes claim at once.
* **Leases.** Every running trial has a lease row that its worker's :class:`Heartbeat`
  renews. A lease not renewed for ``lease.timeout`` seconds means the worker died: the
  trial is failed with the reason, its run ends FAILED, and, while the retry policy
  allows, a retry with the same params waits for the next free worker.
* **Workers.** Each process registers itself (host, pid, GPUs) and beats; `sweep status`
  shows them.
* **Control state.** ``RUNNING``, ``PAUSED`` (claim nothing, keep waiting), ``STOPPED``
  (claim nothing, let running trials finish), ``CANCELLED`` (kill running trials);
  ``FINISHED``, ``FAILED`` and ``KILLED`` record how a controller ended.

Budget accounting: a trial uses budget unless it was killed by a stop (``sweep:killed``)
or superseded by its retry (``sweep:superseded``), so retries never grow the sweep.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from sqlalchemy import delete, select, text, update

from sweep.errors import NotFoundError
from sweep.storage import Database
from sweep.storage._schema import SweepRow, TrialLeaseRow, WorkerRow
from sweep.study import ERROR_ATTR, KILLED_ATTR, RUN_ID_ATTR, SUPERSEDED_ATTR
from sweep.tracking import RunStatus, TrackingStore
from sweep.tracking._store import now_ms

logger = logging.getLogger(__name__)

#: Trial system attributes of a retry: the number of the trial it retries, its attempt.
RETRY_OF_ATTR = "sweep:retry_of"
ATTEMPT_ATTR = "sweep:attempt"
#: Optuna's own attribute for the params a waiting trial must use.
FIXED_PARAMS_ATTR = "fixed_params"


class SweepState(str, enum.Enum):
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
    heartbeat_interval: float = 5.0
    timeout: float = 30.0
    max_retries: int = 1


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    kind: str
    host: str
    pid: int
    gpus: str | None
    started_at: int
    heartbeat_at: int
    stopped_at: int | None


@dataclass(frozen=True)
class LostTrial:
    """A trial failed because its worker was lost (or it was killed or timed out)."""

    trial_id: int
    number: int
    run_id: str | None
    reason: str
    retry_number: int | None


# Budget used: every trial of the study that was not killed by a stop or superseded by
# its retry. Written against Optuna's tables, which live in the same database.
_BUDGET_USED = text(
    """
    SELECT count(*) FROM trials t
    WHERE t.study_id = :study_id AND NOT EXISTS (
        SELECT 1 FROM trial_system_attributes a
        WHERE a.trial_id = t.trial_id AND a.key IN (:killed, :superseded)
    )
    """
)
_UNFINISHED = text(
    "SELECT trial_id, state FROM trials WHERE study_id = :study_id "
    "AND state IN ('RUNNING', 'WAITING') ORDER BY trial_id"
)


class Coordinator:
    """The claim, lease, recovery and control operations of one sweep, for one process.

    Thread-safe. Each operation is retried while the database is briefly unreachable.
    """

    def __init__(
        self,
        db: Database,
        storage: optuna.storages.BaseStorage,
        sweep_name: str,
        settings: LeaseSettings,
        tracking: TrackingStore | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.sweep_name = sweep_name
        self.settings = settings
        self.tracking = tracking or TrackingStore(db)
        self.study_id = storage.get_study_id_from_name(sweep_name)
        self._file_lock = (
            FileLock(_sqlite_path(db.url) + f".{sweep_name}.claim.lock") if db.is_sqlite else None
        )

    # -- the claim lock ---------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the sweep's claim lock. Work inside uses its own short transactions,
        committed before the lock is released, so the next holder sees all of it."""
        if self._file_lock is not None:
            # SQLite: a file lock, because a write transaction held here would block
            # Optuna's own connection from creating the trial.
            with self._file_lock:
                yield
            return
        with self.db.session() as session:
            row = session.execute(
                select(SweepRow.name).where(SweepRow.name == self.sweep_name).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no sweep called {self.sweep_name!r} in {self.db.display_url}")
            yield

    # -- control state ----------------------------------------------------------------

    def state(self) -> tuple[SweepState, int | None]:
        """The sweep's control state and its budget (``n_trials``, None for no limit)."""
        with self.db.session() as session:
            row = session.get(SweepRow, self.sweep_name)
            if row is None:
                raise NotFoundError(f"no sweep called {self.sweep_name!r} in {self.db.display_url}")
            return SweepState(row.status), row.n_trials

    def budget_used(self) -> int:
        with self.db.session() as session:
            return int(
                session.execute(
                    _BUDGET_USED,
                    {
                        "study_id": self.study_id,
                        "killed": KILLED_ATTR,
                        "superseded": SUPERSEDED_ATTR,
                    },
                ).scalar_one()
            )

    def unfinished(self) -> list[tuple[int, str]]:
        """Trials of the sweep still RUNNING or WAITING (any process's)."""
        with self.db.session() as session:
            return [
                (int(i), str(s))
                for i, s in session.execute(_UNFINISHED, {"study_id": self.study_id})
            ]

    # -- workers ----------------------------------------------------------------------

    def register_worker(
        self, kind: str, *, gpus: str | None = None, worker_id: str | None = None
    ) -> str:
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

    def unregister_worker(self, worker_id: str) -> None:
        def mark() -> None:
            with self.db.session() as session:
                session.execute(
                    update(WorkerRow)
                    .where(WorkerRow.worker_id == worker_id)
                    .values(stopped_at=now_ms())
                )

        self.db.retrying(mark, "unregistering a worker")

    def beat(self, worker_id: str) -> SweepState:
        """Renew the worker's heartbeat and the leases of its trials; return the state."""
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

    def workers(self, *, alive_only: bool = False) -> list[WorkerInfo]:
        cutoff = now_ms() - int(self.settings.timeout * 1000)
        with self.db.session() as session:
            stmt = select(WorkerRow).where(WorkerRow.sweep_name == self.sweep_name)
            if alive_only:
                stmt = stmt.where(WorkerRow.stopped_at.is_(None), WorkerRow.heartbeat_at >= cutoff)
            return [_worker_info(r) for r in session.scalars(stmt.order_by(WorkerRow.started_at))]

    # -- trials -----------------------------------------------------------------------

    def claim(self, worker_id: str) -> int | None:
        """The id of a trial for ``worker_id`` to run, now RUNNING under its lease; or
        None when the sweep is not RUNNING or its budget has no room left."""
        return self.db.retrying(lambda: self._claim_once(worker_id), "claiming a trial")

    def _claim_once(self, worker_id: str) -> int | None:
        with self._locked():
            state, n_trials = self.state()
            if not state.claims:
                return None
            trial_id = self._pop_waiting()
            if trial_id is None:
                if n_trials is not None and self.budget_used() >= n_trials:
                    return None
                trial_id = self.storage.create_new_trial(self.study_id)
            with self.db.session() as session:
                session.merge(
                    TrialLeaseRow(
                        trial_id=trial_id,
                        sweep_name=self.sweep_name,
                        worker_id=worker_id,
                        renewed_at=now_ms(),
                    )
                )
            return trial_id

    def _pop_waiting(self) -> int | None:
        for trial_id, state in self.unfinished():
            if state == TrialState.WAITING.name and self.storage.set_trial_state_values(
                trial_id, TrialState.RUNNING
            ):
                return trial_id
        return None

    def release(self, trial_id: int) -> None:
        """Drop a finished trial's lease."""

        def drop() -> None:
            with self.db.session() as session:
                session.execute(delete(TrialLeaseRow).where(TrialLeaseRow.trial_id == trial_id))

        self.db.retrying(drop, "releasing a lease")

    def recover_stale(self) -> list[LostTrial]:
        """Fail (and retry, by policy) every trial whose lease expired or that has none.

        Called periodically by every controller and agent; the claim lock makes each
        trial recovered once."""
        return self.db.retrying(self._recover_once, "recovering stale trials")

    def _recover_once(self) -> list[LostTrial]:
        cutoff = now_ms() - int(self.settings.timeout * 1000)
        lost: list[LostTrial] = []
        with self._locked():
            with self.db.session() as session:
                leases = {
                    r.trial_id: r
                    for r in session.scalars(
                        select(TrialLeaseRow).where(TrialLeaseRow.sweep_name == self.sweep_name)
                    )
                }
            for trial_id, state in self.unfinished():
                lease = leases.pop(trial_id, None)
                if state != TrialState.RUNNING.name:
                    continue
                if lease is None:
                    reason = "lost: the process that claimed it died before it started"
                elif lease.renewed_at < cutoff:
                    age = (now_ms() - lease.renewed_at) / 1000
                    reason = (
                        f"lease expired: worker {lease.worker_id[:8]} sent no heartbeat for "
                        f"{age:.0f} s (lease.timeout {self.settings.timeout:g} s); its process "
                        "or node died"
                    )
                else:
                    continue
                found = self._fail(trial_id, reason, retry=True, killed=False)
                if found is not None:
                    lost.append(found)
            # Leases left are of trials that finished but whose worker died before
            # releasing them.
            if leases:
                with self.db.session() as session:
                    session.execute(
                        delete(TrialLeaseRow).where(TrialLeaseRow.trial_id.in_(list(leases)))
                    )
        return lost

    def fail_lost(
        self, trial_id: int, reason: str, *, retry: bool = True, killed: bool = False
    ) -> LostTrial | None:
        """Fail a running trial whose worker is known to be gone (or was killed on
        purpose); retry it by policy unless ``retry`` is False. None if it had finished."""
        return self.db.retrying(
            lambda: self._fail_locked(trial_id, reason, retry, killed), "failing a lost trial"
        )

    def _fail_locked(
        self, trial_id: int, reason: str, retry: bool, killed: bool
    ) -> LostTrial | None:
        with self._locked():
            return self._fail(trial_id, reason, retry=retry, killed=killed)

    def _fail(self, trial_id: int, reason: str, *, retry: bool, killed: bool) -> LostTrial | None:
        trial = self.storage.get_trial(trial_id)
        run_id = trial.system_attrs.get(RUN_ID_ATTR)
        retry_number: int | None = None
        if trial.state.is_finished():
            self.release(trial_id)
            return None
        attempt = int(trial.system_attrs.get(ATTEMPT_ATTR, 0))
        retry = retry and not killed and attempt < self.settings.max_retries
        try:
            # The marks first: a finished trial's attributes can no longer be changed.
            self.storage.set_trial_system_attr(trial_id, ERROR_ATTR, reason[:2000])
            if killed:
                self.storage.set_trial_system_attr(trial_id, KILLED_ATTR, True)
            if retry:
                self.storage.set_trial_system_attr(trial_id, SUPERSEDED_ATTR, True)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            # Its worker finished it a moment ago after all.
            self.release(trial_id)
            return None
        if retry:
            template = optuna.trial.create_trial(
                state=TrialState.WAITING,
                system_attrs={
                    FIXED_PARAMS_ATTR: dict(trial.params),
                    RETRY_OF_ATTR: trial.number,
                    ATTEMPT_ATTR: attempt + 1,
                },
            )
            retry_id = self.storage.create_new_trial(self.study_id, template_trial=template)
            retry_number = self.storage.get_trial_number_from_id(retry_id)
        self.release(trial_id)
        if run_id and not self.tracking.run_exists(run_id):
            run_id = None  # its worker died before it could open the run
        if run_id:
            tags: dict[str, object] = {"sweep.state": "FAIL", "sweep.error": reason}
            if retry_number is not None:
                tags["sweep.retried_as_trial"] = retry_number
            self.tracking.set_tags(run_id, tags)
            self.tracking.end_run(run_id, RunStatus.KILLED if killed else RunStatus.FAILED)
        logger.warning("trial %d failed: %s", trial.number, reason)
        return LostTrial(trial_id, trial.number, run_id, reason, retry_number)


class Heartbeat:
    """A daemon thread renewing one worker's heartbeat and leases every interval; the
    latest control state it read is in :attr:`state`."""

    def __init__(self, coordinator: Coordinator, worker_id: str) -> None:
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


def _worker_info(row: WorkerRow) -> WorkerInfo:
    return WorkerInfo(
        row.worker_id,
        row.kind,
        row.host,
        row.pid,
        row.gpus,
        row.started_at,
        row.heartbeat_at,
        row.stopped_at,
    )


def _sqlite_path(url: str) -> str:
    path = url.split(":///", 1)[1] if ":///" in url else "sweep.db"
    return str(Path(path).resolve()) if path and path != ":memory:" else "/tmp/sweep-memory"
