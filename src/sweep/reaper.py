"""The reaper: ends the process groups of a worker's scripts should the worker die.

A command-mode trial's script runs in a process group of its own, directly under the
process running the trial (see :mod:`sweep.command`), which ends the group when the
trial ends. Should that process die instead (a Ray actor killed for a timeout, an
agent's worker killed by its supervisor), its reaper ends the groups it was running:
one small process per worker, outside the worker's process tree (Ray kills the whole
tree of an actor it kills), told each group as it starts and ends, which sees the
worker go when its end of a pipe closes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from typing import Any

from sweep.errors import ExecutionError

# The reaper (``python -S -c``: no site imports, a few ms to start). It leaves the
# runner's process tree at once (a second fork; its first process exits), then reads
# "+ GROUP" / "- GROUP" lines; at the end of its input (the runner is gone, or closed
# it) it ends the groups still listed: SIGTERM, then SIGKILL after the grace period.
_REAPER = """
import os, signal, sys, time
if os.fork():
    os._exit(0)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grace, groups = float(sys.argv[1]), set()
for line in sys.stdin:
    op, group = line.split()
    (groups.add if op == "+" else groups.discard)(int(group))
def signal_groups(sig):
    sent = False
    for group in groups:
        try:
            os.killpg(group, sig)
            sent = True
        except OSError:
            pass
    return sent
if signal_groups(signal.SIGTERM):
    time.sleep(grace)
    signal_groups(signal.SIGKILL)
"""


class Reaper:
    """This process's reaper, started on first use: :meth:`watch` a group as its
    script starts, :meth:`forget` it once the group is ended."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._pipe: Any = None
        self._lock = threading.Lock()

    def watch(self, group: int) -> None:
        with self._lock:
            for _ in range(2):  # a reaper that died (the OOM killer) is replaced once
                try:
                    if self._pipe is None:
                        self._pipe = self._start()
                except OSError:
                    break
                if self._send(f"+ {group}\n"):
                    return
            raise ExecutionError(
                "could not start the process that ends a trial's scripts should this "
                f"worker die ({sys.executable} -S -c ...); check that Python can run here"
            )

    def forget(self, group: int) -> None:
        with self._lock:
            if self._pipe is not None:  # else no reaper holds it
                self._send(f"- {group}\n")

    def close(self) -> None:
        """The reaper exits (it has nothing left to end once every group is forgotten)."""
        with self._lock:
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    self._pipe.close()
                self._pipe = None

    def _send(self, line: str) -> bool:
        try:
            self._pipe.write(line)
            self._pipe.flush()
            return True
        except OSError:  # the reaper is gone
            self._pipe = None
            return False

    def _start(self) -> Any:
        process = subprocess.Popen(
            [sys.executable, "-S", "-E", "-c", _REAPER, str(self.grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal's Ctrl-C reaches it
            text=True,
        )
        process.wait()  # its first process only: the reaper itself lives on
        return process.stdin
