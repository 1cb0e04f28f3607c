"""Command-mode trials: a training script (``program: train.py``, or a ``command`` such
as ``torchrun ... train.py ${args}``) run as the trial's objective.

A :class:`CommandObjective` is one more way to run the objective: the
:class:`~sweep.trial.TrialRunner` calls it with the trial like any function objective,
so Ray workers and agents run scripts through the same path, lease and end writer.

The script's process and everything it starts form one process group (a new session),
ended as a whole: SIGTERM, then SIGKILL after ``command_grace_s``; should the process
running the trial die instead, its :class:`~sweep.reaper.Reaper` ends the group. The
script starts directly under the runner, with nothing in between, so that a short
script costs little more than running it by hand.

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

import codecs
import contextlib
import io
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from sweep.collector import MetricCollector
from sweep.errors import ExecutionError
from sweep.reaper import Reaper
from sweep.script import TRIAL_FD_ENV
from sweep.spec import SweepSpec, build_argv
from sweep.tracking import ActiveRun, active_run

#: Characters of each stream kept with the run (the tail, when a script prints more).
LOG_TAIL_CHARS = 1_000_000
#: Characters of stderr's tail that a failed trial's error carries.
ERROR_TAIL_CHARS = 2_000


class CommandFailed(ExecutionError):
    """The script exited with a non-zero code; the message ends with stderr's tail."""


class CommandObjective:
    """Runs the spec's program or command for each trial, as its objective."""

    def __init__(self, spec: SweepSpec, storage_url: str) -> None:
        self.spec = spec
        self.storage_url = storage_url
        self.reaper = Reaper(spec.command_grace_s)
        # Where each trial's params file is written: one folder for this objective's
        # trials (a folder per trial cost a short script's trial 0.3 ms).
        self._scratch: Path | None = None

    def __call__(self, trial: optuna.Trial) -> Any:
        values = self.spec.decode_params(dict(trial.params))
        if self._scratch is None or not self._scratch.is_dir():
            self._scratch = Path(tempfile.mkdtemp(prefix="sweep-trials-"))
        params_file = self._scratch / f"params-{trial.number}.json"
        params_file.write_text(json.dumps(values))
        try:
            env = self._environment(trial, values, params_file)
            argv = build_argv(
                self.spec.command,
                values,
                program=self.spec.program,
                json_file=str(params_file),
                environ=env,
            )
            return _Execution(self, trial, argv, env).run()
        finally:
            params_file.unlink(missing_ok=True)

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

    def close(self) -> None:
        self.reaper.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class _Execution:
    """One run of the command: its process group, its output, its reports.

    The runner's thread reads the script's stdout, stderr and socket itself (one
    selector, no reader threads) and handles each line as it comes: a report is
    answered, and the script pruned, while it waits for the answer."""

    def __init__(
        self, objective: CommandObjective, trial: optuna.Trial, argv: list[str], env: dict[str, str]
    ) -> None:
        self.spec = objective.spec
        self.trial = trial
        self.active = active_run()
        self.collector = MetricCollector.from_spec(objective.spec)
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
        self.reaper = objective.reaper
        self.process = subprocess.Popen(
            argv,
            cwd=str(self.spec.code_path),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,  # its own process group, ended as a whole
        )
        theirs.close()
        assert self.process.stdout is not None and self.process.stderr is not None
        self.selector = selectors.DefaultSelector()
        stdout, stderr = self.process.stdout.fileno(), self.process.stderr.fileno()
        self.streams = {
            stdout: _Lines(self._stdout_line),
            stderr: _Lines(self._stderr_line),
            self.channel.fileno(): _Lines(self._message),
        }
        self.outputs = {stdout, stderr}  # still open
        for fd in self.streams:
            self.selector.register(fd, selectors.EVENT_READ)
        try:
            self.reaper.watch(self.process.pid)
        except BaseException:
            self.terminate()
            self._close()
            raise

    def run(self) -> Any:
        """Take in what the script reports until it exits; raises TrialPruned when
        the pruner stops it, CommandFailed when it exits non-zero."""
        channel = self.channel.fileno()
        exited_at: float | None = None
        try:
            while self.outputs or self.process.poll() is None:
                if not self.outputs and channel not in self.selector.get_map():
                    self.process.wait()  # it closed everything it holds of ours
                    continue
                self._read(timeout=0.5 if self.outputs else 0.05)
                if self.pruned:
                    self.terminate()
                    raise optuna.TrialPruned(f"pruned at step {self._last_step}")
                if self.process.poll() is not None:
                    self._end_group()  # what the script left behind does not outlive it
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 5:
                        break  # a process that left the group holds its output open
            self._end_group()  # its children too: the socket closes
            self._read_to_end(time.monotonic() + 5)
        except BaseException:
            self.terminate()
            raise
        finally:
            self._keep_logs()
            self._close()
        if self.pruned:
            raise optuna.TrialPruned(f"pruned at step {self._last_step}")
        code = self.process.returncode
        if code != 0:
            tail = self.stderr.text()[-ERROR_TAIL_CHARS:].strip() or "(no stderr)"
            if code < 0:  # ended by a signal: Popen's -N
                raise CommandFailed(f"the command was killed by {_signal_name(-code)}: {tail}")
            raise CommandFailed(f"the command exited with code {code}: {tail}")
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
    _group_ended = False
    #: Once the script is ended (pruned, or failed), its output is kept for the logs only.
    ended = False

    # -- the process group --------------------------------------------------------------

    def terminate(self) -> None:
        """End the whole process group: SIGTERM, SIGKILL after the grace period."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.spec.command_grace_s + 5)
        self._end_group()
        self.ended = True
        self._read_to_end(time.monotonic() + 5)  # the output's tail, for the logs

    def _end_group(self) -> None:
        _signal_group(self.process.pid, signal.SIGKILL)
        if not self._group_ended:
            self._group_ended = True
            self.reaper.forget(self.process.pid)

    # -- the script's output and socket, read by this thread -----------------------------

    def _read(self, timeout: float) -> None:
        """Read what is ready (waiting up to ``timeout``) and handle it line by line,
        until the pruner stops the script; a stream at its end is closed."""
        for key, _ in self.selector.select(timeout):
            fd = key.fd
            try:
                data = os.read(fd, 65536)
            except OSError:  # the socket's other end was reset
                data = b""
            lines = self.streams[fd]
            if not data:
                self.selector.unregister(fd)
                self.outputs.discard(fd)
                lines.end()
            else:
                lines.feed(data)
            if self.pruned:
                return

    def _read_to_end(self, deadline: float) -> None:
        """Read every stream to its end (a script's group is gone: they end at once),
        or until ``deadline`` should a process that left the group hold one open."""
        while self.selector.get_map() and time.monotonic() < deadline:
            self._read(timeout=max(0.0, deadline - time.monotonic()))

    def _close(self) -> None:
        self.selector.close()
        self.channel.close()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

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

    def _stdout_line(self, line: str) -> None:
        self.stdout.add(line)
        if self.spec.follow:
            print(f"[trial {self.trial.number}] {line}", end="", flush=True)
        if not (self.pruned or self.ended):
            self._line(line)

    def _stderr_line(self, line: str) -> None:
        self.stderr.add(line)
        if self.spec.follow:
            print(f"[trial {self.trial.number}] {line}", end="", file=sys.stderr, flush=True)

    def _message(self, text: str) -> None:
        if self.pruned or self.ended:
            return
        try:
            message = json.loads(text)
        except ValueError:
            return
        self._request(message, self._reply)

    def _reply(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the script is gone
            self.channel.sendall((json.dumps(message) + "\n").encode())

    def _keep_logs(self) -> None:
        for name, lines in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = lines.text()
            if text:
                self.active.log_text(text, f"logs/{name}.txt")


class _Lines:
    """A stream's bytes as lines of text, each handed to ``handle`` with its newline
    (UTF-8, undecodable bytes replaced; ``\\r`` and ``\\r\\n`` read as ``\\n``, so that
    a progress bar's updates are lines)."""

    def __init__(self, handle: Callable[[str], None]) -> None:
        self.handle = handle
        self._decoder = io.IncrementalNewlineDecoder(
            codecs.getincrementaldecoder("utf-8")(errors="replace"), translate=True
        )
        self._partial = ""

    def feed(self, data: bytes) -> None:
        self._split(self._decoder.decode(data))

    def end(self) -> None:
        self._split(self._decoder.decode(b"", final=True))
        if self._partial:
            line, self._partial = self._partial, ""
            self.handle(line)

    def _split(self, text: str) -> None:
        if not text:
            return
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.handle(line + "\n")


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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)
