"""Optuna's tables, as this project reads and writes them directly (in bulk, and inside
its own transactions), and the time convention they follow.

Only ``sweep.storage`` touches these tables with SQL; everything else goes through
its functions or through Optuna's API.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any, overload

from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sweep.storage.sql import insert_rows

STUDIES = models.StudyModel.__table__
STUDY_DIRECTIONS = models.StudyDirectionModel.__table__
TRIALS = models.TrialModel.__table__
PARAMS = models.TrialParamModel.__table__
VALUES = models.TrialValueModel.__table__
INTERMEDIATE_VALUES = models.TrialIntermediateValueModel.__table__
USER_ATTRS = models.TrialUserAttributeModel.__table__
SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__


def utc_now() -> datetime.datetime:
    """Now, as Optuna's tables store it: naive UTC."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@overload
def local_time(stored: datetime.datetime) -> datetime.datetime: ...
@overload
def local_time(stored: None) -> None: ...
def local_time(stored: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive-UTC datetime as Optuna's trials carry it: naive local time."""
    if stored is None:
        return None
    return stored.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


# -- what the coordination of a sweep reads and writes in them --------------------------
#
# Each function runs in the caller's session (one transaction, under the sweep's claim
# lock where it writes) and names the rows it touches; none commits.


def progress_since_best(
    session: Session, study_id: int, *, maximize: bool, uncounted: Sequence[str]
) -> tuple[float | None, int]:
    """The best value of the study's complete trials, and how many finished trials
    (complete, pruned, failed) ended after the first trial that reached it (all of them
    when none is complete), in order of their end; trials with a system attribute whose
    key is in ``uncounted`` are left out. Two queries."""
    marked = (
        select(SYSTEM_ATTRS.c.trial_id)
        .where(SYSTEM_ATTRS.c.trial_id == TRIALS.c.trial_id, SYSTEM_ATTRS.c.key.in_(uncounted))
        .exists()
    )
    value = VALUES.c.value
    best = session.execute(
        select(value, TRIALS.c.datetime_complete, TRIALS.c.number)
        .join(VALUES, (VALUES.c.trial_id == TRIALS.c.trial_id) & (VALUES.c.objective == 0))
        .where(
            TRIALS.c.study_id == study_id,
            TRIALS.c.state == TrialState.COMPLETE,
            VALUES.c.value_type == "FINITE",
            ~marked,
        )
        .order_by(value.desc() if maximize else value.asc(), TRIALS.c.datetime_complete)
        .order_by(TRIALS.c.number)
        .limit(1)
    ).first()
    finished = TRIALS.c.state.in_([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
    since = (
        select(func.count())
        .select_from(TRIALS)
        .where(TRIALS.c.study_id == study_id, finished, ~marked)
    )
    if best is not None:
        ended, number = TRIALS.c.datetime_complete, TRIALS.c.number
        at = best.datetime_complete
        since = since.where((ended > at) | ((ended == at) & (number > best.number)))
    return (None if best is None else float(best.value)), int(session.execute(since).scalar_one())


def unfinished_trials(session: Session, study_id: int) -> list[tuple[int, TrialState]]:
    """The study's trials still RUNNING or WAITING, oldest first, with their state."""
    query = (
        select(TRIALS.c.trial_id, TRIALS.c.state)
        .where(
            TRIALS.c.study_id == study_id,
            TRIALS.c.state.in_([TrialState.RUNNING, TrialState.WAITING]),
        )
        .order_by(TRIALS.c.trial_id)
    )
    return [(int(trial_id), TrialState[_name(state)]) for trial_id, state in session.execute(query)]


def start_waiting_trials(
    session: Session, study_id: int, most: int, started: datetime.datetime
) -> list[tuple[int, int]]:
    """Set up to ``most`` of the study's WAITING trials, oldest first, RUNNING from
    ``started`` (naive UTC); returns their ``(trial_id, number)``."""
    waiting = session.execute(
        select(TRIALS.c.trial_id, TRIALS.c.number)
        .where(TRIALS.c.study_id == study_id, TRIALS.c.state == TrialState.WAITING)
        .order_by(TRIALS.c.trial_id)
        .limit(most)
    ).all()
    slots = [(int(trial_id), int(number)) for trial_id, number in waiting]
    if slots:
        session.execute(
            update(TRIALS)
            .where(TRIALS.c.trial_id.in_([trial_id for trial_id, _ in slots]))
            .values(state=TrialState.RUNNING, datetime_start=started)
        )
    return slots


#: New trials, their ids returned in the order given; built once.
_INSERT_TRIALS = TRIALS.insert().returning(TRIALS.c.trial_id, sort_by_parameter_order=True)


def insert_running_trials(
    session: Session, study_id: int, numbers: range, started: datetime.datetime
) -> list[tuple[int, int]]:
    """New trials of the study numbered ``numbers``, RUNNING from ``started`` (naive
    UTC), in one statement; returns their ``(trial_id, number)``. The caller chose the
    numbers as Optuna numbers trials (those before it in the study), holding the locks
    that make them exact."""
    if not numbers:
        return []
    created = session.execute(
        _INSERT_TRIALS,
        [
            {
                "number": number,
                "study_id": study_id,
                "state": TrialState.RUNNING,
                "datetime_start": started,
            }
            for number in numbers
        ],
    ).scalars()
    return [(int(trial_id), number) for trial_id, number in zip(created, numbers, strict=True)]


def queue_waiting_trial(
    session: Session, study_id: int, number: int, system_attrs: Mapping[str, Any]
) -> int:
    """A WAITING trial of the study numbered ``number`` with ``system_attrs`` (Optuna's
    ``fixed_params`` among them, as its ``enqueue_trial`` makes one); returns its id."""
    trial_id = int(
        session.execute(
            TRIALS.insert().returning(TRIALS.c.trial_id),
            {"number": number, "study_id": study_id, "state": TrialState.WAITING},
        ).scalar_one()
    )
    insert_system_attrs(session, [(trial_id, key, value) for key, value in system_attrs.items()])
    return trial_id


def system_attrs_of(session: Session, trial_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The system attributes of each of ``trial_ids`` (an empty dict for one with none)."""
    attrs: dict[int, dict[str, Any]] = {trial_id: {} for trial_id in trial_ids}
    if trial_ids:
        columns = SYSTEM_ATTRS.c.trial_id, SYSTEM_ATTRS.c.key, SYSTEM_ATTRS.c.value_json
        for trial_id, key, value in session.execute(
            select(*columns).where(SYSTEM_ATTRS.c.trial_id.in_(list(trial_ids)))
        ):
            attrs[int(trial_id)][key] = json.loads(value)
    return attrs


def system_attr_by_number(
    session: Session, study_id: int, numbers: Sequence[int], key: str
) -> dict[int, Any]:
    """The system attribute ``key`` of the study's trials numbered ``numbers``, by
    number (a trial without it is left out)."""
    if not numbers:
        return {}
    rows = session.execute(
        select(TRIALS.c.number, SYSTEM_ATTRS.c.value_json)
        .join(TRIALS, TRIALS.c.trial_id == SYSTEM_ATTRS.c.trial_id)
        .where(
            TRIALS.c.study_id == study_id,
            TRIALS.c.number.in_(list(numbers)),
            SYSTEM_ATTRS.c.key == key,
        )
    )
    return {int(number): json.loads(value) for number, value in rows}


def insert_system_attrs(session: Session, attrs: Sequence[tuple[int, str, Any]]) -> None:
    """Add system attributes, ``(trial_id, key, value)`` each, in one statement; a key a
    trial already has is an integrity error (Optuna keeps one row per key)."""
    insert_rows(
        session,
        SYSTEM_ATTRS,
        [
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            for trial_id, key, value in attrs
        ],
    )


def _name(state: object) -> str:
    """A state as the driver returns it (the enum, or its name) as its name."""
    return state.name if isinstance(state, TrialState) else str(state)
