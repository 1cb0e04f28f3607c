"""The process's background metric writer: one daemon thread that writes the buffered
points of every open run every ``FLUSH_INTERVAL_S`` seconds, or sooner when a run's
buffer passes ``FLUSH_EVERY`` points.

Runs register themselves on their first point and unregister when they close (their
final flush is synchronous, on the caller's thread). A failed write leaves the points
with their run, to be retried on the next pass. A forked child starts its own thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Protocol

logger = logging.getLogger(__name__)

#: Seconds between background passes.
FLUSH_INTERVAL_S = 1.0
#: A run whose buffer reaches a multiple of this many points wakes the writer at once.
FLUSH_EVERY = 5000


class Flushable(Protocol):
    def flush_in_background(self) -> None: ...


class Flusher:
    """One background thread writing the buffers of the registered runs."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._runs: dict[int, Flushable] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-metric-flusher", daemon=True)
        self._thread.start()

    def register(self, run: Flushable) -> None:
        with self._lock:
            self._runs[id(run)] = run

    def unregister(self, run: Flushable) -> None:
        with self._lock:
            self._runs.pop(id(run), None)

    def wake(self) -> None:
        self._wake.set()

    def flush_all(self) -> None:
        """One pass over every registered run (errors are logged, points kept)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.flush_in_background()

    def _loop(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self.flush_all()
            except Exception:  # never let the writer die; the runs keep their points
                logger.exception("sweep's background metric writer failed a pass")


_flusher: Flusher | None = None
_create_lock = threading.Lock()


def flusher() -> Flusher:
    """This process's flusher, started on first use (and again in a forked child)."""
    global _flusher
    current = _flusher
    if current is not None and current.pid == os.getpid():
        return current
    with _create_lock:
        if _flusher is None or _flusher.pid != os.getpid():
            _flusher = Flusher()
        return _flusher


@atexit.register
def _flush_at_exit() -> None:
    # Runs still open when the interpreter exits (a script that never closed its run):
    # write what they hold, since the daemon thread dies with the process.
    if _flusher is not None and _flusher.pid == os.getpid():
        _flusher.flush_all()
