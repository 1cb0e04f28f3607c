"""Sampling planned by the controller, for its Ray workers.

Optuna's TPE (``constant_liar``, Optuna's default) samples a trial knowing the params of
the trials still running, so that parallel workers do not all try the same region. A
Ray worker holds its trial's params until the trial ends, so a worker sampling for
itself would not see what the others run. The controller does: at dispatch, the
:class:`Planner` samples the sampler's *relative* params (multivariate TPE's joint
sample over the search space seen so far) on its view of the study, which holds every
finished trial and the planned params of every trial its workers are running. The
worker's :class:`PlannedSampler` returns that plan for the trial and samples any other
param (one the objective asks for outside that space, define-by-run) itself.

The controller plans long trials only (see ``controller._Pace.plans``): trials of a few
milliseconds overlap too briefly for the liar to matter, and their workers sample for
themselves, in parallel, instead of waiting on the controller's one core.

Agents have no controller: they sample for themselves, seeing others' running trials
once their params are written (at their first report, and each second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from sweep.coordination import FIXED_PARAMS_ATTR, Claim
from sweep.storage import StudyStorage


@dataclass(frozen=True)
class Plan:
    """The relative params the controller sampled for one trial, and their space."""

    search_space: dict[str, BaseDistribution]
    params: dict[str, Any]


class Planner:
    """Samples each dispatched trial's relative params on the controller's view of the
    study (``storage``: finished trials, and those its workers run, with their plans)."""

    def __init__(self, study: optuna.Study, storage: StudyStorage) -> None:
        self.study = study
        self.storage = storage

    def plan(self, claim: Claim) -> Plan:
        study, sampler = self.study, self.study.sampler
        trial = claim.frozen_trial()
        # Held as this process's own: the view keeps it, running, with its plan.
        self.storage.adopt(study._study_id, trial, fresh_read=False)
        # Optuna caches the trial list per thread until a tell; the controller tells
        # nothing, so the cache is dropped before each plan.
        if hasattr(study, "_thread_local"):
            study._thread_local.cached_all_trials = None
        space = sampler.infer_relative_search_space(study, trial)
        params = sampler.sample_relative(study, trial, space) if space else {}
        fixed = claim.system_attrs.get(FIXED_PARAMS_ATTR, {})
        params = {k: v for k, v in params.items() if k not in fixed}
        self.storage.set_planned(trial._trial_id, {k: (space[k], v) for k, v in params.items()})
        return Plan({k: space[k] for k in params}, params)

    def ended(self, trials: Sequence[FrozenTrial]) -> None:
        """Trials that came back: they replace their running plans in the view."""
        self.storage.absorb(self.study._study_id, trials, mark_read=False)

    def lost(self, trial_id: int) -> None:
        """A trial that did not come back: read it as the database has it."""
        self.storage.drop_own(trial_id)


class PlannedSampler(BaseSampler):
    """A worker's sampler: the controller's plan for a trial's relative params, the
    wrapped sampler (the spec's) for everything else, and for trials without a plan."""

    def __init__(self, base: BaseSampler) -> None:
        self.base = base
        self._plans: dict[int, Plan] = {}

    def expect(self, trial_id: int, plan: Plan | None) -> None:
        """Use ``plan`` for trial ``trial_id`` (the next one this worker runs)."""
        self._plans.clear()  # one trial at a time
        if plan is not None:
            self._plans[trial_id] = plan

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        plan = self._plans.get(trial._trial_id)
        if plan is not None:
            return dict(plan.search_space)
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        plan = self._plans.get(trial._trial_id)
        if plan is not None:
            return dict(plan.params)
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._plans.pop(trial._trial_id, None)
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
