"""Recovery: failing the trials whose workers were lost, and queueing their retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session

from sweep.coordination._claims import ATTEMPT_ATTR, FIXED_PARAMS_ATTR, RETRY_OF_ATTR, slots
from sweep.coordination._state import ClaimLock, LeaseSettings
from sweep.ends import TrialEnd, release_leases, write_ends
from sweep.storage import (
    Database,
    TrialLeaseRow,
    TrialWrites,
    queue_waiting_trial,
    save_slots,
    unfinished_trials,
)
from sweep.study import ERROR_ATTR, KILLED_ATTR, RUN_ID_ATTR, SUPERSEDED_ATTR
from sweep.tracking import RunEnd, RunStatus, TrackingStore, now_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LostTrial:
    """A trial failed because its worker was lost (or it was killed or timed out);
    ``retry_number`` is the number of its retry, None when it is not retried."""

    trial_id: int
    number: int
    run_id: str | None
    reason: str
    retry_number: int | None


class Recovery:
    """Fails one sweep's lost trials, ends their runs and queues their retries, each in
    one transaction under the claim lock (so each lost trial is recovered once)."""

    def __init__(
        self,
        db: Database,
        lock: ClaimLock,
        storage: optuna.storages.BaseStorage,
        tracking: TrackingStore,
        study_id: int,
        settings: LeaseSettings,
    ) -> None:
        self.db = db
        self.lock = lock
        self.storage = storage
        self.tracking = tracking
        self.study_id = study_id
        self.settings = settings

    def recover_stale(self) -> list[LostTrial]:
        """Fail (and retry, by policy) every RUNNING trial whose lease expired or that
        has none, and drop the leases of trials that finished without releasing them."""
        return self.db.retrying(self._recover_once, "recovering stale trials")

    def _recover_once(self) -> list[LostTrial]:
        cutoff = now_ms() - int(self.settings.timeout * 1000)
        lost: list[LostTrial] = []
        with self.lock.held() as (session, _, _):
            leases = {
                r.trial_id: r
                for r in session.scalars(
                    select(TrialLeaseRow).where(TrialLeaseRow.sweep_name == self.lock.sweep_name)
                )
            }
            for trial_id, state in unfinished_trials(session, self.study_id):
                lease = leases.pop(trial_id, None)
                reason = self._lost_reason(lease, cutoff) if state == TrialState.RUNNING else None
                if reason is not None:
                    found = self.fail_in(session, trial_id, reason, retry=True, killed=False)
                    if found is not None:
                        lost.append(found)
            # Leases left are of trials that finished but whose worker died before
            # releasing them.
            if leases:
                release_leases(session, list(leases))
        return lost

    def _lost_reason(self, lease: TrialLeaseRow | None, cutoff: int) -> str | None:
        """Why a RUNNING trial with ``lease`` is lost, or None while its lease holds."""
        if lease is None:
            return "lost: the process that claimed it died before it started"
        if lease.renewed_at >= cutoff:
            return None
        age = (now_ms() - lease.renewed_at) / 1000
        return (
            f"lease expired: worker {lease.worker_id[:8]} sent no heartbeat for "
            f"{age:.0f} s (lease.timeout {self.settings.timeout:g} s); its process "
            "or node died"
        )

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
        with self.lock.held() as (session, _, _):
            return self.fail_in(session, trial_id, reason, retry=retry, killed=killed)

    def fail_in(
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
        # Read before the trial is marked, so that its mark is counted once; the retry
        # takes the study's next number (exact under the claim lock).
        study = slots(session, self.study_id, lock=True)
        retry_number = study.trials if retry else None
        run_id = trial.system_attrs.get(RUN_ID_ATTR)
        if run_id and not self.tracking.run_exists(run_id):
            run_id = None  # its worker died before it could open the run
        end = _lost_end(trial_id, reason, run_id, retry_number, killed)
        if not write_ends(session, self.tracking, [end]):
            return None  # its worker finished it a moment ago after all
        if killed or retry_number is not None:
            study.uncount()
        if retry_number is not None:
            attrs = {
                FIXED_PARAMS_ATTR: dict(trial.params),
                RETRY_OF_ATTR: trial.number,
                ATTEMPT_ATTR: attempt + 1,
            }
            study.created(
                [queue_waiting_trial(session, self.study_id, retry_number, attrs)], waiting=True
            )
        save_slots(session, study)
        logger.warning("trial %d failed: %s", trial.number, reason)
        return LostTrial(trial_id, trial.number, run_id, reason, retry_number)


def _lost_end(
    trial_id: int, reason: str, run_id: str | None, retry_number: int | None, killed: bool
) -> TrialEnd:
    """A lost trial's end: FAIL with ``reason``, marked killed (uses no budget) or
    superseded by its retry (numbered ``retry_number``); its run, if it has one, ends
    FAILED (KILLED when ``killed``) saying why."""
    marks: dict[str, Any] = {ERROR_ATTR: reason[:2000]}
    if killed:
        marks[KILLED_ATTR] = True
    if retry_number is not None:
        marks[SUPERSEDED_ATTR] = True
    run_end = None
    if run_id:
        tags: dict[str, object] = {"sweep.state": "FAIL", "sweep.error": reason}
        if retry_number is not None:
            tags["sweep.retried_as_trial"] = retry_number
        status = RunStatus.KILLED if killed else RunStatus.FAILED
        run_end = RunEnd(run_id, status, tags=tags)
    return TrialEnd(TrialWrites(trial_id, system_attrs=marks, state=TrialState.FAIL), run_end)
