"""A study's trial slots (its trials, those waiting, the budget used), counted once.

A claim needs the study's trial count (the next trial's number), whether trials wait to
run, and the budget used. Counting them from Optuna's tables scans every trial of the
study, so a claim would cost more the longer a sweep runs. Instead the counts are kept
in the study's row of ``sweep_study_slots`` up to the last trial they saw, and a read
adds only the trials created since (an index range on ``trials`` by study and id): a
claim's cost stays flat however many trials finished.

Exact because (a) the rows are written only under the sweep's claim lock, by claims and
recoveries, each reading them first in the same transaction; (b) every trial creator
(claims, recoveries, the grid's enqueue, Optuna's own ``create_new_trial``) holds the
study's row lock while it inserts, so trial ids grow in commit order within a study and
the trials after ``seen_trial_id`` are exactly those not yet counted; (c) the only
changes to trials already counted that move a count are made by the lock holders
themselves, which say so here: a claim starting waiting trials, a recovery marking a
trial killed or superseded. A waiting trial that Optuna itself starts (``study.ask``
outside sweep) leaves ``waiting`` too high, which costs one empty query and is then
corrected. A study without a row (made before revision 0005, or never claimed from) is
counted in full once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from optuna.trial import TrialState
from sqlalchemy import Select, Table, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from sweep.storage._optuna_tables import STUDIES, SYSTEM_ATTRS, TRIALS
from sweep.storage.schema import StudySlotsRow

# DeclarativeBase types ``__table__`` as any FromClause; StudySlotsRow maps one Table.
_SLOTS = cast(Table, StudySlotsRow.__table__)


#: Trials a read may count beyond the stored row before a claim stores it again.
SAVE_EVERY = 64


@dataclass
class StudySlots:
    """A study's trial slots: its trials (so the next trial's number), those WAITING to
    run, and those that use no budget; counted up to trial ``seen``. A lock holder
    changes them as it changes the trials, then :func:`save_slots`."""

    study_id: int
    trials: int
    waiting: int
    uncounted: int
    seen: int
    stored: bool = False
    #: Trials counted beyond the stored row (by the read, or created since).
    unsaved: int = 0
    #: Whether a count of trials the stored row covers changed.
    dirty: bool = False

    @property
    def used(self) -> int:
        """The budget used: every trial not killed or superseded."""
        return self.trials - self.uncounted

    def created(self, trial_ids: Sequence[int], *, waiting: bool = False) -> None:
        """Count trials the lock holder just created (RUNNING, or WAITING)."""
        if trial_ids:
            self.trials += len(trial_ids)
            self.waiting += len(trial_ids) if waiting else 0
            self.seen = max(self.seen, *trial_ids)
            self.unsaved += len(trial_ids)

    def started(self, asked: int, found: int) -> None:
        """``found`` of the ``asked`` waiting trials were started; fewer means none
        are left (Optuna may have started some itself)."""
        waiting = max(0, self.waiting - found) if found >= asked else 0
        self.dirty = self.dirty or found > 0 or waiting != self.waiting
        self.waiting = waiting

    def uncount(self) -> None:
        """A trial counted before was just marked killed or superseded."""
        self.uncounted += 1
        self.dirty = True


def study_slots(
    session: Session, study_id: int, *, uncounted: Sequence[str], lock: bool = False
) -> StudySlots:
    """The study's :class:`StudySlots`: its stored counts and the trials created since
    (a trial with a system attribute whose key is in ``uncounted`` uses no budget). With
    ``lock``, on PostgreSQL, the study's row is locked as well, as Optuna's own trial
    creation locks it, so that a user's ``enqueue_trial`` cannot interleave with the
    numbering. Two statements, neither of which reads the trials counted before."""
    postgresql = lock and session.get_bind().dialect.name == "postgresql"
    row = session.execute(_stored_query(postgresql), {"study_id": study_id}).first()
    stored = row is not None and row[0] is not None
    seen, trials, waiting, marked = row if row is not None and stored else (0, 0, 0, 0)
    # A statement of its own, ``seen`` a value: a correlated bound leaves PostgreSQL
    # planning for a range of unknown size (a claim took 64 ms at 100,000 trials).
    since = _since_query(tuple(uncounted))
    known, new, new_waiting, new_marked, last = session.execute(
        since, {"study_id": study_id, "seen": seen}
    ).one()
    stale = bool(seen and not known)
    if stale:
        # The trial last counted is gone: the study was deleted behind sweep's back
        # and its id reused (SQLite). Count it afresh.
        seen, trials, waiting, marked = 0, 0, 0, 0
        known, new, new_waiting, new_marked, last = session.execute(
            since, {"study_id": study_id, "seen": 0}
        ).one()
    return StudySlots(
        study_id,
        trials=int(trials) + int(new) - int(known),
        waiting=int(waiting) + int(new_waiting or 0),
        uncounted=int(marked) + int(new_marked or 0),
        seen=int(last) if last is not None else int(seen),
        stored=stored,
        unsaved=int(new) - int(known),
        dirty=stale,
    )


def save_slots(session: Session, slots: StudySlots) -> None:
    """Store ``slots`` in the caller's transaction (which holds the claim lock) when a
    count of trials the stored row covers changed, or when more than
    :data:`SAVE_EVERY` trials are counted beyond it; otherwise the next read counts
    those again (a statement less for most claims)."""
    if slots.stored and not slots.dirty and slots.unsaved < SAVE_EVERY:
        return
    values = {
        "seen_trial_id": slots.seen,
        "trials": slots.trials,
        "waiting": slots.waiting,
        "uncounted": slots.uncounted,
    }
    if slots.stored:
        session.execute(update(_SLOTS).where(_SLOTS.c.study_id == slots.study_id), values)
    else:
        session.execute(insert(_SLOTS), {"study_id": slots.study_id, **values})
        slots.stored = True
    slots.unsaved, slots.dirty = 0, False


@functools.cache
def _stored_query(lock: bool) -> Select[Any]:
    """The study's stored counts (NULLs without a row), locking the study's row with
    ``lock`` (PostgreSQL)."""
    query = (
        select(_SLOTS.c.seen_trial_id, _SLOTS.c.trials, _SLOTS.c.waiting, _SLOTS.c.uncounted)
        .select_from(STUDIES.outerjoin(_SLOTS, _SLOTS.c.study_id == STUDIES.c.study_id))
        .where(STUDIES.c.study_id == bindparam("study_id"))
    )
    return query.with_for_update(of=STUDIES) if lock else query


def _marked(uncounted: tuple[str, ...]) -> Any:
    """Whether the trial has a system attribute whose key is in ``uncounted``."""
    return (
        select(SYSTEM_ATTRS.c.trial_id)
        .where(SYSTEM_ATTRS.c.trial_id == TRIALS.c.trial_id, SYSTEM_ATTRS.c.key.in_(uncounted))
        .exists()
    )


@functools.cache
def _since_query(uncounted: tuple[str, ...]) -> Select[Any]:
    """The trials of the study from id ``seen`` on: whether trial ``seen`` is among them
    (0 or 1), how many (``seen`` included), WAITING and marked with one of
    ``uncounted`` (``seen`` excluded: counted before), and the last id."""
    later = TRIALS.c.trial_id > bindparam("seen")
    marked = _marked(uncounted)
    return select(
        func.count(case((TRIALS.c.trial_id == bindparam("seen"), 1))),
        func.count(),
        func.count(case((later & (TRIALS.c.state == TrialState.WAITING), 1))),
        func.count(case((later & marked, 1))),
        func.max(TRIALS.c.trial_id),
    ).where(TRIALS.c.study_id == bindparam("study_id"), TRIALS.c.trial_id >= bindparam("seen"))
