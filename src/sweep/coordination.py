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

import datetime
import enum
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import optuna
from filelock import FileLock
from optuna.trial import TrialState
from sqlalchemy import Table, select, text, update
from sqlalchemy.orm import Session

from sweep.ends import TrialEnd, release_leases, write_ends
from sweep.errors import NotFoundError
from sweep.storage import Database, TrialWrites
from sweep.storage._optuna_tables import SYSTEM_ATTRS, TRIALS, local_time, utc_now
from sweep.storage._schema import SweepRow, TrialLeaseRow, WorkerRow
from sweep.storage._sql import insert_rows
from sweep.study import ERROR_ATTR, KILLED_ATTR, RUN_ID_ATTR, SUPERSEDED_ATTR
from sweep.tracking import RunEnd, RunStatus, TrackingStore
from sweep.tracking._store import RunRecord, now_ms

logger = logging.getLogger(__name__)

# Leases are inserted through Core. DeclarativeBase types ``__table__`` as any FromClause
# (a model may map a join); TrialLeaseRow maps one Table.
_LEASE_TABLE = cast(Table, TrialLeaseRow.__table__)

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
class RunSeed:
    """What a claim needs to open the trial's child run: the sweep's experiment and
    parent run, and the params and tags of the worker that will run it (its
    environment, its sampler's seed)."""

    experiment_id: int
    artifact_root: str
    parent_run_id: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A trial handed to one worker: RUNNING under the worker's lease, its child run's
    id chosen (``RUN_ID_ATTR``); a retry carries Optuna's ``fixed_params`` and the
    trial it retries in ``system_attrs``, and that trial's run in ``retry_of_run``."""

    trial_id: int
    number: int
    run_id: str
    datetime_start: datetime.datetime  # naive local time, as Optuna's trials carry it
    system_attrs: dict[str, Any] = field(default_factory=dict)
    retry_of_run: str | None = None
    artifact_uri: str | None = None  # set when the claim opened the run

    def frozen_trial(self) -> optuna.trial.FrozenTrial:
        """The trial as the worker starts it, without reading it back."""
        return optuna.trial.FrozenTrial(
            number=self.number,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=self.datetime_start,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs=dict(self.system_attrs),
            intermediate_values={},
            trial_id=self.trial_id,
        )


@dataclass(frozen=True)
class LostTrial:
    """A trial failed because its worker was lost (or it was killed or timed out)."""

    trial_id: int
    number: int
    run_id: str | None
    reason: str
    retry_number: int | None


# What a claim needs to know, in one query: the study's trials (the next number), those
# waiting to run (retries), and the budget used (every trial not killed by a stop or
# superseded by its retry). On PostgreSQL it also locks the study's
# row, as Optuna's own trial creation does, so that a user's enqueue_trial cannot
# interleave with the numbering (taken after the sweep's lock: always in that order).
_SLOTS = """
    SELECT (SELECT count(*) FROM trials t WHERE t.study_id = s.study_id),
           (SELECT count(*) FROM trials t WHERE t.study_id = s.study_id
                AND t.state = 'WAITING'),
           (SELECT count(*) FROM trials t WHERE t.study_id = s.study_id AND NOT EXISTS (
                SELECT 1 FROM trial_system_attributes a
                WHERE a.trial_id = t.trial_id AND a.key IN (:killed, :superseded)))
    FROM studies s WHERE s.study_id = :study_id
"""
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
    def _locked(self) -> Iterator[tuple[Session, SweepState, int | None]]:
        """Hold the sweep's claim lock; yields a session (one transaction) under it, and
        the sweep's state and budget read under the lock. Work done in other sessions
        inside is committed before the lock is released, so the next holder sees all
        of it."""
        status = select(SweepRow.status, SweepRow.n_trials).where(SweepRow.name == self.sweep_name)
        if self._file_lock is not None:
            # SQLite: a file lock, because a write transaction held here would block
            # Optuna's own connection (recovery creates retries through it).
            with self._file_lock, self.db.session() as session:
                yield (session, *self._state_of(session.execute(status).first()))
            return
        with self.db.session() as session:
            row = session.execute(status.with_for_update()).first()
            yield (session, *self._state_of(row))

    def _state_of(self, row: Any) -> tuple[SweepState, int | None]:
        if row is None:
            raise NotFoundError(f"no sweep called {self.sweep_name!r} in {self.db.display_url}")
        return SweepState(row[0]), row[1]

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
            return self._slots(session, lock=False)[2]

    def _slots(self, session: Session, *, lock: bool) -> tuple[int, int, int]:
        """The study's trials, those waiting, and the budget used; with ``lock`` (on
        PostgreSQL) the study's row is locked as well."""
        query = _SLOTS + (" FOR UPDATE OF s" if lock and not self.db.is_sqlite else "")
        trials, waiting, used = session.execute(
            text(query),
            {"study_id": self.study_id, "killed": KILLED_ATTR, "superseded": SUPERSEDED_ATTR},
        ).one()
        return int(trials), int(waiting), int(used)

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

    def claim(self, worker_id: str, run: RunSeed | None = None) -> Claim | None:
        """A trial for ``worker_id`` to run, now RUNNING under its lease (and with
        ``run``, its child run opened); or None when the sweep is not RUNNING or its
        budget has no room left. One transaction."""
        claims = self.claim_many([(worker_id, run)])
        return claims[0] if claims else None

    def claim_many(
        self,
        requests: Sequence[tuple[str, RunSeed | None]],
        *,
        first: Callable[[Session], object] | None = None,
    ) -> list[Claim]:
        """:meth:`claim` for several workers in one transaction: as many claims as the
        budget and the state allow, in the order asked, with a statement per table
        however many. ``first(session)`` writes in the same transaction before the
        claims (the controller records the trials that just ended)."""
        return self.db.retrying(lambda: self._claim_once(requests, first), "claiming trials")

    def _claim_once(
        self,
        requests: Sequence[tuple[str, RunSeed | None]],
        first: Callable[[Session], object] | None,
    ) -> list[Claim]:
        with self._locked() as (session, state, n_trials):
            if first is not None:
                first(session)
            if not requests or not state.claims:
                return []
            return self._claim_in(session, requests, n_trials)

    def _claim_in(
        self,
        session: Session,
        requests: Sequence[tuple[str, RunSeed | None]],
        n_trials: int | None,
    ) -> list[Claim]:
        started = utc_now()
        study_trials = TRIALS.c.study_id == self.study_id
        trials, waiting_count, used = self._slots(session, lock=True)
        # Retries waiting to run go first, then new trials while the budget has room.
        waiting: Sequence[Any] = []
        if waiting_count:
            waiting = session.execute(
                select(TRIALS.c.trial_id, TRIALS.c.number)
                .where(study_trials, TRIALS.c.state == TrialState.WAITING)
                .order_by(TRIALS.c.trial_id)
                .limit(len(requests))
            ).all()
        slots: list[tuple[int, int]] = [(int(i), int(n)) for i, n in waiting]
        attrs: dict[int, dict[str, Any]] = {trial_id: {} for trial_id, _ in slots}
        if slots:
            ids = [trial_id for trial_id, _ in slots]
            session.execute(
                update(TRIALS)
                .where(TRIALS.c.trial_id.in_(ids))
                .values(state=TrialState.RUNNING, datetime_start=started)
            )
            columns = SYSTEM_ATTRS.c.trial_id, SYSTEM_ATTRS.c.key, SYSTEM_ATTRS.c.value_json
            for trial_id, key, value in session.execute(
                select(*columns).where(SYSTEM_ATTRS.c.trial_id.in_(ids))
            ):
                attrs[trial_id][key] = json.loads(value)
        wanted = len(requests) - len(slots)
        if wanted and n_trials is not None:
            wanted = min(wanted, max(0, n_trials - int(used)))
        if wanted:
            # Numbered as Optuna numbers them: the trials before it in the study (exact
            # under the claim lock and the study's row lock).
            first_number = int(trials)
            numbers = range(first_number, first_number + wanted)
            created = session.execute(
                TRIALS.insert().returning(TRIALS.c.trial_id, sort_by_parameter_order=True),
                [
                    {
                        "number": number,
                        "study_id": self.study_id,
                        "state": TrialState.RUNNING,
                        "datetime_start": started,
                    }
                    for number in numbers
                ],
            ).scalars()
            for trial_id, number in zip(created, numbers, strict=True):
                slots.append((int(trial_id), number))
                attrs[int(trial_id)] = {}
        if not slots:
            return []
        # What a retry's run needs: the run of the trial it retries.
        retried = {
            int(a[RETRY_OF_ATTR]): trial_id for trial_id, a in attrs.items() if RETRY_OF_ATTR in a
        }
        retried_runs: dict[int, str] = {}
        if retried:
            for number, value in session.execute(
                select(TRIALS.c.number, SYSTEM_ATTRS.c.value_json)
                .join(TRIALS, TRIALS.c.trial_id == SYSTEM_ATTRS.c.trial_id)
                .where(
                    study_trials,
                    TRIALS.c.number.in_(list(retried)),
                    SYSTEM_ATTRS.c.key == RUN_ID_ATTR,
                )
            ):
                retried_runs[retried[int(number)]] = json.loads(value)
        renewed = now_ms()
        local_start = local_time(started)
        claims: list[Claim] = []
        id_rows: list[dict[str, Any]] = []
        lease_rows: list[dict[str, Any]] = []
        runs: list[RunRecord] = []
        for (worker_id, seed), (trial_id, number) in zip(requests, slots, strict=False):
            run_id = uuid.uuid4().hex
            attrs[trial_id][RUN_ID_ATTR] = run_id
            retry_of_run = retried_runs.get(trial_id)
            # The trial names its run before the run exists: if the worker dies while
            # opening it, whoever recovers the trial still finds and ends the run.
            id_rows.append(
                {"trial_id": trial_id, "key": RUN_ID_ATTR, "value_json": json.dumps(run_id)}
            )
            lease_rows.append(
                {
                    "trial_id": trial_id,
                    "sweep_name": self.sweep_name,
                    "worker_id": worker_id,
                    "renewed_at": renewed,
                }
            )
            artifact_uri = None
            if seed is not None:
                record = RunRecord(
                    seed.experiment_id,
                    seed.artifact_root,
                    f"trial-{number}",
                    run_id,
                    seed.parent_run_id,
                    seed.params,
                    {
                        **seed.tags,
                        "sweep.trial_number": number,
                        **retry_tags(attrs[trial_id], retry_of_run),
                    },
                )
                runs.append(record)
                artifact_uri = record.artifact_uri
            claims.append(
                Claim(
                    trial_id=trial_id,
                    number=number,
                    run_id=run_id,
                    datetime_start=local_start,
                    system_attrs=attrs[trial_id],
                    retry_of_run=retry_of_run,
                    artifact_uri=artifact_uri,
                )
            )
        insert_rows(session, SYSTEM_ATTRS, id_rows)
        insert_rows(session, _LEASE_TABLE, lease_rows)
        self.tracking.insert_runs(session, runs)
        return claims

    def release(self, trial_id: int) -> None:
        """Drop a finished trial's lease."""

        def drop() -> None:
            with self.db.session() as session:
                release_leases(session, [trial_id])

        self.db.retrying(drop, "releasing a lease")

    def recover_stale(self) -> list[LostTrial]:
        """Fail (and retry, by policy) every trial whose lease expired or that has none.

        Called periodically by every controller and agent; the claim lock makes each
        trial recovered once."""
        return self.db.retrying(self._recover_once, "recovering stale trials")

    def _recover_once(self) -> list[LostTrial]:
        cutoff = now_ms() - int(self.settings.timeout * 1000)
        lost: list[LostTrial] = []
        with self._locked() as (session, _, _):
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
                found = self._fail(session, trial_id, reason, retry=True, killed=False)
                if found is not None:
                    lost.append(found)
            # Leases left are of trials that finished but whose worker died before
            # releasing them.
            if leases:
                release_leases(session, list(leases))
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
        with self._locked() as (session, _, _):
            return self._fail(session, trial_id, reason, retry=retry, killed=killed)

    def _fail(
        self, session: Session, trial_id: int, reason: str, *, retry: bool, killed: bool
    ) -> LostTrial | None:
        """End a lost trial FAIL, its run FAILED (KILLED when ``killed``) and, by policy,
        queue its retry, all in ``session``'s transaction (under the claim lock)."""
        trial = self.storage.get_trial(trial_id)
        if trial.state.is_finished():
            release_leases(session, [trial_id])
            return None
        attempt = int(trial.system_attrs.get(ATTEMPT_ATTR, 0))
        retry = retry and not killed and attempt < self.settings.max_retries
        marks: dict[str, Any] = {ERROR_ATTR: reason[:2000]}
        if killed:
            marks[KILLED_ATTR] = True
        if retry:
            marks[SUPERSEDED_ATTR] = True
        # The retry takes the study's next number (exact under the claim lock).
        retry_number = self._slots(session, lock=True)[0] if retry else None
        run_id = trial.system_attrs.get(RUN_ID_ATTR)
        if run_id and not self.tracking.run_exists(run_id):
            run_id = None  # its worker died before it could open the run
        run_end = None
        if run_id:
            tags: dict[str, object] = {"sweep.state": "FAIL", "sweep.error": reason}
            if retry_number is not None:
                tags["sweep.retried_as_trial"] = retry_number
            status = RunStatus.KILLED if killed else RunStatus.FAILED
            run_end = RunEnd(run_id, status, tags=tags)
        end = TrialEnd(TrialWrites(trial_id, system_attrs=marks, state=TrialState.FAIL), run_end)
        if not write_ends(session, self.tracking, [end]):
            return None  # its worker finished it a moment ago after all
        if retry_number is not None:
            self._queue_retry(session, trial, attempt + 1, retry_number)
        logger.warning("trial %d failed: %s", trial.number, reason)
        return LostTrial(trial_id, trial.number, run_id, reason, retry_number)

    def _queue_retry(
        self, session: Session, trial: optuna.trial.FrozenTrial, attempt: int, number: int
    ) -> None:
        """A WAITING trial with ``trial``'s params, numbered ``number``, that the next
        claim hands out before any new trial (as Optuna's ``enqueue_trial`` makes one)."""
        retry_id = session.execute(
            TRIALS.insert().returning(TRIALS.c.trial_id),
            {"number": number, "study_id": self.study_id, "state": TrialState.WAITING},
        ).scalar_one()
        attrs = {FIXED_PARAMS_ATTR: dict(trial.params), RETRY_OF_ATTR: trial.number}
        attrs[ATTEMPT_ATTR] = attempt
        insert_rows(
            session,
            SYSTEM_ATTRS,
            [
                {"trial_id": retry_id, "key": key, "value_json": json.dumps(value)}
                for key, value in attrs.items()
            ],
        )


def retry_tags(attrs: dict[str, Any], retry_of_run: str | None) -> dict[str, Any]:
    """A retry's run tags: which trial (and run) it retries, and the attempt number."""
    if RETRY_OF_ATTR not in attrs:
        return {}
    tags: dict[str, Any] = {
        "sweep.retry_of_trial": int(attrs[RETRY_OF_ATTR]),
        "sweep.attempt": attrs.get(ATTEMPT_ATTR, 1),
    }
    if retry_of_run:
        tags["sweep.retry_of_run"] = retry_of_run
    return tags


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
