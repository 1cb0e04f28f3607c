"""The controller: runs a sweep from its spec to a registered challenger.

``launch`` creates or loads the study, opens the sweep's parent run, keeps one trial
running on each Ray worker until the global budget is spent, fails trials whose worker
died, stops cleanly on Ctrl-C, and at the end registers the best trial's model.

The controller creates every trial itself (one row in the study per dispatched trial),
so the budget is exact however many workers run: ``n_trials: 30`` ends with exactly 30
finished trials in the study, counting those finished by earlier launches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.exceptions import RayActorError, RayError, RayTaskError

from sweep.errors import NotFoundError, RegistrationError
from sweep.registry import CHAMPION, ModelRegistry, ModelVersion
from sweep.spec import SweepSpec, load_spec
from sweep.storage import Database, default_home, redact, resolve_storage_url
from sweep.study import (
    ERROR_ATTR,
    KILLED_ATTR,
    RUN_ID_ATTR,
    TrialCounts,
    count_trials,
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
from sweep.tracking._store import now_ms
from sweep.trial import SweepContext, TrialOutcome
from sweep.worker import RayWorkerPool

#: Environment variable naming a shared artifact root (a path every worker can reach).
ARTIFACT_ROOT_ENV = "SWEEP_ARTIFACT_ROOT"
#: Seconds to wait for killed workers to go away on Ctrl-C before marking their trials.
KILL_GRACE_S = 10.0

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
            # A relaunch continues the same parent run.
            self.tracking.end_run(parent_run_id, RunStatus.RUNNING, force=True)
            set_sweep_status(db, spec.name, "RUNNING")

        counts = count_trials(study)
        n_trials = spec.budget.n_trials
        remaining = None if n_trials is None else max(0, n_trials - counts.finished)
        if self.on_start:
            self.on_start(db.display_url, counts, remaining)

        context = SweepContext(
            spec=spec,
            storage_url=db.url,
            experiment_id=experiment.experiment_id,
            parent_run_id=parent_run_id,
            command=command_line(),
        )
        interrupted = False
        launched = 0
        if remaining is None or remaining > 0:
            deadline = time.monotonic() + spec.budget.timeout if spec.budget.timeout else None
            pool = RayWorkerPool(
                context,
                spec.parallelism if remaining is None else min(spec.parallelism, remaining),
                cpu=spec.resources.cpu,
                gpu=spec.resources.gpu,
                address=self.ray_address,
                num_cpus=spec.ray.num_cpus,
                num_gpus=spec.ray.num_gpus,
            )
            try:
                pool.start()
                launched, interrupted = self._dispatch(
                    pool, storage, study_id, remaining, deadline, parent_run_id, counts
                )
            except BaseException as exc:
                stopped = isinstance(exc, KeyboardInterrupt)
                status = RunStatus.KILLED if stopped else RunStatus.FAILED
                set_sweep_status(db, spec.name, status.value)
                self.tracking.end_running_children(parent_run_id, RunStatus.KILLED)
                self.tracking.end_run(parent_run_id, status)
                raise
            finally:
                pool.shutdown()

        counts = count_trials(study)
        result = SweepResult(
            name=spec.name,
            storage=db.display_url,
            experiment=experiment.name,
            parent_run_id=parent_run_id,
            counts=counts,
            trials_this_launch=launched,
            elapsed_s=time.monotonic() - started,
            interrupted=interrupted,
        )
        result = self._with_best(study, result)
        registration_failed = False
        if not interrupted and spec.registry is not None:
            version, message, registration_failed = self._register_best(study)
            result = replace(result, model_version=version, registration=message)
        self._close_parent(result, parent_run_id)
        if registration_failed and spec.registry is not None and spec.registry.required:
            error = RegistrationError(
                f"{result.registration}; the spec sets registry.required: true"
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(
        self,
        pool: RayWorkerPool,
        storage: optuna.storages.BaseStorage,
        study_id: int,
        remaining: int | None,
        deadline: float | None,
        parent_run_id: str,
        counts: TrialCounts,
    ) -> tuple[int, bool]:
        """Keep every worker busy until the budget or the timeout is spent.

        ``counts`` (the study's at the start) is kept up to date from the outcomes, so
        progress reports cost no query."""
        in_flight: dict[Any, tuple[Any, int]] = {}
        idle = list(pool.workers)
        dispatched = 0
        try:
            while True:
                while (
                    idle
                    and (remaining is None or dispatched < remaining)
                    and (deadline is None or time.monotonic() < deadline)
                ):
                    worker = idle.pop()
                    trial_id = storage.create_new_trial(study_id)
                    in_flight[worker.run.remote(trial_id)] = (worker, trial_id)
                    dispatched += 1
                if not in_flight:
                    return dispatched, False
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in done:
                    worker, trial_id = in_flight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except RayActorError as exc:
                        outcome = self._fail_lost_trial(
                            storage, trial_id, f"worker died during the trial: {_first_line(exc)}"
                        )
                        worker = pool.replace(worker)
                    except RayTaskError as exc:
                        outcome = self._fail_lost_trial(
                            storage, trial_id, f"trial execution failed: {_task_error(exc)}"
                        )
                    idle.append(worker)
                    counts = counts.add(outcome.state)
                    if self.on_trial:
                        self.on_trial(outcome, counts)
        except KeyboardInterrupt:
            self._stop(pool, storage, in_flight, parent_run_id)
            return dispatched, True

    def _fail_lost_trial(
        self, storage: optuna.storages.BaseStorage, trial_id: int, reason: str
    ) -> TrialOutcome:
        """Record a trial whose worker could not report it: trial FAIL, run FAILED."""
        number = storage.get_trial_number_from_id(trial_id)
        run_id = storage.get_trial_system_attrs(trial_id).get(RUN_ID_ATTR, "")
        try:
            storage.set_trial_system_attr(trial_id, ERROR_ATTR, reason[:2000])
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
        if run_id:
            self.tracking.set_tags(run_id, {"sweep.state": "FAIL", "sweep.error": reason})
            self.tracking.end_run(run_id, RunStatus.FAILED)
        return TrialOutcome(trial_id, number, "FAIL", None, run_id, 0.0, reason)

    def _stop(
        self,
        pool: RayWorkerPool,
        storage: optuna.storages.BaseStorage,
        in_flight: dict[Any, tuple[Any, int]],
        parent_run_id: str,
    ) -> None:
        """Ctrl-C: kill the workers, then end their trials (FAIL, marked killed) and runs."""
        pool.kill_all()
        if in_flight:
            ray.wait(list(in_flight), num_returns=len(in_flight), timeout=KILL_GRACE_S)
        for _worker, trial_id in in_flight.values():
            try:
                # The mark first: once the trial is FAIL it can no longer be changed.
                storage.set_trial_system_attr(trial_id, KILLED_ATTR, True)
                storage.set_trial_system_attr(trial_id, ERROR_ATTR, "killed: the sweep was stopped")
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # it finished before the kill reached it
        self.tracking.end_running_children(parent_run_id, RunStatus.KILLED)

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
        run_id = best.system_attrs.get(RUN_ID_ATTR)
        artifacts = self.tracking.list_artifacts(run_id) if run_id else []
        models = [a for a in artifacts if a.kind == "model"]
        if not models:
            return (
                None,
                (
                    f"best trial {best.number} logged no model, so none was registered; "
                    "call sweep.log_model(model) in the objective"
                ),
                True,
            )
        name, alias = registry_spec.model_name, registry_spec.alias
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
            str(Path(run.artifact_uri) / models[0].path),
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

    def _close_parent(self, result: SweepResult, parent_run_id: str) -> None:
        if result.best_value is not None:
            best = MetricPoint(f"best_{self.spec.metric.name}", result.best_value, 0, now_ms())
            self.tracking.log_metrics(parent_run_id, [best])
        tags = {
            "sweep.trials.complete": result.counts.complete,
            "sweep.trials.pruned": result.counts.pruned,
            "sweep.trials.failed": result.counts.failed,
        }
        if result.best_trial_number is not None:
            tags["sweep.best_trial"] = result.best_trial_number
        if result.model_version is not None:
            tags["sweep.model_version"] = result.model_version.uri
        self.tracking.set_tags(parent_run_id, tags)
        status = RunStatus.KILLED if result.interrupted else RunStatus.FINISHED
        self.tracking.end_run(parent_run_id, status)
        set_sweep_status(self.db, self.spec.name, status.value)

    # -- helpers ------------------------------------------------------------------------

    def _artifact_root(self) -> str:
        root = self.spec.tracking.artifact_root or os.environ.get(ARTIFACT_ROOT_ENV)
        if root:
            return str(Path(root).expanduser().resolve())
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _task_error(exc: RayTaskError) -> str:
    cause = exc.cause if isinstance(exc, RayError) and getattr(exc, "cause", None) else exc
    return f"{type(cause).__name__}: {_first_line(cause)}"
