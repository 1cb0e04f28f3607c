"""Claims against the budget, on every backend, without Ray: never more trials than the
budget however many processes and threads claim at once, numbered as Optuna numbers
them, retries first and using no budget, nothing unless the sweep runs."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import optuna
import pytest

from sweep.coordination import Claim, SweepState
from sweep.storage import Database
from sweep.storage import _slots as slots_module
from sweep.study import set_sweep_status
from sweep.trial_counts import TrialCounts, count_trials
from tests.coordination.helpers import claim_all, coordinator, make_sweep


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


def test_batches_claimed_from_four_threads_stop_at_the_budget_and_number_trials_exactly(
    storage_url: str, tmp_path: Path
) -> None:
    make_sweep(storage_url, tmp_path, n_trials=25)
    claims: list[list[Claim]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def claimer(index: int) -> None:
        coord = coordinator(storage_url)
        worker = coord.register_worker("agent")
        start.wait()
        # Batches of 3 from each of 4 claimers: the last ones find less room than asked.
        while batch := coord.claim_many([(worker, None)] * 3):
            assert len(batch) <= 3
            claims[index].extend(batch)
        coord.db.dispose()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    every = [c for per_thread in claims for c in per_thread]
    assert sorted(c.number for c in every) == list(range(25))
    assert len({c.trial_id for c in every}) == 25 and len({c.run_id for c in every}) == 25
    coord = coordinator(storage_url)
    assert coord.budget_used() == 25 and coord.claim(coord.register_worker("agent")) is None
    assert count_trials(coord.db, coord.study_id) == TrialCounts(running=25)
    coord.db.dispose()


def test_retries_and_killed_trials_use_no_budget(storage_url: str, tmp_path: Path) -> None:
    make_sweep(storage_url, tmp_path, n_trials=2)
    coord = coordinator(storage_url, max_retries=1)
    worker = coord.register_worker("agent")
    first, second = coord.claim_many([(worker, None), (worker, None)])
    assert coord.claim(worker) is None and coord.budget_used() == 2
    lost = coord.fail_lost(first.trial_id, "its worker died")
    assert lost is not None and lost.retry_number == 2
    assert coord.budget_used() == 2  # the retry takes the lost trial's slot
    # The budget is full, yet the retry is handed out: it was counted already.
    retry = coord.claim(worker)
    assert retry is not None and retry.number == 2
    assert retry.system_attrs["sweep:retry_of"] == first.number
    assert coord.claim(worker) is None and coord.budget_used() == 2
    # A killed trial is not retried and frees its slot for a new trial.
    killed = coord.fail_lost(second.trial_id, "cancelled", killed=True)
    assert killed is not None and killed.retry_number is None
    assert coord.budget_used() == 1
    fresh = coord.claim(worker)
    assert fresh is not None and fresh.number == 3 and "sweep:retry_of" not in fresh.system_attrs
    assert coord.claim(worker) is None and coord.budget_used() == 2
    counts = count_trials(coord.db, coord.study_id)
    assert counts == TrialCounts(running=2, retried=1, killed=1)
    coord.db.dispose()


@pytest.mark.parametrize("save_every", [1, 64])
def test_claims_count_trials_made_outside_them_and_a_study_deleted_behind_their_back(
    storage_url: str, tmp_path: Path, save_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims keep the study's counts instead of counting its trials each time: trials
    that Optuna's own API adds between claims, and retries waiting, still take numbers
    and budget exactly; a study deleted with Optuna's tools and made again is counted
    afresh. Whether the counts are stored at every claim or every 64 trials."""
    monkeypatch.setattr(slots_module, "SAVE_EVERY", save_every)
    make_sweep(storage_url, tmp_path, n_trials=6)
    coord = coordinator(storage_url, max_retries=1)
    worker = coord.register_worker("agent")
    first = coord.claim(worker)
    study = optuna.load_study(study_name="slots", storage=coord.storage)
    study.enqueue_trial({"x": 1.0})  # a user's trial, numbered by Optuna: 1
    asked = study.ask()  # a trial Optuna starts itself: the one just enqueued
    assert first is not None and first.number == 0 and asked.number == 1
    study.enqueue_trial({"x": 2.0})  # waiting, number 2
    lost = coord.fail_lost(first.trial_id, "its worker died")  # retried as number 3
    assert lost is not None and lost.retry_number == 3
    claims = coord.claim_many([(worker, None)] * 6)
    # The two waiting first (oldest first), then new ones while the budget has room:
    # 0 (superseded) uses none, 1, 2, 3 do, 4 to 6 fill it.
    assert [c.number for c in claims] == [2, 3, 4, 5, 6]
    assert coord.budget_used() == 6 and coord.claim(worker) is None
    for claim in claims:
        coord.release(claim.trial_id)
    coord.db.dispose()

    optuna.delete_study(study_name="slots", storage=storage_url)
    make_sweep(storage_url, tmp_path, n_trials=3)
    coord = coordinator(storage_url)
    worker = coord.register_worker("agent")
    assert [c.number for c in coord.claim_many([(worker, None)] * 4)] == [0, 1, 2]
    assert coord.budget_used() == 3
    coord.db.dispose()


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
