"""The studies as a process's study storage last read them, and the incremental reads
that keep them current: only the trials above the last one seen finished, and those
seen unfinished (as Optuna's own cache does).

Callers hold the storage's lock.
"""

from __future__ import annotations

import bisect
import copy
import datetime
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from optuna.distributions import BaseDistribution
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep.storage._retrying import retry_transient
from sweep.storage._trial_reads import TrialReader, settled

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

#: Reads of the study within this many seconds of the last one are served from memory:
#: a sampler reads the study two or three times per suggestion. A trial's start and
#: each of its reports make the next read go to the database, so that a pruner ranks
#: the trial against what the other workers have recorded until then.
STALE_AFTER_S = 0.1


@dataclass
class StudyCache:
    """One study's trials by number, as last read (own trials as this process holds
    them), and its name and directions."""

    by_number: list[FrozenTrial | None] = field(default_factory=list)
    last_finished_id: int = -1
    unfinished: set[int] = field(default_factory=set)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    name: str | None = None
    directions: list[StudyDirection] | None = None  # known once the study is known to exist
    synced_at: float | None = None  # time.monotonic() of the last read; None: read now
    held: int = 0  # trials in by_number (fewer than its length: some were not read yet)

    def number_of(self, trial_id: int) -> int | None:
        """The number of trial ``trial_id`` if this study holds it, found by its id
        among the trials held (a study numbers its trials in the order of their ids;
        where it did not, or a trial is not read yet, None)."""
        by_number = self.by_number
        at = bisect.bisect_left(
            by_number, trial_id, key=lambda t: t._trial_id if t is not None else -1
        )
        if at < len(by_number):
            trial = by_number[at]
            if trial is not None and trial._trial_id == trial_id:
                return at
        return None

    def put(self, trial: FrozenTrial) -> None:
        number = trial.number
        if number >= len(self.by_number):
            self.by_number.extend([None] * (number + 1 - len(self.by_number)))
        if self.by_number[number] is None:
            self.held += 1
        self.by_number[number] = trial
        for name, distribution in trial.distributions.items():
            self.distributions.setdefault(name, distribution)


class TrialCache:
    """The studies this process has read (:class:`StudyCache` each), and which study and
    number each trial it has seen has. A study's name and directions are read once from
    ``backend`` (Optuna's storage on the same database)."""

    def __init__(self, reader: TrialReader, backend: BaseStorage) -> None:
        self.reader = reader
        self.backend = backend
        self.studies: dict[int, StudyCache] = {}
        # trial id -> (study id, number), of the trials not read finished yet: the
        # others are found in their study by id (StudyCache.number_of), which spares a
        # long sweep's processes about 85 bytes a trial.
        self.trial_ids: dict[int, tuple[int, int]] = {}

    def study(self, study_id: int) -> StudyCache:
        cache = self.studies.get(study_id)
        if cache is None:
            cache = self.studies.setdefault(study_id, StudyCache())
        return cache

    def name(self, study_id: int) -> str:
        cache = self.study(study_id)
        if cache.name is None:
            cache.name = self.backend.get_study_name_from_id(study_id)
        return cache.name

    def directions(self, study_id: int) -> list[StudyDirection]:
        """The directions of study ``study_id``; KeyError for a study that does not
        exist (read once: ``optuna.Study`` reads them as it opens the study)."""
        cache = self.study(study_id)
        if cache.directions is None:
            cache.directions = self.backend.get_study_directions(study_id)
        return cache.directions

    def drop_study(self, study_id: int) -> list[int]:
        """Forget study ``study_id``; returns the ids of the trials it held."""
        cache = self.studies.pop(study_id, None)
        if cache is None:
            return []
        dropped = [trial._trial_id for trial in cache.by_number if trial is not None]
        for trial_id in dropped:
            self.trial_ids.pop(trial_id, None)
        return dropped

    def remember(self, study_id: int, trial: FrozenTrial, *, read: bool = False) -> None:
        """Hold ``trial`` (``read``: as the database has it); a finished one lean
        (:func:`settled`)."""
        cache = self.study(study_id)
        if trial.state.is_finished():
            if read:  # read lean (TrialReader)
                # Written: no read will show it unfinished (see _ended_unwritten).
                cache.put(trial)
                self.trial_ids.pop(trial._trial_id, None)
                return
            trial = settled(trial)
        else:
            cache.unfinished.add(trial._trial_id)
        cache.put(trial)
        self.trial_ids[trial._trial_id] = (study_id, trial.number)

    def locate(self, trial_id: int) -> tuple[int, int] | None:
        """The study id and number of trial ``trial_id``, if a study here holds it."""
        known = self.trial_ids.get(trial_id)
        if known is not None:
            return known
        for study_id, cache in self.studies.items():
            number = cache.number_of(trial_id)
            if number is not None:
                return study_id, number
        return None

    def forget(self, trial: FrozenTrial) -> None:
        """Make the next read fetch ``trial`` from the database again."""
        known = self.locate(trial._trial_id)
        if known is not None:
            self.study(known[0]).unfinished.add(trial._trial_id)

    def finished(self, trial_id: int) -> FrozenTrial | None:
        """Trial ``trial_id`` if it is known finished (it changes no more), else None."""
        known = self.locate(trial_id)
        if known is not None:
            study_id, number = known
            trial = self.study(study_id).by_number[number]
            if trial is not None and trial.state.is_finished():
                return trial
        return None

    def ended_here(
        self, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        """Show own ``trial`` ended with ``state`` and ``values``, without reading it back
        (a deferred end may not even be written yet)."""
        known = self.trial_ids.get(trial._trial_id)
        if known is None:
            return
        ended = copy.copy(trial)  # trials read before still show it running
        ended.state = state
        ended.values = list(values) if values is not None else None
        ended.datetime_complete = datetime.datetime.now()
        cache = self.study(known[0])
        cache.put(settled(ended))
        cache.unfinished.discard(trial._trial_id)

    def sync(self, study_id: int, own: Container[int]) -> StudyCache:
        """Study ``study_id``, with the trials that changed since the last read read
        anew, unless that read was less than ``STALE_AFTER_S`` ago and no trial started
        or reported since; the trials in ``own`` stay as held. KeyError for a study that
        does not exist."""
        cache = self.study(study_id)
        now = time.monotonic()
        if cache.synced_at is not None and now - cache.synced_at < STALE_AFTER_S:
            return cache
        if cache.directions is None:
            self.directions(study_id)  # a study's first read: does it exist?
        after, unfinished = cache.last_finished_id, sorted(cache.unfinished)

        def held(trial_id: int, state: TrialState) -> bool:
            # Own trials stay as held; one that ended here is held as the database has
            # it, unless a stop or a recovery ended it otherwise first.
            return trial_id in own or self._ended_here_as(cache, trial_id, state)

        trials, skipped = retry_transient(
            lambda: self.reader.load_changed(study_id, after, unfinished, held),
            what=f"reading the trials of study {study_id}",
        )
        cache.synced_at = now
        for trial in trials:
            if not self._ended_unwritten(cache, trial):
                self._take(study_id, cache, trial)
        for trial_id, state in skipped:
            if trial_id not in own and state.is_finished():
                self._settle(cache, trial_id)
        return cache

    def _ended_here_as(self, cache: StudyCache, trial_id: int, state: TrialState) -> bool:
        """Whether trial ``trial_id`` ended here, and the database shows it ``state``,
        the state it ended with here."""
        known = self.trial_ids.get(trial_id)
        if known is None or not state.is_finished():
            return False
        cached = cache.by_number[known[1]]
        return cached is not None and cached.state == state

    def _settle(self, cache: StudyCache, trial_id: int) -> None:
        """Count trial ``trial_id``, held finished as the database has it, as read."""
        self.trial_ids.pop(trial_id, None)
        cache.unfinished.discard(trial_id)
        cache.last_finished_id = max(cache.last_finished_id, trial_id)

    def _ended_unwritten(self, cache: StudyCache, trial: FrozenTrial) -> bool:
        """Whether ``trial``, read unfinished, ended here with its end not written yet
        (the controller writes it)."""
        known = self.trial_ids.get(trial._trial_id)
        if known is None or trial.state.is_finished():
            return False
        cached = cache.by_number[known[1]]
        return cached is not None and cached.state.is_finished()

    def _take(self, study_id: int, cache: StudyCache, trial: FrozenTrial) -> None:
        self.remember(study_id, trial, read=True)
        if trial.state.is_finished():
            cache.unfinished.discard(trial._trial_id)
            cache.last_finished_id = max(cache.last_finished_id, trial._trial_id)
