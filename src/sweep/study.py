"""The Optuna study behind a sweep, and the sweep's own record (experiment, parent run).

The study is named after the sweep and lives in the same database as the tracking
tables. Launching a spec whose study exists continues it: the budget counts the trials
already finished there.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from sweep.errors import NotFoundError, SpecError, StorageError
from sweep.spec import SweepSpec
from sweep.storage import Database
from sweep.storage.schema import SweepRow
from sweep.storage.sql import insert_rows
from sweep.tracking import Experiment, TrackingStore, now_ms

#: Trial system attribute linking an Optuna trial to its child run.
RUN_ID_ATTR = "sweep:run_id"
#: Trial system attribute set on trials ended by a stop (Ctrl-C); they do not use budget.
KILLED_ATTR = "sweep:killed"
#: Trial system attribute holding why a trial failed.
ERROR_ATTR = "sweep:error"
#: Trial system attribute of a failed trial whose retry took its budget slot.
SUPERSEDED_ATTR = "sweep:superseded"
#: Study system attribute holding the resolved spec (JSON), for agents that join.
SPEC_ATTR = "sweep:spec"
#: Trial system attribute of a trial copied from another sweep by ``warm_start`` (the
#: sweep and trial number it came from): history for the sampler, not this sweep's trial.
WARM_START_ATTR = "sweep:warm_start"
#: Trial system attribute of a trial enqueued from the spec's ``enqueue`` (its config's key).
ENQUEUED_ATTR = "sweep:enqueued"


@dataclass(frozen=True)
class SweepRecord:
    name: str
    study_name: str
    experiment_id: int
    parent_run_id: str
    status: str
    created: bool


def open_study(spec: SweepSpec, db: Database, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the sweep's study in ``storage`` (Optuna's tables in ``db``), or load it if
    it exists with the same name and directions; with ``warm_start`` and ``enqueue``,
    what they add (:mod:`sweep.seeding`)."""
    from sweep.seeding import add_warm_start, enqueue_configs, warm_start_trials

    # Read before the study is created, so that a missing source fails before anything
    # is written; only by the launch that creates it (a relaunch needs no source).
    seeds = []
    if spec.warm_start is not None and not _study_exists(storage, spec.name):
        seeds = warm_start_trials(spec, db, storage)
    directions = spec.directions
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=spec.name,
            directions=[m.direction for m in spec.metrics],
            load_if_exists=True,
            sampler=spec.sampler.build(),
            pruner=spec.pruner.build(),
        )
    except optuna.exceptions.StorageInternalError as exc:
        raise StorageError(f"cannot create or load study {spec.name!r}: {exc}") from exc
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        key = "metric.direction" if len(existing) == len(directions) == 1 else "metric"
        raise SpecError(
            f"study {spec.name!r} already exists in {db.display_url} with "
            f"{_directions(existing)}, but the spec says {_directions(directions)}; rename "
            "the sweep or fix the metrics",
            file=str(spec.source_path) if spec.source_path else None,
            key_path=key,
            line=spec.line_of(key),
        )
    if spec.multi_objective and study.metric_names != spec.metric_names:
        # Readers without the spec (status, the UI, the Pareto front) name objectives so.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(spec.metric_names)
    if spec.sampler.is_grid:
        enqueue_grid(study, spec, db)
    if seeds:
        add_warm_start(study, seeds)
    if spec.enqueue:
        enqueue_configs(study, spec, db)
    return study


def _directions(directions: list[str]) -> str:
    if len(directions) == 1:
        return f"direction {directions[0]}"
    return f"{len(directions)} objectives ({', '.join(directions)})"


def _study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def enqueue_grid(study: optuna.Study, spec: SweepSpec, db: Database | None = None) -> int:
    """Enqueue each grid point that no trial of ``study`` holds yet as a WAITING trial
    with Optuna's ``fixed_params``, while the budget has room; return how many.

    Claims hand out WAITING trials first, one claim per trial, so every point runs once
    however many workers and agents claim (see :mod:`sweep.spec._grid`). A point is held
    by any trial with its params (running, finished, failed, or a retry waiting), except
    a trial killed by a stop, which used no budget: its point is enqueued again. Calling
    this again (a relaunch, a larger budget) adds only what is missing. With ``db`` (the
    study's database) the trials are written in one transaction, as Optuna's
    ``enqueue_trial`` would write them one by one (about 40 ms each).
    """
    from sweep.spec import point_key, stored_point

    trials = study.get_trials(deepcopy=False)
    names = list(spec.parameters)
    held = {
        point_key(t.system_attrs.get("fixed_params", t.params), names)
        for t in trials
        if not t.system_attrs.get(KILLED_ATTR)
    }
    used = sum(
        1
        for t in trials
        if not (t.system_attrs.get(KILLED_ATTR) or t.system_attrs.get(SUPERSEDED_ATTR))
    )
    n_trials = spec.budget.n_trials
    room = None if n_trials is None else max(0, n_trials - used)
    missing: list[dict[str, Any]] = []
    for point in spec.grid_points():
        if room is not None and len(missing) >= room:
            break
        stored = stored_point(spec.parameters, point)
        key = point_key(stored, names)
        if key not in held:
            missing.append(stored)
            held.add(key)
    if db is None:
        for stored in missing:
            study.enqueue_trial(stored)
    elif missing:
        attrs = [{"fixed_params": stored} for stored in missing]
        db.retrying(lambda: insert_waiting(db, study._study_id, attrs), "enqueueing the grid")
    return len(missing)


def insert_waiting(db: Database, study_id: int, system_attrs: list[dict[str, Any]]) -> None:
    """WAITING trials with these system attributes each (Optuna's ``fixed_params``
    among them), numbered after the study's trials, in one transaction."""
    trials = models.TrialModel.__table__
    studies = models.StudyModel.__table__
    with db.session() as session:
        # The study's row first: PostgreSQL locks it (as Optuna's own trial creation and
        # sweep's claims do) and SQLite takes its write lock, so that no other process
        # numbers a trial between the count and the inserts.
        session.execute(
            update(studies)
            .where(studies.c.study_id == study_id)
            .values(study_name=studies.c.study_name)
        )
        first = session.execute(
            select(func.count()).select_from(trials).where(trials.c.study_id == study_id)
        ).scalar_one()
        rows = [
            {"number": first + i, "study_id": study_id, "state": TrialState.WAITING}
            for i in range(len(system_attrs))
        ]
        ids = session.execute(
            trials.insert().returning(trials.c.trial_id, sort_by_parameter_order=True), rows
        ).scalars()
        insert_rows(
            session,
            models.TrialSystemAttributeModel.__table__,
            [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for trial_id, attrs in zip(ids, system_attrs, strict=True)
                for key, value in attrs.items()
            ],
        )


def best_own_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best complete trial among the sweep's own (``warm_start``'s copies
    are history), or None (always with several objectives: see :mod:`sweep.pareto`).
    One query unless a copy is the best."""
    if len(study.directions) > 1:
        return None
    try:
        best = study.best_trial
    except ValueError:
        return None
    if WARM_START_ATTR not in best.system_attrs:
        return best
    own = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if WARM_START_ATTR not in t.system_attrs and t.value is not None
    ]
    if not own:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(own, key=lambda t: float(t.value))  # type: ignore[arg-type]


def open_sweep_record(
    spec: SweepSpec,
    db: Database,
    tracking: TrackingStore,
    experiment: Experiment,
    *,
    spec_text: str,
    parent_tags: dict[str, str],
    parent_params: dict[str, object],
) -> SweepRecord:
    """The sweep's row, with its parent run; created on first launch, reused after."""
    existing = get_sweep_record(db, spec.name)
    if existing is not None:
        # A relaunch may change the budget; it applies to every worker from now on.
        with db.session() as session:
            row = session.get(SweepRow, spec.name)
            assert row is not None
            row.n_trials = spec.budget.n_trials
        return existing
    parent = tracking.create_run(experiment, spec.name, params=parent_params, tags=parent_tags)
    try:
        with db.session() as session:
            session.add(
                SweepRow(
                    name=spec.name,
                    study_name=spec.name,
                    experiment_id=experiment.experiment_id,
                    parent_run_id=parent.run_id,
                    status="RUNNING",
                    spec_yaml=spec_text,
                    created_at=now_ms(),
                    updated_at=now_ms(),
                    n_trials=spec.budget.n_trials,
                )
            )
    except StorageError as exc:
        # A second launch of the same spec created the record first: join it.
        if isinstance(exc.__cause__, IntegrityError):
            from sweep.tracking import RunStatus

            tracking.end_run(parent.run_id, RunStatus.KILLED)
            record = get_sweep_record(db, spec.name)
            if record is not None:
                return record
        raise
    return SweepRecord(
        spec.name, spec.name, experiment.experiment_id, parent.run_id, "RUNNING", True
    )


def sweep_not_found(name: str, display_url: str) -> NotFoundError:
    """The error for a sweep ``name`` that the store at ``display_url`` does not hold."""
    return NotFoundError(
        f"no sweep called {name!r} in {display_url}; `sweep status` lists the sweeps there "
        "(pass --storage to look in another store), and `sweep launch SPEC` starts one"
    )


def get_sweep_record(db: Database, name: str) -> SweepRecord | None:
    with db.session() as session:
        row = session.get(SweepRow, name)
        if row is None:
            return None
        return SweepRecord(
            row.name, row.study_name, row.experiment_id, row.parent_run_id, row.status, False
        )


def set_sweep_status(db: Database, name: str, status: str) -> None:
    with db.session() as session:
        row = session.get(SweepRow, name)
        if row is not None:
            row.status = status
            row.updated_at = now_ms()
