"""The controller's ledger of its Ray workers' trials.

A Ray worker does not write its trial's end: it returns it (the study's rows, the run's
end, the trial as it ended) and the controller writes the ends of every trial that
finished since its last write in one transaction, a statement per table however many
there are. It also hands each worker, with its next trial, the trials finished
elsewhere since its last one (by the other workers, or by agents and other controllers,
read from the store every ``POLL_S`` seconds), so that a worker samples without reading
the study back. This is what lets two workers on two cores run several hundred trivial
trials a second, where a transaction per trial and worker was the ceiling.

A trial's end is in the store once the transaction that writes it commits (the
controller's next claim, or :meth:`TrialLedger.record`). If the controller
dies before, the trial is still RUNNING under its lease, and is failed and retried by
whoever recovers the sweep: its result is lost, never half-written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from optuna.trial import FrozenTrial
from sqlalchemy.orm import Session

from sweep.ends import write_ends
from sweep.storage import Database, StudyStorage, retry_transient
from sweep.tracking import TrackingStore
from sweep.trial import TrialOutcome
from sweep.trial_counts import FINISHED_STATES

#: Seconds between reads of the store for trials that other processes finished.
POLL_S = 0.5
#: The log of finished trials drops the ones every worker has been told about once
#: this many have piled up (dropping them one by one would shift the list each time).
TRIM_AFTER = 256


class TrialLedger:
    """Writes workers' trial ends in batches; knows which finished trials each worker
    has not been told about. Used by the controller's thread only."""

    def __init__(
        self, db: Database, storage: StudyStorage, tracking: TrackingStore, study_id: int
    ) -> None:
        self.db = db
        self.storage = storage
        self.tracking = tracking
        self.study_id = study_id
        # Finished trials in the order the ledger learned of them, and who ran each
        # (None: another process); the first ``_dropped`` are gone (every worker was
        # told of them), so a position in the log is ``_dropped`` + an index in ``_log``.
        self._log: list[tuple[FrozenTrial, str | None]] = []
        self._dropped = 0
        self._known: set[int] = set()
        self._told: dict[str, int] = {}  # worker id -> the position it was told up to
        self._polled_at = 0.0
        self.poll()

    def join(self, worker_id: str) -> None:
        """A new worker reads the study itself as it starts: tell it only what follows."""
        self._told[worker_id] = self._end()

    def leave(self, worker_id: str) -> None:
        """A worker that is gone: what it was not told no longer needs keeping for it."""
        self._told.pop(worker_id, None)
        self._trim()

    def news_for(self, worker_id: str) -> list[FrozenTrial]:
        """Trials finished elsewhere that ``worker_id`` has not been told about."""
        if time.monotonic() - self._polled_at >= POLL_S:
            self.poll()
        end = self._end()
        start = self._told.get(worker_id, end) - self._dropped
        self._told[worker_id] = end
        news = [trial for trial, ran_by in self._log[start:] if ran_by != worker_id]
        self._trim()
        return news

    def _end(self) -> int:
        return self._dropped + len(self._log)

    def _trim(self) -> None:
        """Drop the trials every worker has been told about, so that the log does not
        grow with the sweep."""
        told = min(self._told.values(), default=self._end()) - self._dropped
        if told >= TRIM_AFTER:
            del self._log[:told]
            self._dropped += told

    def poll(self) -> None:
        """Learn of the trials other processes finished."""
        self._polled_at = time.monotonic()
        for trial in self.storage.get_all_trials(
            self.study_id, deepcopy=False, states=FINISHED_STATES
        ):
            self._learn(trial, None)

    def arrived(self, outcome: TrialOutcome, worker_id: str) -> None:
        """A worker's trial came back: the other workers hear of it with their next
        trial, before it is written (a trial that a stop or a recovery ended meanwhile
        is the rare exception)."""
        if outcome.trial is not None:
            self._learn(outcome.trial, worker_id)

    def record(self, outcomes: Sequence[tuple[TrialOutcome, str]]) -> set[int]:
        """Write the ends of ``(outcome, worker_id)`` pairs in a transaction of their
        own; returns the ids of the trials written."""
        return retry_transient(
            lambda: self._write_once(outcomes), what=f"writing the ends of {len(outcomes)} trials"
        )

    def _write_once(self, outcomes: Sequence[tuple[TrialOutcome, str]]) -> set[int]:
        with self.db.session() as session:
            return self.write(session, outcomes)

    def write(self, session: Session, outcomes: Sequence[tuple[TrialOutcome, str]]) -> set[int]:
        """Write the ends of ``(outcome, worker_id)`` pairs and release their leases, in
        ``session``'s transaction; returns the ids of the trials written (a trial a stop
        or a recovery ended meanwhile is not)."""
        return write_ends(session, self.tracking, [o.end for o, _ in outcomes if o.end is not None])

    def _learn(self, trial: FrozenTrial, ran_by: str | None) -> None:
        if trial._trial_id not in self._known:
            self._known.add(trial._trial_id)
            self._log.append((trial, ran_by))
