"""A sweep's trials counted by how they used its budget: complete, pruned, failed, and
those that use none (killed by a stop, superseded by their retry, copied by
``warm_start``), in one query however long the sweep."""

from __future__ import annotations

from dataclasses import dataclass, replace

from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import case, func, select

from sweep.storage import Database
from sweep.study import KILLED_ATTR, SUPERSEDED_ATTR, WARM_START_ATTR

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class TrialCounts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    killed: int = 0
    retried: int = 0  # failed, then retried: the retry holds their budget slot
    waiting: int = 0  # retries and enqueued configs not yet started
    seeded: int = 0  # complete trials copied from another sweep by warm_start

    def add(self, state: str) -> TrialCounts:
        """These counts after one more trial ended in ``state``: an Optuna state name,
        or RETRIED / KILLED for failed trials that use no budget."""
        field = {
            "COMPLETE": "complete",
            "PRUNED": "pruned",
            "FAIL": "failed",
            "RETRIED": "retried",
            "KILLED": "killed",
        }[state]
        return replace(self, **{field: getattr(self, field) + 1})

    @property
    def finished(self) -> int:
        """Trials that used budget: complete, pruned and failed, not killed by a stop."""
        return self.complete + self.pruned + self.failed


def counted_as(trial: FrozenTrial) -> str:
    """How a finished trial counts in :meth:`TrialCounts.add`: its state's name, or
    KILLED / RETRIED for a failed trial that a stop killed or a retry superseded."""
    if trial.state == TrialState.FAIL:
        if trial.system_attrs.get(KILLED_ATTR):
            return "KILLED"
        if trial.system_attrs.get(SUPERSEDED_ATTR):
            return "RETRIED"
    return trial.state.name


def count_trials(db: Database, study_id: int) -> TrialCounts:
    """The study's trials counted by state, in one query: a long sweep's trials are
    never loaded to count them (10,000 trials as Optuna objects take tens of MB).

    The killed, superseded and warm-start marks are outer-joined (one row each at most: Optuna's
    attributes are unique per trial and key) rather than tested with EXISTS per trial,
    which PostgreSQL costs high enough to JIT-compile: 70 ms for 10,000 trials, not 5.
    """
    trials = models.TrialModel.__table__
    attrs = models.TrialSystemAttributeModel.__table__
    killed, superseded = attrs.alias("killed"), attrs.alias("superseded")
    seeded = attrs.alias("seeded")
    query = (
        select(
            trials.c.state,
            func.count(),
            func.count(killed.c.trial_id),
            func.count(case((killed.c.trial_id.is_(None), superseded.c.trial_id))),
            func.count(
                case(
                    (
                        killed.c.trial_id.is_(None) & superseded.c.trial_id.is_(None),
                        seeded.c.trial_id,
                    )
                )
            ),
        )
        .select_from(
            trials.outerjoin(
                killed, (killed.c.trial_id == trials.c.trial_id) & (killed.c.key == KILLED_ATTR)
            )
            .outerjoin(
                superseded,
                (superseded.c.trial_id == trials.c.trial_id)
                & (superseded.c.key == SUPERSEDED_ATTR),
            )
            .outerjoin(
                seeded,
                (seeded.c.trial_id == trials.c.trial_id) & (seeded.c.key == WARM_START_ATTR),
            )
        )
        .where(trials.c.study_id == study_id)
        .group_by(trials.c.state)
    )
    field_of = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    counts = dict.fromkeys(
        ("complete", "pruned", "failed", "running", "killed", "retried", "waiting", "seeded"), 0
    )
    with db.session() as session:
        for state, count, n_killed, n_retried, n_seeded in session.execute(query):
            state = TrialState[state] if isinstance(state, str) else TrialState(state)
            counts["seeded"] += int(n_seeded)
            if state == TrialState.FAIL:
                counts["killed"] += int(n_killed)
                counts["retried"] += int(n_retried)
                rest = int(count) - int(n_killed) - int(n_retried) - int(n_seeded)
                counts["failed"] += rest
            else:
                counts[field_of[state]] += int(count) - int(n_seeded)
    return TrialCounts(**counts)
