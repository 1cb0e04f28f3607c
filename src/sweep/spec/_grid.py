"""Grid search: every combination of the declared parameters' values, each run once.

Optuna's ``GridSampler`` and ``BruteForceSampler`` pick the next combination from the
trials each worker has seen, so two workers that sample at once pick the same one, and
both call ``Study.stop()`` when the grid is done, which raises outside
``Study.optimize`` (sweep's workers run trials by id). Here the grid is instead laid
out before any trial runs: :func:`grid_points` enumerates it from the spec, the study's
opener enqueues each point as a WAITING trial with Optuna's ``fixed_params``
(:func:`sweep.study.enqueue_grid`), and the claim path hands out WAITING trials first,
one claim per trial under the sweep's lock, so each point runs exactly once whatever
the number of workers and agents. The budget defaults to the grid's size.

:class:`GridSampler` is the sampler such a sweep runs with. It is never asked for a
grid parameter of an enqueued trial (Optuna takes fixed params as they are); a
parameter the objective asks for outside the spec (define-by-run) is drawn at random;
a trial that carries no ``fixed_params`` at all means the grid was not enqueued, and
is an error rather than a silent random draw.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from sweep.spec._common import NotGriddable

#: Optuna's trial system attribute holding an enqueued trial's params.
FIXED_PARAMS = "fixed_params"

#: Grids larger than this are refused: each point is a row written before the sweep starts.
MAX_GRID_POINTS = 100_000


def grid_axes(parameters: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Each declared parameter's grid values, in the order written.

    Raises :class:`NotGriddable` (its message starts with the parameter's name) for a
    parameter with infinitely many values.
    """
    axes: dict[str, list[Any]] = {}
    for name, param in parameters.items():
        try:
            axes[name] = param.grid_values()
        except NotGriddable as exc:
            raise NotGriddable(f"{name}: {exc}") from None
    return axes


def grid_size(parameters: Mapping[str, Any]) -> int:
    """How many combinations :func:`grid_points` yields."""
    size = 1
    for values in grid_axes(parameters).values():
        size *= len(values)
    return size


def grid_points(parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the parameters' grid values, as the values the objective
    gets, the last parameter varying fastest (W&B's and ``itertools.product``'s order)."""
    axes = grid_axes(parameters)
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def stored_point(parameters: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """A grid point as Optuna stores it (``fixed_params``): lists and mappings as their
    JSON text, quantile types as their quantile (each parameter's ``to_stored``)."""
    return {name: parameters[name].to_stored(value) for name, value in point.items()}


class GridSampler(optuna.samplers.BaseSampler):
    """The sampler of a grid sweep: enqueued trials carry their point; see the module."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if FIXED_PARAMS not in trial.system_attrs:
            raise RuntimeError(
                f"trial {trial.number} of a grid sweep carries no grid point: "
                "a grid sweep's points are enqueued when its study is opened "
                "(sweep.study.enqueue_grid); launch the sweep with `sweep launch`"
            )
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()


def point_key(stored: Mapping[str, Any], names: Iterable[str]) -> str:
    """A hashable key of the grid params ``names`` among stored params (a retry's also
    hold define-by-run ones): equal for the same point, floats compared to 12
    significant digits (a float step's multiples carry rounding noise)."""

    def canonical(value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{float(value):.12g}"
        return value

    return json.dumps({k: canonical(stored.get(k)) for k in names}, sort_keys=True)
