"""A trial's end: the one place that writes it, and the sinks that decide when.

A trial ends in three things written in one transaction: its rows in Optuna's tables
(state, values, the params and reports still held), its run's end (status, params,
tags, last metric points) and the release of its lease. :func:`write_ends` writes
them, for any number of trials at once, whoever ended them: an agent's worker as its
trial ends, the controller for a batch of its Ray workers' trials, and the coordinator
for a trial whose worker was lost.

When Optuna ends a trial that a process runs (``study.tell``), its
:class:`~sweep.storage.StudyStorage` hands the trial's writes to the process's
:class:`EndSink`: :class:`WriteNow` writes the end at once (an agent's worker),
:class:`HandBack` keeps it for the caller to return (a Ray worker hands it to the
controller, which writes the ends of all its workers' trials in batches), and
:class:`WriteSoon` keeps it for the process's next claim to write in its transaction
(an agent's worker running scripts: see :meth:`~sweep.trial.TrialRunner.claim`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete
from sqlalchemy.orm import Session

from sweep.storage import LEASE_TABLE, Database, TrialWrites, retry_transient, write_trials
from sweep.storage import EndSink as StudyEndSink
from sweep.tracking import RunEnd, RunStatus, TrackingStore

#: Why an attempt's result did not count, on its run.
_DISCARDED = (
    "its trial was ended elsewhere (a stop, or a recovery after its lease expired) before "
    "this attempt came back; its result was not counted"
)


# Built once, on the table: building and running an ORM statement costs several times
# more than the statement itself, on a path every trial takes.
_RELEASE = delete(LEASE_TABLE).where(
    LEASE_TABLE.c.trial_id.in_(bindparam("trial_ids", expanding=True))
)


@dataclass(frozen=True)
class TrialEnd:
    """One trial's end: its study rows (``writes``, with the end state) and its run's
    end (None when no run was opened). Picklable: a Ray worker returns it."""

    writes: TrialWrites
    run_end: RunEnd | None = None

    @property
    def trial_id(self) -> int:
        return self.writes.trial_id


def write_ends(session: Session, tracking: TrackingStore, ends: Sequence[TrialEnd]) -> set[int]:
    """Write ``ends`` in ``session``'s transaction, a statement per table however many:
    the study rows, the runs' ends and the leases' release. A trial no longer RUNNING
    (a stop or a recovery ended it meanwhile) keeps what they wrote, and its run, if
    still open, ends FAILED saying why. Returns the ids of the trials written."""
    if not ends:
        return set()
    written = write_trials(session, [end.writes for end in ends])
    tracking.finish_runs(
        session,
        [
            end.run_end if end.trial_id in written else discarded(end.run_end)
            for end in ends
            if end.run_end is not None
        ],
    )
    release_leases(session, [end.trial_id for end in ends])
    return written


def release_leases(session: Session, trial_ids: Sequence[int]) -> None:
    """Drop the leases of ``trial_ids``, in ``session``'s transaction."""
    session.execute(_RELEASE, {"trial_ids": list(trial_ids)})


def discarded(run_end: RunEnd) -> RunEnd:
    """The end of a run whose trial a stop or a recovery ended while it ran. Whoever
    ended the trial ended its run too (``finish_runs`` then leaves it as it is), unless
    the run was opened after that: then this ends it, saying why its result does not
    count."""
    return RunEnd(
        run_end.run_id,
        RunStatus.FAILED,
        params=run_end.params,
        tags={"sweep.state": "FAIL", "sweep.error": _DISCARDED},
        points=run_end.points,
    )


class EndSink(StudyEndSink):
    """Where the end of a trial this process runs goes once Optuna ends it (the study
    storage's sink, here with the run's end that goes with the study rows).

    The trial runner says what the trial's run ends with (:meth:`expect`) before it
    tells Optuna; the process's study storage then hands the trial's writes to
    :meth:`end`, which returns whether the trial counts as ended by this process."""

    def __init__(self) -> None:
        self._run_ends: dict[int, RunEnd] = {}

    def expect(self, trial_id: int, run_end: RunEnd) -> None:
        self._run_ends[trial_id] = run_end

    def end(self, writes: TrialWrites) -> bool:
        raise NotImplementedError

    def _end_of(self, writes: TrialWrites) -> TrialEnd:
        return TrialEnd(writes, self._run_ends.pop(writes.trial_id, None))


class WriteNow(EndSink):
    """Writes each end in a transaction of its own, at once (retried while the
    database is briefly unreachable). An agent's worker ends its trials so."""

    def __init__(self, db: Database, tracking: TrackingStore) -> None:
        super().__init__()
        self.db = db
        self.tracking = tracking

    def end(self, writes: TrialWrites) -> bool:
        end = self._end_of(writes)
        return end.trial_id in self.write([end])

    def write(self, ends: Sequence[TrialEnd]) -> set[int]:
        """Write ``ends`` in a transaction of their own (retried while the database is
        briefly unreachable); the ids of the trials written."""
        if not ends:
            return set()

        def transaction() -> set[int]:
            with self.db.session() as session:
                return write_ends(session, self.tracking, ends)

        trials = ", ".join(str(end.trial_id) for end in ends)
        return retry_transient(transaction, what=f"writing the end of trial(s) {trials}")


class WriteSoon(WriteNow):
    """Keeps each end for the caller to write with the process's next claim, in its
    transaction (:meth:`~sweep.trial.TrialRunner.claim`): an agent's worker running
    scripts, so that a short script's trial costs one transaction less.

    As with :class:`HandBack`, this process's view of a trial that a stop or a recovery
    ended meanwhile keeps the end it saw here (its samplers may count one trial so)."""

    def __init__(self, db: Database, tracking: TrackingStore) -> None:
        super().__init__(db, tracking)
        self._kept: list[TrialEnd] = []

    def end(self, writes: TrialWrites) -> bool:
        self._kept.append(self._end_of(writes))
        return True

    def take_kept(self) -> list[TrialEnd]:
        kept, self._kept = self._kept, []
        return kept


class HandBack(EndSink):
    """Keeps each end for the caller to :meth:`take`: a Ray worker returns its trials'
    ends to the controller, which writes many at once (:func:`write_ends`)."""

    def __init__(self) -> None:
        super().__init__()
        self._ended: dict[int, TrialEnd] = {}

    def end(self, writes: TrialWrites) -> bool:
        self._ended[writes.trial_id] = self._end_of(writes)
        return True

    def take(self, trial_id: int) -> TrialEnd:
        return self._ended.pop(trial_id)
