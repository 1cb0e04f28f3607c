"""The Pareto front of a sweep with several objectives, and the rule that picks the
trial whose model is registered.

The front is Optuna's (``Study.best_trials``): the complete trials that no other
complete trial beats on every objective. ``sweep status``, ``sweep runs --pareto`` and
:func:`pareto_front` show the same trials. Which one is registered is the spec's
``registry.select``: ``{metric: NAME}`` takes the front's best on NAME; ``{weights:
{NAME: w, ...}}`` the front's highest sum of ``w * value`` over the named metrics
(others weigh 0); ties go to the lowest trial number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep.spec import SelectSpec


@dataclass(frozen=True)
class FrontTrial:
    """A trial on the Pareto front: its number, each objective's value by metric
    name, its run and its params."""

    number: int
    values: dict[str, float]
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def metric_names(study: optuna.Study) -> list[str]:
    """The study's objectives' names: those the sweep stored, else objective_0, ..."""
    names = study.metric_names
    return list(names) if names else [f"objective_{i}" for i in range(len(study.directions))]


def front_of(study: optuna.Study) -> list[FrontTrial]:
    """The study's Pareto front (for one objective: its best trials), by trial number."""
    from sweep.study import RUN_ID_ATTR

    names = metric_names(study)
    return [
        FrontTrial(
            number=trial.number,
            values=dict(zip(names, trial.values, strict=True)),
            run_id=trial.system_attrs.get(RUN_ID_ATTR),
            params=dict(trial.params),
        )
        for trial in sorted(study.best_trials, key=lambda t: t.number)
    ]


def pareto_front(name: str, *, storage: str | None = None) -> list[FrontTrial]:
    """The Pareto front of sweep ``name``: the trials ``sweep status NAME`` and
    ``sweep runs NAME --pareto`` show. Raises NotFoundError for an unknown sweep."""
    from sweep.storage import Database, resolve_storage_url
    from sweep.study import get_sweep_record, sweep_not_found

    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        record = get_sweep_record(db, name)
        if record is None:
            raise sweep_not_found(name, db.display_url)
        try:
            study = optuna.load_study(study_name=record.study_name, storage=db.optuna_storage())
        except KeyError:  # Optuna's "no such study": deleted behind the sweep's back
            return []
        return front_of(study)
    finally:
        db.dispose()


def select_trial(
    front: Sequence[FrozenTrial], names: Sequence[str], directions: Sequence[str], rule: SelectSpec
) -> tuple[FrozenTrial, str]:
    """The front trial ``rule`` picks, and the rule said in words. ``names`` and
    ``directions`` are the objectives', in the order of the trials' values."""
    index = {name: i for i, name in enumerate(names)}
    if rule.metric is not None:
        i = index[rule.metric]
        sign = 1.0 if directions[i] == "maximize" else -1.0
        chosen = max(front, key=lambda t: (sign * t.values[i], -t.number))
        best = "highest" if sign > 0 else "lowest"
        return chosen, f"the Pareto front's {best} {rule.metric}"
    weights = rule.weights or {}

    def score(trial: FrozenTrial) -> float:
        return sum(w * trial.values[index[name]] for name, w in weights.items())

    chosen = max(front, key=lambda t: (score(t), -t.number))
    terms = " + ".join(f"{w:g}*{name}" for name, w in weights.items())
    return chosen, f"the Pareto front's highest {terms} ({score(chosen):.6g})"
