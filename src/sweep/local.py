"""Local worker processes: the executor of a sweep that names no Ray cluster (which
executor a sweep gets: :func:`sweep.executor.executor_for`).

A local run needs none of Ray's services, whose start alone takes seconds on a small
machine. Each worker is a process of this machine running the same body as a Ray
actor (:class:`~sweep.worker.TrialActor`), fed calls of trials through a pipe; the
:class:`~sweep.dispatcher.Dispatcher` drives it as it drives Ray actors.

The processes are forked from a fork server that has imported the trial code once
(``sweep.trial``: Optuna, SQLAlchemy, the store), so a worker costs a fork, not a
Python start-up and its imports, and a replaced worker is back in milliseconds. The
pool is made (:meth:`LocalWorkerPool.prestart`) before the store and the study are
prepared, so that the imports overlap that work; the workers wait for the sweep's
context (:meth:`LocalWorkerPool.start`). A worker ignores Ctrl-C (the controller
kills it) and dies with its parent (the fork server, which ends with the controller).
``resources.memory_mb`` is enforced in the worker as in a Ray actor (by the runner),
``resources.cpu`` is Ray's reservation and has no meaning here: ``parallelism`` says
how many processes run.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any
from multiprocessing.process import BaseProcess
from typing import Any

from sweep.coordination import Claim, RunSeed
from sweep.errors import ExecutionError, summary
from sweep.executor import PRELOAD, environment, main_left_alone, threads_for
from sweep.trial import TrialOutcome
from sweep.worker import ActorInfo, CallLost, TrialCrash, Worker

#: Seconds the workers get to import the objective and open the study.
START_TIMEOUT_S = 300.0


@dataclass(eq=False)
class LocalCall:
    """A call sent to a local worker: its trials' outcomes once it came back, or why
    it did not."""

    process: _Process
    results: list[TrialOutcome | TrialCrash] | None = None
    lost: CallLost | None = None

    @property
    def done(self) -> bool:
        return self.results is not None or self.lost is not None


@dataclass(eq=False)
class _Process:
    """One worker process and what the controller knows of it."""

    process: BaseProcess
    conn: Connection
    calls: deque[LocalCall] = field(default_factory=deque)  # sent, in order
    info: ActorInfo | None = None
    failed: str | None = None  # why it could not start
    dead: str | None = None  # why it is gone


class LocalWorkerPool:
    """``size`` worker processes on this machine; replaces dead ones."""

    def __init__(
        self, size: int, code_path: str, cpu: float = 1.0, objective: str | None = None
    ) -> None:
        self.size = size
        self.code_path = code_path
        self.objective = objective  # the module a worker imports while it waits
        # Threads per worker for OpenMP/BLAS, as Ray gives an actor (its CPUs), unless
        # the user set it: parallel workers each using every core would crowd them.
        self.threads = threads_for(cpu)
        self.context: Any = None  # the sweep's SweepContext, once started
        self.workers: list[Worker] = []
        self._next_index = 0
        self._mp = multiprocessing.get_context("forkserver")
        # Only the first fork server of this Python process takes a preload list; later
        # pools share it (any one is correct, a preloaded one is faster).
        self._mp.set_forkserver_preload(PRELOAD)
        self._lock = threading.Lock()  # the workers and the context, while forking
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None

    @classmethod
    def prestart(
        cls, size: int, code_path: str, cpu: float = 1.0, objective: str | None = None
    ) -> LocalWorkerPool:
        """Start ``size`` workers' processes in the background; they wait for
        :meth:`start`. (Starting the first waits for the fork server's imports.)"""
        pool = cls(size, code_path, cpu, objective)

        def fork() -> None:
            try:
                for _ in range(size):
                    worker = pool._new_worker()
                    with pool._lock:  # begin() may have come first: it gets the context
                        pool.workers.append(worker)
                        if pool.context is not None:
                            pool._send_context(worker)
            except BaseException as exc:  # re-raised by start()
                pool._start_error = exc

        pool._starting = threading.Thread(target=fork, name="sweep-local-start", daemon=True)
        pool._starting.start()
        return pool

    def _forked(self) -> None:
        """Wait for the background start of the processes; raise what stopped it."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            raise ExecutionError(f"cannot start local worker processes: {summary(error)}")

    def begin(self, context: Any) -> None:
        """Hand the workers the sweep's ``context`` as soon as it is known, without
        waiting: they open the study while the controller finishes its preparations."""
        with self._lock:
            if self.context is None:
                self.context = context
                for worker in self.workers:
                    self._send_context(worker)

    def start(self, context: Any, size: int | None = None) -> None:
        """Hand the workers the sweep's ``context`` (unless :meth:`begin` did), keep
        ``size`` of them, and wait until each has opened the study; raises
        ExecutionError if one cannot."""
        self.begin(context)
        self._forked()
        if size is not None and size < len(self.workers):
            for extra in self.workers[size:]:
                self._stop(extra)
            self.workers = self.workers[:size]
            self.size = size
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            waiting = [w for w in self.workers if not self.started(w)]
            failed = [p.failed or p.dead for p in map(_process, self.workers)]
            reason = next((f for f in failed if f), None)
            if reason is not None:
                self.shutdown()
                raise ExecutionError(f"local workers failed to start: {reason}")
            if not waiting:
                return
            if time.monotonic() > deadline:
                self.shutdown()
                raise ExecutionError(
                    f"{len(waiting)} local workers did not start within {START_TIMEOUT_S:.0f} s"
                )
            procs = [_process(w) for w in waiting]
            wait_for_any([p.conn for p in procs] + [p.process.sentinel for p in procs], 1.0)

    def _new_worker(self) -> Worker:
        index = self._next_index
        self._next_index += 1
        parent_end, child_end = self._mp.Pipe()
        process = self._mp.Process(
            target=_worker_main,
            args=(child_end, index, self.code_path, self.threads, self.objective),
            name=f"sweep-worker-{index}",
            daemon=True,
        )
        with main_left_alone(), environment(OMP_NUM_THREADS=self.threads):
            process.start()  # the fork server starts with the first (and imports BLAS)
        child_end.close()
        return Worker(_Process(process, parent_end), uuid.uuid4().hex)

    def _send_context(self, worker: Worker) -> None:
        proc = _process(worker)
        try:
            proc.conn.send(("start", self.context, worker.worker_id))
        except OSError:
            self._drain(proc)  # it died already: its exit code says so

    # -- the WorkerPool protocol ---------------------------------------------------------

    def started(self, worker: Worker) -> bool:
        """Whether ``worker`` has opened the study, or failed or died trying."""
        proc = _process(worker)
        self._drain(proc)
        return proc.info is not None or proc.failed is not None or proc.dead is not None

    def run_seed(self, worker: Worker) -> RunSeed | None:
        proc = _process(worker)
        self._drain(proc)
        return proc.info.run_seed if proc.info is not None else None

    def replace(self, worker: Worker) -> Worker:
        """Kill ``worker`` (dead or hung) and fork a fresh one in its place."""
        position = self.workers.index(worker)
        self._stop(worker)
        self.workers[position] = self._new_worker()
        self._send_context(self.workers[position])
        return self.workers[position]

    def send(
        self, worker: Worker, claims: list[Claim], finished_elsewhere: list[Any], plan: Any
    ) -> LocalCall:
        proc = _process(worker)
        call = LocalCall(proc)
        proc.calls.append(call)
        try:
            proc.conn.send(("run", claims, finished_elsewhere, plan))
        except OSError:
            self._drain(proc)  # the process is gone: the call is lost with it
        return call

    def wait(self, calls: list[LocalCall], timeout: float) -> list[LocalCall]:
        """The calls that came back within ``timeout`` (waiting for the first only)."""
        procs = {c.process for c in calls}
        for proc in procs:
            self._drain(proc)
        if not any(c.done for c in calls):
            live = [p for p in procs if p.dead is None]
            if live:
                wait_for_any([p.conn for p in live] + [p.process.sentinel for p in live], timeout)
            for proc in procs:
                self._drain(proc)
        return [c for c in calls if c.done]

    def wait_all(self, calls: list[LocalCall], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while calls and not all(c.done for c in calls) and time.monotonic() < deadline:
            self.wait([c for c in calls if not c.done], max(0.0, deadline - time.monotonic()))

    def result(self, call: LocalCall) -> list[TrialOutcome | TrialCrash]:
        if call.lost is not None:
            raise call.lost
        assert call.results is not None
        return call.results

    def kill_all(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                _process(worker).process.kill()

    def shutdown(self) -> None:
        with contextlib.suppress(ExecutionError):
            self._forked()
        for worker in self.workers:
            self._stop(worker)
        self.workers = []

    # -- the processes -------------------------------------------------------------------

    def _stop(self, worker: Worker) -> None:
        proc = _process(worker)
        with contextlib.suppress(OSError):
            proc.process.kill()
        proc.process.join(timeout=10)
        proc.conn.close()
        proc.dead = proc.dead or "stopped"

    def _drain(self, proc: _Process) -> None:
        """Take in what ``proc`` has sent; if it has died, its calls still out are lost."""
        if proc.dead is not None:
            return
        try:
            while proc.conn.poll(0):
                self._take(proc, proc.conn.recv())
        except (EOFError, OSError):
            pass
        else:
            if proc.process.is_alive():
                return
            # It died after our last look: what it sent before dying still counts.
            with contextlib.suppress(EOFError, OSError):
                while proc.conn.poll(0):
                    self._take(proc, proc.conn.recv())
        proc.process.join(timeout=5)
        code = proc.process.exitcode
        proc.dead = f"worker died during the trial: its process ended (exit code {code})"
        while proc.calls:
            proc.calls.popleft().lost = CallLost(proc.dead, worker_died=True)

    def _take(self, proc: _Process, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "started":
            proc.info = message[1]
        elif kind == "failed":
            proc.failed = message[1]
        elif kind == "done":
            proc.calls.popleft().results = message[1]
        elif kind == "error":  # the call itself failed (its results could not be sent)
            proc.calls.popleft().lost = CallLost(message[1], worker_died=False)


def _process(worker: Worker) -> _Process:
    proc: _Process = worker.actor
    return proc


def _worker_main(
    conn: Connection, index: int, code_path: str, threads: str, objective: str | None
) -> None:
    """A worker process: wait for the sweep's context, open the study, then run each
    call of trials it is sent, in order, and send back their outcomes."""
    from sweep.agent import die_with_parent
    from sweep.worker import TrialActor

    # The controller handles Ctrl-C; a worker is killed by it, not interrupted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    os.environ["OMP_NUM_THREADS"] = threads  # for what the objective imports
    if objective:
        # Imported while the controller prepares the store; a failure is the runner's
        # to report, with the spec's line.
        sys.path.insert(0, code_path)
        with contextlib.suppress(BaseException):
            importlib.import_module(objective)
    try:
        message = conn.recv()
    except EOFError:
        return
    _, context, worker_id = message
    try:
        actor = TrialActor(context, index, code_path, worker_id, kind="local")
    except Exception as exc:
        conn.send(("failed", summary(exc)))
        return
    conn.send(("started", actor.info()))
    calls: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def receive() -> None:
        # Calls are read as they come, so that the controller's send never waits for
        # this worker's (neither end then blocks on a full pipe while the other does).
        try:
            while True:
                calls.put(conn.recv())
        except (EOFError, OSError):
            calls.put(None)

    threading.Thread(target=receive, name="sweep-worker-calls", daemon=True).start()
    while True:
        call = calls.get()
        if call is None:
            return
        _, claims, news, plan = call
        results = actor.run(claims, news, plan)
        try:
            conn.send(("done", results))
        except Exception as exc:  # an outcome that cannot be pickled
            conn.send(("error", f"trial execution failed: {summary(exc)}"))
