"""Trial execution: the one code path that runs an objective on a trial, whatever
started it (a Ray worker now, a standalone agent as well).

A :class:`TrialRunner` lives as long as its worker process. For each trial id the
controller hands it, it opens the trial's child run, suggests the spec's declared
parameters, calls the user's define-by-run objective with a real ``optuna.Trial``, and
records the outcome in the study and in tracking.
"""

from __future__ import annotations

import math
import numbers
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.spec import SweepSpec, resolve_objective
from sweep.storage import Database
from sweep.study import ERROR_ATTR, RUN_ID_ATTR
from sweep.tracking import ActiveRun, RunStatus, TrackingStore, activate, environment_tags

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
        self.study = optuna.load_study(
            study_name=spec.name,
            storage=self.storage,
            # Distinct seeds per worker, or parallel workers would draw identical samples.
            sampler=spec.sampler.build(seed_offset=worker_index + 1),
            pruner=spec.pruner.build(),
        )
        self.base_tags = {
            **environment_tags(str(spec.code_path)),
            "sweep.sweep": spec.name,
            "sweep.command": context.command,
        }
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        if devices is not None:
            self.base_tags["sweep.cuda_visible_devices"] = devices

    def run(self, trial_id: int) -> TrialOutcome:
        spec = self.context.spec
        number = self.storage.get_trial_number_from_id(trial_id)
        run = self.tracking.create_run(
            self.experiment,
            f"trial-{number}",
            parent_run_id=self.context.parent_run_id,
            tags={**self.base_tags, "sweep.trial_number": number},
        )
        self.storage.set_trial_system_attr(trial_id, RUN_ID_ATTR, run.run_id)
        active = ActiveRun(self.tracking, run)
        started = time.monotonic()
        value: float | None = None
        error: str | None = None
        error_trace: str | None = None
        with activate(active):
            try:
                trial = TrackedTrial(self.study, trial_id, active, spec.metric.name)
                spec.suggest_parameters(trial)
                value, error = check_objective_value(self.objective(trial))
                state = TrialState.COMPLETE if error is None else TrialState.FAIL
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except Exception as exc:  # the objective's own failure: record it, go on
                state = TrialState.FAIL
                error = f"{type(exc).__name__}: {exc}"
                error_trace = traceback.format_exc()
            if value is not None:
                active.log_metric(OBJECTIVE_VALUE_KEY, value, 0)
        return self._finish(active, trial_id, number, state, value, error, error_trace, started)

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

    def close(self) -> None:
        self.db.dispose()
