"""Optuna's TPE, remembering what it works out about each finished trial.

Optuna's :class:`~optuna.samplers.TPESampler` walks every trial of the study on each
sample: it reads each trial's constraints out of its system attrs, its last
intermediate value if it was pruned, and converts its params to their internal
representation. Finished trials never change, so :class:`CachingTPESampler` works each
of these out once per trial and keeps it; the rest (the split into good and bad trials,
the Parzen estimators, the candidates, the random draws) is Optuna's own code and
arithmetic, so a seeded sampler draws exactly the params Optuna's does
(``tests/test_tpe.py`` checks it). In a sweep of 500 short trials this is about a
quarter of TPE's time per sample.

``sampler: tpe`` in a spec builds this class; it takes the same options as Optuna's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe import sampler as _optuna_tpe
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

_COMPLETE, _PRUNED, _RUNNING = TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING

#: Search spaces whose internal representations are kept at once (define-by-run spaces
#: sample params independently, each its own space); the oldest is dropped beyond this.
SPACES_KEPT = 64

#: A finished trial's params in a search space's internal representation, in the
#: space's order, or None when the trial lacks one of its params.
_Row = tuple[float, ...] | None


class CachingTPESampler(TPESampler):
    """:class:`optuna.samplers.TPESampler` with what it derives from each finished trial
    (internal params, infeasibility, pruned score) kept between samples; same options,
    same draws.

    The memory is per study: using the sampler on another study (another storage or
    study id) starts it afresh. Trials still running are read anew each time, as their
    params (the constant liar's) may still change.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._study_key: tuple[BaseStorage, int] | None = None
        self._rows: dict[tuple[tuple[str, BaseDistribution], ...], dict[int, _Row]] = {}
        # trial id -> Optuna's infeasibility score; of pruned trials, their sort key
        self._infeasibility: dict[int, float] = {}
        self._pruned_keys: dict[int, tuple[float, float]] = {}

    def _remember_for(self, study: Study) -> None:
        key = self._study_key
        if key is None or key[0] is not study._storage or key[1] != study._study_id:
            self._study_key = (study._storage, study._study_id)
            self._rows, self._infeasibility, self._pruned_keys = {}, {}, {}

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Study
    ) -> dict[str, np.ndarray]:
        space = tuple(search_space.items())
        rows = self._rows.pop(space, None)
        if rows is None:
            rows = {}
            if len(self._rows) >= SPACES_KEPT:
                del self._rows[next(iter(self._rows))]
        self._rows[space] = rows  # last used, last in line to be dropped
        names = list(search_space)
        kept: list[tuple[float, ...]] = []
        for trial in trials:
            state = trial.state
            if state is _COMPLETE or state is _PRUNED:
                if trial._trial_id in rows:
                    row = rows[trial._trial_id]
                else:
                    row = rows[trial._trial_id] = _internal_row(trial.params, search_space)
            else:
                row = _internal_row(self._get_params(trial, study), search_space)
            if row is not None:
                kept.append(row)
        # Built column by column, as Optuna does, so that the arrays' dtypes match.
        return {name: np.asarray([row[i] for row in kept]) for i, name in enumerate(names)}

    def _split(
        self, study: Study, trials: Sequence[FrozenTrial], n_below: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Optuna's ``_split_trials``, with each finished trial's scores kept."""
        infeasibility, pruned_keys = self._infeasibility, self._pruned_keys
        complete, pruned, running, infeasible = [], [], [], []
        for trial in trials:
            state = trial.state
            if state is _RUNNING:
                # Checked first, as in Optuna: its constraints are not set yet.
                running.append(trial)
                continue
            trial_id = trial._trial_id
            score = infeasibility.get(trial_id)
            if score is None:
                score = infeasibility[trial_id] = _optuna_tpe._get_infeasible_trial_score(trial)
            if score > 0:
                infeasible.append(trial)
            elif state is _COMPLETE:
                complete.append(trial)
            elif state is _PRUNED:
                if trial_id not in pruned_keys:
                    pruned_keys[trial_id] = _optuna_tpe._get_pruned_trial_score(trial, study)
                pruned.append(trial)
            else:
                raise AssertionError(f"TPE was given a trial in state {state.name}")

        below_complete, above_complete = _optuna_tpe._split_complete_trials(
            complete, study, n_below
        )
        n_below = max(0, n_below - len(below_complete))
        below_pruned, above_pruned = _first(
            sorted(pruned, key=lambda t: pruned_keys[t._trial_id]), n_below
        )
        n_below = max(0, n_below - len(below_pruned))
        below_infeasible, above_infeasible = _first(
            sorted(infeasible, key=lambda t: infeasibility[t._trial_id]), n_below
        )
        below = below_complete + below_pruned + below_infeasible
        above = above_complete + above_pruned + above_infeasible + running
        below.sort(key=lambda trial: trial.number)
        above.sort(key=lambda trial: trial.number)
        return below, above

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # Optuna's TPESampler._sample, line for line, but for the split. Both of its uses
        # of what is kept (the split, the internal representation) happen in here.
        self._remember_for(study)
        states = [_COMPLETE, _PRUNED, _RUNNING] if self._constant_liar else [_COMPLETE, _PRUNED]
        use_cache = not self._constant_liar
        trials = study._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        if self._constant_liar:
            trials = [t for t in trials if trial.number != t.number]
        if self._gamma is None:
            if len(study.directions) <= 1:
                self._gamma = _optuna_tpe.default_gamma
            else:
                self._gamma = _optuna_tpe.default_gamma_multiobjective
        n = sum(t.state != _RUNNING for t in trials)  # running trials are not counted
        below_trials, above_trials = self._split(study, trials, self._gamma(n))

        mpe_below = self._build_parzen_estimator(
            study, search_space, below_trials, handle_below=True
        )
        mpe_above = self._build_parzen_estimator(
            study, search_space, above_trials, handle_below=False
        )
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret


def _internal_row(params: dict[str, Any], search_space: dict[str, BaseDistribution]) -> _Row:
    if not search_space.keys() <= params.keys():
        return None
    return tuple(dist.to_internal_repr(params[name]) for name, dist in search_space.items())


def _first(ordered: list[FrozenTrial], n: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    n = min(n, len(ordered))
    return ordered[:n], ordered[n:]
