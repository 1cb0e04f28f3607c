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
from sweep.study import TrialCounts, count_trials, open_study, open_sweep_record, set_sweep_status
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
    while (claim := coord.claim(worker)) is not None:
        coord.storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, [1.0])
        coord.release(claim.trial_id)
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
    database = Database(storage_url)
    assert len(study.trials) == 30
    assert count_trials(database, study._study_id) == TrialCounts(complete=30)
    database.dispose()


def test_an_expired_lease_fails_the_trial_and_queues_one_retry(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=2)
    coord = coordinator(storage_url, heartbeat_interval=0.2, timeout=0.5, max_retries=1)
    dead, alive = coord.register_worker("agent"), coord.register_worker("agent")
    lost_claim, kept_claim = coord.claim(dead), coord.claim(alive)
    assert lost_claim is not None and kept_claim is not None
    lost_id, kept_id = lost_claim.trial_id, kept_claim.trial_id
    coord.storage.set_trial_param(lost_id, "x", 0.25, optuna.distributions.FloatDistribution(0, 1))
    assert coord.claim(alive) is None  # the budget is full
    time.sleep(0.7)
    coord.beat(alive)  # the live worker renews its lease; the dead one does not
    lost = coord.recover_stale()
    assert [t.trial_id for t in lost] == [lost_id]
    assert "lease expired" in lost[0].reason and lost[0].retry_number is not None
    assert coord.recover_stale() == []  # recovered once
    assert count_trials(coord.db, coord.study_id) == TrialCounts(running=1, retried=1, waiting=1)
    # The retry takes the lost trial's slot, with its params.
    retry_claim = coord.claim(alive)
    assert retry_claim is not None
    retry_id = retry_claim.trial_id
    retry = coord.storage.get_trial(retry_id)
    assert retry.system_attrs["fixed_params"] == {"x": 0.25}
    assert retry.system_attrs["sweep:retry_of"] == lost[0].number
    # The claim hands the worker what the retry needs without reading the trial back.
    assert retry_claim.system_attrs["fixed_params"] == {"x": 0.25}
    assert retry_claim.retry_of_run == lost_claim.run_id
    assert retry.system_attrs["sweep:run_id"] == retry_claim.run_id
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
    # Counted as the status report shows them: the first attempt, retried, uses no budget.
    counts = count_trials(coord.db, coord.study_id)
    assert counts == TrialCounts(complete=1, failed=1, retried=1) and counts.finished == 2


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


def test_an_attempt_back_after_its_trial_was_recovered_leaves_no_run_open(
    storage_url: str, tmp_path: Path
) -> None:
    from sweep.ends import TrialEnd
    from sweep.ledger import TrialLedger
    from sweep.storage import StudyStorage, TrialWrites
    from sweep.tracking import RunEnd, RunStatus
    from sweep.trial import TrialOutcome

    make_sweep(storage_url, tmp_path, n_trials=1)
    coord = coordinator(storage_url)
    worker = coord.register_worker("ray")
    claim = coord.claim(worker)  # no run seed: the worker opens the run itself
    assert claim is not None and claim.artifact_uri is None
    # The trial is recovered before its worker opened the run: no run to end yet.
    lost = coord.fail_lost(claim.trial_id, "lease expired: its worker was still starting")
    assert lost is not None and lost.run_id is None and lost.retry_number is not None
    tracking = TrackingStore(coord.db)
    experiment = tracking.get_or_create_experiment("slots", tmp_path / "artifacts")
    tracking.create_run(experiment, f"trial-{claim.number}", run_id=claim.run_id)
    # Then the attempt comes back to the controller, which writes it with others.
    outcome = TrialOutcome(
        claim.trial_id,
        claim.number,
        "COMPLETE",
        1.0,
        claim.run_id,
        0.1,
        end=TrialEnd(
            TrialWrites(claim.trial_id, state=TrialState.COMPLETE, values=[1.0]),
            RunEnd(claim.run_id, RunStatus.FINISHED, tags={"sweep.state": "COMPLETE"}),
        ),
    )
    storage = StudyStorage(coord.db, coord.storage)
    ledger = TrialLedger(coord.db, storage, tracking, coord.study_id)
    assert ledger.record([(outcome, worker)]) == set()
    run = tracking.get_run(claim.run_id)
    assert run.status is RunStatus.FAILED and run.end_time is not None
    assert run.tags["sweep.state"] == "FAIL" and "not counted" in run.tags["sweep.error"]
    assert coord.storage.get_trial(claim.trial_id).state == TrialState.FAIL
    coord.db.dispose()
