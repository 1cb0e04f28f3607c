"""A sweep in the store without a controller, and coordinators on it, for the tests of
coordination and of what builds on it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from optuna.trial import TrialState

from sweep.coordination import Coordinator, LeaseSettings
from sweep.spec import load_spec_from_dict
from sweep.storage import Database
from sweep.study import open_study, open_sweep_record
from sweep.tracking import TrackingStore


def make_sweep(url: str, tmp_path: Path, n_trials: int = 30) -> None:
    """A sweep called ``slots`` with a budget of ``n_trials``, RUNNING."""
    spec = load_spec_from_dict(
        {
            "name": "slots",
            "objective": "toy:trivial",
            "metric": {"name": "loss", "direction": "minimize"},
            "budget": {"n_trials": n_trials},
        }
    )
    database = Database(url)
    database.ensure_schema()
    storage = database.optuna_storage()
    open_study(spec, database, storage)
    tracking = TrackingStore(database)
    experiment = tracking.get_or_create_experiment("slots", tmp_path / "artifacts")
    open_sweep_record(
        spec, database, tracking, experiment, spec_text="", parent_tags={}, parent_params={}
    )
    database.dispose()


def coordinator(url: str, **settings: float) -> Coordinator:
    """A coordinator of the sweep ``slots`` on a database connection of its own."""
    database = Database(url)
    return Coordinator(database, database.optuna_storage(), "slots", LeaseSettings(**settings))


def claim_all(url: str, results: multiprocessing.Queue) -> None:
    """Claim and finish trials until the budget says no; report how many."""
    coord = coordinator(url)
    worker = coord.register_worker("agent")
    claimed = 0
    while (claim := coord.claim(worker)) is not None:
        coord.storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, [1.0])
        coord.release(claim.trial_id)
        claimed += 1
    results.put(claimed)
