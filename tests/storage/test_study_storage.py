"""The study storage (part of the storage suite, run against every backend): trials held
in memory and written once, in Optuna's own tables, so that Optuna loads them."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

from sweep.ends import EndSink, HandBack, WriteNow
from sweep.storage import (
    Database,
    StudyStorage,
    TrialWrites,
    _own_trials,
    _study_cache,
    write_trials,
)
from sweep.tracking import TrackingStore


@pytest.fixture
def db(storage_url: str) -> Iterator[Database]:
    database = Database(storage_url)
    database.ensure_schema()
    optuna.create_study(study_name="held", storage=database.optuna_storage())
    yield database
    database.dispose()


def held_study(
    db: Database, pruner: optuna.pruners.BasePruner | None = None, end_sink: EndSink | None = None
) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = StudyStorage(db, db.optuna_storage(), end_sink)
    return optuna.load_study(
        study_name="held",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner,
    )


def in_database(db: Database, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` as plain Optuna reads it from the database."""
    return optuna.load_study(study_name="held", storage=db.optuna_storage()).trials[number]


def commits(db: Database) -> list[int]:
    counted: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: counted.append(1))
    return counted


def test_a_trial_is_written_once_at_its_end_and_optuna_loads_it(db: Database) -> None:
    study = held_study(db)
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    n = trial.suggest_int("n", 1, 8, log=True)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    trial.set_user_attr("note", {"k": [1, 2]})
    # Held in memory: the database has the RUNNING trial and nothing else yet.
    running = in_database(db, 0)
    assert running.state == TrialState.RUNNING and running.params == {}
    counted = commits(db)
    study.tell(trial, 0.5)
    assert len(counted) == 1  # params, attribute, value and state: one transaction
    done = in_database(db, 0)
    assert done.state == TrialState.COMPLETE and done.value == 0.5
    assert done.params == {"x": x, "n": n, "kind": kind}
    assert done.distributions == trial.distributions
    assert done.user_attrs == {"note": {"k": [1, 2]}}
    assert done.datetime_complete is not None


def test_reports_go_out_from_the_first_then_each_second(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_own_trials, "FLUSH_AFTER_S", 0.3)
    study = held_study(db)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.1, 0)
    # The first report: the trial is training; its params and progress are written now
    # (a retry after a crash reuses the params, other workers' pruners see the report).
    first = in_database(db, 0)
    assert "x" in first.params and first.intermediate_values == {0: 0.1}
    trial.report(0.2, 1)
    assert in_database(db, 0).intermediate_values == {0: 0.1}
    trial.set_user_attr("epoch", 1)
    time.sleep(0.35)
    study._storage.flush_due()  # what the background writer does each second
    later = in_database(db, 0)
    assert later.intermediate_values == {0: 0.1, 1: 0.2} and later.user_attrs == {"epoch": 1}
    trial.report(0.3, 2)
    study.tell(trial, state=TrialState.PRUNED)
    pruned = in_database(db, 0)
    assert pruned.state == TrialState.PRUNED and pruned.value == 0.3  # Optuna's rule
    assert pruned.intermediate_values == {0: 0.1, 1: 0.2, 2: 0.3}


def test_a_rung_record_reaches_the_other_workers_pruners_at_once(db: Database) -> None:
    # Hyperband ranks a trial at a rung against every trial recorded there, running
    # ones included: a record held back for a second would let those trials run on.
    hyperband = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    worker = optuna.load_study(
        study_name="held", storage=StudyStorage(db, db.optuna_storage()), pruner=hyperband
    )
    trial = worker.ask()
    trial.suggest_float("x", 0.0, 1.0)
    for step in range(1, 10):
        trial.report(step / 10, step)  # the first goes out with the params; then held
    assert in_database(db, 0).intermediate_values == {1: 0.1}
    # At step 9 every bracket is past its first rung: Hyperband records the trial there.
    trial.should_prune()
    held = worker._storage.get_trial(trial._trial_id).system_attrs
    recorded = {k: v for k, v in held.items() if k.startswith("completed_rung_")}
    assert recorded, "Hyperband recorded no rung"
    seen = in_database(db, 0)
    assert {k: seen.system_attrs.get(k) for k in recorded} == recorded
    assert seen.intermediate_values == {step: step / 10 for step in range(1, 10)}


def test_a_pruner_ranks_a_trial_once_as_on_optunas_own_storage(db: Database) -> None:
    # Successive halving reads the study, records the trial at the rung, then ranks it
    # against what it read. The trial as read must not show that record, or the trial is
    # ranked against itself as well and trials Optuna would stop run on.
    values = [0.5, 0.6, 0.7, 0.8, 0.55]  # minimized; the fifth is second of five

    def pruned(storage: optuna.storages.BaseStorage) -> list[bool]:
        study = optuna.load_study(
            study_name="held",
            storage=storage,
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        )
        decisions = []
        for value in values:
            trial = study.ask()
            trial.report(value, 1)
            decisions.append(trial.should_prune())
            study.tell(trial, value)
        return decisions

    plain = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="held", storage=plain)
    # Of five at the rung only the best goes on (a third of them, at least one).
    assert pruned(plain) == [False, True, True, True, True]
    assert pruned(StudyStorage(db, db.optuna_storage())) == [False, True, True, True, True]


def test_a_running_trial_as_read_keeps_what_it_showed_while_the_trial_goes_on(
    db: Database,
) -> None:
    # Writes between two reads change one copy of the trial in place (no copy per
    # report); a read hands that copy out, and the next write starts a new one.
    study = held_study(db)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.1, 1)

    def as_read() -> optuna.trial.FrozenTrial:
        return study._storage.get_all_trials(study._study_id, deepcopy=False)[-1]

    first = as_read()
    trial.report(0.2, 2)
    trial.report(0.3, 3)
    trial.set_user_attr("note", "late")
    second = as_read()
    trial.report(0.4, 4)
    trial.suggest_int("n", 1, 3)

    assert (first.intermediate_values, first.user_attrs) == ({1: 0.1}, {})
    assert first.params.keys() == {"x"}
    assert second.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}
    assert second.user_attrs == {"note": "late"}
    assert second.params.keys() == {"x"}
    third = as_read()
    assert third.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    assert third.params.keys() == {"x", "n"}


def test_a_pruner_sees_what_other_workers_recorded_since_the_trial_read_the_study(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reads are served from memory for STALE_AFTER_S; a report makes the next read fresh,
    # so a rung decision counts the records other workers made meanwhile.
    monkeypatch.setattr(_study_cache, "STALE_AFTER_S", 60.0)
    halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    worker, other = held_study(db, pruner=halving), held_study(db, pruner=halving)
    trial = worker.ask()
    trial.suggest_float("x", 0.0, 1.0)
    assert worker.get_trials(deepcopy=False)[0].number == trial.number  # as a sampler reads
    for value in (0.1, 0.2):  # minimized: both better than the trial's 0.5
        theirs = other.ask()
        theirs.report(value, 1)
        theirs.should_prune()
        other.tell(theirs, value)
    trial.report(0.5, 1)
    assert trial.should_prune()  # third of three at the rung: with two unseen, it ran on


def test_a_trial_ended_elsewhere_is_left_as_it_was(db: Database) -> None:
    ended: list[bool] = []

    class RecordingSink(WriteNow):
        def end(self, writes: TrialWrites) -> bool:
            ended.append(super().end(writes))
            return ended[-1]

    study = held_study(db, end_sink=RecordingSink(db, TrackingStore(db)))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    # A recovery (another process) fails the trial while this one still runs it.
    db.optuna_storage().set_trial_state_values(trial._trial_id, TrialState.FAIL)
    study.tell(trial, 1.0)
    assert ended == [False]
    lost = in_database(db, 0)
    assert lost.state == TrialState.FAIL and lost.params == {} and lost.value is None
    assert study.trials[0].state == TrialState.FAIL  # read back as the recovery left it


def test_reads_see_what_other_processes_finished(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_study_cache, "STALE_AFTER_S", 0.0)
    writer, reader = held_study(db), held_study(db)
    assert reader.trials == []
    writer.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    seen = reader.trials
    assert [t.number for t in seen] == [0, 1, 2]
    assert [t.value for t in seen] == [t.value for t in writer.trials]
    running = writer.ask()
    running.suggest_float("x", 0.0, 1.0)
    assert reader.trials[3].state == TrialState.RUNNING
    writer.tell(running, 0.25)
    assert reader.trials[3].value == 0.25  # an unfinished trial is read again


def ended_by_a_worker(
    db: Database, values: tuple[float, ...], *, report: bool = False
) -> tuple[optuna.Study, list[TrialWrites]]:
    """A worker's study whose storage hands its trials' ends back (as a Ray worker's
    does), with a trial ended with each of ``values``; their ends, not yet written."""
    sink = HandBack()
    worker = held_study(db, end_sink=sink)
    ends = []
    for value in values:
        trial = worker.ask()
        trial.suggest_float("x", 0.0, 1.0)
        if report:
            trial.report(value, 0)
        worker.tell(trial, value)
        ends.append(sink.take(trial._trial_id).writes)
    return worker, ends


def test_ends_handed_over_are_written_in_one_transaction(db: Database) -> None:
    """A Ray worker's storage hands its trials' ends back; the controller writes many."""
    # The first report of each is written by the worker itself.
    worker, ends = ended_by_a_worker(db, (1.0, 2.0, 3.0), report=True)
    # The worker's study already sees its trials finished; the database does not.
    assert [t.state for t in worker.trials] == [TrialState.COMPLETE] * 3
    assert in_database(db, 2).state == TrialState.RUNNING
    db.optuna_storage().set_trial_state_values(ends[1].trial_id, TrialState.FAIL)
    counted = commits(db)
    with db.session() as session:
        written = write_trials(session, ends)
    assert len(counted) == 1
    assert written == {ends[0].trial_id, ends[2].trial_id}  # the one ended elsewhere: not
    loaded = optuna.load_study(study_name="held", storage=db.optuna_storage()).trials
    assert [t.state for t in loaded] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert [t.value for t in loaded] == [1.0, None, 3.0]
    assert loaded[2].intermediate_values == {0: 3.0} and "x" in loaded[2].params


def test_a_worker_reads_its_own_ended_trials_back_by_state_unless_ended_otherwise(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent's worker reads the study at each trial, its last trial's end among what
    changed: a trial held as the database has it is not read again, one that a
    recovery ended otherwise meanwhile is."""
    monkeypatch.setattr(_study_cache, "STALE_AFTER_S", 0.0)
    worker, ends = ended_by_a_worker(db, (1.0, 2.0, 3.0))
    study_id = worker._study_id
    held = worker._storage.get_all_trials(study_id, deepcopy=False)
    db.optuna_storage().set_trial_state_values(ends[1].trial_id, TrialState.FAIL)
    with db.session() as session:
        write_trials(session, ends)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    read = worker._storage.get_all_trials(study_id, deepcopy=False)
    assert read[0] is held[0] and read[2] is held[2]  # held as written: not read again
    assert read[1] is not held[1] and read[1].state == TrialState.FAIL  # read as it is
    assert read[1].value is None and "x" not in read[1].params
    assert len(statements) == 2  # which trials changed, and the whole of the one to read


def test_enqueued_trials_run_with_their_params(db: Database) -> None:
    study = held_study(db)
    study.enqueue_trial({"x": 0.125})
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    loaded = optuna.load_study(study_name="held", storage=db.optuna_storage())
    assert loaded.trials[0].params == {"x": 0.125} and loaded.trials[0].value == 0.125
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE] * 2


def test_a_pickled_storage_reads_the_study_afresh_and_leaves_own_trials_to_the_original(
    db: Database,
) -> None:
    # Optuna's contract: a storage pickles. A live engine, a lock and the trials this
    # process runs do not travel: the copy is another process's view of the study.
    sink = HandBack()
    study = held_study(db, end_sink=sink)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)  # held by the original, not written
    copied = pickle.loads(pickle.dumps(study._storage))
    assert copied.db is not study._storage.db
    (seen,) = copied.get_all_trials(study._study_id)
    assert seen.state == TrialState.RUNNING and seen.params == {}
    # The trial is still the original's to end, through the original's sink.
    study.tell(trial, 1.0)
    assert sink.take(trial._trial_id).writes.values == [1.0]
    # Trials the copy runs are its own, ended by its default sink: the study rows at once.
    other = optuna.load_study(study_name="held", storage=copied)
    theirs = other.ask()
    theirs.suggest_float("x", 0.0, 1.0)
    other.tell(theirs, 2.0)
    assert in_database(db, 1).state == TrialState.COMPLETE and in_database(db, 1).value == 2.0
    assert in_database(db, 0).state == TrialState.RUNNING  # the original's hand-back sink


def _mixed(trial: optuna.Trial) -> float:
    # As a sweep's trial carries them: its run id, and attributes that samplers read.
    trial.storage.set_trial_system_attr(trial._trial_id, "sweep:run_id", f"run-{trial.number}")
    if trial.number % 3 == 0:
        trial.set_user_attr("note", trial.number)
    x = trial.suggest_float("x", -10.0, 10.0)
    n = trial.suggest_int("n", 1, 9, step=2)
    c = trial.suggest_categorical("c", ["a", "b", None])
    return x * x + n + (0.5 if c == "a" else 0.0)


def test_a_tpe_sweep_draws_on_the_held_study_what_it_draws_on_optunas_storage(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished trials are held lean (no run id, shared empty dicts, TPE's columns):
    what the sampler sees, and so what it draws, is unchanged."""
    from sweep.tpe import CachingTPESampler

    monkeypatch.setattr(_study_cache, "STALE_AFTER_S", 0.0)  # each read goes to the database
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    held = optuna.load_study(
        study_name="held",
        storage=StudyStorage(db, db.optuna_storage()),
        sampler=CachingTPESampler(seed=3, n_startup_trials=5),
    )
    plain = optuna.create_study(
        study_name="plain",
        storage=db.optuna_storage(),
        sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=5),
    )
    held.optimize(_mixed, n_trials=25)
    plain.optimize(_mixed, n_trials=25)
    assert [t.params for t in held.trials] == [t.params for t in plain.trials]
    assert len({t.params["x"] for t in held.trials}) == 25


def test_finished_trials_are_held_without_the_run_id_and_with_read_only_empty_dicts(
    db: Database,
) -> None:
    held_study(db).optimize(_mixed, n_trials=2)
    storage = StudyStorage(db, db.optuna_storage())
    study_id = storage.get_study_id_from_name("held")
    first, second = storage.get_all_trials(study_id, deepcopy=False)
    assert in_database(db, 1).system_attrs == {"sweep:run_id": "run-1"}
    assert first.system_attrs == {} and first.user_attrs == {"note": 0}
    assert second.user_attrs == {} and second.intermediate_values == {}
    with pytest.raises(TypeError, match="read-only"):
        second.user_attrs["note"] = 1  # shared by the trials that have none
    # Found by id, though no longer in the map of trials not read finished.
    assert storage.get_trial(second._trial_id) is second
    # Copies have dicts of their own, plain and mutable, each its own.
    copies = storage.get_all_trials(study_id)
    copies[1].user_attrs["note"] = 1
    copies[1].system_attrs["k"] = 2
    assert type(copies[0].system_attrs) is dict and copies[0].system_attrs == {}
    assert storage.get_all_trials(study_id)[1].user_attrs == {}
    assert pickle.loads(pickle.dumps(second)).user_attrs == {}
