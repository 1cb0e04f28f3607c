"""Sweep control from anywhere that reaches the store: status, stop, cancel, pause,
resume. Controllers and agents read the control state on every heartbeat."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from sqlalchemy import select

from sweep.coordination import Coordinator, LeaseSettings, RegisteredWorker, SweepState
from sweep.errors import NotFoundError, SweepError
from sweep.pareto import FrontTrial, front_of, metric_names
from sweep.storage import Database, SweepRow, resolve_storage_url
from sweep.study import best_own_trial, get_sweep_record, set_sweep_status, sweep_not_found
from sweep.tracking import now_ms
from sweep.trial import lease_settings
from sweep.trial_counts import TrialCounts, count_trials

#: The state shown for a sweep whose Optuna study was deleted behind its back.
STUDY_DELETED = "STUDY DELETED"


@dataclass(frozen=True)
class SweepStatus:
    name: str
    state: str
    n_trials: int | None
    counts: TrialCounts
    best_value: float | None
    best_trial: int | None
    direction: str
    lease_timeout_s: float
    workers: list[RegisteredWorker] = field(default_factory=list)
    #: The objectives' names (several: ``direction`` lists their directions, comma-
    #: separated, there is no best value, and ``pareto_front`` holds the front).
    metrics: list[str] = field(default_factory=list)
    pareto_front: list[FrontTrial] = field(default_factory=list)

    def alive(self, worker: RegisteredWorker) -> bool:
        """Whether ``worker`` still beats (a dead one stops within the lease timeout)."""
        return (
            worker.stopped_at is None
            and now_ms() - worker.heartbeat_at < self.lease_timeout_s * 1000
        )


def _open(storage: str | None) -> Database:
    db = Database(resolve_storage_url(storage))
    db.ensure_schema()
    return db


def coordinator_of(db: Database, name: str, storage: optuna.storages.BaseStorage) -> Coordinator:
    """The sweep's coordinator, with the lease settings of its stored spec."""
    from sweep.agent import join_context

    try:
        settings = lease_settings(join_context(db, name, storage=storage).spec)
    except NotFoundError:
        if get_sweep_record(db, name) is None:
            raise
        settings = LeaseSettings()  # launched by a version that stored no spec
    return Coordinator(db, storage, name, settings)


def sweep_status(name: str | None = None, *, storage: str | None = None) -> list[SweepStatus]:
    """The state, trial counts, best value and attached workers of one sweep or all."""
    db = _open(storage)
    try:
        return statuses(db, name)
    finally:
        db.dispose()


def statuses(db: Database, name: str | None = None) -> list[SweepStatus]:
    """:func:`sweep_status` on an open store. A sweep whose study is gone (deleted with
    Optuna's tools) has state ``STUDY DELETED`` and no counts, instead of failing all."""
    with db.session() as session:
        stmt = select(SweepRow).order_by(SweepRow.created_at)
        if name is not None:
            stmt = stmt.where(SweepRow.name == name)
        rows = [(r.name, r.study_name, r.status, r.n_trials) for r in session.scalars(stmt)]
    if name is not None and not rows:
        raise sweep_not_found(name, db.display_url)
    storage_ = db.optuna_storage()
    return [status_of(db, storage_, *row) for row in rows]


def status_of(
    db: Database,
    storage: optuna.storages.BaseStorage,
    sweep_name: str,
    study_name: str,
    state: str,
    n_trials: int | None,
) -> SweepStatus:
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # Optuna's "no such study"
        return SweepStatus(sweep_name, STUDY_DELETED, n_trials, TrialCounts(), None, None, "", 0.0)
    best_value = best_trial = None
    front: list[FrontTrial] = []
    if len(study.directions) > 1:
        front = front_of(study)
    else:
        best = best_own_trial(study)
        if best is not None:
            best_value, best_trial = best.value, best.number
    coordinator = coordinator_of(db, sweep_name, storage)
    return SweepStatus(
        sweep_name,
        state,
        n_trials,
        count_trials(db, storage.get_study_id_from_name(study_name)),
        best_value,
        best_trial,
        ",".join(d.name.lower() for d in study.directions),
        coordinator.settings.timeout,
        coordinator.workers(),
        metric_names(study),
        front,
    )


def _set_state(name: str, state: SweepState, storage: str | None) -> None:
    db = _open(storage)
    try:
        if get_sweep_record(db, name) is None:
            raise sweep_not_found(name, db.display_url)
        set_sweep_status(db, name, state.value)
    finally:
        db.dispose()


def stop(name: str, *, storage: str | None = None) -> None:
    """Start no new trials; let running ones finish. Every controller and agent sees it
    on its next heartbeat; the controller registers the best model as usual."""
    _set_state(name, SweepState.STOPPED, storage)


def cancel(name: str, *, storage: str | None = None) -> None:
    """Kill running trials (their runs end KILLED; they use no budget) and stop."""
    _set_state(name, SweepState.CANCELLED, storage)


def pause(name: str, *, storage: str | None = None) -> None:
    """Start no new trials until `resume`; workers stay attached and wait."""
    _set_state(name, SweepState.PAUSED, storage)


def resume(name: str, *, storage: str | None = None, ray_address: str | None = None) -> Any:
    """Continue a sweep. A paused sweep whose controller is alive only claims trials
    again (returns None). Otherwise (the controller crashed, or the sweep was stopped,
    cancelled or interrupted) this process becomes the controller and runs the remaining
    budget, returning the :class:`~sweep.controller.SweepResult`."""
    from sweep.agent import join_context

    db = _open(storage)
    try:
        optuna_storage = db.optuna_storage()
        spec = join_context(db, name, storage=optuna_storage).spec
        coordinator = Coordinator(db, optuna_storage, name, lease_settings(spec))
        state, _ = coordinator.state()
        alive = [w for w in coordinator.workers(alive_only=True) if w.kind == "controller"]
        if state is SweepState.PAUSED and alive:
            set_sweep_status(db, name, SweepState.RUNNING.value)
            return None
        # Otherwise run a controller here. Should another one still be alive after all
        # (one killed seconds ago still looks alive), both share the budget safely.
    finally:
        db.dispose()
    from sweep.controller import launch

    return launch(spec, storage=db.url, ray_address=ray_address)


#: Run-tag prefix of the control actions taken from the UI, on the sweep's parent run.
AUDIT_TAG = "sweep.audit."


def unpause(name: str, *, db: Database) -> None:
    """Let a paused sweep claim trials again (what the UI's resume does: it cannot become
    the sweep's controller; `sweep resume` on a machine with the code can)."""
    record = get_sweep_record(db, name)
    if record is None:
        raise sweep_not_found(name, db.display_url)
    if record.status != SweepState.PAUSED.value:
        raise SweepError(
            f"sweep {name!r} is {record.status}, not paused; to continue it, run "
            f"`sweep resume {name}` where its objective's code is"
        )
    set_sweep_status(db, name, SweepState.RUNNING.value)


def audit(db: Database, name: str, action: str, user: str, reason: str | None) -> None:
    """Record a control action and who took it as a tag on the sweep's parent run."""
    from sweep.tracking import TrackingStore

    record = get_sweep_record(db, name)
    if record is None:
        return
    text = f"{action} by {user}" + (f": {reason}" if reason else "")
    TrackingStore(db).set_tags(record.parent_run_id, {f"{AUDIT_TAG}{now_ms()}": text})
