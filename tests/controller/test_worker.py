"""A Ray worker's calls: several short trials per call, each ending on its own."""

from __future__ import annotations

import uuid
from pathlib import Path

from sweep.pacing import BATCH_MAX, QUEUE_SHORT, Pace
from sweep.trial import TrialOutcome
from sweep.worker import TrialActor, TrialCrash
from tests.helpers import OBJECTIVES_DIR, sweep_context


def test_a_trial_that_raises_out_of_its_runner_fails_alone_in_its_call(
    storage_url: str, tmp_path: Path
) -> None:
    # Not the objective's failure (its outcome records that) but the runner's: here the
    # second attempt at a claim whose run the first attempt opened.
    context = sweep_context(storage_url, tmp_path / "art", "crash-in-call", "toy:trivial")
    worker = TrialActor(context, 0, str(OBJECTIVES_DIR), uuid.uuid4().hex)
    try:
        coordinator = worker.runner.coordinator
        first = coordinator.claim(worker.heartbeat.worker_id)
        second = coordinator.claim(worker.heartbeat.worker_id)
        assert first is not None and second is not None
        results = worker.run([first, first, second], [], None)
    finally:
        worker.heartbeat.stop()
        worker.runner.close()
    assert len(results) == 3
    ran_first, crash, ran_second = results
    assert isinstance(crash, TrialCrash) and crash.trial_id == first.trial_id
    assert crash.error.startswith("StorageError: ") and "failed" in crash.error
    for outcome, claim in ((ran_first, first), (ran_second, second)):
        assert isinstance(outcome, TrialOutcome)
        assert (outcome.trial_id, outcome.state) == (claim.trial_id, "COMPLETE")
        assert outcome.end is not None and outcome.end.run_end is not None  # for the controller
    assert set(ran_second.params) == {"x", "y", "c"}


def test_short_trials_share_calls_and_long_or_timed_ones_go_alone() -> None:
    pace = Pace(batches=True)
    assert (pace.batch(), pace.queue()) == (1, 1)  # nothing timed yet
    for _ in range(20):
        pace.add(0.003)
    assert 1 < pace.batch() <= BATCH_MAX
    assert pace.queue() * pace.batch() == QUEUE_SHORT  # trials sent ahead, in calls
    for _ in range(20):
        pace.add(1.0)  # long trials: planned by the controller, one per call
    assert (pace.batch(), pace.queue()) == (1, 1)
    # With a trial_timeout each trial is timed on its own, so each goes in its own call.
    timed = Pace(batches=False)
    for _ in range(20):
        timed.add(0.003)
    assert (timed.batch(), timed.queue()) == (1, QUEUE_SHORT)
