"""`sweep agent`: join a running sweep through the database alone, without Ray.

An agent reads the sweep's resolved spec from the store, then runs one worker process
per GPU it is given (``CUDA_VISIBLE_DEVICES`` pinned to that GPU), or one worker on a
node without GPUs. Each worker claims trials from the shared budget and runs them
through the same :class:`~sweep.trial.TrialRunner` as the Ray workers, renewing its
leases with a heartbeat. The agent process itself supervises: it fails (and retries)
the trial of a worker that died, kills trials past ``trial_timeout``, honours
`sweep cancel`, and recovers trials whose lease expired anywhere in the sweep.

An agent ends by itself when the sweep's budget is spent (and no trial of the sweep is
left to retry), when the sweep is stopped or cancelled, or after ``count`` trials. Each
worker asks the stop rules (:mod:`sweep.stopping`: ``budget.target``, ``patience``)
after each trial it ends, so that a sweep run by agents alone stops at its target too.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import optuna

from sweep.coordination import Coordinator, Heartbeat, SweepState
from sweep.errors import ExecutionError, NotFoundError
from sweep.failures import AGENT_STOPPED, CANCELLED, FailurePolicy
from sweep.spec import load_spec_from_dict
from sweep.stopping import StopRules, end_sweep, stopped_by
from sweep.storage import Database, resolve_storage_url
from sweep.study import SPEC_ATTR, get_sweep_record, sweep_not_found
from sweep.tracking import command_line, gpu_indices
from sweep.trial import SweepContext, TrialOutcome, TrialRunner, lease_settings

#: A worker slot whose process dies this many times in a row without finishing a trial
#: is not started again (its objective probably cannot even import).
MAX_RESPAWNS = 3


@dataclass(frozen=True)
class AgentResult:
    sweep: str
    trials: int
    states: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


def parse_gpus(value: str | None) -> list[str] | None:
    """``--gpus``: None (no GPUs), ``all`` (every GPU nvidia-smi lists), or ``0,1,3``."""
    if value is None or value.strip() == "":
        return None
    if value.strip().lower() == "all":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            return [g for g in visible.split(",") if g.strip()]
        return _nvidia_smi_gpus()
    gpus = [g.strip() for g in value.split(",")]
    if any(not g for g in gpus):
        raise ExecutionError(f"--gpus {value!r}: give GPU indices like 0,1,3 or 'all'")
    return gpus


def _nvidia_smi_gpus() -> list[str]:
    gpus = gpu_indices()
    if gpus is None:
        raise ExecutionError(
            "--gpus all: cannot list GPUs with nvidia-smi; name them, e.g. --gpus 0,1"
        )
    return gpus


def join_context(
    db: Database,
    sweep_name: str,
    code_dir: str | None = None,
    storage: optuna.storages.BaseStorage | None = None,
) -> SweepContext:
    """What a worker needs to run trials of ``sweep_name``, read from the store
    (through ``storage``, the caller's Optuna storage on ``db``, when given)."""
    record = get_sweep_record(db, sweep_name)
    if record is None:
        raise sweep_not_found(sweep_name, db.display_url)
    storage = storage or db.optuna_storage()
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(record.study_name))
    if SPEC_ATTR not in attrs:
        raise NotFoundError(
            f"sweep {sweep_name!r} was launched by an older sweep without a stored spec; "
            "launch it again with this version to let agents join"
        )
    data = json.loads(attrs[SPEC_ATTR])
    if code_dir is not None:
        data["code_dir"] = str(Path(code_dir).resolve())
    elif not Path(data["code_dir"]).is_dir():
        # The controller's checkout is elsewhere: use the code in this directory.
        data["code_dir"] = str(Path.cwd())
    spec = load_spec_from_dict(data, source=f"sweep {sweep_name} (stored spec)")
    return SweepContext(
        spec=spec,
        storage_url=db.url,
        experiment_id=record.experiment_id,
        parent_run_id=record.parent_run_id,
        command=command_line(),
    )


def run_agent(
    sweep_name: str,
    *,
    storage: str | None = None,
    gpus: list[str] | None = None,
    count: int | None = None,
    code_dir: str | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
) -> AgentResult:
    """Join ``sweep_name`` and run its trials until the budget is spent, the sweep is
    stopped or cancelled, or ``count`` trials ran. Ctrl-C kills the running trials
    (they end KILLED and use no budget) and returns with ``interrupted=True``."""
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        optuna_storage = db.optuna_storage()
        context = join_context(db, sweep_name, code_dir, optuna_storage)
        if not context.spec.is_command:  # a command needs only its program on this node
            from sweep.spec import resolve_objective

            resolve_objective(context.spec)  # a missing module fails here, not per worker
        slots: list[str | None] = [*gpus] if gpus else [None]
        return _Supervisor(db, optuna_storage, context, slots, count, on_trial).run()
    finally:
        db.dispose()


@dataclass
class _Slot:
    index: int
    gpu: str | None
    process: BaseProcess | None = None
    trial_id: int | None = None
    started: float = 0.0
    respawns: int = 0


class _Supervisor:
    def __init__(
        self,
        db: Database,
        storage: optuna.storages.BaseStorage,
        context: SweepContext,
        gpus: list[str | None],
        count: int | None,
        on_trial: Callable[[TrialOutcome], None] | None,
    ) -> None:
        self.context = context
        spec = context.spec
        self.coordinator = Coordinator(db, storage, spec.name, lease_settings(spec))
        self.policy = FailurePolicy(self.coordinator, spec.trial_timeout, recover_now=True)
        self.mp = multiprocessing.get_context("spawn")
        self.events: Any = self.mp.Queue()
        self.budget: Any = self.mp.Value("i", count if count is not None else -1)
        self.slots = [_Slot(i, gpu) for i, gpu in enumerate(gpus)]
        self.on_trial = on_trial
        self.states: Counter[str] = Counter()

    def run(self) -> AgentResult:
        for slot in self.slots:
            self._start(slot)
        interrupted = False
        try:
            while any(s.process is not None for s in self.slots):
                self._drain_events(timeout=min(0.5, self.policy.interval))
                self._reap()
                self._kill_timed_out()
                if self.policy.recovery_due():
                    state, _ = self.coordinator.state()
                    if state is SweepState.CANCELLED:
                        why = stopped_by(self.coordinator)  # on_target: cancel
                        self._kill_all(f"cancelled: {why}" if why else CANCELLED)
                        break
                    self.policy.recover()
        except KeyboardInterrupt:
            interrupted = True
            self._kill_all(AGENT_STOPPED)
        return AgentResult(
            self.context.spec.name, sum(self.states.values()), dict(self.states), interrupted
        )

    # -- worker processes -------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        process = self.mp.Process(
            target=_worker_main,
            args=(self.context, slot.index, slot.gpu, self.budget, self.events),
            name=f"sweep-agent-worker-{slot.index}",
            daemon=True,
        )
        process.start()
        slot.process, slot.trial_id = process, None

    def _drain_events(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                index, kind, payload = self.events.get(
                    timeout=max(0.0, deadline - time.monotonic())
                )
            except queue.Empty:
                return
            slot = self.slots[index]
            if kind == "start":
                slot.trial_id, slot.started = int(payload), time.monotonic()
            elif kind == "done":
                slot.trial_id, slot.respawns = None, 0
                self._record(payload, payload.state)

    def _record(self, outcome: TrialOutcome, counted_as: str) -> None:
        self.states[counted_as] += 1
        if self.on_trial:
            self.on_trial(outcome)

    def _reap(self) -> None:
        for slot in self.slots:
            process = slot.process
            if process is None or process.is_alive():
                continue
            self._drain_events(timeout=0.0)  # its last "done" may still be queued
            slot.process = None
            if slot.trial_id is not None:
                reason = f"agent worker process died (exit code {process.exitcode})"
                self._record(*self.policy.lost(slot.trial_id, reason))
                slot.trial_id = None
            if process.exitcode != 0:
                slot.respawns += 1
                state, _ = self.coordinator.state()
                if slot.respawns <= MAX_RESPAWNS and state in (
                    SweepState.RUNNING,
                    SweepState.PAUSED,
                ):
                    self._start(slot)

    def _kill_timed_out(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.trial_id is None or not self.policy.is_late(slot.started, now):
                continue
            self._kill(slot)
            self._record(*self.policy.timed_out(slot.trial_id))
            slot.trial_id = None
            self._start(slot)

    def _kill_all(self, reason: str) -> None:
        for slot in self.slots:
            self._kill(slot)
            if slot.trial_id is not None:
                self._record(*self.policy.lost(slot.trial_id, reason, retry=False, killed=True))
                slot.trial_id = None

    def _kill(self, slot: _Slot) -> None:
        if slot.process is not None:
            slot.process.kill()
            slot.process.join(timeout=10)
            slot.process = None


def die_with_parent() -> None:
    """Have the kernel kill this worker when its supervisor dies (Linux): an
    unsupervised worker would keep claiming trials that nobody can time out or cancel."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the worker ends when its next claim finds nothing to do


def _seed_index(slot: int) -> int:
    """The worker index an agent worker seeds its sampler with (``seed + index + 1``,
    recorded on each run as ``sweep.sampler_seed``): distinct across the agents of a
    sweep, which all number their slots from 0, and from the Ray workers' 0..N-1;
    otherwise agents started together draw the same params until TPE has a history."""
    import random

    return 1_000 + slot + 1_000 * random.SystemRandom().randrange(1_000_000)


def _worker_main(
    context: SweepContext, index: int, gpu: str | None, budget: Any, events: Any
) -> None:
    """One agent worker process: claim a trial, run it, until nothing is left to do."""
    # The supervisor handles Ctrl-C; a worker is killed by it, not interrupted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runner = TrialRunner(context, _seed_index(index), defer_ends=True)
    coordinator = runner.coordinator
    worker_id = coordinator.register_worker("agent", gpus=gpu)
    heartbeat = Heartbeat(coordinator, worker_id).start()
    interval = coordinator.settings.heartbeat_interval
    rules = StopRules.of(context.spec)
    # A script's trial end is written with the worker's next claim (see TrialRunner);
    # the supervisor hears of a trial's end once it is written.
    unreported: list[TrialOutcome] = []

    def report_ends() -> None:
        for outcome in unreported:
            events.put((index, "done", outcome))
        unreported.clear()

    def write_ends() -> None:
        runner.write_ends()
        report_ends()

    try:
        while True:
            with budget.get_lock():
                if budget.value == 0:
                    write_ends()
                    return
                claim = runner.claim(worker_id)
                report_ends()
                if claim is not None and budget.value > 0:
                    budget.value -= 1
            if claim is None:
                state, _ = coordinator.state()
                if state is SweepState.PAUSED or (
                    state is SweepState.RUNNING and coordinator.unfinished()
                ):
                    # Paused, or others' trials may still fail and need a retry here.
                    time.sleep(min(1.0, interval))
                    continue
                return
            events.put((index, "start", claim.trial_id))
            outcome = runner.run(claim)
            unreported.append(outcome)
            # budget.target and budget.patience: this worker ended the trial, so it asks.
            stop = rules.after_trial(outcome.state, outcome.value, outcome.number)
            if stop is None and rules.patience is not None:
                write_ends()  # the rule reads the trials' ends
                stop = rules.check(coordinator)
            if stop is not None:
                write_ends()
                end_sweep(coordinator, stop)
    finally:
        heartbeat.stop()
        coordinator.unregister_worker(worker_id)
        runner.close()
