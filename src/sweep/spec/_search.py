"""Where a sweep's search starts and who hears of it: configs to run first
(``enqueue``), another sweep's trials as the sampler's history (``warm_start``), and
hooks called as trials and the sweep end (``callbacks``).

Only the checks a spec can make on its own live here; running them is the study's
(:func:`sweep.study.open_study`) and the controller's (:mod:`sweep.callbacks`) work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from sweep.spec._base import _SpecModel
from sweep.spec._common import (
    MAX_NAME_LENGTH,
    NotGriddable,
    _did_you_mean,
    _show,
    _yaml_type,
)

if TYPE_CHECKING:
    from sweep.spec._model import SweepSpec


class WarmStartSpec(_SpecModel):
    """Seed the sampler with the finished trials of another sweep in the same store."""

    from_sweep: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="the name of a sweep in the same store whose complete trials seed this one",
    )


def is_function_ref(value: str) -> bool:
    """Whether ``value`` has the form ``module.path:function`` (Python identifiers)."""
    module, sep, function = value.partition(":")
    return (
        bool(sep)
        and function.isidentifier()
        and all(part.isidentifier() for part in module.split("."))
    )


def enqueue_problems(
    enqueue: list[dict[str, Any]], parameters: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    """``(key path, message)`` for each enqueued value a declared parameter cannot take.

    A key the spec does not declare is a define-by-run parameter (Optuna's
    ``enqueue_trial`` allows them) and is passed on as it is, unless it looks like a
    misspelt declared one."""
    for index, config in enumerate(enqueue):
        if not config:
            yield f"enqueue.{index}", "an enqueued config needs at least one parameter value"
        for name, value in config.items():
            key = f"enqueue.{index}.{name}"
            param = parameters.get(name)
            if param is None:
                hint = _did_you_mean(name, parameters)
                if hint:
                    yield key, f"{name!r} is not a declared parameter{hint}"
                continue
            reason = _why_not_in(param, value)
            if reason:
                yield key, reason


def _why_not_in(param: Any, value: Any) -> str | None:
    """Why ``value`` is not a value of ``param`` (a declared parameter), or None."""
    distribution = param.distribution()
    try:
        stored = param.to_stored(value)
    except NotGriddable:
        return (
            f"a {param.type} parameter cannot be enqueued (Optuna stores a quantile for it, "
            "which sweep does not invert); leave it out of the config and it is sampled"
        )
    except Exception:
        stored = value
    try:
        inside = distribution._contains(distribution.to_internal_repr(stored))
    except Exception:  # a parameter's mapping raises what its type raises (StopIteration too)
        inside = False
    if inside and not (isinstance(value, bool) and param.type in ("float", "int")):
        return None
    allowed = getattr(param, "choices", None)
    if allowed is not None:
        return f"{_show(value)} is not one of the choices {_show(list(allowed))}"
    low, high = getattr(param, "low", None), getattr(param, "high", None)
    if low is not None and high is not None and isinstance(value, (int, float)):
        off_step = " (or off its step)" if getattr(param, "step", None) not in (None, 1) else ""
        return f"{_show(value)} is outside [{low:g}, {high:g}]{off_step}"
    return f"{_show(value)} ({_yaml_type(value)}) is not a value of this {param.type} parameter"


def target_in_budget(data: dict[str, Any]) -> dict[str, Any]:
    """Raw spec data with ``metric.target`` (W&B's key) as ``budget.target`` when that
    is not set."""
    metric, budget = data.get("metric"), data.get("budget")
    target = metric.get("target") if isinstance(metric, dict) else None
    if target is None or not isinstance(budget, dict) or budget.get("target") is not None:
        return data
    return {**data, "budget": {**budget, "target": target}}


def search_problems(spec: SweepSpec) -> Iterator[tuple[str, str]]:
    """``(key path, message)`` for what ``enqueue``, ``warm_start`` and the target
    cannot be, given the rest of ``spec``."""
    target = spec.metric.target
    if target is not None and target != spec.budget.target:
        yield (
            "metric.target",
            f"metric.target ({target:g}) and budget.target ({spec.budget.target:g}) disagree; "
            "budget.target is the key (metric.target is W&B's name for it): keep one",
        )
    if spec.enqueue and spec.sampler.is_grid:
        yield (
            "enqueue",
            "sampler grid runs every combination already; drop enqueue or use another sampler",
        )
    yield from enqueue_problems(spec.enqueue, spec.parameters)
    n_trials = spec.budget.n_trials
    if n_trials is not None and len(spec.enqueue) > n_trials:
        yield (
            "enqueue",
            f"{len(spec.enqueue)} enqueued configs do not fit budget.n_trials {n_trials} (each "
            "one is a trial of the budget); enqueue fewer or raise n_trials",
        )
    if spec.warm_start is not None and spec.warm_start.from_sweep == spec.name:
        yield (
            "warm_start.from_sweep",
            "a sweep cannot warm-start from itself (a relaunch continues it anyway); name "
            "another sweep",
        )
