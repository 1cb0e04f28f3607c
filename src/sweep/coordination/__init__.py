"""How the processes working on one sweep coordinate through the database alone.

A controller and any number of agents, on any machines, share a sweep through what the
store holds: the sweep's row (its control state and budget), the study's trials, a
lease per running trial and a row per worker. :class:`Coordinator` is one process's
handle on them; it is made of the parts below, one module each: the control state and
the claim lock (``_state``), worker registration and heartbeats (``_workers``), claims
against the budget (``_claims``) and the recovery of lost trials (``_recovery``).

Every operation is thread-safe, runs in transactions of its own and is retried while
the database is briefly unreachable. Implementations of the parts must keep the
following contract; the processes relying on it cannot check it.

**The claim lock**

Claims and recoveries of one sweep run one at a time, whatever process runs them: each
holds the sweep's *claim lock* (:class:`ClaimLock`: a row lock on the sweep's row in
``sweep_sweeps`` on PostgreSQL, a file lock beside the database file on SQLite) for
its whole transaction, and reads the control state and budget under it. So a budget
is never exceeded however many processes claim at once, the numbers of new trials are
exact, and a lost trial is recovered once.

Locks are taken in one order: the sweep's row, then the study's row in Optuna's
``studies`` (PostgreSQL; taken by claims, and by a recovery that queues a retry, as
Optuna's own trial creation takes it, so that a user's ``enqueue_trial`` cannot
interleave with the numbering), then trial rows. A writer that takes only some of them
takes them in that order too: an agent's worker writing its trial's end locks the
trial's rows alone.

**Leases**

A claim sets a trial RUNNING and gives it a lease (``sweep_trial_leases``: the worker's
id and when it was last renewed) in the same transaction. The worker's
:class:`Heartbeat` renews the leases of all its trials, with its own row's
``heartbeat_at``, every ``lease.heartbeat_interval`` seconds; a Ray worker beats for
the trials its controller claimed under its id. A lease not renewed for
``lease.timeout`` seconds has expired: its worker's process or node died. A RUNNING
trial without a lease is lost at once (no process of this sweep runs it).

Any controller or agent of the sweep may recover lost trials, and each does so
periodically (:meth:`Coordinator.recover_stale`), or at once for a trial whose worker it
knows is gone, timed out or killed (:meth:`Coordinator.fail_lost`); when, and whether to
retry, is decided in one place for both (:class:`sweep.failures.FailurePolicy`). A
recovery fails the trial, ends its run FAILED (KILLED for a kill) and queues its retry,
in one transaction under the claim lock. Leases are dropped when a trial ends, and by recovery for
finished trials whose worker died before dropping theirs.

**Retries and the budget**

A trial uses budget (``n_trials``) unless it was killed by a stop or cancel (system
attribute ``sweep:killed``), superseded by its retry (``sweep:superseded``) or copied
from another sweep by ``warm_start`` (``sweep:warm_start``: history, never claimed). A lost
trial is retried while its attempt (``sweep:attempt``) is below ``lease.max_retries``,
and never when killed: its retry is a WAITING trial with the same params (Optuna's
``fixed_params``), the number of the trial it retries (``sweep:retry_of``) and the next
attempt; the lost trial is marked superseded in the same transaction, so a retry takes
its slot and never grows the sweep. A claim hands out WAITING trials first, then new
trials while the budget has room.

**Who writes what**

* The controller (:mod:`sweep.controller`): the sweep's row (created RUNNING, its final
  state at the end), Optuna's study, the sweep's parent run; the claims of its Ray
  workers (trials RUNNING, their ``sweep:run_id``, leases, child runs); their trials'
  ends, in batches in the transaction of its next claims; its own worker row.
* A Ray worker (:mod:`sweep.worker`): its worker row and heartbeat (so its leases);
  while a trial runs, the trial's params, reports and attributes and its run's metrics
  and artifacts. Never its trial's end: it hands that back to the controller.
* An agent (:mod:`sweep.agent`): its workers' rows and heartbeats, their claims (as the
  controller's), their running trials as a Ray worker writes them, and their trials'
  ends as each trial ends.
* Recovery (any controller or agent, under the claim lock): a lost trial's end (state
  FAIL with ``sweep:error`` and its mark) and its run's end, its retry, stale leases.
* `sweep stop`, `cancel`, `pause`, `resume` (:mod:`sweep.control`): the sweep's state.
* A stop rule (:mod:`sweep.stopping`: ``budget.target``, ``patience``), asked by
  whichever controller or agent wrote a trial's end: the sweep's state, from RUNNING or
  PAUSED only, to STOPPED or CANCELLED, and why (the study's ``sweep:stopped_by``).

A trial's end (its rows, its run's end, its lease's release) is written only by
:func:`sweep.ends.write_ends`, which ends a trial only while it is RUNNING: of two
writers ending one trial (its worker, and a recovery or a stop), the first wins and the
other's run ends FAILED saying its result was not counted. Optuna's tables are written
with SQL only through the functions of :mod:`sweep.storage`; this package names none of
them.
"""

from sweep.coordination._claims import (
    ATTEMPT_ATTR,
    FIXED_PARAMS_ATTR,
    RETRY_OF_ATTR,
    UNCOUNTED,
    Claim,
    Claims,
    RunSeed,
    retry_tags,
)
from sweep.coordination._coordinator import Coordinator
from sweep.coordination._recovery import LostTrial, Recovery
from sweep.coordination._state import ClaimLock, LeaseSettings, SweepState, read_state
from sweep.coordination._workers import Heartbeat, RegisteredWorker, WorkerRegistry

__all__ = [
    "ATTEMPT_ATTR",
    "FIXED_PARAMS_ATTR",
    "RETRY_OF_ATTR",
    "UNCOUNTED",
    "Claim",
    "ClaimLock",
    "Claims",
    "Coordinator",
    "Heartbeat",
    "LeaseSettings",
    "LostTrial",
    "Recovery",
    "RegisteredWorker",
    "RunSeed",
    "SweepState",
    "WorkerRegistry",
    "read_state",
    "retry_tags",
]
