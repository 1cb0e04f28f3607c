"""`sweep create`: a sweep recorded before its workers (W&B's `wandb sweep`).

The store gets the sweep's study, its record and parent run, and the resolved spec that
agents read; nothing runs. ``sweep agent NAME`` processes then claim its trials from the
shared budget (they need no controller), and ``sweep launch`` of the same spec later
adds a controller with Ray workers to the same study and parent run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import optuna

from sweep.controller import agent_spec_json, record_sweep
from sweep.spec import SweepSpec, load_spec
from sweep.storage import Database, resolve_storage_url
from sweep.study import SPEC_ATTR, get_sweep_record, open_study
from sweep.tracking import TrackingStore
from sweep.trial_counts import TrialCounts, count_trials


@dataclass(frozen=True)
class CreatedSweep:
    """What :func:`create` did: ``created`` is False when the store held the sweep."""

    name: str
    storage: str
    experiment: str
    parent_run_id: str
    created: bool
    counts: TrialCounts


def create(spec: SweepSpec | str | os.PathLike[str], *, storage: str | None = None) -> CreatedSweep:
    """Record the sweep ``spec`` in the store (its study, parent run and the spec agents
    read) without running anything: ``sweep agent NAME`` processes then run its trials
    from the shared budget, and a later :func:`launch` of the spec adds a controller
    with Ray workers to the same sweep. A sweep the store already holds is left as it is.
    """
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = Database(resolve_storage_url(storage, spec.storage))
    try:
        db.ensure_schema()
        optuna_storage = db.optuna_storage()
        existing = get_sweep_record(db, spec.name)
        if existing is not None:
            try:
                study_id = optuna_storage.get_study_id_from_name(existing.study_name)
                counts = count_trials(db, study_id)
            except KeyError:  # its study was deleted behind its back
                counts = TrialCounts()
            experiment = TrackingStore(db).get_experiment(existing.experiment_id)
            return CreatedSweep(
                spec.name, db.display_url, experiment.name, existing.parent_run_id, False, counts
            )
        open_study(spec, db, optuna_storage)
        study_id = optuna_storage.get_study_id_from_name(spec.name)
        experiment, parent_run_id = record_sweep(spec, db)
        optuna_storage.set_study_system_attr(study_id, SPEC_ATTR, agent_spec_json(spec))
        return CreatedSweep(
            spec.name, db.display_url, experiment.name, parent_run_id, True, TrialCounts()
        )
    finally:
        db.dispose()
