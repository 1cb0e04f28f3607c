"""The ``sweep`` command: a thin layer over the Python API.

Exit codes: 0 success; 1 unexpected error; 2 bad usage, invalid spec, malformed run
filter or a registry change refused as asked; 3 store unreachable or schema mismatch;
4 registration demanded but impossible; 5 trial executors (local workers or Ray) could
not start; 6 no such run, sweep, model, version or alias; 130 interrupted with Ctrl-C.

This package holds the group, the error-to-exit-code mapping and the helpers the
commands share; each command group lives in its own module (``_launch``, ``_control``,
``_runs``, ``_models``).
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from sweep.errors import (
    ExecutionError,
    FilterError,
    NotFoundError,
    RegistrationError,
    RegistryError,
    SpecError,
    StorageError,
    SweepError,
)

RET_OK = 0
RET_ERROR = 1
RET_SPEC = 2
RET_STORAGE = 3
RET_REGISTRATION = 4
RET_EXECUTION = 5
RET_NOT_FOUND = 6
RET_INTERRUPTED = 130

_EXIT_CODES: list[tuple[type[SweepError], int]] = [
    (SpecError, RET_SPEC),
    (FilterError, RET_SPEC),
    (StorageError, RET_STORAGE),
    (RegistrationError, RET_REGISTRATION),
    (RegistryError, RET_SPEC),  # a registry change refused as asked (a bad alias name)
    (ExecutionError, RET_EXECUTION),
    (NotFoundError, RET_NOT_FOUND),
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextmanager
def _errors(debug: bool) -> Iterator[None]:
    """Turn sweep errors into a message and an exit code (a traceback with --debug)."""
    try:
        yield
    except SweepError as exc:
        if debug:
            err_console.print_exception()
        from sweep.storage import redact

        # Every message is masked once more here: no credential reaches the terminal.
        err_console.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", soft_wrap=True)
        code = next((c for cls, c in _EXIT_CODES if isinstance(exc, cls)), RET_ERROR)
        sys.exit(code)


_storage_option = click.option(
    "--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="sweep")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter sweeps on Optuna + Ray, with tracking and a model registry."""
    ctx.obj = {"debug": debug}


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the sweep cleanly (running trials end KILLED), also when
    a shell started us in the background with SIGINT ignored."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _print_json(value: Any) -> None:
    """Print ``value`` as strict JSON: an infinite or NaN number (a best value of inf)
    becomes the string "Infinity", "-Infinity" or "NaN", since JSON has no such number
    and a bare ``Infinity`` breaks every strict parser (jq, JSON.parse)."""
    import json

    click.echo(json.dumps(_finite(value), indent=2, allow_nan=False))


def _finite(value: Any) -> Any:
    """``value`` with dataclasses as dicts and non-finite floats as strings."""
    import dataclasses
    import math

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _finite(dataclasses.asdict(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


#: Seconds from the command's start during which the garbage collector is off.
COLLECTOR_OFF_AT_START_S = 5.0


def main() -> None:
    # A command's start imports and builds about a million objects that live as long
    # as the process (modules, classes, SQLAlchemy's and pydantic's structures); the
    # collector's passes over them cost a launch about 0.2 s before its first trial.
    # It is off for the first seconds, then on again with what exists by then frozen
    # out of its reach.
    gc.disable()
    timer = threading.Timer(COLLECTOR_OFF_AT_START_S, _collect_again)
    timer.daemon = True
    timer.start()
    try:
        cli(prog_name="sweep")
    finally:
        timer.cancel()
        gc.enable()


def _collect_again() -> None:
    gc.freeze()
    gc.enable()


# The command groups register themselves on `cli`.
from sweep.cli import (  # noqa: E402, F401
    _control,
    _convert,
    _delete,
    _export,
    _launch,
    _models,
    _runs,
    _ui,
)
