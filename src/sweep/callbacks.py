"""The spec's ``callbacks``: ``module.path:function`` hooks the controller calls as each
trial ends and when the sweep ends, for notifications (a chat message, an e-mail, a
dashboard).

Each hook is a function of one :class:`SweepEvent`. Hooks run on one background thread
of the controller, in the order the events happened and the order the spec lists
them, so a slow hook never holds up dispatching trials: events wait in a queue
meanwhile. A hook that raises is logged (a warning with its traceback, on the
``sweep.callbacks`` logger) and the sweep goes on; the other hooks still get the event.
At the end of the sweep the controller waits for the queued events to be delivered,
``sweep_end`` last, for at most :data:`DRAIN_S` seconds, then returns regardless.

Only trials that the controller's Ray workers run are reported: agents run their
trials without a controller (their ends show in ``counts`` of later events).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from sweep.spec import SweepSpec
from sweep.study import best_own_trial
from sweep.trial import TrialOutcome
from sweep.trial_counts import TrialCounts

logger = logging.getLogger(__name__)

#: Most seconds the end of a sweep waits for its callbacks to take the queued events.
DRAIN_S = 30.0

TRIAL_END = "trial_end"
SWEEP_END = "sweep_end"


@dataclass(frozen=True)
class SweepEvent:
    """What a callback is told.

    ``kind`` is ``trial_end`` or ``sweep_end``. For a trial: its ``trial_number``,
    ``state`` (COMPLETE, PRUNED or FAIL), ``value`` (None unless complete), ``params``
    and ``error``. For the sweep's end: ``state`` (FINISHED, STOPPED, CANCELLED,
    KILLED on Ctrl-C, FAILED), ``stopped_by`` (why ``budget.target`` or ``patience``
    ended it) and ``model_version`` (``models:/NAME/VERSION`` registered, if any). Both
    carry the sweep's name, the best value and trial so far (the sweep's own trials)
    and the study's trial counts."""

    kind: str
    sweep: str
    state: str
    counts: TrialCounts
    best_value: float | None = None
    best_trial: int | None = None
    trial_number: int | None = None
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    stopped_by: str = ""
    model_version: str | None = None


Hook = Callable[[SweepEvent], object]
TrialCallback = Callable[[TrialOutcome, TrialCounts], None]


def start_callbacks(
    spec: SweepSpec,
    hooks: Sequence[tuple[str, Hook]],
    study: optuna.Study,
    on_trial: TrialCallback | None,
) -> tuple[Callbacks | None, TrialCallback | None]:
    """The spec's callbacks (``hooks``: :func:`sweep.spec.resolve_callbacks`) started
    with the best trial so far (None without any), and ``on_trial`` followed by their
    ``trial_end``."""
    if not hooks:
        return None, on_trial
    best = best_own_trial(study)
    callbacks = Callbacks(
        spec.name,
        hooks,
        maximize=spec.metric.direction == "maximize",
        best=(best.number, best.value) if best is not None and best.value is not None else None,
        single_objective=not spec.multi_objective,
    )

    def chained(outcome: TrialOutcome, counts: TrialCounts) -> None:
        if on_trial is not None:
            on_trial(outcome, counts)
        params = spec.decode_params(outcome.params)  # values, not Optuna's stored form
        callbacks.trial_end(
            outcome.number, outcome.state, outcome.value, params, outcome.error, counts
        )

    return callbacks, chained


class Callbacks:
    """Delivers a sweep's events to its hooks on one background thread."""

    def __init__(
        self,
        sweep: str,
        hooks: Sequence[tuple[str, Hook]],
        *,
        maximize: bool,
        best: tuple[int, float] | None = None,
        single_objective: bool = True,
    ) -> None:
        """``hooks``: ``(name, function)`` each; ``best``: the best trial so far (none
        is tracked with several objectives: a Pareto front has no single best)."""
        self.sweep = sweep
        self.hooks = list(hooks)
        self.maximize = maximize
        self.best = best
        self.single_objective = single_objective
        self._events: queue.Queue[SweepEvent | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver, name="sweep-callbacks", daemon=True)
        self._thread.start()

    def trial_end(
        self,
        number: int,
        state: str,
        value: float | None,
        params: dict[str, Any],
        error: str | None,
        counts: TrialCounts,
    ) -> None:
        """Queue a ``trial_end`` event (never blocks)."""
        complete = state == "COMPLETE" and value is not None
        if complete and self.single_objective and value is not None and self._better(value):
            self.best = (number, value)
        self._events.put(
            SweepEvent(
                TRIAL_END,
                self.sweep,
                state,
                counts,
                *self._best(),
                trial_number=number,
                value=value,
                params=dict(params),
                error=error,
            )
        )

    def sweep_end(
        self,
        state: str,
        counts: TrialCounts,
        *,
        best: tuple[int, float] | None = None,
        stopped_by: str = "",
        model_version: str | None = None,
        wait_s: float = DRAIN_S,
    ) -> None:
        """Queue the ``sweep_end`` event, then wait (at most ``wait_s``) for every
        queued event to be delivered."""
        if best is not None:
            self.best = best
        self._events.put(
            SweepEvent(
                SWEEP_END,
                self.sweep,
                state,
                counts,
                *self._best(),
                stopped_by=stopped_by,
                model_version=model_version,
            )
        )
        self._events.put(None)
        self._thread.join(timeout=wait_s)
        if self._thread.is_alive():
            logger.warning(
                "sweep %s: callbacks still busy after %.0f s; the sweep ends without them",
                self.sweep,
                wait_s,
            )

    def launch_ended(self, result: Any) -> None:
        """:meth:`sweep_end` for a launch's :class:`~sweep.controller.SweepResult`."""
        number, value = result.best_trial_number, result.best_value
        version = result.model_version
        self.sweep_end(
            result.state,
            result.counts,
            best=(number, value) if number is not None and value is not None else None,
            stopped_by=result.stopped_by,
            model_version=version.uri if version is not None else None,
        )

    def _best(self) -> tuple[float | None, int | None]:
        return (self.best[1], self.best[0]) if self.best is not None else (None, None)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[1] if self.maximize else value < self.best[1]

    def _deliver(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            for name, hook in self.hooks:
                try:
                    hook(event)
                except (Exception, SystemExit):
                    # A notification must never fail the sweep: say so, and go on.
                    logger.warning(
                        "sweep %s: callback %s raised on %s; the sweep goes on",
                        self.sweep,
                        name,
                        event.kind,
                        exc_info=True,
                    )
