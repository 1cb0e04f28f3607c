"""The end of a sweep: the best trial's model becomes a new model version with the
spec's alias (``challenger``), if the spec's gates let it through.

With several objectives the trial is the Pareto-front trial that ``registry.select``
picks (:func:`sweep.pareto.select_trial`), and the gates apply to ``select.metric``.

Gates: ``registry.threshold`` (the best value must reach it) and
``registry.beat_champion`` (it must beat the version at ``@champion``). A closed gate
is a decision, not a failure; a best trial without a model is a failure, which fails
the launch when ``registry.required`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from sweep.errors import NotFoundError
from sweep.pareto import select_trial
from sweep.registry import CHAMPION, ModelRegistry, ModelVersion
from sweep.spec import MetricSpec, RegistrySpec, SweepSpec
from sweep.study import RUN_ID_ATTR, best_own_trial
from sweep.tracking import TrackingStore
from sweep.tracking.artifacts import artifact_location


@dataclass(frozen=True)
class Registration:
    """What the end of a sweep registered (``version``), what decided (``message``),
    and whether registering failed (a closed gate is not a failure)."""

    version: ModelVersion | None
    message: str
    failed: bool = False


def register_best(
    spec: SweepSpec, study: optuna.Study, tracking: TrackingStore, registry: ModelRegistry
) -> Registration:
    """Register the best trial's model and point the spec's alias at it, if the gates
    let it through."""
    registry_spec = spec.registry
    assert registry_spec is not None
    # The metric the version records and the gates compare (None: a weighted rule).
    metric: MetricSpec | None = spec.metric
    chosen_by = ""
    if spec.multi_objective:
        front = study.best_trials
        if not front:
            return Registration(None, "no trial completed, so no model was registered", True)
        select = registry_spec.select
        assert select is not None  # the spec refuses several objectives without a rule
        best, rule = select_trial(front, spec.metric_names, spec.directions, select)
        chosen_by = f", chosen by registry.select: {rule}"
        metric = next((m for m in spec.metrics if m.name == select.metric), None)
    else:
        own = best_own_trial(study)  # never a trial copied by warm_start: it has no model
        if own is None:
            return Registration(None, "no trial completed, so no model was registered", True)
        best = own
    run_id: str | None = best.system_attrs.get(RUN_ID_ATTR)
    artifacts = tracking.list_artifacts(run_id) if run_id else []
    models = [a for a in artifacts if a.kind == "model"]
    if run_id is None or not models:
        message = (
            f"best trial {best.number} logged no model, so none was registered; "
            "call sweep.log_model(model) in the objective"
        )
        return Registration(None, message, True)
    name, alias = registry_spec.model_name, registry_spec.alias
    values = dict(zip(spec.metric_names, best.values, strict=True))
    value = values[metric.name] if metric is not None else None
    if metric is not None and value is not None:
        closed = closed_gate(spec, registry, value, metric)
        if closed:
            return Registration(None, closed)
    current = version_at(registry, name, alias)
    if current is not None and current.run_id == run_id:
        message = f"{name} version {current.version} (@{alias}) is already this best trial"
        return Registration(current, message)
    registered = _version_of_run(registry, name, run_id)
    if registered is not None:
        # A relaunch that ran nothing new (or whose alias was moved since, by a promote):
        # the best trial has its version already, and aliases stay where people put them.
        message = (
            f"{name} version {registered.version} is already best trial {best.number}; "
            "nothing new was registered"
        )
        return Registration(registered, message)
    reason = f"best trial {best.number} of sweep {spec.name}{chosen_by}"
    version = registry.create_model_version(
        name,
        artifact_location(tracking.get_run(run_id).artifact_uri, models[0].path),
        run_id=run_id,
        metric_name=metric.name if metric is not None else None,
        metric_value=value,
        sweep_name=spec.name,
        trial_number=best.number,
        tags={**values, "trial_number": best.number},
        reason=reason,
    )
    registry.set_alias(name, alias, version.version, reason=reason)
    version = registry.get_version(name, version.version)
    gates = _gate_names(registry_spec)
    passed = f" (passed {gates})" if gates else ""
    return Registration(
        version, f"registered {name} version {version.version} as @{alias}{passed}{chosen_by}"
    )


def closed_gate(
    spec: SweepSpec, registry: ModelRegistry, value: float, metric_spec: MetricSpec | None = None
) -> str | None:
    """Why the spec's gates refuse ``value`` of ``metric_spec`` (default: the spec's
    metric), or None when they let it through."""
    registry_spec = spec.registry
    assert registry_spec is not None
    metric_spec = metric_spec or spec.metric
    maximize = metric_spec.direction == "maximize"

    def better(a: float, b: float, strict: bool) -> bool:
        if strict:
            return a > b if maximize else a < b
        return a >= b if maximize else a <= b

    metric, threshold = metric_spec.name, registry_spec.threshold
    if threshold is not None and not better(value, threshold, strict=False):
        return (
            f"not registered: the best {metric} {value:.6g} does not pass "
            f"registry.threshold {threshold:g} (rule: threshold)"
        )
    if registry_spec.beat_champion:
        champion = version_at(registry, registry_spec.model_name, CHAMPION)
        if (
            champion is not None
            and champion.metric_value is not None
            and not better(value, champion.metric_value, strict=True)
        ):
            return (
                f"not registered: the best {metric} {value:.6g} does not beat @champion "
                f"version {champion.version} ({champion.metric_value:.6g}) (rule: beat_champion)"
            )
    return None


def _gate_names(registry_spec: RegistrySpec) -> str:
    names = ["threshold"] if registry_spec.threshold is not None else []
    if registry_spec.beat_champion:
        names.append("beat_champion")
    return " and ".join(names)


def _version_of_run(registry: ModelRegistry, model_name: str, run_id: str) -> ModelVersion | None:
    """The version of ``model_name`` registered from run ``run_id``, if any."""
    try:
        versions = registry.list_versions(model_name)
    except NotFoundError:
        return None
    return next((v for v in versions if v.run_id == run_id), None)


def version_at(registry: ModelRegistry, model_name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None."""
    try:
        return registry.get_by_alias(model_name, alias)
    except NotFoundError:
        return None
