"""Trial execution: the one code path that runs an objective on a trial, whatever
started it (a Ray worker now, a standalone agent as well).

A :class:`TrialRunner` lives as long as its worker process. For each trial id the
controller hands it, it opens the trial's child run, suggests the spec's declared
parameters, calls the user's define-by-run objective with a real ``optuna.Trial``, and
records the outcome in the study and in tracking.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import resource
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.coordination import ATTEMPT_ATTR, RETRY_OF_ATTR, Coordinator, LeaseSettings
from sweep.errors import MetricFlushError
from sweep.spec import SweepSpec, resolve_objective
from sweep.storage import Database
from sweep.study import ERROR_ATTR, RUN_ID_ATTR
from sweep.tracking import (
    ActiveRun,
    RunStatus,
    TrackingStore,
    activate,
    environment_tags,
    open_run,
)

#: Metric key holding the value the objective returned (its learning curve, if it
#: reports one, is logged under the spec's metric name, one point per step).
OBJECTIVE_VALUE_KEY = "objective_value"


@dataclass(frozen=True)
class SweepContext:
    """What a worker needs to run trials of one sweep; sent once to each worker."""

    spec: SweepSpec
    storage_url: str
    experiment_id: int
    parent_run_id: str
    command: str = ""


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: int
    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None
    run_id: str
    duration_s: float
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


class TrackedTrial(optuna.Trial):
    """A real :class:`optuna.Trial` whose ``report`` also logs a step metric."""

    def __init__(
        self, study: optuna.Study, trial_id: int, active: ActiveRun, metric_name: str
    ) -> None:
        super().__init__(study, trial_id)
        self._sweep_active_run = active
        self._sweep_metric_name = metric_name

    def report(self, value: float, step: int) -> None:
        super().report(value, step)
        self._sweep_active_run.log_metric(self._sweep_metric_name, value, step)


def check_objective_value(result: Any) -> tuple[float | None, str | None]:
    """The float an objective returned, or why it is not a usable value."""
    if isinstance(result, bool) or not isinstance(result, numbers.Real):
        return None, (
            f"objective returned {type(result).__name__} {result!r:.80}, not a number; "
            "return the metric as a float"
        )
    value = float(result)
    if math.isnan(value):
        return None, "objective returned NaN"
    return value, None


class TrialRunner:
    """Runs trials of one sweep in this process."""

    def __init__(self, context: SweepContext, worker_index: int = 0) -> None:
        self.context = context
        spec = context.spec
        self.db = Database(context.storage_url)
        self.tracking = TrackingStore(self.db)
        self.experiment = self.tracking.get_experiment(context.experiment_id)
        self.objective = resolve_objective(spec)
        self.storage = self.db.optuna_storage()
        # Distinct seeds per worker, or parallel workers would draw identical samples.
        seed_offset = worker_index + 1
        self.study = optuna.load_study(
            study_name=spec.name,
            storage=self.storage,
            sampler=spec.sampler.build(seed_offset=seed_offset),
            pruner=spec.pruner.build(),
        )
        self.seed_params = seed_params(spec, seed_offset)
        self.code_dir = str(spec.code_path)
        self.base_tags = {
            **environment_tags(str(spec.code_path)),
            "sweep.sweep": spec.name,
            "sweep.command": context.command,
        }
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        if devices is not None:
            self.base_tags["sweep.cuda_visible_devices"] = devices
        self.coordinator = Coordinator(
            self.db, self.storage, spec.name, lease_settings(spec), self.tracking
        )

    def run(self, trial_id: int) -> TrialOutcome:
        """Run trial ``trial_id`` (claimed for this worker) to its end; release its lease."""
        number = self.storage.get_trial_number_from_id(trial_id)
        # The trial names its run before the run exists: if this worker dies while the
        # run is being opened, whoever recovers the trial still finds and ends the run.
        run_id = uuid.uuid4().hex
        self.storage.set_trial_system_attr(trial_id, RUN_ID_ATTR, run_id)
        run = open_run(
            self.tracking,
            self.experiment,
            f"trial-{number}",
            code_dir=self.code_dir,
            parent_run_id=self.context.parent_run_id,
            params=self.seed_params,
            tags={**self.base_tags, "sweep.trial_number": number, **self._retry_tags(trial_id)},
            run_id=run_id,
        )
        active = ActiveRun(self.tracking, run)
        started = time.monotonic()
        try:
            with activate(active):
                value, state, error, error_trace = self._call_objective(trial_id, active)
        except MetricFlushError as exc:
            # The database refused the trial's metrics even after retrying: fail the trial
            # with the reason rather than report a result whose history is missing.
            value, state, error, error_trace = None, TrialState.FAIL, str(exc), None
        return self._finish(active, trial_id, number, state, value, error, error_trace, started)

    def _call_objective(
        self, trial_id: int, active: ActiveRun
    ) -> tuple[float | None, TrialState, str | None, str | None]:
        """Run the objective: its value, the trial's state, and the error if it failed."""
        spec = self.context.spec
        value: float | None = None
        error: str | None = None
        error_trace: str | None = None
        try:
            _show_trial_to_cache(self.study, trial_id)
            trial = TrackedTrial(self.study, trial_id, active, spec.metric.name)
            spec.suggest_parameters(trial)
            with memory_cap(spec.resources.memory_mb):
                result = self.objective(trial)
            value, error = check_objective_value(result)
            state = TrialState.COMPLETE if error is None else TrialState.FAIL
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except MemoryError:
            state = TrialState.FAIL
            error = (
                f"MemoryError: the objective needed more than resources.memory_mb "
                f"({spec.resources.memory_mb} MiB)"
                if spec.resources.memory_mb
                else "MemoryError: the objective ran out of memory"
            )
            error_trace = traceback.format_exc()
        except Exception as exc:  # the objective's own failure: record it, go on
            state = TrialState.FAIL
            error = f"{type(exc).__name__}: {exc}"
            error_trace = traceback.format_exc()
        if value is not None:
            active.log_metric(OBJECTIVE_VALUE_KEY, value, 0)
        return value, state, error, error_trace

    def _finish(
        self,
        active: ActiveRun,
        trial_id: int,
        number: int,
        state: TrialState,
        value: float | None,
        error: str | None,
        error_trace: str | None,
        started: float,
    ) -> TrialOutcome:
        run_id = active.run_id
        params = self.storage.get_trial_params(trial_id)
        self.tracking.log_params(run_id, params)
        tags: dict[str, Any] = {"sweep.state": state.name}
        if error is not None:
            tags["sweep.error"] = error
            self.storage.set_trial_system_attr(trial_id, ERROR_ATTR, error[:2000])
        self.tracking.set_tags(run_id, tags)
        if error_trace is not None:
            active.log_text(error_trace, "traceback.txt")
        # Study.tell takes the trial number; a trial a stop has already ended is skipped.
        self.study.tell(
            number,
            value if state == TrialState.COMPLETE else None,
            state=state,
            skip_if_finished=True,
        )
        self.tracking.end_run(
            run_id, RunStatus.FAILED if state == TrialState.FAIL else RunStatus.FINISHED
        )
        self.coordinator.release(trial_id)
        return TrialOutcome(
            trial_id=trial_id,
            number=number,
            state=state.name,
            value=value,
            run_id=run_id,
            duration_s=time.monotonic() - started,
            error=error,
            params=params,
        )

    def _retry_tags(self, trial_id: int) -> dict[str, Any]:
        """For a retry: which trial (and run) it retries, and the attempt number."""
        attrs = self.storage.get_trial_system_attrs(trial_id)
        if RETRY_OF_ATTR not in attrs:
            return {}
        original = int(attrs[RETRY_OF_ATTR])
        tags: dict[str, Any] = {
            "sweep.retry_of_trial": original,
            "sweep.attempt": attrs.get(ATTEMPT_ATTR, 1),
        }
        original_id = self.storage.get_trial_id_from_study_id_trial_number(
            self.coordinator.study_id, original
        )
        original_run = self.storage.get_trial_system_attrs(original_id).get(RUN_ID_ATTR)
        if original_run:
            tags["sweep.retry_of_run"] = original_run
        return tags

    def close(self) -> None:
        self.db.dispose()


def seed_params(spec: SweepSpec, seed_offset: int) -> dict[str, int]:
    """The random seeds the spec sets, recorded as params of each trial run: the
    sampler's ``seed`` and the one this worker's sampler uses (``seed + seed_offset``)."""
    seed = spec.sampler.seed
    if seed is None:
        return {}
    return {"sweep.seed": seed, "sweep.sampler_seed": seed + seed_offset}


def _show_trial_to_cache(study: optuna.Study, trial_id: int) -> None:
    """Make Optuna's trial cache read ``trial_id`` before a Trial is built on it.

    Optuna wraps RDB storage in ``_CachedStorage``, which reads only trials with ids
    above the last finished one it saw. A retry is created after later trials and
    claimed by another process, so the cache would never read it (``KeyError`` on the
    first ``suggest_*``). Private API of Optuna 5; without it, nothing is done.
    """
    cached = study._storage
    studies = getattr(cached, "_studies", None)
    read = getattr(cached, "_read_trials_from_remote_storage", None)
    if studies is None or read is None:
        return
    study_id = study._study_id
    read(study_id)  # creates the study's cache entry on first use
    if trial_id not in getattr(cached, "_trial_id_to_study_id_and_number", {}):
        studies[study_id].unfinished_trial_ids.add(trial_id)
        read(study_id)


def lease_settings(spec: SweepSpec) -> LeaseSettings:
    return LeaseSettings(
        heartbeat_interval=float(spec.lease.heartbeat_interval),
        timeout=float(spec.lease.timeout),
        max_retries=int(spec.retries.max_retries),
    )


@contextlib.contextmanager
def memory_cap(limit_mb: int | None) -> Iterator[None]:
    """Let the code inside allocate at most ``limit_mb`` MiB more than this process
    holds now: past it, allocations raise MemoryError in this trial alone, instead of
    the kernel killing the worker (or a neighbour)."""
    if not limit_mb:
        yield
        return
    previous = resource.getrlimit(resource.RLIMIT_DATA)
    cap = _data_segment_bytes() + limit_mb * 1024 * 1024
    hard = previous[1]
    resource.setrlimit(
        resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, previous)


def _data_segment_bytes() -> int:
    """This process's data segment (VmData: heap and private writable mappings)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0
