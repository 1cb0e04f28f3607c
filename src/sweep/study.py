"""The Optuna study behind a sweep, and the sweep's own record (experiment, parent run).

The study is named after the sweep and lives in the same database as the tracking
tables. Launching a spec whose study exists continues it: the budget counts the trials
already finished there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from sweep.errors import NotFoundError, SpecError, StorageError
from sweep.spec import SweepSpec
from sweep.storage import Database
from sweep.storage._schema import SweepRow
from sweep.tracking import Experiment, TrackingStore
from sweep.tracking._store import now_ms

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

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class TrialCounts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    killed: int = 0
    retried: int = 0  # failed, then retried: the retry holds their budget slot
    waiting: int = 0  # retries not yet started

    def add(self, state: str) -> TrialCounts:
        """These counts after one more trial ended in ``state``: an Optuna state name,
        or RETRIED / KILLED for failed trials that use no budget."""
        field = {
            "COMPLETE": "complete",
            "PRUNED": "pruned",
            "FAIL": "failed",
            "RETRIED": "retried",
            "KILLED": "killed",
        }[state]
        return replace(self, **{field: getattr(self, field) + 1})

    @property
    def finished(self) -> int:
        """Trials that used budget: complete, pruned and failed, not killed by a stop."""
        return self.complete + self.pruned + self.failed


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
    it exists with the same name and direction."""
    direction = spec.metric.direction
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=spec.name,
            direction=direction,
            load_if_exists=True,
            sampler=spec.sampler.build(),
            pruner=spec.pruner.build(),
        )
    except optuna.exceptions.StorageInternalError as exc:
        raise StorageError(f"cannot create or load study {spec.name!r}: {exc}") from exc
    existing = study.direction.name.lower()
    if existing != direction:
        raise SpecError(
            f"study {spec.name!r} already exists in {db.display_url} with direction "
            f"{existing}, but the spec says {direction}; rename the sweep or fix the direction",
            file=str(spec.source_path) if spec.source_path else None,
            key_path="metric.direction",
            line=spec.line_of("metric.direction"),
        )
    return study


def counted_as(trial: FrozenTrial) -> str:
    """How a finished trial counts in :meth:`TrialCounts.add`: its state's name, or
    KILLED / RETRIED for a failed trial that a stop killed or a retry superseded."""
    if trial.state == TrialState.FAIL:
        if trial.system_attrs.get(KILLED_ATTR):
            return "KILLED"
        if trial.system_attrs.get(SUPERSEDED_ATTR):
            return "RETRIED"
    return trial.state.name


def count_trials(db: Database, study_id: int) -> TrialCounts:
    """The study's trials counted by state, in one query: a long sweep's trials are
    never loaded to count them (10,000 trials as Optuna objects take tens of MB)."""
    trials = models.TrialModel.__table__
    attrs = models.TrialSystemAttributeModel.__table__

    def marked(key: str) -> Any:
        return (
            select(attrs.c.trial_id)
            .where(attrs.c.trial_id == trials.c.trial_id, attrs.c.key == key)
            .exists()
        )

    kind = case(
        (marked(KILLED_ATTR), "killed"), (marked(SUPERSEDED_ATTR), "retried"), else_="failed"
    )
    query = (
        select(trials.c.state, kind, func.count())
        .where(trials.c.study_id == study_id)
        .group_by(trials.c.state, kind)
    )
    field_of = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    counts = dict.fromkeys(
        ("complete", "pruned", "failed", "running", "killed", "retried", "waiting"), 0
    )
    with db.session() as session:
        for state, fail_kind, count in session.execute(query):
            state = TrialState[state] if isinstance(state, str) else TrialState(state)
            field = fail_kind if state == TrialState.FAIL else field_of[state]
            counts[field] += int(count)
    return TrialCounts(**counts)


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
