"""What becomes of a trial that its worker cannot report: one policy for the
controller's Ray workers and an agent's worker processes alike.

* A trial whose worker died is failed and retried, by the spec's ``lease.max_retries``.
* A trial running past ``trial_timeout`` is killed and failed without a retry: a hung
  trial would hang again.
* A trial killed on purpose (Ctrl-C, ``sweep cancel``, a claim that never started) is
  failed, marked killed, and uses no budget.
* Every ``lease.heartbeat_interval``, trials whose lease expired anywhere in the sweep
  are recovered (failed and retried by policy), whichever process ran them.

The mechanics of killing differ (Ray actors, processes); what is written does not, and
lives here. The writing itself is the coordinator's (:meth:`Coordinator.fail_lost`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sweep.coordination import Coordinator
from sweep.trial import TrialOutcome
from sweep.trial_counts import counted_as

#: Why trials end when their sweep or agent is stopped.
CANCELLED = "cancelled: sweep cancel"
STOPPED = "killed: the sweep was stopped"
AGENT_STOPPED = "killed: the agent was stopped"


class FailurePolicy:
    """Fails lost, timed-out and killed trials of one sweep, and recovers stale ones."""

    def __init__(
        self, coordinator: Coordinator, trial_timeout: float | None, *, recover_now: bool = False
    ) -> None:
        """``recover_now``: the first recovery is due at once, not one interval from now."""
        self.coordinator = coordinator
        self.trial_timeout = trial_timeout
        self.interval = coordinator.settings.heartbeat_interval
        self._next_recovery = time.monotonic() + (0.0 if recover_now else self.interval)

    def lost(
        self, trial_id: int, reason: str, *, retry: bool = True, killed: bool = False
    ) -> tuple[TrialOutcome, str]:
        """Fail a trial whose worker could not report it (retried by policy when
        ``retry``); returns its outcome and how it counts: FAIL, RETRIED, KILLED, or,
        when something else ended it meanwhile (a recovery, a stop, its own end), as
        they left it."""
        lost = self.coordinator.fail_lost(trial_id, reason, retry=retry, killed=killed)
        if lost is None:
            ended = self.coordinator.storage.get_trial(trial_id)
            number, run_id, counted = ended.number, "", counted_as(ended)
        else:
            number, run_id = lost.number, lost.run_id or ""
            retried = lost.retry_number is not None
            counted = "KILLED" if killed else "RETRIED" if retried else "FAIL"
        return TrialOutcome(trial_id, number, "FAIL", None, run_id, 0.0, reason), counted

    def killed(self, trial_ids: Iterable[int], reason: str) -> list[tuple[TrialOutcome, str]]:
        """Fail trials killed on purpose: no retry, and no budget used."""
        return [self.lost(t, reason, retry=False, killed=True) for t in trial_ids]

    def not_started(self, trial_ids: Iterable[int], why: str) -> None:
        """Trials claimed for a worker that will not run them: killed before they started."""
        self.killed(trial_ids, f"not started: {why}")

    def is_late(self, started: float | None, now: float) -> bool:
        """Whether a trial that started at ``started`` (monotonic) ran past the timeout."""
        limit = self.trial_timeout
        if not limit or started is None:
            return False
        return now - started >= limit

    def timed_out(self, trial_id: int) -> tuple[TrialOutcome, str]:
        """Fail a trial killed for running past ``trial_timeout``, without a retry."""
        reason = f"trial_timeout: ran longer than {self.trial_timeout:g} s and was killed"
        return self.lost(trial_id, reason, retry=False)

    def recovery_due(self) -> bool:
        """Whether a heartbeat interval has passed since the last recovery."""
        return time.monotonic() >= self._next_recovery

    def recover(self) -> None:
        """Fail (and retry, by policy) the sweep's trials whose lease expired."""
        self.coordinator.recover_stale()
        self._next_recovery = time.monotonic() + self.interval

    def recover_if_due(self) -> bool:
        """Recover once every heartbeat interval; returns whether it did (a recovery
        may have queued retries)."""
        if not self.recovery_due():
            return False
        self.recover()
        return True
