"""Trials read whole from Optuna's tables: one query per table, however many trials,
instead of one ORM object per row.

A long sweep's processes hold every finished trial (see :mod:`._study_cache`), so a
finished trial is held lean (:func:`settled`): without the sweep's run id among its
system attributes (no sampler or pruner reads it; it is in the database, and the
tracking tables know each run's trial), and with a shared read-only empty dict for
each of its attributes and reports it has none of. About 450 of the 1,350 bytes a
trial of the trivial sweep cost a controller.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import (
    Float,
    Integer,
    String,
    bindparam,
    cast,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from sweep.storage._optuna_tables import (
    INTERMEDIATE_VALUES,
    PARAMS,
    SYSTEM_ATTRS,
    TRIALS,
    USER_ATTRS,
    VALUES,
    local_time,
)

if TYPE_CHECKING:
    from sweep.storage._database import Database


#: The system attribute a finished trial is held without (``sweep.study.RUN_ID_ATTR``,
#: not imported: :mod:`sweep.study` imports this package).
RUN_ID_ATTR = "sweep:run_id"


class _Empty(dict[Any, Any]):
    """An empty dict shared by the finished trials held without attributes (or reports):
    read-only, so that a change meant for one trial fails instead of showing in all.
    Its copies (``copy``, ``deepcopy``, a pickle) are plain empty dicts."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a finished trial's attributes and reports are read-only here")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def copy(self) -> dict[Any, Any]:
        return {}

    def __copy__(self) -> dict[Any, Any]:
        return {}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return {}

    def __reduce__(self) -> Any:
        return (dict, ())


# One for each dict of a trial: a deep copy of one trial then gives it distinct copies.
_NO_USER_ATTRS, _NO_SYSTEM_ATTRS, _NO_REPORTS = _Empty(), _Empty(), _Empty()


def settled(trial: FrozenTrial) -> FrozenTrial:
    """Finished ``trial`` (a process's own, or one it was handed) as a study's view holds
    it (see the module's docstring): a new one, made as a read makes it (a copied or
    unpickled trial carries a whole dict of its attributes, twice the size)."""
    system = trial.system_attrs
    if RUN_ID_ATTR in system:
        system = {key: value for key, value in system.items() if key != RUN_ID_ATTR}
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=trial.values,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=trial.user_attrs or _NO_USER_ATTRS,
        system_attrs=system or _NO_SYSTEM_ATTRS,
        intermediate_values=trial.intermediate_values or _NO_REPORTS,
        trial_id=trial._trial_id,
    )


class _Parts:
    """What one trial's rows in the tables other than ``trials`` hold (its attributes
    and reports are made at their first row: most trials have none of some)."""

    __slots__ = ("distributions", "intermediate", "params", "system", "user", "values")

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self.values: list[float] = []  # by objective: the rows come in that order
        self.intermediate: dict[int, float] | None = None
        self.user: dict[str, Any] | None = None
        self.system: dict[str, Any] | None = None


#: Shapes of search space shared at most (see TrialReader._spaces).
_MAX_SPACES = 1000


class TrialReader:
    """Reads trials from ``db``, remembering the distributions it has parsed (a study has
    a handful of distinct ones and many rows of each). Thread-safe."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._distributions: dict[str, BaseDistribution] = {}
        # One dict per shape of search space (name -> distribution), shared by the trials
        # of that shape: a long sweep's trials would otherwise each hold an equal copy
        # (about 180 bytes of the 1,600 a trial costs a controller). Trials read here are
        # never changed in place (a process's own trials revise copies).
        self._spaces: dict[tuple[tuple[str, int], ...], dict[str, BaseDistribution]] = {}

    def load_changed(
        self,
        study_id: int,
        after: int,
        unfinished: Sequence[int],
        held: Callable[[int, TrialState], bool],
    ) -> tuple[list[FrozenTrial], list[tuple[int, TrialState]]]:
        """The study's trials after id ``after`` and those among ``unfinished``, in the
        order of their ids: what changed since a read that left them so. Read whole
        unless ``held(trial_id, state)``: the caller holds the trial as it is (a trial
        its process runs or just ended), so only its id and state are returned, in the
        second list."""
        bound: dict[str, Any] = {"study_id": study_id, "after": after}
        if unfinished:
            bound["unfinished"] = list(unfinished)
        with self.db.session() as session:
            rows, skipped = [], []
            for row in session.execute(_changed_trials(bool(unfinished)), bound):
                if held(row.trial_id, row.state):
                    skipped.append((row.trial_id, row.state))
                else:
                    rows.append(row)
            parts = {row.trial_id: _Parts() for row in rows}
            if len(rows) > _BY_IDS:
                # Each query sees what was committed when it ran: rows of trials
                # created after the first query are skipped (the next read takes them
                # whole).
                self._read_parts(session, _parts_of_changed(bool(unfinished)), parts, bound)
            elif rows:
                # The usual read, a few trials: a statement built and compiled once.
                self._read_parts(session, _parts_by_ids(), parts, {"ids": list(parts)})
        for part in parts.values():
            part.distributions = self._shared_space(part.distributions)
        return [_frozen(row, parts[row.trial_id]) for row in rows], skipped

    def _shared_space(self, space: dict[str, BaseDistribution]) -> dict[str, BaseDistribution]:
        # Keyed by identity: the reader parses each distinct distribution once.
        key = tuple((name, id(distribution)) for name, distribution in space.items())
        shared = self._spaces.get(key)
        if shared is None:
            if len(self._spaces) >= _MAX_SPACES:  # define-by-run spaces without end
                return space
            shared = self._spaces[key] = space
        return shared

    def _read_parts(
        self, session: Session, query: Any, parts: dict[int, _Parts], ids: dict[str, Any]
    ) -> None:
        """The trials' params, values, reports and attributes: one statement (a round
        trip per trial read matters to a worker that reads the study each trial)."""
        value_of = models.TrialValueModel.stored_repr_to_value
        value_type = models.TrialValueModel.TrialValueType
        report_of = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
        report_type = models.TrialIntermediateValueModel.TrialIntermediateValueType
        for kind, trial_id, name, number, value, text in session.execute(query, ids):
            part = parts.get(trial_id)
            if part is None:
                continue
            if kind == _PARAM:
                # One string per name, not one per trial (a long sweep holds them all).
                name = sys.intern(name)
                distribution = self._distribution(text)
                part.params[name] = distribution.to_external_repr(value)
                part.distributions[name] = distribution
            elif kind == _VALUE:
                part.values.append(value_of(value, value_type[text]))
            elif kind == _REPORT:
                if part.intermediate is None:
                    part.intermediate = {}
                part.intermediate[number] = report_of(value, report_type[text])
            elif kind == _USER_ATTR:
                if part.user is None:
                    part.user = {}
                part.user[sys.intern(name)] = json.loads(text)
            else:
                if part.system is None:
                    part.system = {}
                part.system[sys.intern(name)] = json.loads(text)

    def _distribution(self, dist_json: str) -> BaseDistribution:
        distribution = self._distributions.get(dist_json)
        if distribution is None:
            distribution = json_to_distribution(dist_json)
            self._distributions[dist_json] = distribution
        return distribution


@functools.cache
def _changed(unfinished: bool) -> tuple[Any, ...]:
    """Which trials changed: the study's trials after id ``after`` and, with
    ``unfinished``, those bound as ``unfinished``. Apart, so that a read with none
    unfinished stays the plain range on the study's trials it was before these
    statements were built once, with no empty ``IN`` beside it for the planner."""
    later = TRIALS.c.trial_id > bindparam("after")
    if unfinished:
        later = or_(later, TRIALS.c.trial_id.in_(bindparam("unfinished", expanding=True)))
    return TRIALS.c.study_id == bindparam("study_id"), later


@functools.cache
def _changed_trials(unfinished: bool) -> Any:
    """The rows of the trials that changed (see :func:`_changed`). Built once: a worker
    reads the study at each trial, and building the statement cost more than running
    it."""
    return (
        select(
            TRIALS.c.trial_id,
            TRIALS.c.number,
            TRIALS.c.state,
            TRIALS.c.datetime_start,
            TRIALS.c.datetime_complete,
        )
        .where(*_changed(unfinished))
        .order_by(TRIALS.c.trial_id)
    )


@functools.cache
def _parts_of_changed(unfinished: bool) -> Any:
    """:func:`_parts_query` of the trials that changed (see :func:`_changed`)."""
    ids = select(TRIALS.c.trial_id).where(*_changed(unfinished)).scalar_subquery()
    return _parts_query(ids)


#: What a row of :func:`_parts_query` holds.
_PARAM, _VALUE, _REPORT, _USER_ATTR, _SYSTEM_ATTR = range(5)


#: Reads of up to this many trials name them (a statement compiled once); larger ones
#: select them again in a subquery (a database's limit on bound values).
_BY_IDS = 500


@functools.cache
def _parts_by_ids() -> Any:
    """:func:`_parts_query` of the trials whose ids are bound as ``ids``."""
    return _parts_query(bindparam("ids", expanding=True))


def _parts_query(ids: Any) -> Any:
    """The rows of trials ``ids`` in the five tables beside ``trials``, as ``(kind,
    trial_id, name, number, value, text)``: a param (name, its id for the order, its
    internal value, its distribution's JSON), a value (objective, value, its type), a
    report (step, value, its type), an attribute (key, JSON)."""
    no_name, no_number, no_value = cast(null(), String), cast(null(), Integer), cast(null(), Float)
    parts = [
        select(
            literal(_PARAM),
            PARAMS.c.trial_id,
            cast(PARAMS.c.param_name, String),
            PARAMS.c.param_id,
            PARAMS.c.param_value,
            cast(PARAMS.c.distribution_json, String),
        ).where(PARAMS.c.trial_id.in_(ids)),
        select(
            literal(_VALUE),
            VALUES.c.trial_id,
            no_name,
            VALUES.c.objective,
            VALUES.c.value,
            cast(VALUES.c.value_type, String),
        ).where(VALUES.c.trial_id.in_(ids)),
        select(
            literal(_REPORT),
            INTERMEDIATE_VALUES.c.trial_id,
            no_name,
            INTERMEDIATE_VALUES.c.step,
            INTERMEDIATE_VALUES.c.intermediate_value,
            cast(INTERMEDIATE_VALUES.c.intermediate_value_type, String),
        ).where(INTERMEDIATE_VALUES.c.trial_id.in_(ids)),
        *(
            select(
                literal(kind),
                table.c.trial_id,
                cast(table.c.key, String),
                no_number,
                no_value,
                cast(table.c.value_json, String),
            ).where(table.c.trial_id.in_(ids))
            for kind, table in ((_USER_ATTR, USER_ATTRS), (_SYSTEM_ATTR, SYSTEM_ATTRS))
        ),
    ]
    union = union_all(*parts).subquery()
    # Params in the order they were set (their ids), as Optuna reads them.
    return select(union).order_by(union.c[0], union.c[3])


def _frozen(row: Sequence[Any], part: _Parts) -> FrozenTrial:
    """The trial of ``row`` (its id, number, state, start and end) and ``part``; held
    lean (:func:`settled`) if it is finished."""
    trial_id, number, state, started, completed = row
    values = part.values
    system, user, reports = part.system, part.user, part.intermediate
    if state.is_finished():
        if system is not None:
            system.pop(RUN_ID_ATTR, None)
        system, user, reports = (
            system or _NO_SYSTEM_ATTRS,
            user or _NO_USER_ATTRS,
            reports or _NO_REPORTS,
        )
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=values or None,
        datetime_start=local_time(started),
        datetime_complete=local_time(completed),
        params=part.params,
        distributions=part.distributions,
        user_attrs=user if user is not None else {},
        system_attrs=system if system is not None else {},
        intermediate_values=reports if reports is not None else {},
        trial_id=trial_id,
    )
