"""The controller's scheduling: keeps every worker (a Ray actor or a local process) busy
until the budget or the timeout is spent, or the sweep is stopped or cancelled.

Each worker runs one trial at a time and gets the next as soon as it returns, with the
trials finished elsewhere since its last one (the :class:`~sweep.ledger.TrialLedger`),
so that it samples on everything known. Short trials go several to a call and the next
call waits in the worker's queue (:mod:`sweep.pacing`). The database work is batched:
each worker's next trials are claimed a few at a time, and the trials that ended are
written with those claims (:func:`sweep.ends.write_ends` through the ledger), or once
``WRITE_BATCH`` of them wait, or ``WRITE_DELAY_S`` after the first came back. Trials
that do not come back are failed by the :class:`~sweep.failures.FailurePolicy`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from sqlalchemy.orm import Session

from sweep.coordination import Claim, Coordinator, Heartbeat, RunSeed, SweepState
from sweep.failures import CANCELLED, STOPPED, FailurePolicy
from sweep.ledger import TrialLedger
from sweep.pacing import WRITE_BATCH, WRITE_DELAY_S, Call, Calls, ClaimedTrials, Pace
from sweep.planner import Planner
from sweep.spec import SweepSpec
from sweep.stopping import Stop, StopRules, end_sweep, stopped_by
from sweep.storage import Database, StudyStorage
from sweep.tracking import TrackingStore
from sweep.trial import TrialOutcome
from sweep.trial_counts import TrialCounts, counted_as
from sweep.worker import CallLost, TrialCrash, Worker

#: Seconds to wait for killed workers to go away on Ctrl-C before marking their trials.
KILL_GRACE_S = 10.0

TrialCallback = Callable[[TrialOutcome, TrialCounts], None]


class WorkerPool(Protocol):
    """The workers a dispatcher feeds: :class:`~sweep.worker.RayWorkerPool`,
    :class:`~sweep.local.LocalWorkerPool`, or any pool that runs calls of trials the same
    way (the tests drive one in their own process)."""

    workers: list[Worker]

    def started(self, worker: Worker) -> bool: ...
    def run_seed(self, worker: Worker) -> RunSeed | None: ...
    def replace(self, worker: Worker) -> Worker: ...
    def kill_all(self) -> None: ...
    def send(
        self, worker: Worker, claims: list[Claim], finished_elsewhere: list[Any], plan: Any
    ) -> Any: ...
    def wait(self, calls: list[Any], timeout: float) -> list[Any]: ...
    def wait_all(self, calls: list[Any], timeout: float) -> None: ...
    def result(self, call: Any) -> list[TrialOutcome | TrialCrash]: ...


class Dispatcher:
    """Runs one launch's trials on ``pool``. Used by the controller's thread only.

    ``counts`` (the study's at the start) is kept up to date from the outcomes, so
    progress reports cost no query."""

    def __init__(
        self,
        spec: SweepSpec,
        db: Database,
        pool: WorkerPool,
        coordinator: Coordinator,
        heartbeat: Heartbeat,
        *,
        deadline: float | None,
        counts: TrialCounts,
        on_trial: TrialCallback | None = None,
    ) -> None:
        self.spec = spec
        self.db = db
        self.pool = pool
        self.coordinator = coordinator
        self.heartbeat = heartbeat
        self.deadline = deadline
        self.counts = counts
        self.on_trial = on_trial
        self.policy = FailurePolicy(coordinator, spec.trial_timeout)
        self.storage = StudyStorage(db, coordinator.storage)  # type: ignore[arg-type]
        self.ledger = TrialLedger(db, self.storage, TrackingStore(db), coordinator.study_id)
        for worker in pool.workers:
            self.ledger.join(worker.worker_id)
        sampler = spec.sampler.build()
        study = optuna.load_study(study_name=spec.name, storage=self.storage, sampler=sampler)
        self.planner = Planner(study, self.storage)
        self.calls = Calls()
        self.claimed = ClaimedTrials()
        # A call's trials are timed as one: with a trial_timeout, one trial per call.
        self.pace = Pace(batches=not spec.trial_timeout)
        self.ended: list[tuple[TrialOutcome, str]] = []  # come back, not yet written
        self.ended_since = 0.0  # when the oldest of them came back
        self.exhausted = False  # the last claim got fewer trials than asked
        self.dispatched = 0
        self.rules = StopRules.of(spec)

    def run(self) -> tuple[int, bool, SweepState]:
        """Dispatch until the sweep ends; returns the trials started, whether Ctrl-C
        interrupted it, and the state the sweep ends in."""
        try:
            while True:
                end = self._step()
                if end is not None:
                    return self.dispatched, False, end
        except KeyboardInterrupt:
            self._interrupt()
            return self.dispatched, True, SweepState.KILLED

    def _step(self) -> SweepState | None:
        """One round: start idle workers, write and claim when due, wait for calls to
        come back (or idle); returns the state to end in, or None to go on."""
        state = self.heartbeat.state
        if state is SweepState.CANCELLED:
            self._cancel()
            return state
        running = state.claims and (self.deadline is None or time.monotonic() < self.deadline)
        if not running and len(self.claimed):
            # Stopped, paused or out of time: what was claimed ahead does not start.
            self.policy.not_started(self.claimed.take_all(), f"the sweep is {state.value.lower()}")
        if running:
            self._send()  # idle workers start their next trial at once, before any writing
        if self._booking_due(running):
            self._book(claiming=running)
            if self.exhausted and running:
                # The budget is full, or the state changed since the last beat.
                state = self.coordinator.state()[0]
            if any(self._startable(w) for w in self.pool.workers):
                return None  # new claims for idle workers: start them now
        if self.calls:
            self._collect()
        elif not self.ended:
            end = self._idle(state)
            if end is not None:
                return end
        if self.policy.recover_if_due():
            self.exhausted = False  # a recovery may have queued retries
        return None

    # -- sending ------------------------------------------------------------------------

    def _send(self) -> None:
        """Send each worker the calls its queue has room for, from its claims."""
        now = time.monotonic()
        for worker in self.pool.workers:
            while self.calls.queued(worker.worker_id) < self.pace.queue():
                claims = self.claimed.take(worker.worker_id, self.pace.batch())
                if not claims:
                    break
                plan = self.planner.plan(claims[0]) if self.pace.plans() else None
                news = self.ledger.news_for(worker.worker_id)
                ref = self.pool.send(worker, claims, news, plan)
                self.calls.add(ref, worker.worker_id, [c.trial_id for c in claims], now)
                self.dispatched += len(claims)

    def _startable(self, worker: Worker) -> bool:
        """Whether ``worker``'s queue has room and claims wait for it."""
        queue_room = self.calls.queued(worker.worker_id) < self.pace.queue()
        return queue_room and self.claimed.count(worker.worker_id) > 0

    def _wants(self, worker: Worker) -> int:
        """How many trials to claim for ``worker`` now."""
        if not self.pool.started(worker):
            return 0
        sent = self.calls.trials_sent_to(worker.worker_id)
        return self.claimed.wanted(worker.worker_id, self.pace.depth(), sent)

    # -- booking: ends written, claims made, in one transaction -------------------------

    def _booking_due(self, running: bool) -> bool:
        """Whether ended trials wait long enough, or a worker needs claims."""
        due = bool(self.ended) and (
            len(self.ended) >= WRITE_BATCH
            or time.monotonic() - self.ended_since >= WRITE_DELAY_S
            or not self.calls
        )
        short = running and any(self._wants(w) for w in self.pool.workers)
        return due or (short and (not self.exhausted or not self.calls))

    def _book(self, claiming: bool) -> None:
        """One transaction: write the trials that ended, and top up the claims of the
        workers that need more (when ``claiming``)."""
        requests: list[tuple[str, RunSeed | None]] = []
        if claiming:
            requests = [
                (w.worker_id, self.pool.run_seed(w))
                for w in self.pool.workers
                for _ in range(self._wants(w))
            ]
        written: set[int] = set()
        if requests:

            def record(session: Session) -> None:
                nonlocal written
                written = self.ledger.write(session, self.ended)

            first = record if self.ended else None
            claims = self.coordinator.claim_many(requests, first=first)
            self.exhausted = len(claims) < len(requests)
            for (worker_id, _seed), claim in zip(requests, claims, strict=False):
                self.claimed.add(worker_id, claim)
        elif self.ended:
            written = self.ledger.record(self.ended)
        for outcome, _ in self.ended:
            self.pace.add(outcome.duration_s)
            if outcome.end is None or outcome.trial_id in written:
                self._report(outcome, outcome.state)
            else:
                # A stop or a recovery ended the trial while it ran: its result was
                # discarded, and it counts as what they made of it.
                ended_trial = self.coordinator.storage.get_trial(outcome.trial_id)
                self._report(outcome, counted_as(ended_trial))
        if self.ended and self.rules.patience is not None and self._may_stop():
            self._stop(self.rules.check(self.coordinator))  # the ends are written now
        self.ended = []

    def _report(self, outcome: TrialOutcome, counted: str) -> None:
        self.counts = self.counts.add(counted)
        if self.on_trial:
            self.on_trial(outcome, self.counts)
        if self._may_stop():
            self._stop(self.rules.after_trial(counted, outcome.value, outcome.number))

    def _may_stop(self) -> bool:
        """Whether a stop rule may still end the sweep (it is running or paused)."""
        return self.heartbeat.state in (SweepState.RUNNING, SweepState.PAUSED)

    def _stop(self, stop: Stop | None) -> None:
        """A stop rule's decision: the sweep STOPPED (running trials finish, none
        starts) or CANCELLED (``on_target: cancel``: they are killed)."""
        if stop is not None:
            self.heartbeat.state = end_sweep(self.coordinator, stop)

    # -- collecting what came back ------------------------------------------------------

    def _collect(self) -> None:
        """Wait for calls to come back (no longer than the ended trials may wait to be
        written), take in what they return, and end the calls past ``trial_timeout``."""
        now = time.monotonic()
        wait_s = min(1.0, self.policy.interval)
        if self.ended:  # ends not yet written are written within WRITE_DELAY_S
            wait_s = min(wait_s, max(0.0, self.ended_since + WRITE_DELAY_S - now))
        done = self.pool.wait(self.calls.refs(), wait_s)
        now = time.monotonic()
        for ref in self.calls.in_send_order(done):
            call = self.calls.returned(ref, now)
            if call is not None:  # else queued for a worker that died: failed with it
                self._returned(ref, call, now)
        if self.policy.trial_timeout:
            for call in self.calls.late(self.policy.trial_timeout, now):
                for trial_id in call.trial_ids:
                    self._report(*self.policy.timed_out(trial_id))
                    self.planner.lost(trial_id)
                self._replace(call.worker_id)

    def _returned(self, ref: Any, call: Call, now: float) -> None:
        """Take in a call that came back: its trials' outcomes, or its worker's death."""
        try:
            results = self.pool.result(ref)
        except CallLost as exc:
            if exc.worker_died:
                self._worker_died(call, exc.reason)
            else:
                self._lose(call.trial_ids, exc.reason)
            return
        for outcome in results:
            if isinstance(outcome, TrialCrash):
                self._lose([outcome.trial_id], f"trial execution failed: {outcome.error}")
                continue
            self.ledger.arrived(outcome, call.worker_id)
            if outcome.trial is not None:
                self.planner.ended([outcome.trial])
            if not self.ended:
                self.ended_since = now
            self.ended.append((outcome, call.worker_id))

    def _worker_died(self, call: Call, why: str) -> None:
        """Which of the trials sent to it it was running is not known (a finished one's
        result can die with it too): each is failed and retried by policy."""
        self._lose(call.trial_ids, why)
        for later in self.calls.drop_worker(call.worker_id):
            self._lose(later.trial_ids, f"{why} (or before it)")
        self._replace(call.worker_id)

    def _lose(self, trial_ids: list[int], reason: str) -> None:
        """Trials that did not come back: fail them, retried by policy, and let the
        planner read them as the database has them."""
        for trial_id in trial_ids:
            self._report(*self.policy.lost(trial_id, reason))
            self.planner.lost(trial_id)
        self.exhausted = False  # their retries wait to be claimed

    def _replace(self, worker_id: str) -> None:
        """A fresh worker for a dead or killed one (unless it was replaced already); the
        trials claimed or queued for it that had not started end as killed (they use
        no budget)."""
        waiting = self.calls.drop_worker(worker_id)
        self.ledger.leave(worker_id)
        for worker in self.pool.workers:
            if worker.worker_id == worker_id:
                self.ledger.join(self.pool.replace(worker).worker_id)
                break
        trial_ids = [t for call in waiting for t in call.trial_ids]
        trial_ids += self.claimed.take_all(worker_id)
        self.policy.not_started(trial_ids, "its worker was replaced")

    # -- idling and ending --------------------------------------------------------------

    def _idle(self, state: SweepState) -> SweepState | None:
        """Nothing in flight or to write: end the launch, or wait for a worker, a
        retry or the end of a pause."""
        past_deadline = self.deadline is not None and time.monotonic() >= self.deadline
        if state is SweepState.STOPPED:
            return state
        if state in (SweepState.FINISHED, SweepState.FAILED, SweepState.KILLED):
            # Another launch of the sweep ended it (it writes how it ended on the shared
            # row): this one claims no more, and ends once no trial is left to finish.
            if self.coordinator.unfinished():
                time.sleep(min(1.0, self.policy.interval))
                return None
            return SweepState.FINISHED if state is SweepState.FINISHED else SweepState.STOPPED
        starting = any(not self.pool.started(w) for w in self.pool.workers)
        if state is SweepState.RUNNING and not past_deadline and starting:
            time.sleep(0.05)  # a replacement worker is not placed yet
            return None
        if state is SweepState.RUNNING and (past_deadline or not self.coordinator.unfinished()):
            return SweepState.FINISHED
        # Paused, or other workers' trials still run (and may need a retry).
        time.sleep(min(1.0, self.policy.interval))
        self.exhausted = False
        return None

    def _cancel(self) -> None:
        """`sweep cancel` (or a target with ``on_target: cancel``): keep what ended,
        kill the rest."""
        self._book(claiming=False)
        self.policy.not_started(self.claimed.take_all(), "the sweep was cancelled")
        why = stopped_by(self.coordinator)
        self._kill_in_flight(f"cancelled: {why}" if why else CANCELLED)

    def _interrupt(self) -> None:
        """Ctrl-C: keep the trials that did end, kill the rest."""
        with contextlib.suppress(Exception):
            self._book(claiming=False)
        with contextlib.suppress(Exception):
            self.policy.not_started(self.claimed.take_all(), "the sweep was stopped")
        self._kill_in_flight(STOPPED)

    def _kill_in_flight(self, reason: str) -> None:
        """Kill the workers, then end their trials (FAIL, marked killed: they use no
        budget) and runs (KILLED)."""
        self.pool.kill_all()
        self.pool.wait_all(self.calls.refs(), KILL_GRACE_S)
        self.policy.killed([t for call in self.calls for t in call.trial_ids], reason)
