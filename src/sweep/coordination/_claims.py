"""Claims: trials handed to workers against the sweep's budget, under the claim lock."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.orm import Session

from sweep.coordination._state import ClaimLock
from sweep.storage import (
    LEASE_TABLE,
    Database,
    StudySlots,
    insert_rows,
    insert_running_trials,
    insert_system_attrs,
    local_time,
    save_slots,
    start_waiting_trials,
    study_slots,
    system_attr_by_number,
    system_attrs_of,
    utc_now,
)
from sweep.study import KILLED_ATTR, RUN_ID_ATTR, SUPERSEDED_ATTR, WARM_START_ATTR
from sweep.tracking import RunRecord, TrackingStore, now_ms

#: Trial system attributes of a retry: the number of the trial it retries, its attempt.
RETRY_OF_ATTR = "sweep:retry_of"
ATTEMPT_ATTR = "sweep:attempt"
#: Optuna's own attribute for the params a waiting trial must use.
FIXED_PARAMS_ATTR = "fixed_params"
#: A trial marked with one of these uses no budget: killed by a stop, superseded by its
#: retry, or copied from another sweep by ``warm_start``.
UNCOUNTED = (KILLED_ATTR, SUPERSEDED_ATTR, WARM_START_ATTR)

#: One worker's request for a trial: its id, and what its trial's run starts with (None:
#: the worker opens the run itself).
Request = tuple[str, "RunSeed | None"]


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


def slots(session: Session, study_id: int, *, lock: bool) -> StudySlots:
    """The study's trials, those waiting and the budget used (every trial not killed or
    superseded), without reading the trials counted before; with ``lock`` (the caller
    holds the claim lock and saves what it changes), on PostgreSQL, the study's row is
    locked too."""
    return study_slots(session, study_id, uncounted=UNCOUNTED, lock=lock)


class Claims:
    """Hands out one sweep's trials: retries waiting to run first, then new trials
    while the budget ``n_trials`` has room, holding the claim lock."""

    def __init__(
        self,
        db: Database,
        lock: ClaimLock,
        tracking: TrackingStore,
        study_id: int,
    ) -> None:
        self.db = db
        self.lock = lock
        self.tracking = tracking
        self.study_id = study_id

    def budget_used(self) -> int:
        """The trials that count against the budget (all but killed and superseded)."""
        with self.db.session() as session:
            return slots(session, self.study_id, lock=False).used

    def claim_many(
        self,
        requests: Sequence[Request],
        *,
        first: Callable[[Session], object] | None = None,
    ) -> list[Claim]:
        """As many claims as the budget and the state allow, in the order asked, in one
        transaction with a statement per table however many. ``first(session)`` writes
        in the same transaction before the claims (the controller records the trials
        that just ended)."""
        return self.db.retrying(lambda: self._claim_once(requests, first), "claiming trials")

    def _claim_once(
        self, requests: Sequence[Request], first: Callable[[Session], object] | None
    ) -> list[Claim]:
        with self.lock.held() as (session, state, n_trials):
            if first is not None:
                first(session)
            if not requests or not state.claims:
                return []
            return self._claim_in(session, requests, n_trials)

    def _claim_in(
        self, session: Session, requests: Sequence[Request], n_trials: int | None
    ) -> list[Claim]:
        started = utc_now()
        retries, new = self._take_slots(session, len(requests), n_trials, started)
        taken = retries + new
        if not taken:
            return []
        # Only a retry (or a trial a user enqueued) has attributes yet.
        attrs = system_attrs_of(session, [trial_id for trial_id, _ in retries])
        attrs.update((trial_id, {}) for trial_id, _ in new)
        retried_runs = self._retried_runs(session, attrs)
        claims: list[Claim] = []
        runs: list[RunRecord] = []
        for (_, seed), (trial_id, number) in zip(requests, taken, strict=False):
            run_id = uuid.uuid4().hex
            attrs[trial_id][RUN_ID_ATTR] = run_id
            retry_of_run = retried_runs.get(trial_id)
            record = None
            if seed is not None:
                record = _run_record(
                    seed, number, run_id, retry_tags(attrs[trial_id], retry_of_run)
                )
                runs.append(record)
            claims.append(
                Claim(
                    trial_id=trial_id,
                    number=number,
                    run_id=run_id,
                    datetime_start=local_time(started),
                    system_attrs=attrs[trial_id],
                    retry_of_run=retry_of_run,
                    artifact_uri=record.artifact_uri if record is not None else None,
                )
            )
        # The trial names its run before the run exists: if the worker dies while
        # opening it, whoever recovers the trial still finds and ends the run.
        insert_system_attrs(session, [(c.trial_id, RUN_ID_ATTR, c.run_id) for c in claims])
        held = [
            (worker_id, c.trial_id) for (worker_id, _), c in zip(requests, claims, strict=False)
        ]
        self._insert_leases(session, held)
        self.tracking.insert_runs(session, runs)
        return claims

    def _take_slots(
        self, session: Session, wanted: int, n_trials: int | None, started: datetime.datetime
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Up to ``wanted`` trials set RUNNING from ``started``: those waiting to run (the
        retries), then new trials while the budget has room; ``(trial_id, number)``
        each, in two lists."""
        study = slots(session, self.study_id, lock=True)
        taken = []
        if study.waiting:
            taken = start_waiting_trials(session, self.study_id, wanted, started)
            study.started(wanted, len(taken))
        new = wanted - len(taken)
        if n_trials is not None:
            new = min(new, max(0, n_trials - study.used))
        # Numbered as Optuna numbers them: the trials before it in the study (exact
        # under the claim lock and the study's row lock).
        numbers = range(study.trials, study.trials + new)
        created = insert_running_trials(session, self.study_id, numbers, started)
        study.created([trial_id for trial_id, _ in created])
        save_slots(session, study)
        return taken, created

    def _retried_runs(self, session: Session, attrs: dict[int, dict[str, Any]]) -> dict[int, str]:
        """The run of the trial each retry among ``attrs`` retries, by the retry's id."""
        retried = {
            int(a[RETRY_OF_ATTR]): trial_id for trial_id, a in attrs.items() if RETRY_OF_ATTR in a
        }
        runs = system_attr_by_number(session, self.study_id, list(retried), RUN_ID_ATTR)
        return {retried[number]: str(run_id) for number, run_id in runs.items()}

    def _insert_leases(self, session: Session, held: Sequence[tuple[str, int]]) -> None:
        """Leases of the trials just claimed, ``(worker_id, trial_id)`` each."""
        renewed = now_ms()
        insert_rows(
            session,
            LEASE_TABLE,
            [
                {
                    "trial_id": trial_id,
                    "sweep_name": self.lock.sweep_name,
                    "worker_id": worker_id,
                    "renewed_at": renewed,
                }
                for worker_id, trial_id in held
            ],
        )


def _run_record(seed: RunSeed, number: int, run_id: str, retry: dict[str, Any]) -> RunRecord:
    """The child run a claim opens for trial ``number`` (``retry``: a retry's tags)."""
    return RunRecord(
        seed.experiment_id,
        seed.artifact_root,
        f"trial-{number}",
        run_id,
        seed.parent_run_id,
        seed.params,
        {**seed.tags, "sweep.trial_number": number, **retry},
    )
