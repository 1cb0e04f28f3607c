"""The controller: runs a sweep from its spec to a registered challenger.

``launch`` creates or loads the study, opens the sweep's parent run, keeps one trial
running on each Ray worker until the global budget is spent, fails trials whose worker
died, stops cleanly on Ctrl-C, and at the end registers the best trial's model.

The controller creates every trial itself (one row in the study per dispatched trial),
so the budget is exact however many workers run: ``n_trials: 30`` ends with exactly 30
finished trials in the study, counting those finished by earlier launches.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from ray.exceptions import RayActorError, RayError, RayTaskError
from sqlalchemy.orm import Session

from sweep.coordination import Claim, Coordinator, Heartbeat, RunSeed, SweepState
from sweep.errors import NotFoundError, RegistrationError, first_line, summary
from sweep.ledger import TrialLedger
from sweep.planner import Planner
from sweep.registry import CHAMPION, ModelRegistry, ModelVersion
from sweep.spec import SweepSpec, load_spec
from sweep.storage import Database, StudyStorage, default_home, redact, resolve_storage_url
from sweep.study import (
    RUN_ID_ATTR,
    SPEC_ATTR,
    TrialCounts,
    count_trials,
    counted_as,
    open_study,
    open_sweep_record,
    set_sweep_status,
)
from sweep.tracking import (
    MetricPoint,
    RunStatus,
    TrackingStore,
    command_line,
    environment_tags,
)
from sweep.tracking._artifacts import artifact_location, is_url
from sweep.tracking._store import now_ms
from sweep.trial import SweepContext, TrialOutcome, lease_settings
from sweep.worker import RayWorker, RayWorkerPool, TrialCrash

#: Environment variable naming a shared artifact root (a path every worker can reach).
ARTIFACT_ROOT_ENV = "SWEEP_ARTIFACT_ROOT"
#: Seconds to wait for killed workers to go away on Ctrl-C before marking their trials.
KILL_GRACE_S = 10.0
#: Most trials claimed ahead for a worker (each claimed trial is RUNNING in the study).
CLAIM_AHEAD_MAX = 16
#: Claim about this many seconds of a worker's work at once: short trials are claimed
#: several per transaction; long ones one at a time, when the worker is free.
CLAIM_AHEAD_WINDOW_S = 0.08
#: Trials shorter than this on average are sampled by their workers, not planned by the
#: controller (see ``_Pace.plans``).
PLAN_ABOVE_S = 0.05
#: Trials sent to a worker at once when trials are short, in calls of ``_Pace.batch``
#: trials (one call runs, the others wait in its Ray queue, so that it never waits for
#: the controller between two); long trials are sent one at a time. Each trial samples
#: on what was known when its call was sent, so more would make sampling staler.
QUEUE_SHORT = 4
#: When trials are short, each call carries about this many seconds of a worker's
#: trials, at most ``BATCH_MAX``: a Ray call costs about 0.8 ms of CPU between the two
#: ends, as much as a short trial's own bookkeeping. (Four per call spared a little more
#: CPU, but with two calls queued it left trials sampling on news twice as old.)
BATCH_WINDOW_S = 0.02
BATCH_MAX = 2
#: Ended trials are written with the next claims, or once this many wait, or the
#: oldest has waited this long (or nothing else runs).
WRITE_BATCH = 8
WRITE_DELAY_S = 0.04

TrialCallback = Callable[[TrialOutcome, TrialCounts], None]


@dataclass(frozen=True)
class SweepResult:
    """What a launch did; ``counts`` are for the whole study, across launches."""

    name: str
    storage: str
    experiment: str
    parent_run_id: str
    counts: TrialCounts
    trials_this_launch: int
    elapsed_s: float
    interrupted: bool = False
    best_trial_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    model_version: ModelVersion | None = None
    registration: str = ""
    state: str = "FINISHED"  # FINISHED, STOPPED, CANCELLED or KILLED (Ctrl-C)


@dataclass
class _InFlight:
    """One call to a worker: the trials it runs, in this order."""

    worker: RayWorker
    trial_ids: list[int]
    sent: int  # the order calls were sent in, across workers
    started: float | None  # None while it waits in its worker's queue


class _Pace:
    """How long the sweep's trials take (a moving mean), and so how many to claim ahead."""

    def __init__(self, *, batches: bool) -> None:
        self.mean_s: float | None = None
        self.batches = batches  # whether short trials may share a call

    def add(self, duration_s: float) -> None:
        self.mean_s = duration_s if self.mean_s is None else 0.8 * self.mean_s + 0.2 * duration_s

    def plans(self) -> bool:
        """Whether the controller plans the next trial's params. Planning lets TPE's
        constant liar see every running trial, which matters when trials overlap for a
        while. Trials shorter than ``PLAN_ABOVE_S`` overlap for milliseconds: a worker
        samples for itself, in parallel with the others, seeing all that finished, and
        the controller, which would spend a few ms per plan, does not hold them up."""
        return self.mean_s is None or self.mean_s >= PLAN_ABOVE_S

    def queue(self) -> int:
        """Calls to send each worker at once: ``QUEUE_SHORT`` trials' worth when it
        samples for itself, else 1 (a plan is made as its trial starts, on all that is
        known)."""
        return 1 if self.plans() else max(1, QUEUE_SHORT // self.batch())

    def batch(self) -> int:
        """Trials per call: when the worker samples for itself, about
        ``BATCH_WINDOW_S`` of them (it tells of them all once the last has ended)."""
        if not self.batches or self.plans() or self.mean_s is None:
            return 1
        return max(1, min(BATCH_MAX, int(BATCH_WINDOW_S / max(self.mean_s, 1e-6))))

    def depth(self) -> int:
        """Trials to hold per worker: 1 until trials have been seen to be short."""
        if self.mean_s is None:
            return 1
        return 1 + min(CLAIM_AHEAD_MAX - 1, int(CLAIM_AHEAD_WINDOW_S / max(self.mean_s, 1e-6)))


class _Claimed:
    """Trials claimed for each worker and not yet started, in claim order."""

    def __init__(self) -> None:
        self._by_worker: dict[str, deque[Claim]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_worker.values())

    def count(self, worker_id: str) -> int:
        return len(self._by_worker.get(worker_id, ()))

    def add(self, worker_id: str, claim: Claim) -> None:
        self._by_worker.setdefault(worker_id, deque()).append(claim)

    def take(self, worker_id: str, most: int) -> list[Claim]:
        """Up to ``most`` of the claims held for ``worker_id``, oldest first."""
        held = self._by_worker.get(worker_id)
        return [held.popleft() for _ in range(min(most, len(held)))] if held else []

    def wanted(self, worker_id: str, depth: int, sent: int) -> int:
        """How many to claim for ``worker_id`` (``sent``: trials sent to it and not back)
        so that it has ``depth`` trials, counting those sent, once half of them are used."""
        held = self.count(worker_id) + sent
        return depth - held if held <= depth // 2 else 0

    def take_all(self, worker_id: str | None = None) -> list[int]:
        """Forget the claims held for ``worker_id``, or for every worker; returns their
        trial ids."""
        if worker_id is not None:
            return [c.trial_id for c in self._by_worker.pop(worker_id, ())]
        trial_ids = [c.trial_id for q in self._by_worker.values() for c in q]
        self._by_worker.clear()
        return trial_ids


def launch(
    spec: SweepSpec | str | os.PathLike[str],
    *,
    storage: str | None = None,
    ray_address: str | None = None,
    on_trial: TrialCallback | None = None,
    on_start: Callable[[str, TrialCounts, int | None], None] | None = None,
) -> SweepResult:
    """Run the sweep ``spec`` (a loaded spec or a path to its YAML) to the end of its budget.

    ``storage`` and ``ray_address`` override the spec. ``on_start(storage, counts,
    remaining)`` is called once the study is open, ``on_trial(outcome, counts)`` after each
    trial. Raises :class:`~sweep.errors.RegistrationError` (with ``.result``) when the spec
    demands a registered model and none could be registered; ``KeyboardInterrupt`` ends
    running trials as KILLED and returns a result with ``interrupted=True``.
    """
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = Database(resolve_storage_url(storage, spec.storage))
    try:
        return _Launch(spec, db, ray_address or spec.ray.address, on_trial, on_start).run()
    finally:
        db.dispose()


class _Launch:
    def __init__(
        self,
        spec: SweepSpec,
        db: Database,
        ray_address: str | None,
        on_trial: TrialCallback | None,
        on_start: Callable[[str, TrialCounts, int | None], None] | None,
    ) -> None:
        self.spec = spec
        self.db = db
        self.ray_address = ray_address
        self.on_trial = on_trial
        self.on_start = on_start
        self.tracking = TrackingStore(db)
        self.registry = ModelRegistry(db)

    def run(self) -> SweepResult:
        started = time.monotonic()
        spec, db = self.spec, self.db
        db.ensure_schema()
        storage = db.optuna_storage()
        study = open_study(spec, db, storage)
        study_id = storage.get_study_id_from_name(spec.name)
        experiment = self.tracking.get_or_create_experiment(
            spec.experiment_name, self._artifact_root()
        )
        record = open_sweep_record(
            spec,
            db,
            self.tracking,
            experiment,
            spec_text=self._spec_text(),
            parent_tags={
                **environment_tags(str(spec.code_path)),
                "sweep.sweep": spec.name,
                "sweep.command": command_line(),
                "sweep.storage": db.display_url,
            },
            parent_params=self._parent_params(),
        )
        parent_run_id = record.parent_run_id
        if not record.created:
            # A relaunch (or `sweep resume`) continues the same parent run.
            self.tracking.end_run(parent_run_id, RunStatus.RUNNING, force=True)
        set_sweep_status(db, spec.name, SweepState.RUNNING.value)
        # Agents that join build their trial runner from this.
        storage.set_study_system_attr(study_id, SPEC_ATTR, agent_spec_json(spec))

        coordinator = Coordinator(db, storage, spec.name, lease_settings(spec), self.tracking)
        controller_id = coordinator.register_worker("controller")
        heartbeat = Heartbeat(coordinator, controller_id).start()
        try:
            # Trials a dead controller or agent left running: fail and retry them now if
            # their leases already expired (the others when they do).
            coordinator.recover_stale()
            counts = count_trials(db, study_id)
            n_trials = spec.budget.n_trials
            remaining = None if n_trials is None else max(0, n_trials - counts.finished)
            if self.on_start:
                self.on_start(db.display_url, counts, remaining)
            launched, interrupted, state = self._execute(
                coordinator, heartbeat, experiment.experiment_id, parent_run_id, counts, remaining
            )
        finally:
            heartbeat.stop()
            coordinator.unregister_worker(controller_id)

        counts = count_trials(db, study_id)
        result = SweepResult(
            name=spec.name,
            storage=db.display_url,
            experiment=experiment.name,
            parent_run_id=parent_run_id,
            counts=counts,
            trials_this_launch=launched,
            elapsed_s=time.monotonic() - started,
            interrupted=interrupted,
            state=state.value,
        )
        result = self._with_best(study, result)
        registration_failed = False
        if state in (SweepState.FINISHED, SweepState.STOPPED) and spec.registry is not None:
            version, message, registration_failed = self._register_best(study)
            result = replace(result, model_version=version, registration=message)
        self._close_parent(result, parent_run_id, state)
        if registration_failed and spec.registry is not None and spec.registry.required:
            error = RegistrationError(
                f"{result.registration}; the spec sets registry.required: true"
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result

    def _execute(
        self,
        coordinator: Coordinator,
        heartbeat: Heartbeat,
        experiment_id: int,
        parent_run_id: str,
        counts: TrialCounts,
        remaining: int | None,
    ) -> tuple[int, bool, SweepState]:
        """Start the Ray workers and keep them busy; returns the trials this launch
        started, whether it was interrupted, and the state the sweep ends in."""
        spec = self.spec
        if remaining == 0 and not coordinator.unfinished():
            return 0, False, SweepState.FINISHED
        context = SweepContext(
            spec=spec,
            storage_url=self.db.url,
            experiment_id=experiment_id,
            parent_run_id=parent_run_id,
            command=command_line(),
        )
        deadline = time.monotonic() + spec.budget.timeout if spec.budget.timeout else None
        pool = RayWorkerPool(
            context,
            spec.parallelism if remaining is None else max(1, min(spec.parallelism, remaining)),
            cpu=spec.resources.cpu,
            gpu=spec.resources.gpu,
            address=self.ray_address,
            num_cpus=spec.ray.num_cpus,
            num_gpus=spec.ray.num_gpus,
        )
        try:
            pool.start()
            return self._dispatch(pool, coordinator, heartbeat, deadline, counts)
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt)
            status = RunStatus.KILLED if stopped else RunStatus.FAILED
            set_sweep_status(self.db, spec.name, status.value)
            self.tracking.end_run(parent_run_id, status)
            raise
        finally:
            for worker in pool.workers:
                coordinator.unregister_worker(worker.worker_id)
            pool.shutdown()

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(
        self,
        pool: RayWorkerPool,
        coordinator: Coordinator,
        heartbeat: Heartbeat,
        deadline: float | None,
        counts: TrialCounts,
    ) -> tuple[int, bool, SweepState]:
        """Keep every worker busy until the budget or the timeout is spent, the sweep is
        stopped or cancelled; kill trials past ``trial_timeout``; recover trials whose
        lease expired, wherever they ran.

        Each worker runs one trial at a time and gets the next as soon as it returns,
        with the trials finished elsewhere since its last one, so that it samples on
        everything known. Short trials go several to a call (``_Pace.batch``), and the
        next call waits in the worker's queue (``QUEUE_SHORT``). The database work
        is batched: each worker's next trials are claimed a few at a time
        (:class:`_Claimed`), and the trials that ended are written with those claims,
        or once ``WRITE_BATCH`` of them wait, or ``WRITE_DELAY_S`` after the first came
        back.

        ``counts`` (the study's at the start) is kept up to date from the outcomes, so
        progress reports cost no query."""
        in_flight: dict[Any, _InFlight] = {}
        queues: dict[str, list[Any]] = {}  # each worker's trials sent, in order
        sent = 0
        claimed = _Claimed()
        dispatched = 0
        interval = coordinator.settings.heartbeat_interval
        next_recovery = time.monotonic() + interval
        storage = StudyStorage(self.db, coordinator.storage)  # type: ignore[arg-type]
        ledger = TrialLedger(self.db, storage, self.tracking, coordinator.study_id)
        for worker in pool.workers:
            ledger.join(worker.worker_id)
        planner = Planner(
            optuna.load_study(
                study_name=self.spec.name, storage=storage, sampler=self.spec.sampler.build()
            ),
            storage,
        )
        ended: list[tuple[TrialOutcome, str]] = []  # come back, not yet written
        ended_since = 0.0  # when the oldest of them came back
        # A call's trials are timed as one: with a trial_timeout, one trial per call.
        pace = _Pace(batches=not self.spec.trial_timeout)
        exhausted = False  # the last claim got fewer trials than asked

        def report(outcome: TrialOutcome, counted_as: str) -> None:
            nonlocal counts
            counts = counts.add(counted_as)
            if self.on_trial:
                self.on_trial(outcome, counts)

        def queued(worker: RayWorker) -> int:
            return len(queues.get(worker.worker_id, ()))

        def sent_to(worker: RayWorker) -> int:
            """Trials sent to ``worker`` that have not come back."""
            return sum(len(in_flight[ref].trial_ids) for ref in queues.get(worker.worker_id, ()))

        def replace(worker: RayWorker) -> None:
            """A fresh worker for a dead or killed one; the trials claimed or queued for
            it that had not started end as killed (they use no budget)."""
            queue = queues.pop(worker.worker_id, [])
            waiting = [f for f in (in_flight.pop(ref, None) for ref in queue) if f is not None]
            ledger.leave(worker.worker_id)
            if worker in pool.workers:
                fresh = pool.replace(worker)
                ledger.join(fresh.worker_id)
            release(
                [t for f in waiting for t in f.trial_ids] + claimed.take_all(worker.worker_id),
                "its worker was replaced",
            )

        def release(trial_ids: list[int], why: str) -> None:
            for trial_id in trial_ids:
                coordinator.fail_lost(trial_id, f"not started: {why}", retry=False, killed=True)

        def lose(trial_ids: list[int], reason: str, *, retry: bool) -> None:
            """Trials that did not come back: fail them (retry by policy) and let the
            planner read them as the database has them."""
            nonlocal exhausted
            for trial_id in trial_ids:
                report(*self._lost(coordinator, trial_id, reason, retry=retry))
                planner.lost(trial_id)
            if retry:
                exhausted = False  # their retries wait to be claimed

        def wants(worker: RayWorker) -> int:
            """How many trials to claim for ``worker`` now."""
            if not pool.started(worker):
                return 0
            return claimed.wanted(worker.worker_id, pace.depth(), sent_to(worker))

        def book(claiming: bool) -> None:
            """One transaction: write the trials that ended, and top up the claims of
            the workers that need more (when ``claiming``)."""
            nonlocal ended, exhausted
            requests: list[tuple[str, RunSeed | None]] = []
            if claiming:
                requests = [
                    (w.worker_id, pool.run_seed(w)) for w in pool.workers for _ in range(wants(w))
                ]
            written: set[int] = set()
            if requests:

                def record(session: Session) -> None:
                    nonlocal written
                    written = ledger.write(session, ended)

                claims = coordinator.claim_many(requests, first=record if ended else None)
                exhausted = len(claims) < len(requests)
                for (worker_id, _seed), claim in zip(requests, claims, strict=False):
                    claimed.add(worker_id, claim)
            elif ended:
                written = ledger.record(ended)
            for outcome, _ in ended:
                pace.add(outcome.duration_s)
                if outcome.end is None or outcome.trial_id in written:
                    report(outcome, outcome.state)
                else:
                    # A stop or a recovery ended the trial while it ran: its result was
                    # discarded, and it counts as what they made of it.
                    ended_trial = coordinator.storage.get_trial(outcome.trial_id)
                    report(outcome, counted_as(ended_trial))
            ended = []

        try:
            while True:
                state = heartbeat.state
                if state is SweepState.CANCELLED:
                    book(claiming=False)
                    release(claimed.take_all(), "the sweep was cancelled")
                    self._kill_in_flight(pool, coordinator, in_flight, "cancelled: sweep cancel")
                    return dispatched, False, state
                running = state.claims and (deadline is None or time.monotonic() < deadline)
                if not running and len(claimed):
                    # Stopped, paused or out of time: what was claimed ahead does not start.
                    release(claimed.take_all(), f"the sweep is {state.value.lower()}")
                if running:
                    # Idle workers start their next trial at once, before any writing.
                    now = time.monotonic()
                    for worker in pool.workers:
                        while queued(worker) < pace.queue():
                            claims = claimed.take(worker.worker_id, pace.batch())
                            if not claims:
                                break
                            plan = planner.plan(claims[0]) if pace.plans() else None
                            ref = worker.actor.run.remote(
                                claims, ledger.news_for(worker.worker_id), plan
                            )
                            sent += 1
                            started = None if queued(worker) else now
                            trial_ids = [c.trial_id for c in claims]
                            in_flight[ref] = _InFlight(worker, trial_ids, sent, started)
                            queues.setdefault(worker.worker_id, []).append(ref)
                            dispatched += len(claims)
                short = running and any(wants(w) for w in pool.workers)
                due = bool(ended) and (
                    len(ended) >= WRITE_BATCH
                    or time.monotonic() - ended_since >= WRITE_DELAY_S
                    or not in_flight
                )
                if due or (short and (not exhausted or not in_flight)):
                    book(claiming=running)
                    if exhausted and running:
                        # The budget is full, or the state changed since the last beat.
                        state = coordinator.state()[0]
                    if any(
                        queued(w) < pace.queue() and claimed.count(w.worker_id)
                        for w in pool.workers
                    ):
                        continue  # new claims for idle workers: start them now
                if not in_flight and not ended:
                    past_deadline = deadline is not None and time.monotonic() >= deadline
                    if state is SweepState.STOPPED:
                        return dispatched, False, state
                    starting = any(not pool.started(w) for w in pool.workers)
                    if state is SweepState.RUNNING and not past_deadline and starting:
                        time.sleep(0.05)  # a replacement worker is not placed yet
                        continue
                    if state is SweepState.RUNNING and (
                        past_deadline or not coordinator.unfinished()
                    ):
                        return dispatched, False, SweepState.FINISHED
                    # Paused, or other workers' trials still run (and may need a retry).
                    time.sleep(min(1.0, interval))
                    exhausted = False
                elif in_flight:
                    now = time.monotonic()
                    wait_s = min(1.0, interval)
                    if ended:  # ends not yet written are written within WRITE_DELAY_S
                        wait_s = min(wait_s, max(0.0, ended_since + WRITE_DELAY_S - now))
                    done, rest = ray.wait(list(in_flight), num_returns=1, timeout=wait_s)
                    if done and rest:
                        done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                    now = time.monotonic()
                    # In the order sent, the order each worker runs its queue in.
                    done.sort(key=lambda r: in_flight[r].sent)
                    for ref in done:
                        flight = in_flight.pop(ref, None)
                        if flight is None:
                            continue  # queued for a worker that died: failed with it
                        worker = flight.worker
                        queue = queues.get(worker.worker_id, [])
                        queue.remove(ref)
                        if queue:
                            in_flight[queue[0]].started = now  # the next starts now
                        try:
                            results = ray.get(ref)
                        except RayActorError as exc:
                            # Which of the trials sent to it it was running is not
                            # known (a finished one's result can die with it too):
                            # each is failed and retried by policy.
                            why = f"worker died during the trial: {first_line(exc)}"
                            lose(flight.trial_ids, why, retry=True)
                            for later in queues.pop(worker.worker_id, []):
                                queued_flight = in_flight.pop(later, None)
                                if queued_flight is not None:
                                    lose(
                                        queued_flight.trial_ids, f"{why} (or before it)", retry=True
                                    )
                            replace(worker)
                            continue
                        except RayTaskError as exc:
                            why = f"trial execution failed: {_task_error(exc)}"
                            lose(flight.trial_ids, why, retry=True)
                            continue
                        for outcome in results:
                            if isinstance(outcome, TrialCrash):
                                why = f"trial execution failed: {outcome.error}"
                                lose([outcome.trial_id], why, retry=True)
                                continue
                            ledger.arrived(outcome, worker.worker_id)
                            if outcome.trial is not None:
                                planner.ended([outcome.trial])
                            if not ended:
                                ended_since = now
                            ended.append((outcome, worker.worker_id))
                    for flight in self._timed_out(in_flight):
                        limit = self.spec.trial_timeout
                        lose(
                            flight.trial_ids,
                            f"trial_timeout: ran longer than {limit:g} s and was killed",
                            retry=False,
                        )
                        replace(flight.worker)
                if time.monotonic() >= next_recovery:
                    coordinator.recover_stale()
                    next_recovery = time.monotonic() + interval
                    exhausted = False  # a recovery may have queued retries
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                book(claiming=False)  # trials that did end are kept
            with contextlib.suppress(Exception):
                release(claimed.take_all(), "the sweep was stopped")
            self._kill_in_flight(pool, coordinator, in_flight, "killed: the sweep was stopped")
            return dispatched, True, SweepState.KILLED

    def _lost(
        self, coordinator: Coordinator, trial_id: int, reason: str, *, retry: bool
    ) -> tuple[TrialOutcome, str]:
        """Fail a trial whose worker could not report it; the outcome and how it counts."""
        lost = coordinator.fail_lost(trial_id, reason, retry=retry)
        if lost is None:
            # Ended meanwhile (a recovery, a stop, its own end): it counts as they left it.
            ended = coordinator.storage.get_trial(trial_id)
            number, run_id, counted = ended.number, "", counted_as(ended)
        else:
            number, run_id = lost.number, lost.run_id or ""
            counted = "RETRIED" if lost.retry_number is not None else "FAIL"
        return TrialOutcome(trial_id, number, "FAIL", None, run_id, 0.0, reason), counted

    def _timed_out(self, in_flight: dict[Any, _InFlight]) -> list[_InFlight]:
        """Take the trials running past ``trial_timeout`` out of ``in_flight``: they are
        failed without retry (a hung trial would hang again), their workers replaced."""
        limit = self.spec.trial_timeout
        if not limit:
            return []
        now = time.monotonic()
        late = [
            ref
            for ref, flight in in_flight.items()
            if flight.started is not None and now - flight.started >= limit
        ]
        return [in_flight.pop(ref) for ref in late]

    def _kill_in_flight(
        self,
        pool: RayWorkerPool,
        coordinator: Coordinator,
        in_flight: dict[Any, _InFlight],
        reason: str,
    ) -> None:
        """Ctrl-C or `sweep cancel`: kill the workers, then end their trials (FAIL, marked
        killed: they use no budget) and runs (KILLED)."""
        pool.kill_all()
        if in_flight:
            ray.wait(list(in_flight), num_returns=len(in_flight), timeout=KILL_GRACE_S)
        for flight in in_flight.values():
            for trial_id in flight.trial_ids:
                coordinator.fail_lost(trial_id, reason, retry=False, killed=True)

    # -- the end ------------------------------------------------------------------------

    def _with_best(self, study: optuna.Study, result: SweepResult) -> SweepResult:
        try:
            best = study.best_trial
        except ValueError:
            return result
        return replace(
            result,
            best_trial_number=best.number,
            best_value=best.value,
            best_params=dict(best.params),
        )

    def _register_best(self, study: optuna.Study) -> tuple[ModelVersion | None, str, bool]:
        """Register the best trial's model and point the alias at it, if the spec's
        gates let it through. Returns the version, what decided, and whether the
        registration failed (a closed gate is a decision, not a failure)."""
        registry_spec = self.spec.registry
        assert registry_spec is not None
        try:
            best = study.best_trial
        except ValueError:
            return None, "no trial completed, so no model was registered", True
        run_id: str | None = best.system_attrs.get(RUN_ID_ATTR)
        artifacts = self.tracking.list_artifacts(run_id) if run_id else []
        models = [a for a in artifacts if a.kind == "model"]
        if run_id is None or not models:
            return (
                None,
                (
                    f"best trial {best.number} logged no model, so none was registered; "
                    "call sweep.log_model(model) in the objective"
                ),
                True,
            )
        name, alias = registry_spec.model_name, registry_spec.alias
        assert best.value is not None  # the best trial of a single-objective study
        closed = self._closed_gate(name, best.value)
        if closed:
            return None, closed, False
        current = self._version_at(name, alias)
        if current is not None and current.run_id == run_id:
            message = f"{name} version {current.version} (@{alias}) is already this best trial"
            return current, message, False
        run = self.tracking.get_run(run_id)
        reason = f"best trial {best.number} of sweep {self.spec.name}"
        version = self.registry.create_model_version(
            name,
            artifact_location(run.artifact_uri, models[0].path),
            run_id=run_id,
            metric_name=self.spec.metric.name,
            metric_value=best.value,
            sweep_name=self.spec.name,
            trial_number=best.number,
            tags={self.spec.metric.name: best.value, "trial_number": best.number},
            reason=reason,
        )
        self.registry.set_alias(name, alias, version.version, reason=reason)
        version = self.registry.get_version(name, version.version)
        gates = self._gate_names()
        passed = f" (passed {gates})" if gates else ""
        return version, f"registered {name} version {version.version} as @{alias}{passed}", False

    def _closed_gate(self, model_name: str, value: float) -> str | None:
        """Why the spec's gates refuse ``value``, or None when they let it through."""
        registry_spec = self.spec.registry
        assert registry_spec is not None
        maximize = self.spec.metric.direction == "maximize"

        def better(a: float, b: float, strict: bool) -> bool:
            if strict:
                return a > b if maximize else a < b
            return a >= b if maximize else a <= b

        threshold = registry_spec.threshold
        if threshold is not None and not better(value, threshold, strict=False):
            return (
                f"not registered: the best {self.spec.metric.name} {value:.6g} does not pass "
                f"registry.threshold {threshold:g} (rule: threshold)"
            )
        if registry_spec.beat_champion:
            champion = self._version_at(model_name, CHAMPION)
            if (
                champion is not None
                and champion.metric_value is not None
                and not better(value, champion.metric_value, strict=True)
            ):
                return (
                    f"not registered: the best {self.spec.metric.name} {value:.6g} does not "
                    f"beat @champion version {champion.version} ({champion.metric_value:.6g}) "
                    "(rule: beat_champion)"
                )
        return None

    def _gate_names(self) -> str:
        registry_spec = self.spec.registry
        assert registry_spec is not None
        names = ["threshold"] if registry_spec.threshold is not None else []
        if registry_spec.beat_champion:
            names.append("beat_champion")
        return " and ".join(names)

    def _version_at(self, model_name: str, alias: str) -> ModelVersion | None:
        try:
            return self.registry.get_by_alias(model_name, alias)
        except NotFoundError:
            return None

    def _close_parent(self, result: SweepResult, parent_run_id: str, state: SweepState) -> None:
        if result.best_value is not None:
            best = MetricPoint(f"best_{self.spec.metric.name}", result.best_value, 0, now_ms())
            self.tracking.log_metrics(parent_run_id, [best])
        tags: dict[str, int | str] = {
            "sweep.trials.complete": result.counts.complete,
            "sweep.trials.pruned": result.counts.pruned,
            "sweep.trials.failed": result.counts.failed,
        }
        if result.best_trial_number is not None:
            tags["sweep.best_trial"] = result.best_trial_number
        if result.model_version is not None:
            tags["sweep.model_version"] = result.model_version.uri
        self.tracking.set_tags(parent_run_id, tags)
        status = RunStatus.KILLED if state is SweepState.KILLED else RunStatus.FINISHED
        self.tracking.end_run(parent_run_id, status)
        set_sweep_status(self.db, self.spec.name, state.value)

    # -- helpers ------------------------------------------------------------------------

    def _artifact_root(self) -> str:
        root = self.spec.tracking.artifact_root or os.environ.get(ARTIFACT_ROOT_ENV)
        if root:
            # An fsspec URL (s3://bucket/prefix) is kept as it is; a path is made absolute.
            return root if is_url(root) else str(Path(root).expanduser().resolve())
        return str(default_home() / "artifacts")

    def _spec_text(self) -> str:
        if self.spec.source_path is not None:
            return redact(Path(self.spec.source_path).read_text())
        return redact(yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False))

    def _parent_params(self) -> dict[str, Any]:
        spec = self.spec
        params: dict[str, Any] = {
            "sampler": spec.sampler.name,
            "pruner": spec.pruner.name,
            "n_trials": spec.budget.n_trials,
            "timeout": spec.budget.timeout,
            "parallelism": spec.parallelism,
            "metric": spec.metric.name,
            "direction": spec.metric.direction,
        }
        if spec.sampler.seed is not None:
            params["seed"] = spec.sampler.seed
        return params


def agent_spec_json(spec: SweepSpec) -> str:
    """The resolved spec an agent runs trials with: code_dir absolute, storage left out
    (the agent names its own, and a password must not be stored)."""
    data = spec.model_dump(mode="json")
    data["code_dir"] = str(spec.code_path)
    data["storage"] = None
    return json.dumps(data)


def _task_error(exc: RayTaskError) -> str:
    cause = exc.cause if isinstance(exc, RayError) and getattr(exc, "cause", None) else exc
    return summary(cause)
