"""Recovery of lost trials, on every backend, without Ray: a trial whose lease expired
is failed and retried once, however many processes recover at once, and an attempt
that comes back after its trial was recovered does not count."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweep.coordination import LostTrial
from sweep.storage import TrialLeaseRow
from sweep.tracking import TrackingStore
from sweep.trial_counts import TrialCounts, count_trials
from tests.coordination.helpers import coordinator, make_sweep


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
    coord.beat(alive)  # (a slow first recovery must not let the live lease expire)
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
        session.get(TrialLeaseRow, retry_id).renewed_at = 0  # type: ignore[union-attr]
    (again,) = coord.recover_stale()
    assert again.trial_id == retry_id and again.retry_number is None
    assert coord.budget_used() == 2 and coord.claim(alive) is None
    # Counted as the status report shows them: the first attempt, retried, uses no budget.
    counts = count_trials(coord.db, coord.study_id)
    assert counts == TrialCounts(complete=1, failed=1, retried=1) and counts.finished == 2


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


def test_four_processes_recovering_at_once_recover_an_expired_lease_once(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=3)
    coord = coordinator(storage_url, timeout=0.3)
    dead = coord.register_worker("agent")
    claims = coord.claim_many([(dead, None)] * 3)
    assert len(claims) == 3
    coord.storage.set_trial_state_values(claims[2].trial_id, TrialState.COMPLETE, [1.0])
    time.sleep(0.5)
    found: list[list[LostTrial]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def recoverer(index: int) -> None:
        mine = coordinator(storage_url, timeout=0.3, max_retries=1)
        start.wait()
        found[index] = mine.recover_stale()
        mine.db.dispose()

    threads = [threading.Thread(target=recoverer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    lost = sorted((t for per_thread in found for t in per_thread), key=lambda t: t.number)
    # Each lost trial once, each with one retry; the finished one is left alone.
    assert [t.trial_id for t in lost] == [claims[0].trial_id, claims[1].trial_id]
    assert sorted(t.retry_number for t in lost if t.retry_number is not None) == [3, 4]
    counts = count_trials(coord.db, coord.study_id)
    assert counts == TrialCounts(complete=1, retried=2, waiting=2)
    with coord.db.session() as session:  # the finished trial's stale lease is dropped too
        assert session.query(TrialLeaseRow).count() == 0
    assert coord.budget_used() == 3
    coord.db.dispose()


def test_failing_a_trial_that_already_finished_changes_nothing(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=1)
    coord = coordinator(storage_url)
    claim = coord.claim(coord.register_worker("agent"))
    assert claim is not None
    coord.storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, [1.0])
    assert coord.fail_lost(claim.trial_id, "its worker died") is None
    assert coord.storage.get_trial(claim.trial_id).state == TrialState.COMPLETE
    assert count_trials(coord.db, coord.study_id) == TrialCounts(complete=1)
    with coord.db.session() as session:
        assert session.get(TrialLeaseRow, claim.trial_id) is None
    coord.db.dispose()
