"""The trials a process runs, as its study storage holds them: each trial's current
state, shown to the process's reads, and its writes not yet in the database.

Callers hold the storage's lock.
"""

from __future__ import annotations

import copy
import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from sweep.storage._optuna_tables import utc_now

if TYPE_CHECKING:
    from sweep.storage._study_cache import StudyCache

#: A trial's buffered writes are written once the oldest is this many seconds old.
FLUSH_AFTER_S = 1.0
#: System attributes written at once, with what the trial holds: successive halving's
#: (and so Hyperband's) rung records. Other trials' pruning decisions rank against
#: every trial's record at the rung; one that waited a second for its flush was missed,
#: and those trials ran on.
RUNG_ATTR_PREFIX = "completed_rung_"

#: A FrozenTrial's dicts that a running trial's writes change.
_TRIAL_DICTS = ("params", "distributions", "intermediate_values", "user_attrs", "system_attrs")


def with_own_dicts(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` with copies of its ``_TRIAL_DICTS``: all that these writes and
    ``optuna.Trial`` change in place (a deep copy costs about ten times as much)."""
    copied = copy.copy(trial)
    for name in _TRIAL_DICTS:
        setattr(copied, name, dict(getattr(trial, name)))
    return copied


@dataclass
class TrialWrites:
    """Writes to one trial not yet in the database; with ``state``, its end. Picklable:
    a Ray worker hands its trial's end to the controller, which writes many at once."""

    trial_id: int
    params: list[dict[str, Any]] = field(default_factory=list)
    intermediate_values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    state: TrialState | None = None
    values: list[float] | None = None
    ended_at: datetime.datetime | None = None  # when it ended (naive UTC), with a state
    since: float | None = None  # time.monotonic() of the oldest write held

    def touch(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def age(self) -> float:
        """Seconds since the oldest write held (0 when none is)."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    def __bool__(self) -> bool:
        return bool(
            self.params
            or self.intermediate_values
            or self.user_attrs
            or self.system_attrs
            or self.state is not None
        )


@dataclass
class OwnTrial:
    """A trial this process runs: its current state, shown in ``cache`` (its study's),
    and what is still to be written."""

    study_id: int
    trial: FrozenTrial
    cache: StudyCache
    pending: TrialWrites
    # Whether a read may have handed ``trial`` out since it was last copied; a write
    # then goes to a new copy (see revise).
    handed_out: bool = False

    def revise(self, *fields: str) -> list[dict[Any, Any]]:
        """The trial's dicts ``fields`` (``params``, ``system_attrs``...), for the caller
        to change. Trials read before keep what they showed, as in Optuna's own
        storages: successive halving reads the study, records the trial at the rung,
        then ranks it against what it read; a record that showed there too ranked the
        trial against itself and let it run on. So once a read has handed the trial
        out, the next write goes to a new copy of it, with copies of all its dicts;
        writes in between reads change that copy in place (a trial reporting many steps
        between two reads is not copied at each)."""
        if self.handed_out:
            trial = self.trial = with_own_dicts(self.trial)
            self.handed_out = False
            self.cache.put(trial)
        return [getattr(self.trial, name) for name in fields]

    def set_param(self, name: str, internal: float, distribution: BaseDistribution) -> None:
        known = self.cache.distributions.get(name)
        if known is not None:
            # Optuna's rule: a name keeps its distribution's kind across the study.
            check_distribution_compatibility(known, distribution)
        else:
            self.cache.distributions[name] = distribution
        params, distributions = self.revise("params", "distributions")
        params[name] = distribution.to_external_repr(internal)
        distributions[name] = distribution
        self.pending.params.append(
            {
                "trial_id": self.pending.trial_id,
                "param_name": name,
                "param_value": internal,
                "distribution_json": distribution_to_json(distribution),
            }
        )
        self.pending.touch()

    def report(self, step: int, value: float) -> bool:
        """Hold a report; returns whether the trial's writes are to be written now."""
        first_report = not self.trial.intermediate_values
        self.revise("intermediate_values")[0][step] = value
        self.pending.intermediate_values[step] = value
        self.pending.touch()
        self.cache.synced_at = None  # the pruner's read is fresh
        # A trial that reports is training: its params and progress go out with its
        # first report (a retry after a crash reuses them) and then each second.
        return first_report or self.pending.age() >= FLUSH_AFTER_S

    def set_attr(self, kind: str, key: str, value: Any) -> bool:
        """Hold a user or system attribute (``kind``); returns whether the trial's
        writes are to be written now (a rung record is)."""
        self.revise(kind)[0][key] = value
        getattr(self.pending, kind)[key] = value
        self.pending.touch()
        return kind == "system_attrs" and key.startswith(RUNG_ATTR_PREFIX)

    def end(self, state: TrialState, values: Sequence[float] | None) -> TrialWrites:
        """The trial's end: what it still holds, with ``state`` and ``values``."""
        writes = self.pending
        writes.state = state
        writes.values = list(values) if values is not None else None
        writes.ended_at = utc_now()
        return writes

    def clear_pending(self) -> None:
        """The writes held are written: hold none."""
        self.pending = TrialWrites(self.trial._trial_id)


class OwnTrials(dict[int, OwnTrial]):
    """The trials this process runs, by trial id."""

    def owned(self, trial_id: int) -> OwnTrial:
        own = self.get(trial_id)
        if own is None:
            raise KeyError(f"trial {trial_id} is not run by this process")
        return own

    def running(self, trial_id: int) -> OwnTrial | None:
        """Own trial ``trial_id``, None when another process runs it; one this process
        has ended cannot be updated."""
        own = self.get(trial_id)
        if own is not None and own.trial.state.is_finished():
            raise UpdateFinishedTrialError(
                f"trial #{own.trial.number} has already finished and cannot be updated"
            )
        return own

    def due(self) -> list[OwnTrial]:
        """Own trials whose oldest held write is ``FLUSH_AFTER_S`` old."""
        return [own for own in self.values() if own.pending.age() >= FLUSH_AFTER_S]
