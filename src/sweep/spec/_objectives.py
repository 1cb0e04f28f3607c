"""Several objectives: ``metrics: [...]`` (or ``metric: [...]``), and what they rule out.

A spec's objectives are ``SweepSpec.metrics``, in order; ``SweepSpec.metric`` is the
first (the primary, with the fields a single-objective spec has). Either key may be
written: ``metric: {name, direction}`` (one objective), ``metric: [...]`` or
``metrics: [...]`` (one or more). :func:`objectives_before` fills in the key not
written, and :func:`written_form` tells the error converter which key path the
author wrote, so that errors name it (``metric.1.direction``) and are not repeated.

Optuna prunes and reports only single-objective studies (``Trial.report`` and
``Trial.should_prune`` raise otherwise), CmaEsSampler samples only those, and a
multi-objective study has a Pareto front rather than one best trial; so with several
objectives the pruner must be ``none`` (the default there), ``metric.target``,
``budget.target``, ``budget.patience`` and ``warm_start`` are refused, and a
``registry`` needs a ``select`` rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sweep.spec._common import _spec_error
from sweep.spec._optuna import SINGLE_OBJECTIVE_SAMPLERS

if TYPE_CHECKING:
    from sweep.spec._model import SweepSpec


def objectives_before(data: dict[str, Any]) -> dict[str, Any]:
    """The raw spec with both ``metric`` (the first objective) and ``metrics`` (all)."""
    data = dict(data)
    metric, metrics = data.get("metric"), data.get("metrics")
    if isinstance(metric, list):
        if "metrics" in data:
            raise _spec_error(
                "metric is a list and metrics is given too; write the objectives once, as "
                "metric: [...] or metrics: [...]",
                "metrics",
            )
        metrics = data["metrics"] = data.pop("metric")
    elif "metrics" in data and "metric" in data:
        first = metrics[0] if isinstance(metrics, list) and metrics else None
        if metric != first:  # a dumped spec holds both, metric being the first
            raise _spec_error(
                "metric and metrics are both given and metric is not metrics' first entry; "
                "write the objectives once, as metric: [...] or metrics: [...]",
                "metrics",
            )
    elif "metric" in data:
        data["metrics"] = [metric]
    if "metric" not in data and isinstance(metrics, list) and metrics:
        data["metric"] = metrics[0]
    if isinstance(metrics, list) and len(metrics) > 1 and data.get("pruner") is None:
        data["pruner"] = "none"  # Optuna prunes no multi-objective study
    return data


def written_form(data: Mapping[str, Any]) -> Callable[[str | None], str | None]:
    """How an error's key path reads in the spec as written: the key the author did
    not write (filled in by :func:`objectives_before`) is renamed or its error, a
    duplicate, dropped (``""``)."""
    as_list = isinstance(data.get("metric"), list)
    has_metric = "metric" in data and not as_list
    has_metrics = "metrics" in data

    def under(path: str, key: str) -> bool:
        return path == key or path.startswith(key + ".")

    def rewrite(path: str | None) -> str | None:
        if path is None:
            return None
        if under(path, "metric") and not has_metric and (as_list or has_metrics):
            return ""  # filled in from metrics[0]: its error is metrics.0's
        if under(path, "metrics"):
            if as_list and not has_metrics:
                return "metric" + path[len("metrics") :]
            if not has_metrics or (has_metric and under(path, "metrics.0")):
                return ""  # filled in from metric: its error is metric's
        return path

    return rewrite


def check_objectives(spec: SweepSpec) -> None:
    """Refuse what several objectives rule out, and registry.select rules that do not fit."""
    seen: dict[str, int] = {}
    for index, metric in enumerate(spec.metrics):
        if metric.name in seen:
            raise _spec_error(
                f"metric {metric.name!r} is listed twice (entries {seen[metric.name]} and "
                f"{index}); each objective needs its own name",
                f"metrics.{index}.name",
            )
        seen[metric.name] = index
    names = spec.metric_names
    if spec.multi_objective:
        for index, metric in enumerate(spec.metrics):
            if metric.target is not None:
                raise _spec_error(
                    "target stops a sweep when its one metric reaches a value; a sweep with "
                    "several objectives has no single best value, so remove target",
                    f"metrics.{index}.target",
                )
        for key in ("target", "patience"):
            if getattr(spec.budget, key) is not None:
                raise _spec_error(
                    f"budget.{key} compares each trial with one best value; a sweep with "
                    "several objectives has a Pareto front instead, so remove it (end the "
                    "sweep with n_trials or timeout)",
                    f"budget.{key}",
                )
        if spec.warm_start is not None:
            raise _spec_error(
                "warm_start copies single-objective trials and is not supported with "
                "several objectives; remove it",
                "warm_start",
            )
        if spec.pruner.name != "none":
            raise _spec_error(
                f"pruner {spec.pruner.name} cannot run with several objectives: Optuna prunes "
                "only single-objective studies (Trial.report and should_prune refuse the "
                "others); set pruner: none, or leave pruner out",
                "pruner",
            )
        if spec.sampler.name in SINGLE_OBJECTIVE_SAMPLERS:
            raise _spec_error(
                f"sampler {spec.sampler.name} optimizes a single objective; with several use "
                "tpe, nsgaii, nsgaiii, gp, random, qmc or grid",
                "sampler",
            )
    _check_select(spec, names)


def _check_select(spec: SweepSpec, names: list[str]) -> None:
    registry = spec.registry
    if registry is None:
        return
    select = registry.select
    if select is None:
        if spec.multi_objective:
            raise _spec_error(
                f"with several objectives ({', '.join(names)}) no trial is best on all of "
                "them; say which Pareto-front trial's model to register: registry.select: "
                "{metric: NAME} (the front's best on NAME) or {weights: {NAME: number, ...}} "
                "(the front's highest weighted sum)",
                "registry",
            )
        return
    if select.metric is not None and select.metric not in names:
        raise _spec_error(
            f"select.metric {select.metric!r} is not one of the spec's metrics "
            f"({', '.join(names)})",
            "registry.select.metric",
        )
    if select.weights is not None:
        if not spec.multi_objective:
            raise _spec_error(
                "select.weights combines several objectives; this spec has one, whose best "
                "trial is registered: remove select",
                "registry.select.weights",
            )
        for name in select.weights:
            if name not in names:
                raise _spec_error(
                    f"select.weights names {name!r}, which is not one of the spec's metrics "
                    f"({', '.join(names)})",
                    f"registry.select.weights.{name}",
                )
        for gate in ("threshold", "beat_champion"):
            if getattr(registry, gate) not in (None, False):
                raise _spec_error(
                    f"{gate} compares one metric's value, and select.weights registers by a "
                    "weighted sum; use select: {metric: NAME} (the gate then applies to NAME) "
                    f"or remove {gate}",
                    f"registry.{gate}",
                )
