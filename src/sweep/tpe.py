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

from array import array
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

#: What :class:`_SpaceRows` knows of a trial: nothing yet, its row, that it has none.
_UNKNOWN, _ROW, _NO_ROW = 0, 1, 2

#: What CachingTPESampler knows of a finished trial's constraints.
_UNSCORED, _FEASIBLE, _INFEASIBLE = 0, 1, 2


class _SpaceRows:
    """The finished trials' params in one search space's internal representation, as
    columns indexed by trial number (8 bytes a param and trial, where a tuple per trial
    in a dict cost about 100 bytes a trial: a long sweep holds every trial)."""

    __slots__ = ("columns", "ints", "known")

    def __init__(self, width: int) -> None:
        self.columns = np.empty((width, 0))  # float64, one row per param
        self.known = bytearray()  # by trial number: _UNKNOWN, _ROW, _NO_ROW
        # Whether each param's internal values are Python ints (a categorical's index):
        # Optuna's arrays of them are int64, of the others float64.
        self.ints: list[bool] | None = None

    def put(self, number: int, row: _Row) -> bool:
        """Keep ``row`` as trial ``number``'s; False for a row that a float64 column
        would not hold exactly (the space is then not kept)."""
        if row is not None:
            ints = [type(v) is int for v in row]
            if not all(i or type(v) is float for i, v in zip(ints, row, strict=True)) or any(
                i and abs(v) >= 2**53 for i, v in zip(ints, row, strict=True)
            ):
                return False
            if self.ints is None:
                self.ints = ints
            elif ints != self.ints:
                return False
        if number >= len(self.known):
            grown = _grown(len(self.known), number)
            self.known.extend(bytes(grown - len(self.known)))
            columns = np.empty((self.columns.shape[0], grown))
            columns[:, : self.columns.shape[1]] = self.columns
            self.columns = columns
        if row is None:
            self.known[number] = _NO_ROW
        else:
            self.columns[:, number] = row
            self.known[number] = _ROW
        return True


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
        self._rows: dict[tuple[tuple[str, BaseDistribution], ...], _SpaceRows | None] = {}
        self._forget()

    def _forget(self) -> None:
        self._rows = {}
        # By trial number: whether its scores are worked out, and whether it is
        # infeasible (_scored); of infeasible trials Optuna's infeasibility score, of
        # pruned trials their sort key, (-step, value) (exact as floats). The arrays grow
        # only as far as such trials go.
        self._scored = bytearray()
        self._infeasibility = array("d")
        self._pruned_step = array("d")
        self._pruned_value = array("d")

    def _remember_for(self, study: Study) -> None:
        key = self._study_key
        if key is None or key[0] is not study._storage or key[1] != study._study_id:
            self._study_key = (study._storage, study._study_id)
            self._forget()

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Study
    ) -> dict[str, np.ndarray]:
        space = tuple(search_space.items())
        if space in self._rows:
            rows = self._rows.pop(space)
        else:
            rows = _SpaceRows(len(space))
            if len(self._rows) >= SPACES_KEPT:
                del self._rows[next(iter(self._rows))]
        self._rows[space] = rows  # last used, last in line to be dropped
        if rows is None:  # a space whose values a column would not hold exactly
            return TPESampler._get_internal_repr(self, trials, search_space, study)
        # Where each kept trial's row is: its number in the columns, or (running
        # trials, read anew) -1 - its index in ``running``.
        at: list[int] = []
        running: list[tuple[float, ...]] = []
        states = rows.known  # (inline, as this loop runs over every trial per sample)
        for trial in trials:
            state = trial.state
            if state is _COMPLETE or state is _PRUNED:
                number = trial._number  # not the property: per trial, per sample
                known = states[number] if number < len(states) else _UNKNOWN
                if known == _UNKNOWN:
                    row = _internal_row(trial.params, search_space)
                    if not rows.put(number, row):
                        self._rows[space] = None
                        return TPESampler._get_internal_repr(self, trials, search_space, study)
                    known = _NO_ROW if row is None else _ROW
                    states = rows.known  # grown
                if known == _ROW:
                    at.append(number)
            else:
                row = _internal_row(self._get_params(trial, study), search_space)
                if row is not None:
                    at.append(-1 - len(running))
                    running.append(row)
        names = list(search_space)
        if not at:
            return {name: np.asarray([]) for name in names}
        if running:
            ints = rows.ints
            if ints is None or any(
                (type(v) is int) != i for row in running for v, i in zip(row, ints, strict=True)
            ):
                # A running trial's values of another type than the finished ones':
                # Optuna's way, whose arrays take the types of all of them.
                return TPESampler._get_internal_repr(self, trials, search_space, study)
            where = np.asarray(at)
            table = np.empty((len(names), len(at)))
            finished = where >= 0
            table[:, finished] = rows.columns[:, where[finished]]
            table[:, ~finished] = np.asarray(running, dtype=float).T[:, -1 - where[~finished]]
        else:
            table = rows.columns[:, at]
        ints = rows.ints
        assert ints is not None
        # Each a contiguous array, as Optuna's np.asarray of a list is.
        return {
            name: np.ascontiguousarray(table[i], dtype=np.int64 if ints[i] else np.float64)
            for i, name in enumerate(names)
        }

    def _score(self, trial: FrozenTrial, study: Study) -> int:
        """Keep finished ``trial``'s scores; returns whether it is infeasible
        (``_INFEASIBLE``) or not (``_FEASIBLE``)."""
        number = trial.number
        if number >= len(self._scored):
            _extend(self._scored, number, b"\0")
        infeasibility = _optuna_tpe._get_infeasible_trial_score(trial)
        score = _INFEASIBLE if infeasibility > 0 else _FEASIBLE
        if score == _INFEASIBLE:
            _put(self._infeasibility, number, infeasibility)
        if trial.state is _PRUNED:
            step, value = _optuna_tpe._get_pruned_trial_score(trial, study)
            _put(self._pruned_step, number, step)
            _put(self._pruned_value, number, value)
        self._scored[number] = score
        return score

    def _split(
        self, study: Study, trials: Sequence[FrozenTrial], n_below: int
    ) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        """Optuna's ``_split_trials``, with each finished trial's scores kept."""
        complete, pruned, running, infeasible = [], [], [], []
        scored = self._scored
        n_scored = len(scored)
        for trial in trials:
            state = trial.state
            if state is _RUNNING:
                # Checked first, as in Optuna: its constraints are not set yet.
                running.append(trial)
                continue
            number = trial._number
            score = scored[number] if number < n_scored else _UNSCORED
            if score == _UNSCORED:
                score = self._score(trial, study)
                scored = self._scored  # maybe grown
                n_scored = len(scored)
            if score == _INFEASIBLE:
                infeasible.append(trial)
            elif state is _COMPLETE:
                complete.append(trial)
            elif state is _PRUNED:
                pruned.append(trial)
            else:
                raise AssertionError(f"TPE was given a trial in state {state.name}")
        infeasibility = self._infeasibility
        pruned_step, pruned_value = self._pruned_step, self._pruned_value

        below_complete, above_complete = _optuna_tpe._split_complete_trials(
            complete, study, n_below
        )
        n_below = max(0, n_below - len(below_complete))
        below_pruned, above_pruned = _first(
            sorted(pruned, key=lambda t: (pruned_step[t._number], pruned_value[t._number])),
            n_below,
        )
        n_below = max(0, n_below - len(below_pruned))
        below_infeasible, above_infeasible = _first(
            sorted(infeasible, key=lambda t: infeasibility[t._number]), n_below
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


_ZERO = array("d", [0.0])


def _grown(length: int, index: int) -> int:
    """The length to grow a column of ``length`` to, to hold ``index``: by a quarter at
    least (a column doubled holds a third more than it needs on average)."""
    return max(index + 1, length + length // 4, 64)


def _put(column: array[float], index: int, value: float) -> None:
    if index >= len(column):
        _extend(column, index, _ZERO)
    column[index] = value


def _extend(column: bytearray | array[float], index: int, zero: bytes | array[float]) -> None:
    """Grow ``column`` (filled with ``zero``) to hold ``index``."""
    column.extend(zero * (_grown(len(column), index) - len(column)))  # type: ignore[arg-type]


def _first(ordered: list[FrozenTrial], n: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    n = min(n, len(ordered))
    return ordered[:n], ordered[n:]
