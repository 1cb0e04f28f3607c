"""Workers: long-lived, one per parallel slot, running trials through
:class:`~sweep.trial.TrialRunner` (:class:`TrialActor`, the same body for every pool).

Here the Ray pool: actors each holding one trial's resources (``cpu``, ``gpu``). Ray
sets ``CUDA_VISIBLE_DEVICES`` for an actor that holds GPUs, so each worker's objective
sees only its own devices. Ray is imported only when this pool starts: a local run
(:mod:`sweep.local`) does not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from sweep.coordination import Claim, Heartbeat, RunSeed
from sweep.errors import ExecutionError, first_line, summary
from sweep.planner import Plan
from sweep.trial import SweepContext, TrialOutcome, TrialRunner


@dataclass(frozen=True)
class ActorInfo:
    index: int
    host: str
    pid: int
    cuda_visible_devices: str | None
    run_seed: RunSeed | None = None  # what its trials' runs start with


@dataclass(frozen=True)
class TrialCrash:
    """A trial of a call that raised out of :meth:`TrialRunner.run` (not the objective's
    own failure, which its outcome records): the others of the call still ran."""

    trial_id: int
    error: str  # errors.summary of what it raised


class CallLost(ExecutionError):
    """A call to a worker did not come back with its trials' outcomes; ``worker_died``:
    because the worker's process or node died (its queued calls die with it)."""

    def __init__(self, reason: str, *, worker_died: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.worker_died = worker_died


@dataclass(frozen=True)
class Worker:
    """A worker and the id under which it holds leases: ``actor`` is its Ray actor, or
    its local process (:mod:`sweep.local`)."""

    actor: Any
    worker_id: str


class TrialActor:
    """The worker body: wrapped with ``ray.remote`` in :class:`RayWorkerPool`, run in a
    local process by :class:`~sweep.local.LocalWorkerPool`.

    It registers itself as a worker of the sweep and renews the leases of the trials
    the controller claimed for it: if its process or node dies, the leases expire and
    any controller or agent of the sweep fails and retries its trial."""

    def __init__(
        self,
        context: SweepContext,
        worker_index: int,
        code_path: str,
        worker_id: str,
        kind: str = "ray",
    ) -> None:
        # Local Ray workers do not inherit the driver's sys.path; on a cluster the
        # runtime environment's working_dir is already the cwd and on the path.
        if code_path and os.path.isdir(code_path) and code_path not in sys.path:
            sys.path.insert(0, code_path)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.index = worker_index
        # Its trials' ends go back to the controller, which writes them in batches.
        self.runner = TrialRunner(context, worker_index, hand_back=True)
        coordinator = self.runner.coordinator
        coordinator.register_worker(
            kind, gpus=os.environ.get("CUDA_VISIBLE_DEVICES"), worker_id=worker_id
        )
        self.heartbeat = Heartbeat(coordinator, worker_id).start()

    def info(self) -> ActorInfo:
        return ActorInfo(
            self.index,
            socket.gethostname(),
            os.getpid(),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
            self.runner.run_seed,
        )

    def run(
        self, claims: list[Claim], finished_elsewhere: list[Any], plan: Plan | None
    ) -> list[TrialOutcome | TrialCrash]:
        """Run ``claims`` one after the other (several short trials per call spare a Ray
        round trip each); ``plan`` is the first one's, and only a lone claim gets one."""
        results: list[TrialOutcome | TrialCrash] = []
        for claim in claims:
            try:
                results.append(self.runner.run(claim, finished_elsewhere, plan))
            except Exception as exc:
                results.append(TrialCrash(claim.trial_id, summary(exc)))
            finished_elsewhere, plan = [], None  # the news is absorbed once
        return results


class RayWorkerPool:
    """Starts (or joins) Ray and keeps ``size`` workers alive; replaces dead ones."""

    def __init__(
        self,
        context: SweepContext,
        size: int,
        *,
        cpu: float,
        gpu: float,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
    ) -> None:
        self.context = context
        self.size = size
        self.cpu = cpu
        self.gpu = gpu
        self.address = None if address in (None, "", "local") else address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.code_path = str(context.spec.code_path)
        self.workers: list[Worker] = []
        # Each worker's info, once it has started (asked for as it is created).
        self._infos: dict[str, ActorInfo] = {}
        self._info_refs: dict[str, Any] = {}
        self._started_ray = False
        self._next_index = 0
        self._actor_class: Any = None

    def start(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        self._init_ray()
        self._check_resources()
        self._actor_class = ray.remote(TrialActor)
        self.workers = [self._new_worker() for _ in range(self.size)]
        # Fail fast, with the real reason, if workers cannot start (e.g. bad objective).
        try:
            ray.get(list(self._info_refs.values()), timeout=300)
        except GetTimeoutError as exc:
            self.shutdown()
            raise ExecutionError(
                f"Ray could not start {self.size} workers with cpu={self.cpu}, gpu={self.gpu} "
                "each within 5 minutes; lower parallelism or resources, or add nodes"
            ) from exc
        except RayError as exc:
            self.shutdown()
            raise ExecutionError(f"Ray workers failed to start: {_cause(exc)}") from exc

    def _init_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        if self.address:
            _use_cluster_token()
            # The objective's code travels to the cluster's nodes with the job.
            kwargs["address"] = self.address
            kwargs["runtime_env"] = {"working_dir": self.code_path}
        else:
            # A new local Ray even if another one runs here (`ray.address: auto` joins it).
            kwargs["address"] = "local"
            kwargs["num_cpus"] = self.num_cpus
            kwargs["num_gpus"] = self.num_gpus
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises many kinds: say what it said, in our terms
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            raise ExecutionError(
                f"cannot start {where}: {summary(exc)}; check ray.address / --ray-address"
            ) from exc
        self._started_ray = True

    def _check_resources(self) -> None:
        import ray

        total: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        if self._started_ray and not self.address:
            # A local Ray will never grow: refuse now rather than wait for workers that
            # cannot be placed.
            for name, each in (("cpu", self.cpu), ("gpu", self.gpu)):
                need, have = each * self.size, total.get(name.upper(), 0)
                if each > 0 and have + 1e-9 < need:
                    raise ExecutionError(
                        f"parallelism {self.size} with {name}: {each:g} per trial needs "
                        f"{need:g} {name.upper()}s but the local Ray has {have:g}; lower "
                        f"parallelism or resources.{name}, or give the local Ray more logical "
                        f"{name.upper()}s with ray.num_{name}s"
                    )
        if self.gpu > 0 and total.get("GPU", 0) < self.gpu:
            raise ExecutionError(
                f"each trial asks for gpu: {self.gpu} but the Ray cluster has "
                f"{total.get('GPU', 0):g} GPUs; set resources.gpu to 0, join a cluster with "
                "GPUs (ray.address), or start local Ray with logical GPUs (ray.num_gpus)"
            )
        if total.get("CPU", 0) < self.cpu:
            raise ExecutionError(
                f"each trial asks for cpu: {self.cpu} but the Ray cluster has "
                f"{total.get('CPU', 0):g} CPUs; lower resources.cpu"
            )

    def _new_worker(self) -> Worker:
        index = self._next_index
        self._next_index += 1
        worker_id = uuid.uuid4().hex
        actor = self._actor_class.options(
            num_cpus=self.cpu, num_gpus=self.gpu, max_restarts=0, max_task_retries=0
        ).remote(self.context, index, self.code_path, worker_id)
        self._info_refs[worker_id] = actor.info.remote()
        return Worker(actor, worker_id)

    def run_seed(self, worker: Worker) -> RunSeed | None:
        """What ``worker``'s trial runs start with; None while it is still starting."""
        import ray
        from ray.exceptions import RayError

        info = self._infos.get(worker.worker_id)
        if info is None:
            ref = self._info_refs.get(worker.worker_id)
            if ref is None or not ray.wait([ref], timeout=0)[0]:
                return None
            del self._info_refs[worker.worker_id]
            try:
                info = ray.get(ref)
            except RayError:
                return None  # it died starting: its first trial says why
            self._infos[worker.worker_id] = info
        return info.run_seed

    def started(self, worker: Worker) -> bool:
        """Whether ``worker`` has started, or died trying. Trials are claimed for a
        worker only then: a trial's lease starts at its claim, and a worker still being
        placed (on a node that is joining, say) cannot renew it."""
        self.run_seed(worker)
        return worker.worker_id not in self._info_refs

    def replace(self, worker: Worker) -> Worker:
        """Swap a dead (or hung) worker for a fresh one."""
        import ray
        from ray.exceptions import RayError

        position = self.workers.index(worker)
        with contextlib.suppress(RayError):
            ray.kill(worker.actor, no_restart=True)
        self.workers[position] = self._new_worker()
        return self.workers[position]

    # -- calls: what the dispatcher sends and waits for ----------------------------------

    def send(
        self, worker: Worker, claims: list[Claim], finished_elsewhere: list[Any], plan: Any
    ) -> Any:
        """Send ``worker`` a call running ``claims``; returns the call's handle."""
        return worker.actor.run.remote(claims, finished_elsewhere, plan)

    def wait(self, calls: list[Any], timeout: float) -> list[Any]:
        """The calls that came back within ``timeout`` (waiting for the first only)."""
        import ray

        done, rest = ray.wait(calls, num_returns=1, timeout=timeout)
        if done and rest:
            done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return done

    def wait_all(self, calls: list[Any], timeout: float) -> None:
        """Wait up to ``timeout`` for every one of ``calls`` to come back."""
        import ray

        if calls:
            ray.wait(calls, num_returns=len(calls), timeout=timeout)

    def result(self, call: Any) -> list[TrialOutcome | TrialCrash]:
        """What a call that came back returned; raises :class:`CallLost` if it failed."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            results: list[TrialOutcome | TrialCrash] = ray.get(call)
            return results
        except RayActorError as exc:
            reason = f"worker died during the trial: {first_line(exc)}"
            raise CallLost(reason, worker_died=True) from exc
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) else exc
            raise CallLost(f"trial execution failed: {summary(cause)}", worker_died=False) from exc

    def info(self) -> list[ActorInfo]:
        import ray

        return ray.get([w.actor.info.remote() for w in self.workers], timeout=60)

    def kill_all(self) -> None:
        import ray
        from ray.exceptions import RayError

        for worker in self.workers:
            with contextlib.suppress(RayError):
                ray.kill(worker.actor, no_restart=True)

    def shutdown(self) -> None:
        import ray

        self.kill_all()
        self.workers = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _use_cluster_token() -> None:
    """Present this machine's Ray auth token to a cluster that requires one.

    `ray start --head` turns token authentication on and saves the token in
    ~/.ray/auth_token, but Ray 2.60's ``ray.init(address=...)`` only sends it when
    RAY_AUTH_MODE=token is set; without it the connection is refused.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: it handles tokens itself
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _cause(exc: BaseException) -> str:
    """The user-facing reason inside a Ray error (its cause, if it wraps one)."""
    from ray.exceptions import RayActorError

    cause = getattr(exc, "cause", None) or exc.__cause__
    if isinstance(exc, RayActorError) and cause is None:
        return str(exc).splitlines()[0]
    return f"{type(cause).__name__}: {cause}" if cause else str(exc).splitlines()[0]
