"""The sweeps page's data: each sweep's status as `sweep status` gives it, read in a
few queries per sweep, and the studies that have no sweep record."""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from sweep import trials as trial_reads
from sweep.control import STUDY_DELETED, SweepStatus, coordinator_of
from sweep.coordination import Coordinator, LeaseSettings
from sweep.errors import SweepError
from sweep.pareto import front_of, metric_names
from sweep.storage import Database, redact
from sweep.storage.schema import SweepRow
from sweep.trial_counts import TrialCounts, count_trials

_lock = threading.Lock()


@dataclass(frozen=True)
class SweepLine:
    """A row of the sweeps page: a sweep's status, or a study with no sweep record."""

    name: str
    status: SweepStatus | None
    problem: str | None = None  # why the status is missing or partial

    @property
    def state(self) -> str:
        if self.status is not None:
            return self.status.state
        return "STUDY ONLY" if self.problem is None else "UNREADABLE"


_storages: weakref.WeakKeyDictionary[Database, Any] = weakref.WeakKeyDictionary()


def optuna_storage(db: Database) -> Any:
    """Optuna's storage on ``db``, opened once per database (opening checks the schema
    in several queries)."""
    if db not in _storages:
        _storages[db] = db.optuna_storage()
    return _storages[db]


#: Seconds a sweep's lease settings (from its stored spec) are reused.
SETTINGS_TTL_S = 60.0
_settings: dict[tuple[str, str], tuple[float, LeaseSettings]] = {}


def sweep_status(
    db: Database, name: str, study_name: str, state: str, n_trials: int | None
) -> SweepStatus:
    """What ``sweep status`` says of a sweep (:func:`sweep.control.status_of`), in three
    queries: the counts, the best trial and the workers (the lease settings, parsed from
    the stored spec, are reused for a minute)."""
    study = trial_reads.find_study(db, study_name)
    if study is None:
        return SweepStatus(name, STUDY_DELETED, n_trials, TrialCounts(), None, None, "", 0.0)
    key = (db.url, name)
    cached = _settings.get(key)
    if cached is None or time.monotonic() - cached[0] > SETTINGS_TTL_S:
        settings = coordinator_of(db, name, optuna_storage(db)).settings
        _settings[key] = cached = (time.monotonic(), settings)
    coordinator = Coordinator(db, optuna_storage(db), name, cached[1])
    if study.objectives > 1:
        return _with_front(db, study, name, state, n_trials, coordinator)
    best = trial_reads.best_trial(db, study.study_id, study.direction)
    return SweepStatus(
        name,
        state,
        n_trials,
        trial_counts(db, study.study_id),
        best[1] if best else None,
        best[0] if best else None,
        study.direction,
        coordinator.settings.timeout,
        coordinator.workers(),
    )


_fronts: dict[tuple[str, int], tuple[tuple[Any, ...], SweepStatus]] = {}


def _with_front(
    db: Database,
    study: trial_reads.StudyInfo,
    name: str,
    state: str,
    n_trials: int | None,
    coordinator: Coordinator,
) -> SweepStatus:
    """The status of a sweep with several objectives: its Pareto front, not a best value
    (the study is read only when a trial started or ended since the last time)."""
    import optuna

    key, current = (db.url, study.study_id), trial_reads.fingerprint(db, study.study_id)
    cached = _fronts.get(key)
    if cached is None or cached[0] != current:
        loaded = optuna.load_study(study_name=study.name, storage=optuna_storage(db))
        front = SweepStatus(
            name,
            state,
            n_trials,
            TrialCounts(),
            None,
            None,
            ",".join(d.name.lower() for d in loaded.directions),
            0.0,
            metrics=metric_names(loaded),
            pareto_front=front_of(loaded),
        )
        _fronts[key] = cached = (current, front)
    return replace(
        cached[1],
        state=state,
        n_trials=n_trials,
        counts=trial_counts(db, study.study_id),
        lease_timeout_s=coordinator.settings.timeout,
        workers=coordinator.workers(),
    )


_counts_cache: dict[tuple[str, int], tuple[tuple[Any, ...], TrialCounts]] = {}


def trial_counts(db: Database, study_id: int) -> TrialCounts:
    """:func:`sweep.trial_counts.count_trials`, counted again only when a trial started or
    ended (killed and retried marks are set as trials end or retries start)."""
    key = (db.url, study_id)
    current = trial_reads.fingerprint(db, study_id)
    cached = _counts_cache.get(key)
    if cached is not None and cached[0] == current:
        return cached[1]
    counts = count_trials(db, study_id)
    with _lock:
        if len(_counts_cache) >= 64:
            _counts_cache.clear()
        _counts_cache[key] = (current, counts)
    return counts


def sweep_lines(db: Database) -> list[SweepLine]:
    """Every sweep with its status, then every study that has no sweep record."""
    with db.session() as session:
        rows = [
            (r.name, r.study_name, r.status, r.n_trials)
            for r in session.scalars(select(SweepRow).order_by(SweepRow.created_at))
        ]
    lines = []
    for row in rows:
        try:
            lines.append(SweepLine(row[0], sweep_status(db, *row)))
        except SweepError as exc:
            lines.append(SweepLine(row[0], None, redact(str(exc))))
    known = {r[1] for r in rows}
    lines += [SweepLine(n, None) for n in trial_reads.list_study_names(db) if n not in known]
    return lines
