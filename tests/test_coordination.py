"""Trial slots, leases and recovery in the store, on every backend, without Ray: the
guarantees controllers and agents build on."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.coordination import Coordinator, LeaseSettings, SweepState
from sweep.spec import load_spec_from_dict
from sweep.storage import Database
from sweep.study import count_trials, open_study, open_sweep_record, set_sweep_status
from sweep.tracking import TrackingStore


def make_sweep(url: str, tmp_path: Path, n_trials: int = 30) -> None:
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
    database = Database(url)
    return Coordinator(database, database.optuna_storage(), "slots", LeaseSettings(**settings))


def claim_all(url: str, results: multiprocessing.Queue) -> None:
    """Claim and finish trials until the budget says no; report how many."""
    coord = coordinator(url)
    worker = coord.register_worker("agent")
    claimed = 0
    while (trial_id := coord.claim(worker)) is not None:
        coord.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
        coord.release(trial_id)
        claimed += 1
    results.put(claimed)


def test_claims_from_four_processes_fill_the_budget_exactly(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=30)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = [ctx.Process(target=claim_all, args=(storage_url, results)) for _ in range(4)]
    for w in workers:
        w.start()
    claimed = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert sum(claimed) == 30
    study = optuna.load_study(study_name="slots", storage=storage_url)
    assert len(study.trials) == 30 and count_trials(study).complete == 30


def test_an_expired_lease_fails_the_trial_and_queues_one_retry(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=2)
    coord = coordinator(storage_url, heartbeat_interval=0.2, timeout=0.5, max_retries=1)
    dead, alive = coord.register_worker("agent"), coord.register_worker("agent")
    lost_id = coord.claim(dead)
    kept_id = coord.claim(alive)
    assert lost_id is not None and kept_id is not None
    coord.storage.set_trial_param(lost_id, "x", 0.25, optuna.distributions.FloatDistribution(0, 1))
    assert coord.claim(alive) is None  # the budget is full
    time.sleep(0.7)
    coord.beat(alive)  # the live worker renews its lease; the dead one does not
    lost = coord.recover_stale()
    assert [t.trial_id for t in lost] == [lost_id]
    assert "lease expired" in lost[0].reason and lost[0].retry_number is not None
    assert coord.recover_stale() == []  # recovered once
    # The retry takes the lost trial's slot, with its params.
    retry_id = coord.claim(alive)
    assert retry_id is not None
    retry = coord.storage.get_trial(retry_id)
    assert retry.system_attrs["fixed_params"] == {"x": 0.25}
    assert retry.system_attrs["sweep:retry_of"] == lost[0].number
    assert coord.claim(alive) is None
    assert coord.budget_used() == 2
    # A retry that is lost too is not retried again (max_retries: 1).
    time.sleep(0.7)
    coord.beat(alive)
    coord.release(kept_id)
    coord.storage.set_trial_state_values(kept_id, TrialState.COMPLETE, [1.0])
    with coord.db.session() as session:  # make the retry's lease look old
        from sweep.storage._schema import TrialLeaseRow

        session.get(TrialLeaseRow, retry_id).renewed_at = 0  # type: ignore[union-attr]
    (again,) = coord.recover_stale()
    assert again.trial_id == retry_id and again.retry_number is None
    assert coord.budget_used() == 2 and coord.claim(alive) is None


@pytest.mark.parametrize("state", [SweepState.PAUSED, SweepState.STOPPED, SweepState.CANCELLED])
def test_nothing_is_claimed_unless_the_sweep_runs(
    storage_url: str, tmp_path: Path, state: SweepState
) -> None:
    make_sweep(storage_url, tmp_path)
    coord = coordinator(storage_url)
    set_sweep_status(coord.db, "slots", state.value)
    worker = coord.register_worker("agent")
    assert coord.claim(worker) is None
    assert coord.beat(worker) is state
    set_sweep_status(coord.db, "slots", SweepState.RUNNING.value)
    assert coord.claim(worker) is not None
