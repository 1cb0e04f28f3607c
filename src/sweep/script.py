"""Inside a command-mode trial's script: report to the pruner like a function
objective's ``trial.report`` / ``trial.should_prune``.

The runner (:mod:`sweep.command`) passes the script a socket (its descriptor in
``SWEEP_TRIAL_FD``); each report is answered with the pruner's decision. A script's
``sweep.log_metric``, ``log_params`` and ``set_tag(s)`` go over the same socket, so
that the runner writes them with the trial's end even if the script is killed;
artifacts and models are written to the trial's run directly (``SWEEP_RUN_ID``).

    import sweep
    for epoch in range(epochs):
        ...
        sweep.report(val_loss, step=epoch)
        if sweep.should_prune():
            raise SystemExit(0)      # or just stop: the runner ends the trial PRUNED
    sweep.result(val_loss)           # optional: else the last reported value counts
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from sweep.errors import NoActiveRunError
from sweep.tracking import ActiveRun, attach_runs_with

#: Environment variable naming the descriptor of the socket to the trial's runner.
TRIAL_FD_ENV = "SWEEP_TRIAL_FD"


class _Channel:
    def __init__(self, fd: int) -> None:
        self.socket = socket.socket(fileno=fd)
        self.replies: IO[str] = self.socket.makefile("r", encoding="utf-8")
        self.lock = threading.Lock()
        self.prune = False

    def send(self, message: dict[str, Any], *, answered: bool = False) -> dict[str, Any]:
        with self.lock:
            self.socket.sendall((json.dumps(message) + "\n").encode())
            if not answered:
                return {}
            line = self.replies.readline()
        return json.loads(line) if line else {"prune": True}  # the runner is gone: stop


_channel: _Channel | None = None


def _connected() -> _Channel:
    global _channel
    if _channel is None:
        fd = os.environ.get(TRIAL_FD_ENV)
        if fd is None:
            raise NoActiveRunError(
                "sweep.report, sweep.should_prune and sweep.result are for scripts that "
                "sweep runs as trials (program/command in the spec); in a function "
                "objective call trial.report and trial.should_prune"
            )
        _channel = _Channel(int(fd))
    return _channel


def report(value: float, step: int) -> None:
    """Report ``value`` at ``step`` (an epoch, say): logged as the spec's metric, and
    the pruner decides, as for ``trial.report``."""
    channel = _connected()
    answer = channel.send({"op": "report", "value": float(value), "step": int(step)}, answered=True)
    channel.prune = bool(answer.get("prune"))


def should_prune() -> bool:
    """Whether the pruner stopped this trial at its last report (the runner then ends
    the script's process group, after a grace period)."""
    return _connected().prune


def result(value: float | Sequence[float] | Mapping[str, float]) -> None:
    """The trial's value (else the last value of the spec's metric counts); with
    several objectives, their values in the spec's order or a mapping by metric name
    (else the last value of each metric counts)."""
    sent: Any
    if isinstance(value, Mapping):
        sent = {str(k): float(v) for k, v in value.items()}
    elif isinstance(value, Sequence) and not isinstance(value, str):
        sent = [float(v) for v in value]
    else:
        sent = float(value)
    _connected().send({"op": "result", "value": sent})


#: Set by the runner: the id of the trial's run.
RUN_ID_ENV = "SWEEP_RUN_ID"


class _ScriptRun(ActiveRun):
    """The trial's run as its script sees it: metrics, params and tags go to the
    runner; artifacts and models are written here."""

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        _connected().send({"op": "log_metric", "key": key, "value": float(value), "step": step})

    def log_params(self, params: Mapping[str, Any]) -> None:
        _connected().send({"op": "log_params", "params": dict(params)})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        _connected().send({"op": "set_tags", "tags": {k: str(v) for k, v in tags.items()}})


_run: ActiveRun | None = None


def _script_run() -> ActiveRun | None:
    """The run of the command-mode trial this process runs, if it is one."""
    global _run
    run_id = os.environ.get(RUN_ID_ENV)
    if run_id is None or TRIAL_FD_ENV not in os.environ:
        return None
    if _run is None:
        from sweep.storage import Database, resolve_storage_url
        from sweep.tracking import TrackingStore

        store = TrackingStore(Database(resolve_storage_url(None)))
        _run = _ScriptRun(store, store.get_run(run_id))
        atexit.register(_run.close)
    return _run


attach_runs_with(_script_run)
