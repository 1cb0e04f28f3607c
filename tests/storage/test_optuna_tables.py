"""The functions through which sweep writes Optuna's trial tables in its own
transactions, checked against what Optuna itself reads back, on every backend."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from sweep.storage import (
    Database,
    insert_running_trials,
    insert_system_attrs,
    local_time,
    queue_waiting_trial,
    start_waiting_trials,
    study_slots,
    system_attr_by_number,
    system_attrs_of,
    unfinished_trials,
    utc_now,
)


def test_trials_written_in_our_transactions_read_back_through_optuna(storage_url: str) -> None:
    db = Database(storage_url)
    db.ensure_schema()
    storage = db.optuna_storage()
    study = optuna.create_study(study_name="tables", storage=storage)
    study.enqueue_trial({"x": 1.0})  # Optuna's own WAITING trial, number 0
    done = study.ask()  # it takes the enqueued one
    study.tell(done, 1.0)
    study.enqueue_trial({"x": 2.0})  # number 1
    started = utc_now().replace(microsecond=0)
    with db.session() as session:
        assert study_slots(session, study._study_id, uncounted=["mark"], lock=True).trials == 2
        (waiting,) = start_waiting_trials(session, study._study_id, 5, started)
        created = insert_running_trials(session, study._study_id, range(2, 4), started)
        insert_system_attrs(session, [(created[0][0], "mark", True), (created[1][0], "run", "r")])
        retry = queue_waiting_trial(session, study._study_id, 4, {"fixed_params": {"x": 3.0}})
    assert waiting[1] == 1 and [number for _, number in created] == [2, 3]
    trials = storage.get_all_trials(study._study_id)
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.RUNNING),
        (2, TrialState.RUNNING),
        (3, TrialState.RUNNING),
        (4, TrialState.WAITING),
    ]
    assert trials[1].system_attrs["fixed_params"] == {"x": 2.0}
    assert trials[2].datetime_start == local_time(started)  # naive UTC in, local time out
    assert trials[3].system_attrs == {"run": "r"} and trials[4]._trial_id == retry
    with db.session() as session:
        slots = study_slots(session, study._study_id, uncounted=["mark"])
        assert (slots.trials, slots.waiting, slots.used) == (5, 1, 4)  # trial 2 is marked
        assert unfinished_trials(session, study._study_id) == [
            (trial_id, TrialState.RUNNING) for trial_id in (waiting[0], *[i for i, _ in created])
        ] + [(retry, TrialState.WAITING)]
        attrs = system_attrs_of(session, [retry, created[0][0], trials[0]._trial_id])
        assert attrs[retry] == {"fixed_params": {"x": 3.0}}
        assert attrs[created[0][0]] == {"mark": True}
        assert "fixed_params" in attrs[trials[0]._trial_id]
        assert system_attr_by_number(session, study._study_id, [2, 3, 4], "run") == {3: "r"}
    db.dispose()
