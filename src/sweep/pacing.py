"""How fast the controller feeds its Ray workers: the pacing constants, the moving
mean of the trials' duration that sets them to work (:class:`Pace`), the trials claimed
ahead for each worker (:class:`ClaimedTrials`) and the calls sent to each worker and
not yet back (:class:`Calls`).

Short trials are claimed several per transaction, go several to a call, and the next
call waits in the worker's Ray queue so that a worker never waits for the controller
between two; long trials go one at a time, planned by the controller as they start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from sweep.coordination import Claim

#: Most trials claimed ahead for a worker (each claimed trial is RUNNING in the study).
CLAIM_AHEAD_MAX = 16
#: Claim about this many seconds of a worker's work at once: short trials are claimed
#: several per transaction; long ones one at a time, when the worker is free.
CLAIM_AHEAD_WINDOW_S = 0.08
#: Trials shorter than this on average are sampled by their workers, not planned by the
#: controller (see :meth:`Pace.plans`).
PLAN_ABOVE_S = 0.05
#: Trials sent to a worker at once when trials are short, in calls of ``Pace.batch``
#: trials (one call runs, the others wait in its Ray queue, so that it never waits for
#: the controller between two); long trials are sent one at a time. Each trial samples
#: on what was known when its call was sent, so more would make sampling staler.
QUEUE_SHORT = 4
#: When trials are short, each call carries about this many seconds of a worker's
#: trials, at most ``BATCH_MAX``: a Ray call costs about 0.8 ms of CPU between the two
#: ends, as much as a short trial's own bookkeeping. (Four per call spared a little more
#: CPU, but with two calls queued it left trials sampling on news twice as old.)
BATCH_WINDOW_S = 0.02
BATCH_MAX = 2
#: Ended trials are written with the next claims, or once this many wait, or the
#: oldest has waited this long (or nothing else runs).
WRITE_BATCH = 8
WRITE_DELAY_S = 0.04


class Pace:
    """How long the sweep's trials take (a moving mean), and so how many to claim ahead."""

    def __init__(self, *, batches: bool) -> None:
        self.mean_s: float | None = None
        self.batches = batches  # whether short trials may share a call

    def add(self, duration_s: float) -> None:
        self.mean_s = duration_s if self.mean_s is None else 0.8 * self.mean_s + 0.2 * duration_s

    def plans(self) -> bool:
        """Whether the controller plans the next trial's params. Planning lets TPE's
        constant liar see every running trial, which matters when trials overlap for a
        while. Trials shorter than ``PLAN_ABOVE_S`` overlap for milliseconds: a worker
        samples for itself, in parallel with the others, seeing all that finished, and
        the controller, which would spend a few ms per plan, does not hold them up."""
        return self.mean_s is None or self.mean_s >= PLAN_ABOVE_S

    def queue(self) -> int:
        """Calls to send each worker at once: ``QUEUE_SHORT`` trials' worth when it
        samples for itself, else 1 (a plan is made as its trial starts, on all that is
        known)."""
        return 1 if self.plans() else max(1, QUEUE_SHORT // self.batch())

    def batch(self) -> int:
        """Trials per call: when the worker samples for itself, about
        ``BATCH_WINDOW_S`` of them (it tells of them all once the last has ended)."""
        if not self.batches or self.plans() or self.mean_s is None:
            return 1
        return max(1, min(BATCH_MAX, int(BATCH_WINDOW_S / max(self.mean_s, 1e-6))))

    def depth(self) -> int:
        """Trials to hold per worker: 1 until trials have been seen to be short."""
        if self.mean_s is None:
            return 1
        return 1 + min(CLAIM_AHEAD_MAX - 1, int(CLAIM_AHEAD_WINDOW_S / max(self.mean_s, 1e-6)))


class ClaimedTrials:
    """Trials claimed for each worker and not yet started, in claim order."""

    def __init__(self) -> None:
        self._by_worker: dict[str, deque[Claim]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_worker.values())

    def count(self, worker_id: str) -> int:
        return len(self._by_worker.get(worker_id, ()))

    def add(self, worker_id: str, claim: Claim) -> None:
        self._by_worker.setdefault(worker_id, deque()).append(claim)

    def take(self, worker_id: str, most: int) -> list[Claim]:
        """Up to ``most`` of the claims held for ``worker_id``, oldest first."""
        held = self._by_worker.get(worker_id)
        return [held.popleft() for _ in range(min(most, len(held)))] if held else []

    def wanted(self, worker_id: str, depth: int, sent: int) -> int:
        """How many to claim for ``worker_id`` (``sent``: trials sent to it and not back)
        so that it has ``depth`` trials, counting those sent, once half of them are used."""
        held = self.count(worker_id) + sent
        return depth - held if held <= depth // 2 else 0

    def take_all(self, worker_id: str | None = None) -> list[int]:
        """Forget the claims held for ``worker_id``, or for every worker; returns their
        trial ids."""
        if worker_id is not None:
            return [c.trial_id for c in self._by_worker.pop(worker_id, ())]
        trial_ids = [c.trial_id for q in self._by_worker.values() for c in q]
        self._by_worker.clear()
        return trial_ids


@dataclass
class Call:
    """One call to a worker: the trials it runs, in this order."""

    worker_id: str
    trial_ids: list[int]
    sent: int  # the order calls were sent in, across workers
    started: float | None  # None while it waits in its worker's queue


class Calls:
    """The calls sent to the workers and not yet back, by Ray object ref, and each
    worker's queue of them in the order it runs them."""

    def __init__(self) -> None:
        self._by_ref: dict[Any, Call] = {}
        self._queues: dict[str, list[Any]] = {}
        self._sent = 0

    def __bool__(self) -> bool:
        return bool(self._by_ref)

    def __iter__(self) -> Any:
        return iter(self._by_ref.values())

    def refs(self) -> list[Any]:
        return list(self._by_ref)

    def queued(self, worker_id: str) -> int:
        """Calls sent to ``worker_id`` and not back."""
        return len(self._queues.get(worker_id, ()))

    def trials_sent_to(self, worker_id: str) -> int:
        """Trials sent to ``worker_id`` that have not come back."""
        return sum(len(self._by_ref[ref].trial_ids) for ref in self._queues.get(worker_id, ()))

    def add(self, ref: Any, worker_id: str, trial_ids: list[int], now: float) -> None:
        """A call sent: it starts now unless others wait before it in the worker's queue."""
        self._sent += 1
        started = None if self.queued(worker_id) else now
        self._by_ref[ref] = Call(worker_id, trial_ids, self._sent, started)
        self._queues.setdefault(worker_id, []).append(ref)

    def in_send_order(self, refs: list[Any]) -> list[Any]:
        """``refs`` in the order they were sent, the order each worker runs its queue in."""
        return sorted(refs, key=lambda ref: self._by_ref[ref].sent)

    def returned(self, ref: Any, now: float) -> Call | None:
        """Take the call ``ref`` that came back (None if it was dropped with its worker);
        the next in its worker's queue starts now."""
        call = self._by_ref.pop(ref, None)
        if call is None:
            return None
        queue = self._queues.get(call.worker_id, [])
        queue.remove(ref)
        if queue:
            self._by_ref[queue[0]].started = now
        return call

    def drop_worker(self, worker_id: str) -> list[Call]:
        """Forget ``worker_id``'s queue; returns its calls that had not come back."""
        queue = self._queues.pop(worker_id, [])
        return [c for c in (self._by_ref.pop(ref, None) for ref in queue) if c is not None]

    def late(self, limit: float, now: float) -> list[Call]:
        """Take the calls running for ``limit`` seconds or longer."""
        refs = [
            ref
            for ref, call in self._by_ref.items()
            if call.started is not None and now - call.started >= limit
        ]
        return [self._by_ref.pop(ref) for ref in refs]
