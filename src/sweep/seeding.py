"""What a sweep's study starts with besides its sampler: the spec's ``enqueue`` configs,
run first and each once, and ``warm_start``'s history from another sweep.

**Enqueued configs** become WAITING trials with Optuna's ``fixed_params`` (what
``study.enqueue_trial`` writes) when the study is opened, as a grid's points do (see
:func:`sweep.study.enqueue_grid`): claims hand out WAITING trials first, one claim per
trial under the sweep's lock, so each config runs once whatever the number of workers
and agents, before any sampled trial, and uses one trial of the budget. Each is marked
with its config (``sweep:enqueued``), so a relaunch enqueues only configs no trial
holds yet (one killed by a stop gives its config back, as it used no budget).

**Warm starts** copy the source sweep's complete trials into the study as COMPLETE
trials (Optuna's ``create_trial`` + ``add_trials``) with their params and value, marked
``sweep:warm_start``: every sampler reads them as it reads the study. Params the spec
declares are kept where the source's value lies in the new space (and mapped to the
new distribution); params it does not declare are dropped, unless it declares none (a
define-by-run objective), when they are kept as the source had them. The copies are
history, not this sweep's trials: they use no budget, are counted apart (``seeded``),
are never its best trial (so never registered) and do not count for the stop rules.
They are copied once, by the launch that creates the study.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from sweep.spec import SweepSpec
from sweep.storage import Database
from sweep.study import (
    ENQUEUED_ATTR,
    KILLED_ATTR,
    SUPERSEDED_ATTR,
    WARM_START_ATTR,
    get_sweep_record,
    insert_waiting,
)


def enqueue_configs(study: optuna.Study, spec: SweepSpec, db: Database) -> int:
    """Enqueue each of the spec's ``enqueue`` configs that no trial of ``study`` holds
    yet, while the budget has room, in one transaction; return how many."""
    trials = study.get_trials(deepcopy=False)
    held = {
        t.system_attrs[ENQUEUED_ATTR]
        for t in trials
        if ENQUEUED_ATTR in t.system_attrs and not t.system_attrs.get(KILLED_ATTR)
    }
    uncounted = (KILLED_ATTR, SUPERSEDED_ATTR, WARM_START_ATTR)
    used = sum(1 for t in trials if not any(t.system_attrs.get(k) for k in uncounted))
    n_trials = spec.budget.n_trials
    room = None if n_trials is None else max(0, n_trials - used)
    missing: list[dict[str, Any]] = []
    for config in spec.enqueue:
        key = json.dumps(config, sort_keys=True)
        if key in held or (room is not None and len(missing) >= room):
            continue
        held.add(key)
        stored = {
            name: spec.parameters[name].to_stored(value) if name in spec.parameters else value
            for name, value in config.items()
        }
        missing.append({"fixed_params": stored, ENQUEUED_ATTR: key})
    if missing:
        db.retrying(lambda: insert_waiting(db, study._study_id, missing), "enqueueing configs")
    return len(missing)


def warm_start_trials(
    spec: SweepSpec, db: Database, storage: optuna.storages.BaseStorage
) -> list[FrozenTrial]:
    """The source sweep's complete trials as this sweep's history (not yet added).

    Raises :class:`~sweep.errors.SpecError` at ``warm_start.from_sweep`` when the store
    holds no such sweep, or it optimizes another metric or direction."""
    assert spec.warm_start is not None
    source = spec.warm_start.from_sweep
    key = "warm_start.from_sweep"
    record = get_sweep_record(db, source)
    if record is None:
        raise spec.error_at(
            key,
            f"no sweep called {source!r} in {db.display_url} to warm-start from; "
            "`sweep status` lists the sweeps there (pass --storage to look in another store)",
        )
    try:
        study = optuna.load_study(study_name=record.study_name, storage=storage)
    except KeyError:
        raise spec.error_at(key, f"sweep {source!r} has no study left (it was deleted)") from None
    directions = [d.name.lower() for d in study.directions]
    if directions != [spec.metric.direction]:
        raise spec.error_at(
            key,
            f"sweep {source!r} optimizes {' and '.join(directions)}, this one "
            f"{spec.metric.direction}s {spec.metric.name}: its values would mislead the "
            "sampler; warm-start from a sweep of the same metric",
        )
    space = spec.distributions()
    seeds = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params, distributions = _in_space(trial, space)
        if params:
            seeds.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    value=trial.value,
                    system_attrs={WARM_START_ATTR: {"sweep": source, "trial": trial.number}},
                )
            )
    return seeds


def _in_space(
    trial: FrozenTrial, space: dict[str, BaseDistribution]
) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """The params of ``trial`` that ``space`` holds, with its distributions (all of
    them, with their own, when ``space`` is empty: a define-by-run objective)."""
    if not space:
        return dict(trial.params), dict(trial.distributions)
    params: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    for name, value in trial.params.items():
        distribution = space.get(name)
        if distribution is None:
            continue
        try:
            inside = distribution._contains(distribution.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False
        if inside:
            params[name], distributions[name] = value, distribution
    return params, distributions


def add_warm_start(study: optuna.Study, seeds: list[FrozenTrial]) -> int:
    """Add ``seeds`` to ``study`` unless a launch before did; return how many."""
    if not seeds or _seeded(study):
        return 0
    study.add_trials(seeds)
    return len(seeds)


def _seeded(study: optuna.Study) -> bool:
    return any(WARM_START_ATTR in t.system_attrs for t in study.get_trials(deepcopy=False))
