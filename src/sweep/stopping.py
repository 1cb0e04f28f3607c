"""When a sweep ends before its budget: a complete trial reached ``budget.target``, or
``budget.patience`` finished trials in a row did not improve on the best.

One decision for the controller and for agents: whoever ends a trial asks
:meth:`StopRules.after_trial` (the target, from the trial's own value) and, with
patience, :meth:`StopRules.check` (the study, read in two queries), and on a stop
calls :func:`end_sweep`. That sets the sweep's control state, which every controller
and agent already honours: ``STOPPED`` (running trials finish, none starts) or, with
``on_target: cancel``, ``CANCELLED`` (running trials are killed; they use no budget).
Why the sweep ended is kept in the study's system attribute :data:`STOPPED_BY_ATTR`,
so that a controller that did not see the trial (an agent ran it) still registers the
best model and says why. Trials copied by ``warm_start`` are history, not this sweep's
trials: they neither reach the target nor count for patience.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from sweep.coordination import UNCOUNTED, Coordinator, SweepState
from sweep.spec import SweepSpec
from sweep.storage import SweepRow, progress_since_best
from sweep.tracking import now_ms

#: Study system attribute: why a stop rule ended the sweep (``{"rule", "message"}``).
STOPPED_BY_ATTR = "sweep:stopped_by"


@dataclass(frozen=True)
class Stop:
    """A stop rule's decision: which rule, what it saw, and whether to kill running trials."""

    rule: str  # "target" or "patience"
    message: str
    cancel: bool = False


@dataclass(frozen=True)
class StopRules:
    """The spec's ``budget.target``, ``budget.on_target`` and ``budget.patience``."""

    direction: str
    target: float | None = None
    cancel_on_target: bool = False
    patience: int | None = None

    @classmethod
    def of(cls, spec: SweepSpec) -> StopRules:
        budget = spec.budget
        return cls(
            spec.metric.direction, budget.target, budget.on_target == "cancel", budget.patience
        )

    @property
    def active(self) -> bool:
        return self.target is not None or self.patience is not None

    def reached(self, value: float | None) -> bool:
        """Whether ``value`` reaches the target (>= when maximizing, <= when minimizing)."""
        if self.target is None or value is None:
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target

    def _target_stop(self, value: float, number: int | None) -> Stop:
        who = f"trial {number}" if number is not None else "a trial"
        message = f"budget.target {self.target:g} reached by {who} ({value:.6g})"
        return Stop("target", message, self.cancel_on_target)

    def after_trial(self, state: str, value: float | None, number: int) -> Stop | None:
        """The stop a trial that just ended ``state`` with ``value`` calls for, by the
        target (patience needs the study: :meth:`check`)."""
        if state == "COMPLETE" and self.reached(value):
            assert value is not None
            return self._target_stop(value, number)
        return None

    def check(self, coordinator: Coordinator) -> Stop | None:
        """The stop the study calls for now: its best reaches the target, or ``patience``
        finished trials ended since the best. Two queries; none without rules."""
        if not self.active:
            return None

        def read() -> tuple[float | None, int]:
            with coordinator.db.session() as session:
                return progress_since_best(
                    session,
                    coordinator.study_id,
                    maximize=self.direction == "maximize",
                    uncounted=UNCOUNTED,
                )

        best, since = coordinator.db.retrying(read, "reading the sweep's progress")
        if best is not None and self.reached(best):
            return self._target_stop(best, None)
        if self.patience is not None and since >= self.patience:
            outcome = "none complete" if best is None else f"none improved on the best ({best:.6g})"
            message = f"budget.patience {self.patience}: {since} finished trials, {outcome}"
            return Stop("patience", message)
        return None


def end_sweep(coordinator: Coordinator, stop: Stop) -> SweepState:
    """End the sweep for ``stop``: STOPPED (CANCELLED when it cancels) if it is RUNNING
    or PAUSED, and record why; returns the sweep's state after (a sweep already
    stopped, cancelled or ended keeps its state and first reason)."""
    db = coordinator.db
    state = SweepState.CANCELLED if stop.cancel else SweepState.STOPPED

    def write() -> int:
        with db.session() as session:
            result: Any = session.execute(
                update(SweepRow)
                .where(
                    SweepRow.name == coordinator.sweep_name,
                    SweepRow.status.in_([SweepState.RUNNING.value, SweepState.PAUSED.value]),
                )
                .values(status=state.value, updated_at=now_ms())
            )
            return int(result.rowcount or 0)

    if db.retrying(write, "stopping the sweep"):
        record = {"rule": stop.rule, "message": stop.message}
        coordinator.storage.set_study_system_attr(coordinator.study_id, STOPPED_BY_ATTR, record)
    return coordinator.state()[0]


def stopped_by(coordinator: Coordinator) -> str | None:
    """Why a stop rule ended the sweep, or None if none did."""
    attrs = coordinator.storage.get_study_system_attrs(coordinator.study_id)
    record = attrs.get(STOPPED_BY_ATTR)
    return str(record["message"]) if isinstance(record, dict) else None


def clear_stop(coordinator: Coordinator) -> None:
    """Forget an earlier stop (a relaunch runs on; its rules are checked afresh)."""
    attrs = coordinator.storage.get_study_system_attrs(coordinator.study_id)
    if attrs.get(STOPPED_BY_ATTR) is not None:
        coordinator.storage.set_study_system_attr(coordinator.study_id, STOPPED_BY_ATTR, None)
