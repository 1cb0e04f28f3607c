"""The :class:`Coordinator`: one process's handle on a sweep's coordination, composing
its claim lock, worker registry, claims and recovery."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from sqlalchemy.orm import Session

from sweep.coordination._claims import Claim, Claims, Request, RunSeed
from sweep.coordination._recovery import LostTrial, Recovery
from sweep.coordination._state import ClaimLock, LeaseSettings, SweepState, read_state
from sweep.coordination._workers import RegisteredWorker, WorkerRegistry
from sweep.ends import release_leases
from sweep.storage import Database, unfinished_trials
from sweep.tracking import TrackingStore


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
        self.lock = ClaimLock(db, sweep_name)
        self._workers = WorkerRegistry(db, sweep_name, settings)
        self._claims = Claims(db, self.lock, self.tracking, self.study_id)
        self._recovery = Recovery(db, self.lock, storage, self.tracking, self.study_id, settings)

    # -- control state ----------------------------------------------------------------

    def state(self) -> tuple[SweepState, int | None]:
        """The sweep's control state and its budget (``n_trials``, None for no limit)."""
        return read_state(self.db, self.sweep_name)

    def budget_used(self) -> int:
        """The trials that count against the budget (all but killed and superseded)."""
        return self._claims.budget_used()

    def unfinished(self) -> list[tuple[int, str]]:
        """Trials of the sweep still RUNNING or WAITING (any process's), with the name
        of their state."""
        with self.db.session() as session:
            return [(i, s.name) for i, s in unfinished_trials(session, self.study_id)]

    # -- workers ----------------------------------------------------------------------

    def register_worker(
        self, kind: str, *, gpus: str | None = None, worker_id: str | None = None
    ) -> str:
        """Register this process as a worker of ``kind``; returns its id."""
        return self._workers.register(kind, gpus=gpus, worker_id=worker_id)

    def unregister_worker(self, worker_id: str) -> None:
        self._workers.unregister(worker_id)

    def beat(self, worker_id: str) -> SweepState:
        """Renew the worker's heartbeat and the leases of its trials; return the state."""
        return self._workers.beat(worker_id)

    def workers(self, *, alive_only: bool = False) -> list[RegisteredWorker]:
        return self._workers.workers(alive_only=alive_only)

    # -- trials -----------------------------------------------------------------------

    def claim(self, worker_id: str, run: RunSeed | None = None) -> Claim | None:
        """A trial for ``worker_id`` to run, now RUNNING under its lease (and with
        ``run``, its child run opened); or None when the sweep is not RUNNING or its
        budget has no room left. One transaction."""
        claims = self.claim_many([(worker_id, run)])
        return claims[0] if claims else None

    def claim_many(
        self,
        requests: Sequence[Request],
        *,
        first: Callable[[Session], object] | None = None,
    ) -> list[Claim]:
        """:meth:`claim` for several workers in one transaction: as many claims as the
        budget and the state allow, in the order asked, with a statement per table
        however many. ``first(session)`` writes in the same transaction before the
        claims (the controller records the trials that just ended)."""
        return self._claims.claim_many(requests, first=first)

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
        return self._recovery.recover_stale()

    def fail_lost(
        self, trial_id: int, reason: str, *, retry: bool = True, killed: bool = False
    ) -> LostTrial | None:
        """Fail a running trial whose worker is known to be gone (or was killed on
        purpose); retry it by policy unless ``retry`` is False. None if it had finished."""
        return self._recovery.fail_lost(trial_id, reason, retry=retry, killed=killed)
