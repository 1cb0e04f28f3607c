"""Command-mode trials: a training script (``program: train.py``, or a ``command`` such
as ``torchrun ... train.py ${args}``) run as the trial's objective.

A :class:`CommandObjective` is one more way to run the objective: the
:class:`~sweep.trial.TrialRunner` calls it with the trial like any function objective,
so Ray workers and agents run scripts through the same path, lease and end writer.

The script's process and everything it starts form one process group (a new session),
ended as a whole: SIGTERM, then SIGKILL after ``command_grace_s``. A shell between the
runner and the script holds the group together: it is told (``PR_SET_PDEATHSIG``,
through ``setpriv``) when the process that started it dies, a Ray actor killed for a
timeout or an agent's worker killed by its supervisor, and then ends the group itself;
a watcher it leaves outside the runner's process tree ends the group too, should the
shell be killed with the runner (Ray kills an actor's whole tree).

The script reports in either of two ways, and Hyperband decides on both exactly as
for a function objective (``trial.report`` then ``trial.should_prune``):

* it imports sweep and calls ``sweep.report(value, step)``, ``sweep.should_prune()``
  and ``sweep.log_metric(...)``: :mod:`sweep.script` sends them over a socket whose
  descriptor is in ``SWEEP_TRIAL_FD``;
* or it prints lines that the spec's collector parses (``epoch=3 val_loss=0.41``):
  values of the spec's metric with a step are reports.

The result is the value the script sends with ``sweep.result(value)``, else the last
value of the spec's metric. With several objectives (``metrics``) it is what
``sweep.result`` sends (the values in order, or a mapping by name), else the last value
of each metric, printed or logged; Optuna prunes no such trial, so reports are logged
only. A non-zero exit fails the trial with the tail of stderr.
stdout and stderr are kept as the run's ``logs/stdout.txt`` and ``logs/stderr.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from sweep.collector import MetricCollector
from sweep.errors import ExecutionError
from sweep.script import TRIAL_FD_ENV
from sweep.spec import SweepSpec, build_argv
from sweep.tracking import ActiveRun, active_run

#: Characters of each stream kept with the run (the tail, when a script prints more).
LOG_TAIL_CHARS = 1_000_000
#: Characters of stderr's tail that a failed trial's error carries.
ERROR_TAIL_CHARS = 2_000

# The shell between the runner and the script: it runs the script in the background
# of its process group and waits; on SIGTERM (from the runner, or because the runner
# died: setpriv's pdeathsig) it ends the group: SIGTERM, then SIGKILL after the grace
# period. A watcher outside the runner's process tree (Ray kills the tree of an actor it
# kills with SIGKILL, the shell included) does the same once the runner is gone; it
# holds neither output pipe, so that they close when the script ends (it does hold the
# socket: the runner ends the group, the watcher too, once the script has exited).
_GROUP_SHELL = (
    'grace=$1; shift; runner=$PPID; trap "" INT; '
    'trap \'trap "" TERM; kill -TERM 0; sleep "$grace"; kill -KILL 0\' TERM; '
    '( ( trap "" INT TERM; '
    'while kill -0 "$runner" 2>/dev/null; do sleep 1; done; '
    'kill -TERM 0; sleep "$grace"; kill -KILL 0 ) </dev/null >/dev/null 2>&1 & ); '
    '"$@" & wait $!'
)


class CommandFailed(ExecutionError):
    """The script exited with a non-zero code; the message ends with stderr's tail."""


class CommandObjective:
    """Runs the spec's program or command for each trial, as its objective."""

    def __init__(self, spec: SweepSpec, storage_url: str) -> None:
        self.spec = spec
        self.storage_url = storage_url
        self._setpriv = shutil.which("setpriv")

    def __call__(self, trial: optuna.Trial) -> Any:
        values = self.spec.decode_params(dict(trial.params))
        with tempfile.TemporaryDirectory(prefix="sweep-trial-") as scratch:
            params_file = Path(scratch) / "params.json"
            params_file.write_text(json.dumps(values))
            env = self._environment(trial, values, params_file)
            argv = build_argv(
                self.spec.command,
                values,
                program=self.spec.program,
                json_file=str(params_file),
                environ=env,
            )
            return _Execution(self, trial, argv, env).run()

    def _environment(
        self, trial: optuna.Trial, values: dict[str, Any], params_file: Path
    ) -> dict[str, str]:
        run = active_run()
        env = dict(os.environ)
        env.update(
            {
                "SWEEP_PARAMS_JSON": json.dumps(values),
                "SWEEP_PARAMS_FILE": str(params_file),
                "SWEEP_TRIAL_ID": str(trial.number),
                "SWEEP_RUN_ID": run.run_id,
                "SWEEP_SWEEP": self.spec.name,
                # The store's URL travels in the environment, never in argv (ps shows it).
                "SWEEP_DATABASE_URL": self.storage_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` under the group shell (and setpriv, where the system has it)."""
        shell = ["sh", "-c", _GROUP_SHELL, "sweep-trial", str(self.spec.command_grace_s)]
        prefix = [self._setpriv, "--pdeathsig", "TERM", "--"] if self._setpriv else []
        return [*prefix, *shell, *argv]


class _Execution:
    """One run of the command: its process group, its output, its reports."""

    def __init__(
        self, objective: CommandObjective, trial: optuna.Trial, argv: list[str], env: dict[str, str]
    ) -> None:
        self.spec = objective.spec
        self.trial = trial
        self.active = active_run()
        self.collector = MetricCollector.from_spec(objective.spec)
        self.events: queue.Queue[Callable[[], None]] = queue.Queue()
        self.stdout = _Tail()
        self.stderr = _Tail()
        self.result: Any = None
        self.last_value: float | None = None
        # With several objectives: the last value of each, printed or logged.
        self.names = self.spec.metric_names if self.spec.multi_objective else []
        self.last_values: dict[str, float] = {}
        self.pruned = False
        ours, theirs = socket.socketpair()
        self.channel = ours
        env[TRIAL_FD_ENV] = str(theirs.fileno())
        self.process = subprocess.Popen(
            objective.wrap(argv),
            cwd=str(self.spec.code_path),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,  # its own process group, ended as a whole
            text=True,
            errors="replace",
        )
        theirs.close()
        self.readers = [
            self._thread(self._read_stdout),
            self._thread(self._read_stderr),
            self._thread(self._read_channel),
        ]

    def run(self) -> Any:
        """Take in what the script reports until it exits; raises TrialPruned when
        the pruner stops it, CommandFailed when it exits non-zero."""
        try:
            outputs, channel = self.readers[:2], self.readers[2]
            while any(t.is_alive() for t in outputs):
                self._handle_events(timeout=0.5)
                if self.pruned:
                    self.terminate()
                    raise optuna.TrialPruned(f"pruned at step {self._last_step}")
                if self.process.poll() is not None:
                    self._end_group()  # what the script left behind does not outlive it
            self.process.wait()  # its output is closed: it has ended, or is about to
            self._end_group()  # the watcher too: the socket closes, its reader ends
            channel.join(timeout=5)
            self._handle_events(timeout=0.0)
        except BaseException:
            self.terminate()
            raise
        finally:
            self._keep_logs()
            self.channel.close()
        if self.pruned:
            raise optuna.TrialPruned(f"pruned at step {self._last_step}")
        code = self.process.returncode
        if code != 0:
            tail = self.stderr.text()[-ERROR_TAIL_CHARS:].strip()
            raise CommandFailed(f"the command exited with code {code}: {tail or '(no stderr)'}")
        if self.result is not None:
            return self.result
        if not self.names:
            return self.last_value
        missing = [n for n in self.names if n not in self.last_values]
        if missing:
            raise ExecutionError(
                f"the script gave no value for metric(s) {', '.join(missing)}: print them "
                "(e.g. name=value), log them with sweep.log_metric, or call sweep.result"
            )
        return [self.last_values[n] for n in self.names]

    _last_step: int | None = None

    # -- the process group --------------------------------------------------------------

    def terminate(self) -> None:
        """End the whole process group: SIGTERM, SIGKILL after the grace period."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.spec.command_grace_s + 5)
        self._end_group()
        for reader in self.readers:
            reader.join(timeout=5)

    def _end_group(self) -> None:
        _signal_group(self.process.pid, signal.SIGKILL)

    # -- what the script tells -----------------------------------------------------------

    def _handle_events(self, timeout: float) -> None:
        """Handle the events queued, waiting up to ``timeout`` for the first (each line,
        each message and each reader's end is one)."""
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        event()
        while not self.pruned:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            event()

    def _report(self, value: float, step: int) -> bool:
        """``trial.report`` then ``trial.should_prune``, as a function objective does
        (with several objectives, which Optuna does not prune: logged only)."""
        if self.names:
            self._take(self.spec.metric.name, value, step)
            return False
        self.last_value = value
        self._last_step = step
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned = True
        return self.pruned

    def _take(self, name: str, value: float, step: Any) -> None:
        """Log a point; with several objectives, keep the last value of each."""
        _log(self.active, name, value, step)
        if name in self.names:
            self.last_values[name] = value

    def _line(self, line: str) -> None:
        for point in self.collector.feed(line):
            step = point.step if point.step is not None else point.line_number
            if self.names:
                self._take(point.name, point.value, step)
            elif point.name == self.spec.metric.name and point.step is not None:
                self._report(point.value, point.step)  # logged as a step metric too
            else:
                _log(self.active, point.name, point.value, step)
                if point.name == self.spec.metric.name:
                    self.last_value = point.value

    def _request(self, message: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
        op = message.get("op")
        if op == "report":
            prune = self._report(float(message["value"]), int(message["step"]))
            reply({"prune": prune})
        elif op == "log_metric":
            self._take(str(message["key"]), float(message["value"]), message.get("step"))
        elif op == "result":
            value = message["value"]
            self.result = float(value) if isinstance(value, (int, float)) else value
        elif op == "set_tags":
            self.active.set_tags(dict(message["tags"]))
        elif op == "log_params":
            self.active.log_params(dict(message["params"]))

    # -- reader threads: they queue events for the runner's thread ------------------------

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.add(line)
            if self.spec.follow:
                print(f"[trial {self.trial.number}] {line}", end="", flush=True)
            self.events.put(lambda line=line: self._line(line))  # type: ignore[misc]

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.add(line)
            if self.spec.follow:
                print(f"[trial {self.trial.number}] {line}", end="", file=sys.stderr, flush=True)

    def _read_channel(self) -> None:
        reader = self.channel.makefile("r", encoding="utf-8")
        with contextlib.suppress(OSError):  # the script was ended mid-message
            for text in reader:
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                self.events.put(lambda m=message: self._request(m, self._reply))  # type: ignore[misc]

    def _reply(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the script is gone
            self.channel.sendall((json.dumps(message) + "\n").encode())

    def _thread(self, read: Callable[[], None]) -> threading.Thread:
        """A reader thread; its end wakes the runner's thread."""

        def target() -> None:
            try:
                read()
            finally:
                self.events.put(lambda: None)

        thread = threading.Thread(target=target, daemon=True, name="sweep-command-io")
        thread.start()
        return thread

    def _keep_logs(self) -> None:
        for name, lines in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = lines.text()
            if text:
                self.active.log_text(text, f"logs/{name}.txt")


class _Tail:
    """The last ``LOG_TAIL_CHARS`` or so of a stream, line by line."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._chars = 0

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._chars += len(line)
        while len(self._lines) > 1 and self._chars - len(self._lines[0]) >= LOG_TAIL_CHARS:
            self._chars -= len(self._lines.popleft())

    def text(self) -> str:
        return "".join(self._lines)[-LOG_TAIL_CHARS:]


def _log(run: ActiveRun, key: str, value: float, step: Any) -> None:
    run.log_metric(key, value, None if step is None else int(step))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)
