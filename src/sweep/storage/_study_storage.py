"""The Optuna study as a sweep process sees it: held in memory, read incrementally, and
written once per trial.

Optuna's RDB storage commits every suggested param, report and attribute on its own
and reads whole trials back several times per trial: the trivial objective cost 54
PostgreSQL commits per trial, the ceiling of a sweep's throughput. :class:`StudyStorage`
keeps Optuna's tables and their format (``optuna.load_study(storage=url)`` loads the
study, and a crashed sweep resumes from it) but:

* reads only what changed since its last read: the trials above the last one it saw
  finished, and those it saw unfinished (as Optuna's own cache does), with one query
  per table instead of one ORM object per row;
* holds the writes to the trials this process runs (:meth:`StudyStorage.adopt`, or
  any trial it creates) in memory, and writes them (params, intermediate values,
  attributes, values, state) in the one transaction that ends the trial, together with
  the caller's writes registered with :meth:`StudyStorage.on_finish`;
* writes what a trial holds at its first report, and then whenever the oldest held
  write is ``FLUSH_AFTER_S`` old (at the next report, or by a background thread:
  :meth:`flush_due`), so that a training trial's reports reach the other workers'
  pruners and its params reach the retry that follows a crash; and at once when a
  pruner records the trial at a rung (Hyperband ranks every trial's rung record);

A trial another process ended meanwhile (a stop, a recovery after its lease expired)
is not written: ending it returns False and its buffered writes are dropped.
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._rdb import models
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from sweep.storage._optuna_tables import (
    INTERMEDIATE_VALUES,
    PARAMS,
    SYSTEM_ATTRS,
    TRIALS,
    USER_ATTRS,
    VALUES,
    local_time,
    utc_now,
)
from sweep.storage._retrying import retry_transient
from sweep.storage._sql import insert_rows, upsert

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

    from sweep.storage._database import Database

#: A trial's buffered writes are written once the oldest is this many seconds old.
FLUSH_AFTER_S = 1.0
#: System attributes written at once, with what the trial holds: successive halving's
#: (and so Hyperband's) rung records. Other trials' pruning decisions rank against
#: every trial's record at the rung; one that waited a second for its flush was missed,
#: and those trials ran on.
RUNG_ATTR_PREFIX = "completed_rung_"
#: Reads of the study within this many seconds of the last one are served from memory:
#: a sampler reads the study two or three times per suggestion. A trial's start and
#: each of its reports make the next read go to the database, so that a pruner ranks
#: the trial against what the other workers have recorded until then.
STALE_AFTER_S = 0.1

#: A FrozenTrial's dicts that a running trial's writes change.
_TRIAL_DICTS = ("params", "distributions", "intermediate_values", "user_attrs", "system_attrs")


def _with_own_dicts(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` with copies of its ``_TRIAL_DICTS``: all that these writes and
    ``optuna.Trial`` change in place (a deep copy costs about ten times as much)."""
    copied = copy.copy(trial)
    for name in _TRIAL_DICTS:
        setattr(copied, name, dict(getattr(trial, name)))
    return copied


class EndSink(Protocol):
    """Takes the end of a trial this process runs (see :mod:`sweep.ends`); returns
    whether the trial counts as ended here (False: another process had ended it)."""

    def end(self, writes: TrialWrites) -> bool: ...


@dataclass
class TrialWrites:
    """Writes to one trial not yet in the database; with ``state``, its end. Picklable:
    a Ray worker hands its trial's end to the controller, which writes many at once."""

    trial_id: int
    params: list[dict[str, Any]] = field(default_factory=list)
    intermediate_values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    state: TrialState | None = None
    values: list[float] | None = None
    ended_at: datetime.datetime | None = None  # when it ended (naive UTC), with a state
    since: float | None = None  # time.monotonic() of the oldest write held

    def touch(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def age(self) -> float:
        """Seconds since the oldest write held (0 when none is)."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    def __bool__(self) -> bool:
        return bool(
            self.params
            or self.intermediate_values
            or self.user_attrs
            or self.system_attrs
            or self.state is not None
        )


@dataclass
class _OwnTrial:
    """A trial this process runs: its current state, and what is still to be written."""

    study_id: int
    trial: FrozenTrial
    pending: TrialWrites
    # Whether a read may have handed ``trial`` out since it was last copied; a write
    # then goes to a new copy (see StudyStorage._revise).
    handed_out: bool = False


@dataclass
class _StudyCache:
    by_number: list[FrozenTrial | None] = field(default_factory=list)
    last_finished_id: int = -1
    unfinished: set[int] = field(default_factory=set)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    name: str | None = None
    directions: list[StudyDirection] | None = None
    synced_at: float | None = None  # time.monotonic() of the last read; None: read now

    def put(self, trial: FrozenTrial) -> None:
        number = trial.number
        if number >= len(self.by_number):
            self.by_number.extend([None] * (number + 1 - len(self.by_number)))
        self.by_number[number] = trial
        for name, distribution in trial.distributions.items():
            self.distributions.setdefault(name, distribution)


class StudyStorage(BaseStorage):
    """An Optuna storage over Optuna's tables in ``db``, for the processes that run
    trials. Study-level operations go to ``backend`` (Optuna's RDB storage on the same
    database). Thread-safe.

    When Optuna ends a trial this process runs, its writes go to ``end_sink``
    (:class:`EndSink`): a trial runner's sink writes them with the trial's run end and
    lease release (:mod:`sweep.ends`), at once or through the controller. Without one,
    the study rows alone are written at once."""

    def __init__(self, db: Database, backend: RDBStorage, end_sink: EndSink | None = None) -> None:
        self.db = db
        self.backend = backend
        self.end_sink = end_sink or _WriteStudyRows(db)
        self._lock = threading.RLock()
        self._studies: dict[int, _StudyCache] = {}
        self._trial_ids: dict[int, tuple[int, int]] = {}  # trial id -> (study id, number)
        self._own: dict[int, _OwnTrial] = {}
        self._distribution_json: dict[str, BaseDistribution] = {}

    # -- studies: Optuna's RDB storage, names and directions cached ---------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self.backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            cache = self._studies.pop(study_id, None)
            if cache is not None:
                for trial in cache.by_number:
                    if trial is not None:
                        self._trial_ids.pop(trial._trial_id, None)
                        self._own.pop(trial._trial_id, None)
        self.backend.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        cache = self._cache(study_id)
        if cache.name is None:
            cache.name = self.backend.get_study_name_from_id(study_id)
        return cache.name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        cache = self._cache(study_id)
        if cache.directions is None:
            cache.directions = self.backend.get_study_directions(study_id)
        return cache.directions

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self.backend.get_all_studies()

    # -- trials this process runs -------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new trial (Optuna's ``study.ask``); a RUNNING one is this process's to run."""
        created = self.backend._create_new_trial(study_id, template_trial)
        with self._lock:
            if created.state == TrialState.RUNNING:
                self.adopt(study_id, created)
            else:
                self._remember(study_id, created)
        return created._trial_id

    def adopt(self, study_id: int, trial: FrozenTrial, *, fresh_read: bool = True) -> None:
        """Take over ``trial`` (RUNNING in the database, claimed for this process): its
        writes are buffered here until it ends or they are due. ``fresh_read``: the
        next read of the study goes to the database (a new trial samples on it)."""
        trial = copy.deepcopy(trial)
        with self._lock:
            self._own[trial._trial_id] = _OwnTrial(study_id, trial, TrialWrites(trial._trial_id))
            self._remember(study_id, trial)
            if fresh_read:
                self._cache(study_id).synced_at = None

    def set_planned(self, trial_id: int, params: dict[str, tuple[BaseDistribution, Any]]) -> None:
        """Show own trial ``trial_id`` with ``params`` (name -> distribution, value) in
        this process's view, without writing them: the params the controller planned
        for a trial a worker runs."""
        with self._lock:
            planned, distributions = self._revise(self._owned(trial_id), "params", "distributions")
            for name, (distribution, value) in params.items():
                planned[name] = value
                distributions[name] = distribution

    def drop_own(self, trial_id: int) -> None:
        """Stop holding ``trial_id`` (its worker was lost): read it back from the database."""
        with self._lock:
            own = self._own.pop(trial_id, None)
            if own is not None:
                self._forget(own.trial)

    def flush_due(self) -> None:
        """Write the buffered writes of own trials whose oldest is ``FLUSH_AFTER_S`` old."""
        with self._lock:
            due = [own for own in self._own.values() if own.pending.age() >= FLUSH_AFTER_S]
            for own in due:
                self._write(own)

    def _revise(self, own: _OwnTrial, *fields: str) -> list[dict[Any, Any]]:
        """``own``'s dicts ``fields`` (``params``, ``system_attrs``...), for the caller to
        change. Trials read before keep what they showed, as in Optuna's own storages:
        successive halving reads the study, records the trial at the rung, then ranks
        it against what it read; a record that showed there too ranked the trial
        against itself and let it run on. So once a read has handed the trial out, the
        next write goes to a new copy of it, with copies of all its dicts; writes in
        between reads change that copy in place (a trial reporting many steps between
        two reads is not copied at each)."""
        if own.handed_out:
            trial = own.trial = _with_own_dicts(own.trial)
            own.handed_out = False
            self._cache(own.study_id).put(trial)
        return [getattr(own.trial, name) for name in fields]

    def _owned(self, trial_id: int) -> _OwnTrial:
        own = self._own.get(trial_id)
        if own is None:
            raise KeyError(f"trial {trial_id} is not run by this process")
        return own

    def _running_own(self, trial_id: int) -> _OwnTrial | None:
        own = self._own.get(trial_id)
        if own is not None and own.trial.state.is_finished():
            raise UpdateFinishedTrialError(
                f"trial #{own.trial.number} has already finished and cannot be updated"
            )
        return own

    # -- trial writes ------------------------------------------------------------------

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        with self._lock:
            own = self._running_own(trial_id)
            if own is None:
                self.backend.set_trial_param(
                    trial_id, param_name, param_value_internal, distribution
                )
                return
            cache = self._cache(own.study_id)
            known = cache.distributions.get(param_name)
            if known is not None:
                # Optuna's rule: a name keeps its distribution's kind across the study.
                check_distribution_compatibility(known, distribution)
            else:
                cache.distributions[param_name] = distribution
            params, distributions = self._revise(own, "params", "distributions")
            params[param_name] = distribution.to_external_repr(param_value_internal)
            distributions[param_name] = distribution
            own.pending.params.append(
                {
                    "trial_id": trial_id,
                    "param_name": param_name,
                    "param_value": param_value_internal,
                    "distribution_json": distribution_to_json(distribution),
                }
            )
            own.pending.touch()

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._lock:
            own = self._running_own(trial_id)
            if own is None:
                self.backend.set_trial_intermediate_value(trial_id, step, intermediate_value)
                return
            first_report = not own.trial.intermediate_values
            self._revise(own, "intermediate_values")[0][step] = intermediate_value
            own.pending.intermediate_values[step] = intermediate_value
            own.pending.touch()
            self._cache(own.study_id).synced_at = None  # the pruner's read is fresh
            # A trial that reports is training: its params and progress go out with its
            # first report (a retry after a crash reuses them) and then each second.
            if first_report or own.pending.age() >= FLUSH_AFTER_S:
                self._write(own)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_attr(trial_id, "user_attrs", key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_attr(trial_id, "system_attrs", key, value)

    def _set_attr(self, trial_id: int, kind: str, key: str, value: Any) -> None:
        """Set a user or system attribute (``kind``): held for an own trial."""
        with self._lock:
            own = self._running_own(trial_id)
            if own is None:
                setter = getattr(self.backend, f"set_trial_{kind[:-1]}")
                setter(trial_id, key, value)
                return
            self._revise(own, kind)[0][key] = value
            getattr(own.pending, kind)[key] = value
            own.pending.touch()
            if kind == "system_attrs" and key.startswith(RUNG_ATTR_PREFIX):
                self._write(own)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with self._lock:
            own = self._running_own(trial_id)
            if own is not None and state.is_finished():
                return self._end(own, state, values)
            if own is not None:
                # Back to WAITING (or RUNNING again): rare; write through.
                self._write(own)
                self._own.pop(trial_id, None)
        changed = self.backend.set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:
            # A waiting trial this process popped (Optuna's ask): it runs here.
            self.adopt(self._study_of(trial_id), self.backend.get_trial(trial_id))
        return changed

    def _study_of(self, trial_id: int) -> int:
        known = self._trial_ids.get(trial_id)
        if known is not None:
            return known[0]
        with self.db.session() as session:
            return int(
                session.execute(
                    select(TRIALS.c.study_id).where(TRIALS.c.trial_id == trial_id)
                ).scalar_one()
            )

    def _end(self, own: _OwnTrial, state: TrialState, values: Sequence[float] | None) -> bool:
        """Hand own trial ``own``'s end to the end sink. If the sink fails the trial is
        no longer this process's to write: its lease decides. False when another
        process had ended it."""
        writes = own.pending
        writes.state = state
        writes.values = list(values) if values is not None else None
        writes.ended_at = utc_now()
        self._own.pop(own.trial._trial_id, None)
        if self.end_sink.end(writes):
            self._ended_here(own.trial, state, values)
            return True
        self._forget(own.trial)  # ended elsewhere: read it back as that process left it
        return False

    def _write(self, own: _OwnTrial) -> None:
        """Write ``own``'s buffered writes in one transaction (retried while the database
        is briefly unreachable). If another process has ended the trial, the writes are
        dropped and the trial read back as that process left it."""
        trial = own.trial
        writes = own.pending

        def transaction() -> bool:
            with self.db.session() as session:
                return bool(write_trials(session, [writes]))

        written = retry_transient(transaction, what=f"writing trial {trial.number}")
        own.pending = TrialWrites(trial._trial_id)
        if not written:
            self._own.pop(trial._trial_id, None)
            self._forget(trial)

    def _ended_here(
        self, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        ended = copy.copy(trial)  # trials read before still show it running (_revise)
        ended.state = state
        ended.values = list(values) if values is not None else None
        ended.datetime_complete = datetime.datetime.now()
        known = self._trial_ids.get(trial._trial_id)
        if known is not None:
            # Known as it ended: no need to read it back (a deferred end may not even
            # be written yet).
            cache = self._cache(known[0])
            cache.put(ended)
            cache.unfinished.discard(trial._trial_id)

    def absorb(
        self, study_id: int, trials: Sequence[FrozenTrial], *, mark_read: bool = True
    ) -> None:
        """Take finished trials another process reports (a Ray worker's, through the
        controller) into the cache, in place of any held as running here. With
        ``mark_read`` the study counts as read just now."""
        with self._lock:
            cache = self._cache(study_id)
            for trial in trials:
                self._own.pop(trial._trial_id, None)
                self._remember(study_id, trial)
                cache.unfinished.discard(trial._trial_id)
            if mark_read:
                cache.synced_at = time.monotonic()

    # -- reads -------------------------------------------------------------------------

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        with self._lock:
            cache = self._cache(study_id)
            if trial_number < len(cache.by_number):
                trial = cache.by_number[trial_number]
                if trial is not None:
                    return trial._trial_id
        return self.backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None:
                # A copy: optuna.Trial updates the trial it holds as it goes.
                return _with_own_dicts(own.trial)
            known = self._trial_ids.get(trial_id)
            if known is not None:
                study_id, number = known
                trial = self._cache(study_id).by_number[number]
                if trial is not None and trial.state.is_finished():
                    return trial
        return self.backend.get_trial(trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        with self._lock:
            self._sync(study_id)
            trials = self._cache(study_id).by_number
            for own in self._own.values():
                if own.study_id == study_id:
                    own.handed_out = True
            if states is None:
                found = [t for t in trials if t is not None]
            else:
                found = [t for t in trials if t is not None and t.state in states]
        return copy.deepcopy(found) if deepcopy else found

    # -- the cache ---------------------------------------------------------------------

    def _cache(self, study_id: int) -> _StudyCache:
        cache = self._studies.get(study_id)
        if cache is None:
            with self._lock:
                cache = self._studies.setdefault(study_id, _StudyCache())
        return cache

    def _remember(self, study_id: int, trial: FrozenTrial) -> None:
        cache = self._cache(study_id)
        cache.put(trial)
        self._trial_ids[trial._trial_id] = (study_id, trial.number)
        if not trial.state.is_finished():
            cache.unfinished.add(trial._trial_id)

    def _forget(self, trial: FrozenTrial) -> None:
        """Make the next read fetch ``trial`` from the database again."""
        known = self._trial_ids.get(trial._trial_id)
        if known is not None:
            self._cache(known[0]).unfinished.add(trial._trial_id)

    def _sync(self, study_id: int) -> None:
        """Read the trials that changed since the last read, unless that read was less
        than ``STALE_AFTER_S`` ago and no trial started or reported since; own trials
        stay as held."""
        cache = self._cache(study_id)
        now = time.monotonic()
        if cache.synced_at is not None and now - cache.synced_at < STALE_AFTER_S:
            return
        changed = TRIALS.c.trial_id > cache.last_finished_id
        if cache.unfinished:
            changed = or_(changed, TRIALS.c.trial_id.in_(sorted(cache.unfinished)))
        where = (TRIALS.c.study_id == study_id, changed)
        trials = retry_transient(
            lambda: self._load(where), what=f"reading the trials of study {study_id}"
        )
        cache.synced_at = now
        for trial in trials:
            trial_id = trial._trial_id
            if trial_id in self._own:
                continue
            known = self._trial_ids.get(trial_id)
            if known is not None and not trial.state.is_finished():
                cached = cache.by_number[known[1]]
                if cached is not None and cached.state.is_finished():
                    # Ended here, its end not written yet (the controller writes it).
                    continue
            self._remember(study_id, trial)
            if trial.state.is_finished():
                cache.unfinished.discard(trial_id)
                cache.last_finished_id = max(cache.last_finished_id, trial_id)

    def _load(self, where: tuple[Any, ...]) -> list[FrozenTrial]:
        """The trials matching ``where`` (conditions on Optuna's ``trials`` table), whole:
        one query per table."""
        with self.db.session() as session:
            rows = session.execute(
                select(
                    TRIALS.c.trial_id,
                    TRIALS.c.number,
                    TRIALS.c.state,
                    TRIALS.c.datetime_start,
                    TRIALS.c.datetime_complete,
                )
                .where(*where)
                .order_by(TRIALS.c.trial_id)
            ).all()
            if not rows:
                return []
            # Each query sees what was committed when it ran: rows of trials created
            # after the first query are skipped (the next read takes them whole).
            ids = select(TRIALS.c.trial_id).where(*where).scalar_subquery()
            parts: dict[int, dict[str, Any]] = {
                row.trial_id: {
                    "params": {},
                    "distributions": {},
                    "values": {},
                    "intermediate": {},
                    "user": {},
                    "system": {},
                }
                for row in rows
            }
            param_rows = session.execute(
                select(
                    PARAMS.c.trial_id,
                    PARAMS.c.param_name,
                    PARAMS.c.param_value,
                    PARAMS.c.distribution_json,
                )
                .where(PARAMS.c.trial_id.in_(ids))
                .order_by(PARAMS.c.param_id)
            )
            for trial_id, name, value, dist_json in param_rows:
                part = parts.get(trial_id)
                if part is None:
                    continue
                distribution = self._distribution(dist_json)
                part["params"][name] = distribution.to_external_repr(value)
                part["distributions"][name] = distribution
            for trial_id, objective, value, value_type in session.execute(
                select(
                    VALUES.c.trial_id, VALUES.c.objective, VALUES.c.value, VALUES.c.value_type
                ).where(VALUES.c.trial_id.in_(ids))
            ):
                if trial_id in parts:
                    parts[trial_id]["values"][objective] = (
                        models.TrialValueModel.stored_repr_to_value(value, value_type)
                    )
            to_value = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
            for trial_id, step, value, value_type in session.execute(
                select(
                    INTERMEDIATE_VALUES.c.trial_id,
                    INTERMEDIATE_VALUES.c.step,
                    INTERMEDIATE_VALUES.c.intermediate_value,
                    INTERMEDIATE_VALUES.c.intermediate_value_type,
                ).where(INTERMEDIATE_VALUES.c.trial_id.in_(ids))
            ):
                if trial_id in parts:
                    parts[trial_id]["intermediate"][step] = to_value(value, value_type)
            for table, kind in ((USER_ATTRS, "user"), (SYSTEM_ATTRS, "system")):
                for trial_id, key, value_json in session.execute(
                    select(table.c.trial_id, table.c.key, table.c.value_json).where(
                        table.c.trial_id.in_(ids)
                    )
                ):
                    if trial_id in parts:
                        parts[trial_id][kind][key] = json.loads(value_json)
        trials = []
        for row in rows:
            part = parts[row.trial_id]
            values = part["values"]
            trials.append(
                FrozenTrial(
                    number=row.number,
                    state=row.state,
                    value=None,
                    values=[values[i] for i in sorted(values)] if values else None,
                    datetime_start=local_time(row.datetime_start),
                    datetime_complete=local_time(row.datetime_complete),
                    params=part["params"],
                    distributions=part["distributions"],
                    user_attrs=part["user"],
                    system_attrs=part["system"],
                    intermediate_values=part["intermediate"],
                    trial_id=row.trial_id,
                )
            )
        return trials

    def _distribution(self, dist_json: str) -> BaseDistribution:
        # A study has a handful of distinct distributions and many rows of each.
        distribution = self._distribution_json.get(dist_json)
        if distribution is None:
            distribution = json_to_distribution(dist_json)
            self._distribution_json[dist_json] = distribution
        return distribution


def write_trials(session: Session, writes: Sequence[TrialWrites]) -> set[int]:
    """Write each trial's held writes, and end those with a ``state``, in ``session``'s
    transaction: a statement per table, however many trials. Trials no longer RUNNING
    in the database (another process ended them) are skipped; returns the ids written."""
    if not writes:
        return set()
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
    params = [row for w in writes for row in w.params]
    if params:
        insert_rows(session, PARAMS, params)
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
    upsert(session, INTERMEDIATE_VALUES, steps, ("trial_id", "step"))
    for table, kind in ((USER_ATTRS, "user_attrs"), (SYSTEM_ATTRS, "system_attrs")):
        attrs = [
            {"trial_id": w.trial_id, "key": key, "value_json": json.dumps(value)}
            for w in writes
            for key, value in getattr(w, kind).items()
        ]
        upsert(session, table, attrs, ("trial_id", "key"))
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
    upsert(session, VALUES, values, ("trial_id", "objective"))
    return running


class _WriteStudyRows:
    """The end sink of a storage used without a trial runner: the study rows alone."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def end(self, writes: TrialWrites) -> bool:
        def transaction() -> bool:
            with self.db.session() as session:
                return bool(write_trials(session, [writes]))

        return retry_transient(transaction, what=f"ending trial {writes.trial_id}")
