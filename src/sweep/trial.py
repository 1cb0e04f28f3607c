"""Trial execution: the one code path that runs an objective on a trial, whatever
started it (a Ray worker now, a standalone agent as well).

A :class:`TrialRunner` lives as long as its worker process. For each trial claimed for
it, it opens the trial's child run, suggests the spec's declared parameters, calls the
user's define-by-run objective with a real ``optuna.Trial``, and records the outcome.

The study is read through :class:`~sweep.storage.StudyStorage`: the trial's params,
reports and attributes stay in memory while it runs (a long trial's are written each
second), and its end is one transaction: the study's rows, the run's params, tags, last
metric points and status, and the lease's release.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.orm import Session

from sweep.command import CommandObjective
from sweep.coordination import Claim, Coordinator, LeaseSettings, RunSeed, retry_tags
from sweep.ends import HandBack, TrialEnd, WriteNow, WriteSoon, write_ends
from sweep.errors import MetricFlushError, StorageError
from sweep.limits import memory_cap
from sweep.objective_values import check_objective_values
from sweep.planner import Plan, PlannedSampler
from sweep.spec import SweepSpec, resolve_objective
from sweep.storage import Database, StudyStorage
from sweep.study import ERROR_ATTR
from sweep.tracking import (
    ActiveRun,
    Run,
    RunEnd,
    RunStatus,
    TrackingStore,
    activate,
    environment_tags,
    flusher,
    now_ms,
    reference_tags,
    write_lineage,
)

#: Metric key holding the value the objective returned (its learning curve, if it
#: reports one, is logged under the spec's metric name, one point per step).
OBJECTIVE_VALUE_KEY = "objective_value"

logger = logging.getLogger(__name__)


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
    value: float | None  # the first objective's
    run_id: str
    duration_s: float
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # A Ray worker's trial end, for the controller to write with others' in a batch
    # (None where the runner wrote it), and the trial as it ended (for other workers).
    end: TrialEnd | None = None
    trial: optuna.trial.FrozenTrial | None = None
    #: Every objective's value, in the spec's order (None unless COMPLETE).
    values: list[float] | None = None


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


class TrialRunner:
    """Runs trials of one sweep in this process."""

    def __init__(
        self,
        context: SweepContext,
        worker_index: int = 0,
        *,
        hand_back: bool = False,
        defer_ends: bool = False,
    ) -> None:
        """``hand_back``: each trial's end is returned in its outcome for the caller
        (the controller) to write, instead of being written here (see
        :mod:`sweep.ends`). ``defer_ends`` (an agent's worker): a script's trial end is
        written with the next claim (:meth:`claim`), in its transaction, or by
        :meth:`write_ends`."""
        self.context = context
        spec = context.spec
        self.db = Database(context.storage_url)
        self.tracking = TrackingStore(self.db)
        self.experiment = self.tracking.get_experiment(context.experiment_id)
        self.objective: Callable[[optuna.Trial], Any] = (
            CommandObjective(spec, context.storage_url)
            if spec.is_command
            else resolve_objective(spec)
        )
        # Whoever started this worker (a launch, an agent) checked the schema.
        backend = self.db.optuna_storage(schema_ready=True)
        self.ends: HandBack | WriteNow = (
            HandBack()
            if hand_back
            else WriteSoon(self.db, self.tracking)
            if defer_ends and spec.is_command
            else WriteNow(self.db, self.tracking)
        )
        self.storage = StudyStorage(self.db, backend, self.ends)
        # Distinct seeds per worker, or parallel workers would draw identical samples.
        seed_offset = worker_index + 1
        # The controller may plan a trial's relative params (see sweep.planner).
        self.sampler = PlannedSampler(spec.sampler.build(seed_offset=seed_offset))
        self.study = optuna.load_study(
            study_name=spec.name,
            storage=self.storage,
            sampler=self.sampler,
            pruner=spec.pruner.build(),
        )
        self.study_id = self.study._study_id
        # The study as it stands; from here on, reads take what changed.
        self.storage.get_all_trials(self.study_id, deepcopy=False)
        self.code_dir = str(spec.code_path)
        tags = {
            **environment_tags(self.code_dir),
            "sweep.sweep": spec.name,
            "sweep.command": context.command,
        }
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        if devices is not None:
            tags["sweep.cuda_visible_devices"] = devices
        #: What this worker's trial runs start with; the claim opens them.
        self.run_seed = RunSeed(
            experiment_id=self.experiment.experiment_id,
            artifact_root=self.experiment.artifact_root,
            parent_run_id=context.parent_run_id,
            params=seed_params(spec, seed_offset),
            tags=tags,
        )
        self.coordinator = Coordinator(
            self.db, backend, spec.name, lease_settings(spec), self.tracking
        )
        # A long trial's buffered study writes go out with its metrics, each second.
        self._study_writes = _DueStudyWrites(self.storage)
        flusher().register(self._study_writes)

    def run(
        self,
        claim: Claim,
        finished_elsewhere: Sequence[optuna.trial.FrozenTrial] | None = None,
        plan: Plan | None = None,
    ) -> TrialOutcome:
        """Run the trial ``claim`` hands this worker to its end. From a controller:
        ``finished_elsewhere``, every trial finished elsewhere since this worker's last
        one (so that sampling needs no read of the study; None: read what changed),
        and ``plan``, the trial's relative params sampled by the controller."""
        self.storage.adopt(self.study_id, claim.frozen_trial())
        if finished_elsewhere is not None:
            self.storage.absorb(self.study_id, finished_elsewhere)
        self.sampler.expect(claim.trial_id, plan)
        run = self._run_of(claim)
        active = ActiveRun(self.tracking, run)
        started = time.monotonic()
        with activate(active, flush=False):
            values, state, error, error_trace = self._call_objective(claim.trial_id, active)
        return self._finish(active, claim, state, values, error, error_trace, started)

    def claim(self, worker_id: str) -> Claim | None:
        """The next trial for worker ``worker_id`` of this process, its run opened (see
        :meth:`Coordinator.claim`), in one transaction with the trial ends kept so far
        (``defer_ends``): a short script's trial costs one transaction less."""
        kept = self.ends.take_kept() if isinstance(self.ends, WriteSoon) else []

        def write_kept(session: Session) -> None:
            write_ends(session, self.tracking, kept)

        try:
            claims = self.coordinator.claim_many(
                [(worker_id, self.run_seed)], first=write_kept if kept else None
            )
        except StorageError as exc:
            raise self._unwritten(kept, exc) from exc
        return claims[0] if claims else None

    def write_ends(self) -> None:
        """Write the trial ends kept so far (``defer_ends``; else none are kept)."""
        if isinstance(self.ends, WriteSoon):
            kept = self.ends.take_kept()
            try:
                self.ends.write(kept)
            except StorageError as exc:
                raise self._unwritten(kept, exc) from exc

    def _unwritten(self, ends: Sequence[TrialEnd], exc: StorageError) -> MetricFlushError:
        # This worker stops; the trials' leases expire and they are recovered elsewhere.
        trials = ", ".join(str(end.trial_id) for end in ends)
        return MetricFlushError(
            f"the end of trial(s) {trials} could not be written to {self.db.display_url} "
            f"({exc}); check that the database is up and writable"
        )

    def _run_of(self, claim: Claim) -> Run:
        """The trial's child run, which the claim opened (opened here if it did not),
        with this process's lineage files written on its first run."""
        seed = self.run_seed
        if claim.artifact_uri is None:
            run = self.tracking.create_run(
                self.experiment,
                f"trial-{claim.number}",
                run_id=claim.run_id,
                parent_run_id=seed.parent_run_id,
                params=seed.params,
                tags={
                    **seed.tags,
                    "sweep.trial_number": claim.number,
                    **retry_tags(claim.system_attrs, claim.retry_of_run),
                },
            )
        else:
            run = Run(
                run_id=claim.run_id,
                experiment_id=seed.experiment_id,
                parent_run_id=seed.parent_run_id,
                name=f"trial-{claim.number}",
                status=RunStatus.RUNNING,
                start_time=now_ms(),
                end_time=None,
                artifact_uri=claim.artifact_uri,
            )
        write_lineage(self.tracking, run, self.code_dir)
        return run

    def _call_objective(
        self, trial_id: int, active: ActiveRun
    ) -> tuple[list[float] | None, TrialState, str | None, str | None]:
        """Run the objective: its values, the trial's state, and the error if it failed."""
        spec = self.context.spec
        values: list[float] | None = None
        error: str | None = None
        error_trace: str | None = None
        try:
            trial = TrackedTrial(self.study, trial_id, active, spec.metric.name)
            spec.suggest_parameters(trial)
            with memory_cap(spec.resources.memory_mb):
                result = self.objective(trial)
            values, error = check_objective_values(result, spec.metric_names)
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
        except (Exception, KeyboardInterrupt, SystemExit) as exc:
            # The objective's own failure: record it, go on. An objective that raises
            # KeyboardInterrupt or calls sys.exit fails its trial with its own message;
            # the worker (which a stop kills, never interrupts) runs the next.
            state = TrialState.FAIL
            error = f"{type(exc).__name__}: {exc}"
            error_trace = traceback.format_exc()
        if values is not None and not spec.multi_objective:
            active.log_metric(OBJECTIVE_VALUE_KEY, values[0], 0)
        elif values is not None:
            # Each objective under its name, at the step after any the objective logged
            # for it: the run's latest value of each metric is the trial's.
            for name, value in zip(spec.metric_names, values, strict=True):
                active.log_metric(name, value)
        return values, state, error, error_trace

    def _finish(
        self,
        active: ActiveRun,
        claim: Claim,
        state: TrialState,
        values: list[float] | None,
        error: str | None,
        error_trace: str | None,
        started: float,
    ) -> TrialOutcome:
        """End the trial and its run in one transaction (the study's rows, the run's
        params, tags, last points and status, the lease)."""
        trial_id, run_id = claim.trial_id, active.run_id
        if error_trace is not None:
            active.log_text(error_trace, "traceback.txt")
        # The values the params stand for (quantile and JSON-encoded types decoded).
        params = self.context.spec.decode_params(dict(self.storage.get_trial(trial_id).params))
        if error is not None:
            self.storage.set_trial_system_attr(trial_id, ERROR_ATTR, error[:2000])
        run_end = RunEnd(
            run_id,
            RunStatus.FAILED if state == TrialState.FAIL else RunStatus.FINISHED,
            params=params,
            tags={
                "sweep.state": state.name,
                **({"sweep.error": error} if error else {}),
                **reference_tags(self.tracking, self.experiment, self.code_dir),
            },
            points=active.take_points(),
        )

        self.ends.expect(trial_id, run_end)
        try:
            # Study.tell takes the trial number; the sampler's after_trial runs in it.
            self.study.tell(
                claim.number,
                values if state == TrialState.COMPLETE else None,
                state=state,
                skip_if_finished=True,
            )
        except StorageError as exc:
            # The database refused the trial's end even after retrying: say so; the
            # lease expires and the trial is recovered elsewhere.
            raise MetricFlushError(
                f"trial {claim.number} and its run {run_id} could not be written to "
                f"{self.db.display_url} ({exc}); check that the database is up and writable"
            ) from exc
        return TrialOutcome(
            trial_id=trial_id,
            number=claim.number,
            state=state.name,
            value=values[0] if values else None,
            run_id=run_id,
            duration_s=time.monotonic() - started,
            error=error,
            params=params,
            end=self.ends.take(trial_id) if isinstance(self.ends, HandBack) else None,
            trial=self.storage.get_trial(trial_id),
            values=values,
        )

    def close(self) -> None:
        flusher().unregister(self._study_writes)
        if isinstance(self.objective, CommandObjective):
            self.objective.close()
        self.db.dispose()


class _DueStudyWrites:
    """The storage's due writes, as the background flusher sees them."""

    def __init__(self, storage: StudyStorage) -> None:
        self.storage = storage

    def flush_in_background(self) -> None:
        try:
            self.storage.flush_due()
        except Exception as exc:  # kept buffered; the trial's end writes them
            logger.warning("could not write a running trial's study rows yet: %s", exc)


def seed_params(spec: SweepSpec, seed_offset: int) -> dict[str, int]:
    """The random seeds the spec sets, recorded as params of each trial run: the
    sampler's ``seed`` and the one this worker's sampler uses (``seed + seed_offset``)."""
    seed = spec.sampler.seed
    if seed is None:
        return {}
    return {"sweep.seed": seed, "sweep.sampler_seed": seed + seed_offset}


def lease_settings(spec: SweepSpec) -> LeaseSettings:
    return LeaseSettings(
        heartbeat_interval=float(spec.lease.heartbeat_interval),
        timeout=float(spec.lease.timeout),
        max_retries=int(spec.retries.max_retries),
    )
