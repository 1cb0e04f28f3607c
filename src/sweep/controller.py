"""The controller: runs a sweep from its spec to a registered challenger.

``launch`` creates or loads the study, opens the sweep's parent run, keeps one trial
running on each worker (local processes or Ray actors: :func:`~sweep.executor.executor_for`)
until the global budget is spent, fails trials whose worker
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

from sweep.callbacks import start_callbacks
from sweep.coordination import Coordinator, Heartbeat, SweepState
from sweep.dispatcher import Dispatcher, TrialCallback
from sweep.errors import RegistrationError, summary
from sweep.executor import executor_for
from sweep.local import LocalWorkerPool
from sweep.pareto import FrontTrial, front_of
from sweep.registration import register_best
from sweep.registry import ModelRegistry, ModelVersion
from sweep.spec import SweepSpec, load_spec, resolve_callbacks
from sweep.stopping import StopRules, clear_stop, end_sweep, stopped_by
from sweep.storage import Database, redact, resolve_storage_url
from sweep.study import SPEC_ATTR, best_own_trial, open_study, open_sweep_record, set_sweep_status
from sweep.tracking import (
    Experiment,
    MetricPoint,
    RunStatus,
    TrackingStore,
    command_line,
    environment_tags,
    now_ms,
    resolve_artifact_root,
)
from sweep.trial import SweepContext, lease_settings
from sweep.trial_counts import TrialCounts, count_trials
from sweep.worker import RayWorkerPool

if TYPE_CHECKING:
    from sweep.export import MlflowMirror


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
    #: With several objectives: the Pareto front (no single best trial), by number.
    pareto_front: list[FrontTrial] = field(default_factory=list)
    model_version: ModelVersion | None = None
    registration: str = ""
    state: str = "FINISHED"  # FINISHED, STOPPED, CANCELLED or KILLED (Ctrl-C)
    stopped_by: str = ""  # why budget.target or budget.patience ended it, if one did


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
    address = ray_address or spec.ray.address
    local = None
    if executor_for(spec, address) == "local":
        # The workers' processes start now, while the store and the study are prepared.
        local = LocalWorkerPool.prestart(
            spec.parallelism,
            str(spec.code_path),
            spec.resources.cpu,
            None if spec.is_command else spec.objective_module,
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        db = Database(resolve_storage_url(storage, spec.storage))
        try:
            return _Launch(spec, db, address, on_trial, on_start, local).run()
        finally:
            db.dispose()
    finally:
        if local is not None:
            local.shutdown()


def record_sweep(spec: SweepSpec, db: Database) -> tuple[Experiment, str]:
    """The sweep's experiment and parent run, opened as a launch opens them (for
    :func:`sweep.create.create`, which records a sweep before any worker runs)."""
    return _Launch(spec, db, None, None, None)._open_parent_run()


class _Launch:
    def __init__(
        self,
        spec: SweepSpec,
        db: Database,
        ray_address: str | None,
        on_trial: TrialCallback | None,
        on_start: Callable[[str, TrialCounts, int | None], None] | None,
        local: LocalWorkerPool | None = None,
    ) -> None:
        self.spec = spec
        self.local = local  # the local workers, started; None: Ray
        self.db = db
        self.ray_address = ray_address
        self.on_trial = on_trial
        self.on_start = on_start
        self.tracking = TrackingStore(db)
        self.registry = ModelRegistry(db)

    def run(self) -> SweepResult:
        started = time.monotonic()
        spec, db = self.spec, self.db
        hooks = resolve_callbacks(spec)  # a hook that cannot import fails before any write
        db.ensure_schema()
        storage = db.optuna_storage()
        study = open_study(spec, db, storage)
        study_id = storage.get_study_id_from_name(spec.name)
        experiment, parent_run_id = self._open_parent_run()
        context = SweepContext(
            spec=spec,
            storage_url=db.url,
            experiment_id=experiment.experiment_id,
            parent_run_id=parent_run_id,
            command=command_line(),
        )
        if self.local is not None:
            self.local.begin(context)  # the workers open the study meanwhile
        mirror = self._mirror()
        set_sweep_status(db, spec.name, SweepState.RUNNING.value)
        # Agents that join build their trial runner from this.
        storage.set_study_system_attr(study_id, SPEC_ATTR, agent_spec_json(spec))

        coordinator = Coordinator(db, storage, spec.name, lease_settings(spec), self.tracking)
        callbacks, self.on_trial = start_callbacks(spec, hooks, study, self.on_trial)
        controller_id = coordinator.register_worker("controller")
        heartbeat = Heartbeat(coordinator, controller_id).start()
        try:
            # Trials a dead controller or agent left running: fail and retry them now if
            # their leases already expired (the others when they do).
            coordinator.recover_stale()
            clear_stop(coordinator)  # a relaunch checks the stop rules afresh
            counts = count_trials(db, study_id)
            n_trials = spec.budget.n_trials
            remaining = None if n_trials is None else max(0, n_trials - counts.finished)
            if self.on_start:
                self.on_start(db.display_url, counts, remaining)
            launched, interrupted, state = self._execute(
                coordinator, heartbeat, context, counts, remaining
            )
            why = stopped_by(coordinator)
        except BaseException as exc:
            self._failed(parent_run_id, exc)
            if callbacks is not None:
                killed = isinstance(exc, KeyboardInterrupt)
                callbacks.sweep_end("KILLED" if killed else "FAILED", count_trials(db, study_id))
            raise
        finally:
            heartbeat.stop()
            coordinator.unregister_worker(controller_id)

        result = SweepResult(
            name=spec.name,
            storage=db.display_url,
            experiment=experiment.name,
            parent_run_id=parent_run_id,
            counts=count_trials(db, study_id),
            trials_this_launch=launched,
            elapsed_s=time.monotonic() - started,
            interrupted=interrupted,
            state=state.value,
            stopped_by=why or "",
        )
        result = self._with_best(study, result)
        try:
            result = self._end(study, result, state)
            return result
        except RegistrationError as exc:
            result = getattr(exc, "result", result)
            raise
        finally:
            if mirror is not None:
                self._stop_mirror(mirror, parent_run_id)
            if callbacks is not None:
                callbacks.launch_ended(result)

    def _mirror(self) -> MlflowMirror | None:
        """The live MLflow mirror the spec asks for (``tracking.mirror``), started."""
        tracking = self.spec.tracking
        if tracking.mirror != "mlflow" or not tracking.mlflow_uri:
            return None
        from sweep.export import MlflowMirror

        return MlflowMirror(self.spec.name, tracking.mlflow_uri, self.db.url).start()

    def _stop_mirror(self, mirror: MlflowMirror, parent_run_id: str) -> None:
        """Mirror what is left; a failure is reported on the parent run, not raised."""
        error = mirror.stop()
        with contextlib.suppress(Exception):
            tags = {"sweep.mirror.error": error[:2000]} if error else {"sweep.mirror": "ok"}
            self.tracking.set_tags(parent_run_id, tags)

    def _open_parent_run(self) -> tuple[Experiment, str]:
        """The sweep's experiment and parent run: opened on the first launch, continued
        (RUNNING again) by a relaunch or `sweep resume`."""
        spec = self.spec
        experiment = self.tracking.get_or_create_experiment(
            spec.experiment_name, resolve_artifact_root(spec.tracking.artifact_root)
        )
        record = open_sweep_record(
            spec,
            self.db,
            self.tracking,
            experiment,
            spec_text=self._spec_text(),
            parent_tags={
                **spec.tags,
                **({"sweep.description": spec.description} if spec.description else {}),
                **environment_tags(str(spec.code_path)),
                "sweep.sweep": spec.name,
                "sweep.command": command_line(),
                "sweep.storage": self.db.display_url,
            },
            parent_params=self._parent_params(),
        )
        if spec.overrides:
            # Set on every launch: a relaunch may override differently (a new --n-trials).
            overrides = redact(" ".join(f"--set {o}" for o in spec.overrides))
            self.tracking.set_tags(record.parent_run_id, {"sweep.overrides": overrides})
        if not record.created:
            self.tracking.end_run(record.parent_run_id, RunStatus.RUNNING, force=True)
        return experiment, record.parent_run_id

    def _end(self, study: optuna.Study, result: SweepResult, state: SweepState) -> SweepResult:
        """Register the best model (if the sweep ran to its end or was stopped) and
        close the parent run; raises RegistrationError when a required model could
        not be registered."""
        spec = self.spec
        registration_failed = False
        # A stop rule's cancel (on_target: cancel) ended the sweep at its goal: register.
        ended = state in (SweepState.FINISHED, SweepState.STOPPED) or bool(result.stopped_by)
        if ended and spec.registry is not None:
            registered = register_best(spec, study, self.tracking, self.registry)
            registration_failed = registered.failed
            result = replace(
                result, model_version=registered.version, registration=registered.message
            )
        self._close_parent(result, result.parent_run_id, state)
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
        context: SweepContext,
        counts: TrialCounts,
        remaining: int | None,
    ) -> tuple[int, bool, SweepState]:
        """Start the workers and keep them busy; returns the trials this launch
        started, whether it was interrupted, and the state the sweep ends in."""
        spec = self.spec
        if remaining == 0 and not coordinator.unfinished():
            return 0, False, SweepState.FINISHED
        stop = StopRules.of(spec).check(coordinator)
        if stop is not None:  # reached before this launch: nothing more to run
            return 0, False, end_sweep(coordinator, stop)
        deadline = time.monotonic() + spec.budget.timeout if spec.budget.timeout else None
        size = spec.parallelism if remaining is None else max(1, min(spec.parallelism, remaining))
        pool: LocalWorkerPool | RayWorkerPool
        if self.local is not None:
            pool = self.local
        else:
            pool = RayWorkerPool(
                context,
                size,
                cpu=spec.resources.cpu,
                gpu=spec.resources.gpu,
                address=self.ray_address,
                num_cpus=spec.ray.num_cpus,
                num_gpus=spec.ray.num_gpus,
            )
        try:
            if isinstance(pool, LocalWorkerPool):
                pool.start(context, size)
            else:
                pool.start()
            dispatcher = Dispatcher(
                spec,
                self.db,
                pool,
                coordinator,
                heartbeat,
                deadline=deadline,
                counts=counts,
                on_trial=self.on_trial,
            )
            return dispatcher.run()
        finally:
            for worker in pool.workers:
                coordinator.unregister_worker(worker.worker_id)
            pool.shutdown()

    # -- the end ------------------------------------------------------------------------

    def _with_best(self, study: optuna.Study, result: SweepResult) -> SweepResult:
        if self.spec.multi_objective:
            return replace(result, pareto_front=front_of(study))
        best = best_own_trial(study)
        if best is None:
            return result
        return replace(
            result,
            best_trial_number=best.number,
            best_value=best.value,
            best_params=dict(best.params),
        )

    def _failed(self, parent_run_id: str, exc: BaseException) -> None:
        """A launch that fails once its sweep exists ends it FAILED (KILLED on Ctrl-C),
        its parent run saying why; `sweep resume` continues it, with a corrected spec if
        need be. The original error is the one raised, whatever happens here."""
        status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        with contextlib.suppress(Exception):
            set_sweep_status(self.db, self.spec.name, status.value)
            reason = redact(summary(exc)) if not isinstance(exc, KeyboardInterrupt) else "Ctrl-C"
            self.tracking.set_tags(parent_run_id, {"sweep.error": reason[:2000]})
            self.tracking.end_run(parent_run_id, status)

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
        if result.pareto_front:
            tags["sweep.pareto_front"] = ",".join(str(t.number) for t in result.pareto_front)
        if result.model_version is not None:
            tags["sweep.model_version"] = result.model_version.uri
        if result.stopped_by:
            tags["sweep.stopped_by"] = result.stopped_by
        self.tracking.set_tags(parent_run_id, tags)
        status = RunStatus.KILLED if state is SweepState.KILLED else RunStatus.FINISHED
        self.tracking.end_run(parent_run_id, status)
        set_sweep_status(self.db, self.spec.name, state.value)

    # -- helpers ------------------------------------------------------------------------

    def _spec_text(self) -> str:
        if self.spec.source_path is None:
            return redact(yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False))
        text = Path(self.spec.source_path).read_text()
        if self.spec.overrides:
            text += "\n# overridden on the command line:\n" + "".join(
                f"#   --set {o}\n" for o in self.spec.overrides
            )
        return redact(text)

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
        if spec.multi_objective:
            params["metrics"] = ",".join(spec.metric_names)
            params["directions"] = ",".join(spec.directions)
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
