"""A sweep's trials read straight from Optuna's tables, in a few queries per call.

Loading a study as Optuna objects costs seconds and tens of MB for 10,000 trials with
100 reports each; the UI, the report, `sweep runs` and the live progress of `sweep
launch` need only columns: states, values, params (a running trial's included: Optuna
holds them from the moment they are suggested) and, for a few trials, their reports.
Everything here only reads; the tables' format stays Optuna's.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution
from sqlalchemy import String, case, cast, func, select

from sweep.storage import (
    INTERMEDIATE_VALUES as REPORTS,
)
from sweep.storage import (
    PARAMS,
    STUDIES,
    STUDY_DIRECTIONS,
    SYSTEM_ATTRS,
    TRIALS,
    VALUES,
    Database,
)
from sweep.study import RUN_ID_ATTR, WARM_START_ATTR
from sweep.tracking import Run, RunStatus

_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


@dataclass(slots=True)
class TrialRow:
    """One trial's columns: ``state`` is Optuna's state name; ``value`` its first
    objective (None until it completes); ``params`` in their external form.

    Read-only by convention (the UI's cache shares rows between requests): not a frozen
    dataclass, which takes six times longer to build, and a sweep page reads 10,000."""

    trial_id: int
    number: int
    state: str
    value: float | None
    started: datetime.datetime | None
    completed: datetime.datetime | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.completed is None:
            return None
        return (self.completed - self.started).total_seconds()


@dataclass(frozen=True)
class StudyInfo:
    study_id: int
    name: str
    direction: str  # "minimize" or "maximize" (the first objective's)
    objectives: int = 1  # several: the charts show the first, status the Pareto front


def find_study(db: Database, name: str) -> StudyInfo | None:
    """The study called ``name``, or None when there is none (never created, or deleted
    by Optuna's tools behind the sweep's back)."""
    with db.session() as session:
        study_id = session.scalar(select(STUDIES.c.study_id).where(STUDIES.c.study_name == name))
        if study_id is None:
            return None
        directions = (
            session.execute(
                select(STUDY_DIRECTIONS.c.direction)
                .where(STUDY_DIRECTIONS.c.study_id == study_id)
                .order_by(STUDY_DIRECTIONS.c.objective)
            )
            .scalars()
            .all()
        )
    first = directions[0] if directions else "MINIMIZE"
    return StudyInfo(int(study_id), name, _name(first).lower(), max(1, len(directions)))


def list_study_names(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(STUDIES.c.study_name).order_by(STUDIES.c.study_id)))


def trial_rows(
    db: Database,
    study_id: int,
    *,
    params: bool = True,
    states: Sequence[str] | None = None,
    trial_ids: Iterable[int] | None = None,
    after_trial_id: int | None = None,
) -> list[TrialRow]:
    """The study's trials in number order with their first objective value and, if
    ``params``, their params; narrowed to ``states``, ``trial_ids`` or the trials
    created after ``after_trial_id`` if given."""
    query = (
        select(
            TRIALS.c.trial_id,
            TRIALS.c.number,
            # As text: SQLAlchemy's Enum conversion of 10,000 rows costs tens of ms.
            cast(TRIALS.c.state, String).label("state"),
            VALUES.c.value,
            cast(VALUES.c.value_type, String).label("value_type"),
            TRIALS.c.datetime_start,
            TRIALS.c.datetime_complete,
        )
        .outerjoin(VALUES, (VALUES.c.trial_id == TRIALS.c.trial_id) & (VALUES.c.objective == 0))
        .where(TRIALS.c.study_id == study_id)
        .order_by(TRIALS.c.number)
    )
    if states is not None:
        query = query.where(TRIALS.c.state.in_(list(states)))
    ids = None if trial_ids is None else list(trial_ids)
    if ids is not None:
        query = query.where(TRIALS.c.trial_id.in_(ids))
    if after_trial_id is not None:
        query = query.where(TRIALS.c.trial_id > after_trial_id)
    with db.session() as session:
        rows = session.execute(query).all()
        if ids is None and (states is not None or after_trial_id is not None):
            ids = [r.trial_id for r in rows]
        by_trial = _params(session, study_id, ids) if params else {}
    return [
        TrialRow(
            trial_id,
            number,
            state,
            value if value is not None or value_type is None else _SPECIAL.get(value_type),
            started,
            completed,
            by_trial.get(trial_id, {}),
        )
        for trial_id, number, state, value, value_type, started, completed in rows
    ]


def trial_params(
    db: Database, study_id: int, trial_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """The params (external form) of ``trial_ids``, trials of study ``study_id``."""
    with db.session() as session:
        return _params(session, study_id, list(trial_ids))


def fingerprint(db: Database, study_id: int) -> tuple[Any, ...]:
    """What changes whenever a trial starts or ends: a cache of :func:`trial_rows` is
    current while this is unchanged (one aggregate over the study's trials index)."""
    running = func.sum(case((TRIALS.c.state == "RUNNING", 1), else_=0))
    query = select(
        func.count(), func.max(TRIALS.c.trial_id), func.max(TRIALS.c.datetime_complete), running
    ).where(TRIALS.c.study_id == study_id)
    with db.session() as session:
        return tuple(session.execute(query).one())


def _params(session: Any, study_id: int, trial_ids: list[int] | None) -> dict[int, dict[str, Any]]:
    query = select(
        PARAMS.c.trial_id, PARAMS.c.param_name, PARAMS.c.param_value, PARAMS.c.distribution_json
    )
    if trial_ids is not None:
        query = query.where(PARAMS.c.trial_id.in_(trial_ids))
    else:
        query = query.join(TRIALS, TRIALS.c.trial_id == PARAMS.c.trial_id).where(
            TRIALS.c.study_id == study_id
        )
    out: dict[int, dict[str, Any]] = {}
    # .all(): one fetch of every row; iterating fetches them one by one (a third of a
    # cold sweep page's time for 30,000 params).
    for trial_id, name, value, dist in session.execute(query).all():
        out.setdefault(trial_id, {})[name] = _external(dist, value)
    return out


def best_trial(db: Database, study_id: int, direction: str) -> tuple[int, float] | None:
    """The number and value of the study's best complete trial (not one copied by
    ``warm_start``), in one query."""
    value = VALUES.c.value
    copied = (
        select(SYSTEM_ATTRS.c.trial_id)
        .where(SYSTEM_ATTRS.c.trial_id == TRIALS.c.trial_id, SYSTEM_ATTRS.c.key == WARM_START_ATTR)
        .exists()
    )
    query = (
        select(TRIALS.c.number, value)
        .join(VALUES, (VALUES.c.trial_id == TRIALS.c.trial_id) & (VALUES.c.objective == 0))
        .where(
            TRIALS.c.study_id == study_id,
            TRIALS.c.state == "COMPLETE",
            VALUES.c.value_type == "FINITE",
            ~copied,
        )
        .order_by(value.desc() if direction == "maximize" else value.asc())
        .limit(1)
    )
    with db.session() as session:
        row = session.execute(query).first()
    return None if row is None else (int(row[0]), float(row[1]))


def distributions(db: Database, study_id: int) -> dict[str, BaseDistribution]:
    """Each param's distribution (the latest trial's, should they differ)."""
    latest = (
        select(func.max(PARAMS.c.param_id))
        .join(TRIALS, TRIALS.c.trial_id == PARAMS.c.trial_id)
        .where(TRIALS.c.study_id == study_id)
        .group_by(PARAMS.c.param_name)
    )
    query = select(PARAMS.c.param_name, PARAMS.c.distribution_json).where(
        PARAMS.c.param_id.in_(latest)
    )
    with db.session() as session:
        return {name: _distribution(text) for name, text in session.execute(query)}


def reports(
    db: Database, trial_ids: Sequence[int], *, max_points: int = 200
) -> dict[int, list[tuple[int, float]]]:
    """The intermediate values (``trial.report``) of ``trial_ids`` by step, each series
    thinned to at most ``max_points`` evenly spaced points (its last point kept)."""
    if not trial_ids:
        return {}
    query = (
        select(
            REPORTS.c.trial_id,
            REPORTS.c.step,
            REPORTS.c.intermediate_value,
        )
        .where(REPORTS.c.trial_id.in_(list(trial_ids)))
        .order_by(REPORTS.c.trial_id, REPORTS.c.step)
    )
    series: dict[int, list[tuple[int, float]]] = {}
    with db.session() as session:
        for trial_id, step, value in session.execute(query).all():
            if value is not None:
                series.setdefault(trial_id, []).append((int(step), float(value)))
    return {k: thin(v, max_points) for k, v in series.items()}


def latest_reports(db: Database, trial_ids: Sequence[int]) -> dict[int, tuple[int, float]]:
    """The highest-step report of each of ``trial_ids`` (running trials' progress)."""
    if not trial_ids:
        return {}
    top = (
        select(REPORTS.c.trial_id, func.max(REPORTS.c.step).label("step"))
        .where(REPORTS.c.trial_id.in_(list(trial_ids)))
        .group_by(REPORTS.c.trial_id)
        .subquery()
    )
    query = select(
        REPORTS.c.trial_id,
        REPORTS.c.step,
        REPORTS.c.intermediate_value,
    ).join(
        top,
        (top.c.trial_id == REPORTS.c.trial_id) & (top.c.step == REPORTS.c.step),
    )
    with db.session() as session:
        return {t: (int(s), float(v)) for t, s, v in session.execute(query) if v is not None}


def run_ids(db: Database, trial_ids: Sequence[int]) -> dict[int, str]:
    """The child run of each of ``trial_ids`` that has one."""
    if not trial_ids:
        return {}
    query = select(SYSTEM_ATTRS.c.trial_id, SYSTEM_ATTRS.c.value_json).where(
        SYSTEM_ATTRS.c.key == RUN_ID_ATTR, SYSTEM_ATTRS.c.trial_id.in_(list(trial_ids))
    )
    with db.session() as session:
        return {t: json.loads(v) for t, v in session.execute(query)}


def params_of_runs(db: Database, run_id_list: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The params Optuna holds for the trials of these runs: a running trial's run
    records its params only when it ends, Optuna's tables as soon as they are suggested."""
    if not run_id_list:
        return {}
    keys = {json.dumps(r): r for r in run_id_list}
    query = select(SYSTEM_ATTRS.c.trial_id, SYSTEM_ATTRS.c.value_json).where(
        SYSTEM_ATTRS.c.key == RUN_ID_ATTR, SYSTEM_ATTRS.c.value_json.in_(list(keys))
    )
    with db.session() as session:
        trial_of = {keys[v]: t for t, v in session.execute(query) if v in keys}
        params = _params(session, 0, list(trial_of.values())) if trial_of else {}
    return {run: params.get(trial, {}) for run, trial in trial_of.items()}


def with_live_params(db: Database, runs: Sequence[Run]) -> list[Run]:
    """``runs`` with each running trial's params filled in from Optuna's tables."""
    running = [r.run_id for r in runs if r.status is RunStatus.RUNNING]
    live = params_of_runs(db, running)
    return [
        dataclasses.replace(
            r, params={**{k: str(v) for k, v in live[r.run_id].items()}, **r.params}
        )
        if r.run_id in live
        else r
        for r in runs
    ]


def thin(points: Sequence[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """At most ``max_points`` of ``points``, evenly spaced, the first and last kept."""
    if len(points) <= max_points:
        return list(points)
    stride = (len(points) - 1) / (max_points - 1)
    return [points[round(i * stride)] for i in range(max_points)]


def _name(state: Any) -> str:
    return str(getattr(state, "name", state))


@lru_cache(maxsize=1024)
def _distribution(text: str) -> BaseDistribution:
    return json_to_distribution(text)


def _external(distribution_json: str, value: float) -> Any:
    try:
        return _distribution(distribution_json).to_external_repr(value)
    except (ValueError, IndexError, KeyError):
        return value
