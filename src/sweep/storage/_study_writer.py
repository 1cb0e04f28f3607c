"""Writing what trials hold to Optuna's tables: a statement per table however many
trials, in the caller's transaction; and where a study storage sends the end of a trial
its process runs (:class:`EndSink`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from sweep.storage._optuna_tables import (
    INTERMEDIATE_VALUES,
    PARAMS,
    SYSTEM_ATTRS,
    TRIALS,
    USER_ATTRS,
    VALUES,
    utc_now,
)
from sweep.storage._own_trials import TrialWrites
from sweep.storage._retrying import retry_transient
from sweep.storage.sql import insert_rows, upsert

if TYPE_CHECKING:
    from sweep.storage._database import Database


class EndSink(Protocol):
    """Takes the end of a trial this process runs (see :mod:`sweep.ends`); returns
    whether the trial counts as ended here (False: another process had ended it)."""

    def end(self, writes: TrialWrites) -> bool: ...


#: One trial's end, while it is RUNNING; built once (building it costs more than running it).
_END_ONE = (
    update(TRIALS)
    .where(TRIALS.c.trial_id == bindparam("ended_id"), TRIALS.c.state == TrialState.RUNNING)
    .values(state=bindparam("end_state"), datetime_complete=bindparam("ended_at"))
    .returning(TRIALS.c.trial_id)
)


def write_trials(session: Session, writes: Sequence[TrialWrites]) -> set[int]:
    """Write each trial's held writes, and end those with a ``state``, in ``session``'s
    transaction: a statement per table, however many trials. Trials no longer RUNNING
    in the database (another process ended them) are skipped; returns the ids written."""
    if not writes:
        return set()
    if len(writes) == 1 and writes[0].state is not None:
        # One trial's end (an agent's): ended only while RUNNING, in one statement that
        # locks its row as the query below would.
        end = writes[0]
        running = set(
            session.execute(
                _END_ONE,
                {
                    "ended_id": end.trial_id,
                    "end_state": end.state,
                    "ended_at": end.ended_at or utc_now(),
                },
            ).scalars()
        )
        return _write_rest(session, [end] if running else [], running)
    running = set(
        session.execute(
            select(TRIALS.c.trial_id)
            .where(
                TRIALS.c.trial_id.in_([w.trial_id for w in writes]),
                TRIALS.c.state == TrialState.RUNNING,
            )
            .with_for_update()
        ).scalars()
    )
    writes = [w for w in writes if w.trial_id in running]
    ends = [
        {"ended_id": w.trial_id, "end_state": w.state, "ended_at": w.ended_at or utc_now()}
        for w in writes
        if w.state is not None
    ]
    if ends:
        session.execute(
            update(TRIALS)
            .where(TRIALS.c.trial_id == bindparam("ended_id"))
            .values(state=bindparam("end_state"), datetime_complete=bindparam("ended_at")),
            ends,
        )
    return _write_rest(session, writes, running)


def _write_rest(session: Session, writes: Sequence[TrialWrites], running: set[int]) -> set[int]:
    """Everything but the trials' states, for ``writes`` (those still RUNNING)."""
    params = [row for w in writes for row in w.params]
    if params:
        insert_rows(session, PARAMS, params)
    upsert(session, INTERMEDIATE_VALUES, _step_rows(writes), ("trial_id", "step"))
    for table, kind in ((USER_ATTRS, "user_attrs"), (SYSTEM_ATTRS, "system_attrs")):
        attrs = [
            {"trial_id": w.trial_id, "key": key, "value_json": json.dumps(value)}
            for w in writes
            for key, value in getattr(w, kind).items()
        ]
        upsert(session, table, attrs, ("trial_id", "key"))
    upsert(session, VALUES, _value_rows(writes), ("trial_id", "objective"))
    return running


def _step_rows(writes: Sequence[TrialWrites]) -> list[dict[str, Any]]:
    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    steps: list[dict[str, Any]] = []
    for w in writes:
        for step, value in w.intermediate_values.items():
            stored, step_type = to_stored(value)
            steps.append(
                {
                    "trial_id": w.trial_id,
                    "step": step,
                    "intermediate_value": stored,
                    "intermediate_value_type": step_type,
                }
            )
    return steps


def _value_rows(writes: Sequence[TrialWrites]) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = []
    for w in writes:
        for objective, value in enumerate(w.values or ()):
            stored, value_type = models.TrialValueModel.value_to_stored_repr(value)
            values.append(
                {
                    "trial_id": w.trial_id,
                    "objective": objective,
                    "value": stored,
                    "value_type": value_type,
                }
            )
    return values


def write_held(db: Database, writes: TrialWrites, what: str) -> bool:
    """Write one trial's ``writes`` in a transaction of its own, retried while the
    database is briefly unreachable; False when another process had ended the trial."""

    def transaction() -> bool:
        with db.session() as session:
            return bool(write_trials(session, [writes]))

    return retry_transient(transaction, what=what)


class WriteStudyRows:
    """The end sink of a storage used without a trial runner: the study rows alone."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def end(self, writes: TrialWrites) -> bool:
        return write_held(self.db, writes, f"ending trial {writes.trial_id}")
