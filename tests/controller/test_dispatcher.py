"""The Dispatcher driven without Ray: a pool that runs each call at once in this
process, through the same TrialActor body a Ray actor runs, against the real store
(every backend). Worker deaths and hangs are staged by trial number."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.coordination import Claim, Coordinator, Heartbeat, RunSeed, SweepState
from sweep.dispatcher import Dispatcher
from sweep.storage import Database
from sweep.study import set_sweep_status
from sweep.trial import SweepContext, TrialOutcome, lease_settings
from sweep.trial_counts import TrialCounts, count_trials
from sweep.worker import CallLost, TrialActor, TrialCrash, Worker
from tests.helpers import OBJECTIVES_DIR, sweep_context, sweep_invariants

#: What a staged call holds instead of its results: it never comes back.
HANGS = object()


class InProcessPool:
    """Runs each call as it is sent, in this process; a call whose first trial's number
    is in ``dies_on`` (once each) comes back as its worker's death, one in ``hangs_on``
    never comes back."""

    def __init__(
        self,
        context: SweepContext,
        size: int,
        *,
        dies_on: frozenset[int] = frozenset(),
        hangs_on: frozenset[int] = frozenset(),
    ) -> None:
        self.context = context
        self.dies_on = set(dies_on)
        self.hangs_on = set(hangs_on)
        self._index = itertools.count()
        self._handles = itertools.count()
        self._results: dict[int, Any] = {}
        self.workers = [self._new_worker() for _ in range(size)]
        self.replaced = 0

    def _new_worker(self) -> Worker:
        worker_id = uuid.uuid4().hex
        body = TrialActor(self.context, next(self._index), str(OBJECTIVES_DIR), worker_id)
        return Worker(body, worker_id)

    def started(self, worker: Worker) -> bool:
        return True

    def run_seed(self, worker: Worker) -> RunSeed | None:
        return worker.actor.runner.run_seed  # type: ignore[no-any-return]

    def replace(self, worker: Worker) -> Worker:
        _close(worker)
        position = self.workers.index(worker)
        self.workers[position] = self._new_worker()
        self.replaced += 1
        return self.workers[position]

    def kill_all(self) -> None:
        for worker in self.workers:
            _close(worker)

    def send(
        self, worker: Worker, claims: list[Claim], finished_elsewhere: list[Any], plan: Any
    ) -> int:
        handle = next(self._handles)
        first = claims[0].number
        if first in self.dies_on:
            self.dies_on.discard(first)
            self._results[handle] = CallLost("worker died during the trial", worker_died=True)
        elif first in self.hangs_on:
            self._results[handle] = HANGS
        else:
            self._results[handle] = worker.actor.run(claims, finished_elsewhere, plan)
        return handle

    def wait(self, calls: list[Any], timeout: float) -> list[Any]:
        done = [c for c in calls if self._results[c] is not HANGS]
        if not done:
            time.sleep(min(timeout, 0.05))
        return done

    def wait_all(self, calls: list[Any], timeout: float) -> None:
        pass

    def result(self, call: Any) -> list[TrialOutcome | TrialCrash]:
        result = self._results.pop(call)
        if isinstance(result, CallLost):
            raise result
        return result  # type: ignore[no-any-return]


def _close(worker: Worker) -> None:
    worker.actor.heartbeat.stop()
    worker.actor.runner.close()


def dispatch(
    storage_url: str,
    tmp_path: Path,
    *,
    n_trials: int,
    workers: int = 2,
    state_after: dict[int, SweepState] | None = None,
    dies_on: frozenset[int] = frozenset(),
    hangs_on: frozenset[int] = frozenset(),
    **spec_keys: Any,
) -> tuple[tuple[int, bool, SweepState], list[tuple[TrialOutcome, TrialCounts]], str]:
    """Run a sweep of ``toy:trivial`` through a Dispatcher over an in-process pool;
    ``state_after``: the control state the heartbeat reads once that many trials
    were reported. Returns what ``run`` returned, the reports, and the sweep's name."""
    name = f"d{uuid.uuid4().hex[:8]}"
    spec_keys.setdefault("budget", {"n_trials": n_trials})
    context = sweep_context(storage_url, tmp_path, name, "toy:trivial", **spec_keys)
    db = Database(storage_url)
    set_sweep_status(db, name, SweepState.RUNNING.value)
    storage = db.optuna_storage()
    coordinator = Coordinator(db, storage, name, lease_settings(context.spec))
    heartbeat = Heartbeat(coordinator, coordinator.register_worker("controller"))
    pool = InProcessPool(context, workers, dies_on=dies_on, hangs_on=hangs_on)
    reports: list[tuple[TrialOutcome, TrialCounts]] = []

    def on_trial(outcome: TrialOutcome, counts: TrialCounts) -> None:
        reports.append((outcome, counts))
        if state_after and len(reports) in state_after:
            heartbeat.state = state_after[len(reports)]

    counts = count_trials(db, coordinator.study_id)
    dispatcher = Dispatcher(
        context.spec,
        db,
        pool,
        coordinator,
        heartbeat,
        deadline=None,
        counts=counts,
        on_trial=on_trial,
    )
    try:
        ended = dispatcher.run()
    finally:
        pool.kill_all()
        db.dispose()
    return ended, reports, name


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def test_the_budget_is_exact_and_every_trial_is_reported_once(
    storage_url: str, tmp_path: Path
) -> None:
    (dispatched, interrupted, state), reports, name = dispatch(storage_url, tmp_path, n_trials=9)
    assert (dispatched, interrupted, state) == (9, False, SweepState.FINISHED)
    trials = trials_of(storage_url, name)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 9
    assert sorted(o.number for o, _ in reports) == list(range(9))
    assert reports[-1][1].complete == 9  # the counts kept from outcomes, no query
    assert sweep_invariants(storage_url, name)["counted"] == 9


def test_a_dead_workers_trial_is_retried_on_a_fresh_worker(
    storage_url: str, tmp_path: Path
) -> None:
    (_, _, state), reports, name = dispatch(
        storage_url, tmp_path, n_trials=6, dies_on=frozenset({2})
    )
    assert state is SweepState.FINISHED
    trials = trials_of(storage_url, name)
    lost = trials[2]
    assert lost.state == TrialState.FAIL and lost.system_attrs["sweep:superseded"]
    assert "worker died" in lost.system_attrs["sweep:error"]
    (retry,) = [t for t in trials if t.system_attrs.get("sweep:retry_of") == 2]
    assert retry.state == TrialState.COMPLETE
    assert retry.system_attrs["fixed_params"] == lost.params  # what the attempt had drawn
    # The calls queued behind it on the dead worker were lost with it, and retried too.
    superseded = [t for t in trials if t.system_attrs.get("sweep:superseded")]
    counts = sweep_invariants(storage_url, name)
    assert counts["counted"] == 6 and counts["retried"] == len(superseded) >= 1
    final = reports[-1][1]
    assert (final.retried, final.complete, final.failed) == (len(superseded), 6, 0)


def test_a_trial_past_its_timeout_fails_without_a_retry(storage_url: str, tmp_path: Path) -> None:
    (_, _, state), reports, name = dispatch(
        storage_url, tmp_path, n_trials=4, hangs_on=frozenset({1}), trial_timeout=0.3
    )
    assert state is SweepState.FINISHED
    trials = trials_of(storage_url, name)
    hung = trials[1]
    assert hung.state == TrialState.FAIL and "trial_timeout" in hung.system_attrs["sweep:error"]
    assert not [t for t in trials if "sweep:retry_of" in t.system_attrs]
    timed_out = [o for o, _ in reports if o.number == 1]
    assert timed_out and timed_out[0].error and "trial_timeout" in timed_out[0].error
    assert sweep_invariants(storage_url, name)["counted"] == 4


def test_a_stop_lets_nothing_new_start(storage_url: str, tmp_path: Path) -> None:
    (dispatched, _, state), reports, name = dispatch(
        storage_url, tmp_path, n_trials=30, state_after={3: SweepState.STOPPED}
    )
    assert state is SweepState.STOPPED
    trials = trials_of(storage_url, name)
    finished_here = [t for t in trials if not t.system_attrs.get("sweep:killed")]
    assert len(finished_here) < 30 and dispatched < 30
    # Trials claimed ahead for the workers end as killed, using no budget.
    for t in trials:
        if t.system_attrs.get("sweep:killed"):
            assert t.state == TrialState.FAIL and "not started" in t.system_attrs["sweep:error"]
    sweep_invariants(storage_url, name)


def test_a_cancel_kills_what_runs(storage_url: str, tmp_path: Path) -> None:
    (_, interrupted, state), _, name = dispatch(
        storage_url,
        tmp_path,
        n_trials=10,
        hangs_on=frozenset({4, 5}),
        state_after={3: SweepState.CANCELLED},
    )
    assert (interrupted, state) == (False, SweepState.CANCELLED)
    trials = trials_of(storage_url, name)
    cancelled = [
        t for t in trials if t.system_attrs.get("sweep:error") == "cancelled: sweep cancel"
    ]
    assert cancelled and all(t.system_attrs.get("sweep:killed") for t in cancelled)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    sweep_invariants(storage_url, name)


def test_a_trial_reaching_the_metric_target_stops_the_sweep(
    storage_url: str, tmp_path: Path
) -> None:
    # toy:trivial's value x*x + y + ... with x in [-10, 10] is >= 0: maximizing, any
    # trial reaches a target of 0.
    (_, _, state), reports, name = dispatch(
        storage_url,
        tmp_path,
        n_trials=30,
        metric={"name": "score", "direction": "maximize", "target": 0.0},
    )
    assert state is SweepState.STOPPED
    finished = [o for o, _ in reports if o.state == "COMPLETE"]
    assert finished and len(finished) < 30
