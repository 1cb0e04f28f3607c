"""The Optuna study as a sweep process sees it: held in memory, read incrementally, and
written once per trial.

Optuna's RDB storage commits every suggested param, report and attribute on its own
and reads whole trials back several times per trial: the trivial objective cost 54
PostgreSQL commits per trial, the ceiling of a sweep's throughput. :class:`StudyStorage`
keeps Optuna's tables and their format (``optuna.load_study(storage=url)`` loads the
study, and a crashed sweep resumes from it) but:

* reads only what changed since its last read: the trials above the last one it saw
  finished, and those it saw unfinished (as Optuna's own cache does), with one query
  per table instead of one ORM object per row (its cache: :mod:`._study_cache`, and
  :mod:`._trial_reads`);
* holds the writes to the trials this process runs (:meth:`StudyStorage.adopt`, or
  any trial it creates) in memory (:mod:`._own_trials`), and hands them (params,
  intermediate values, attributes, values, state) to its end sink when the trial ends,
  which writes them in the one transaction that ends the trial (:mod:`._study_writer`,
  :mod:`sweep.ends`);
* writes what a trial holds at its first report, and then whenever the oldest held
  write is ``FLUSH_AFTER_S`` old (at the next report, or by a background thread:
  :meth:`flush_due`), so that a training trial's reports reach the other workers'
  pruners and its params reach the retry that follows a crash; and at once when a
  pruner records the trial at a rung (Hyperband ranks every trial's rung record);

A trial another process ended meanwhile (a stop, a recovery after its lease expired)
is not written: ending it returns False and its buffered writes are dropped.

It honours Optuna's storage contract (``optuna.testing.pytest_storages``, run in the
storage suite). A pickled storage is a new process's view of the study: it reopens the
database from its URL, with no cache, no own trials and the default end sink.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select

from sweep.storage._database import Database
from sweep.storage._optuna_tables import TRIALS
from sweep.storage._own_trials import OwnTrial, OwnTrials, TrialWrites, with_own_dicts
from sweep.storage._study_cache import TrialCache
from sweep.storage._study_writer import EndSink, WriteStudyRows, write_held
from sweep.storage._trial_reads import TrialReader

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


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
        self.end_sink = end_sink or WriteStudyRows(db)
        self._lock = threading.RLock()
        self._cache = TrialCache(TrialReader(db), backend)
        self._own = OwnTrials()

    def __getstate__(self) -> dict[str, Any]:
        # A live engine, a lock and this process's trials do not travel: the copy
        # reopens the database and reads the study afresh. Its own trials' ends are this
        # process's to write (its sink, its leases), not the copy's.
        return {"url": self.db.url, "backend": self.backend}

    def __setstate__(self, state: dict[str, Any]) -> None:
        StudyStorage.__init__(self, Database(state["url"]), state["backend"])

    # -- studies: Optuna's RDB storage, names and directions cached ---------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self.backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            for trial_id in self._cache.drop_study(study_id):
                self._own.pop(trial_id, None)
        self.backend.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._cache.name(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._cache.directions(study_id)

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
                self._cache.remember(study_id, created)
        return created._trial_id

    def adopt(self, study_id: int, trial: FrozenTrial, *, fresh_read: bool = True) -> None:
        """Take over ``trial`` (RUNNING in the database, claimed for this process): its
        writes are buffered here until it ends or they are due. ``fresh_read``: the
        next read of the study goes to the database (a new trial samples on it)."""
        trial = copy.deepcopy(trial)
        with self._lock:
            cache = self._cache.study(study_id)
            self._own[trial._trial_id] = OwnTrial(
                study_id, trial, cache, TrialWrites(trial._trial_id)
            )
            self._cache.remember(study_id, trial)
            if fresh_read:
                cache.synced_at = None

    def set_planned(self, trial_id: int, params: dict[str, tuple[BaseDistribution, Any]]) -> None:
        """Show own trial ``trial_id`` with ``params`` (name -> distribution, value) in
        this process's view, without writing them: the params the controller planned
        for a trial a worker runs."""
        with self._lock:
            planned, distributions = self._own.owned(trial_id).revise("params", "distributions")
            for name, (distribution, value) in params.items():
                planned[name] = value
                distributions[name] = distribution

    def drop_own(self, trial_id: int) -> None:
        """Stop holding ``trial_id`` (its worker was lost): read it back from the database."""
        with self._lock:
            own = self._own.pop(trial_id, None)
            if own is not None:
                self._cache.forget(own.trial)

    def flush_due(self) -> None:
        """Write the buffered writes of own trials whose oldest is ``FLUSH_AFTER_S`` old."""
        with self._lock:
            for own in self._own.due():
                self._write(own)

    # -- trial writes: held for own trials, Optuna's storage for the others -------------

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        with self._lock:
            own = self._own.running(trial_id)
            if own is None:
                self.backend.set_trial_param(
                    trial_id, param_name, param_value_internal, distribution
                )
                return
            own.set_param(param_name, param_value_internal, distribution)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        with self._lock:
            own = self._own.running(trial_id)
            if own is None:
                self.backend.set_trial_intermediate_value(trial_id, step, intermediate_value)
            elif own.report(step, intermediate_value):
                self._write(own)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            own = self._own.running(trial_id)
            if own is None:
                self.backend.set_trial_user_attr(trial_id, key, value)
            elif own.set_attr("user_attrs", key, value):
                self._write(own)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            own = self._own.running(trial_id)
            if own is None:
                self.backend.set_trial_system_attr(trial_id, key, value)
            elif own.set_attr("system_attrs", key, value):
                self._write(own)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with self._lock:
            own = self._own.running(trial_id)
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
        known = self._cache.locate(trial_id)
        if known is not None:
            return known[0]
        with self.db.session() as session:
            return int(
                session.execute(
                    select(TRIALS.c.study_id).where(TRIALS.c.trial_id == trial_id)
                ).scalar_one()
            )

    def _end(self, own: OwnTrial, state: TrialState, values: Sequence[float] | None) -> bool:
        """Hand own trial ``own``'s end to the end sink. If the sink fails the trial is
        no longer this process's to write: its lease decides. False when another
        process had ended it."""
        writes = own.end(state, values)
        self._own.pop(own.trial._trial_id, None)
        if self.end_sink.end(writes):
            self._cache.ended_here(own.trial, state, values)
            return True
        self._cache.forget(own.trial)  # ended elsewhere: read it back as that process left it
        return False

    def _write(self, own: OwnTrial) -> None:
        """Write ``own``'s buffered writes in one transaction (retried while the database
        is briefly unreachable). If another process has ended the trial, the writes are
        dropped and the trial read back as that process left it."""
        trial = own.trial
        written = write_held(self.db, own.pending, f"writing trial {trial.number}")
        own.clear_pending()
        if not written:
            self._own.pop(trial._trial_id, None)
            self._cache.forget(trial)

    def absorb(
        self, study_id: int, trials: Sequence[FrozenTrial], *, mark_read: bool = True
    ) -> None:
        """Take finished trials another process reports (a Ray worker's, through the
        controller) into the cache, in place of any held as running here. With
        ``mark_read`` the study counts as read just now."""
        with self._lock:
            cache = self._cache.study(study_id)
            for trial in trials:
                self._own.pop(trial._trial_id, None)
                self._cache.remember(study_id, trial)
                cache.unfinished.discard(trial._trial_id)
            if mark_read:
                cache.synced_at = time.monotonic()

    # -- reads -------------------------------------------------------------------------

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        with self._lock:
            by_number = self._cache.study(study_id).by_number
            if trial_number < len(by_number):
                trial = by_number[trial_number]
                if trial is not None:
                    return trial._trial_id
        return self.backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None:
                # A copy: optuna.Trial updates the trial it holds as it goes.
                return with_own_dicts(own.trial)
            trial = self._cache.finished(trial_id)
            if trial is not None:
                return trial
        return self.backend.get_trial(trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        # Inline, not through helpers: samplers and pruners read the study several times
        # per step, and this is all a read costs when it is served from memory.
        with self._lock:
            cache = self._cache.sync(study_id, self._own)
            if states is None and cache.held < len(cache.by_number):
                # A trial started elsewhere since the last read (this process holds a
                # later one, or was told of later ones): read it, as callers of the
                # whole list index it by number (Optuna's NSGA-II/III do).
                cache.synced_at = None
                cache = self._cache.sync(study_id, self._own)
            trials = cache.by_number
            for own in self._own.values():
                if own.study_id == study_id:
                    own.handed_out = True  # the next write copies it (OwnTrial.revise)
            if states is None:
                found = [t for t in trials if t is not None]
            else:
                found = [t for t in trials if t is not None and t.state in states]
        # Each trial copied on its own: finished trials share their empty dicts
        # (_trial_reads.settled), and copies must not share theirs.
        return [copy.deepcopy(t) for t in found] if deepcopy else found
