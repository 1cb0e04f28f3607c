"""The controller's ledger tells each Ray worker, with its next trial, of every trial
finished elsewhere, once, and forgets what every worker has been told."""

from __future__ import annotations

import datetime
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.ledger import TRIM_AFTER, TrialLedger
from sweep.storage import StudyStorage
from sweep.tracking import TrackingStore
from sweep.trial import TrialOutcome
from tests.coordination.helpers import coordinator, make_sweep


def finished(number: int) -> TrialOutcome:
    """A trial as a Ray worker hands it back (ids far from any the store holds)."""
    now = datetime.datetime.now()
    trial = FrozenTrial(
        number=number,
        state=TrialState.COMPLETE,
        value=float(number),
        datetime_start=now,
        datetime_complete=now,
        params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=10_000 + number,
    )
    return TrialOutcome(trial._trial_id, number, "COMPLETE", float(number), "", 0.0, trial=trial)


def test_each_worker_hears_of_every_other_workers_trial_once_and_the_log_stays_short(
    sqlite_url: str, tmp_path: Path
) -> None:
    make_sweep(sqlite_url, tmp_path)
    coord = coordinator(sqlite_url)
    storage = StudyStorage(coord.db, coord.storage)
    ledger = TrialLedger(coord.db, storage, TrackingStore(coord.db), coord.study_id)
    heard: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    ledger.join("a")
    ledger.join("b")
    ran_by: dict[int, str] = {}
    rounds = 8 * TRIM_AFTER
    joins, leaves = rounds // 4, rounds // 2
    for number in range(rounds):
        # a runs two trials for each of b's; c runs some between joining and leaving
        # (its actor died, say, and was replaced).
        if number == joins:
            ledger.join("c")
        if number == leaves:
            ledger.leave("c")
        worker = "b" if number % 3 == 2 else "a"
        if joins <= number < leaves and number % 3 == 0:
            worker = "c"
        ledger.arrived(finished(number), worker)
        ran_by[number] = worker
        heard[worker] += [t.number for t in ledger.news_for(worker)]
        # Memory stays flat: the log holds about what the slowest worker was not told,
        # and nothing for a worker that left.
        assert len(ledger._log) < 2 * TRIM_AFTER
    for worker in ("a", "b"):
        heard[worker] += [t.number for t in ledger.news_for(worker)]
        assert heard[worker] == [n for n in range(rounds) if ran_by[n] != worker]
    # c was told of what finished after it joined, up to its last trial, not its own.
    last_of_c = max(n for n, w in ran_by.items() if w == "c")
    assert heard["c"] == [n for n in range(joins, last_of_c) if ran_by[n] != "c"]
    # A worker that joins now hears of nothing before it.
    ledger.join("d")
    assert ledger.news_for("d") == []
    ledger.arrived(finished(rounds), "a")
    assert [t.number for t in ledger.news_for("d")] == [rounds]
    coord.db.dispose()
