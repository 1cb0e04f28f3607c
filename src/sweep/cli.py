"""The ``sweep`` command: a thin layer over the Python API.

Exit codes: 0 success; 1 unexpected error; 2 bad usage or invalid spec; 3 store
unreachable or schema mismatch; 4 registration demanded but impossible; 5 trial
executors (Ray) could not start; 6 no such run, sweep, model, version or alias;
130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweep.errors import (
    ExecutionError,
    NotFoundError,
    RegistrationError,
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
    (StorageError, RET_STORAGE),
    (RegistrationError, RET_REGISTRATION),
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
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        code = next((c for cls, c in _EXIT_CODES if isinstance(exc, cls)), RET_ERROR)
        sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="sweep")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter sweeps on Optuna + Ray, with tracking and a model registry."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--storage",
    envvar=None,
    help="Database URL (overrides the spec and SWEEP_DATABASE_URL), e.g. "
    "postgresql+psycopg://user@host/db.",
)
@click.option("--ray-address", help="Join this Ray cluster instead of starting a local Ray.")
@click.pass_context
def launch(
    ctx: click.Context, spec_path: str, storage: str | None, ray_address: str | None
) -> None:
    """Run the sweep in SPEC (or continue it, if its study exists) to the end of its budget."""
    from sweep.controller import launch as launch_sweep
    from sweep.spec import load_spec

    with _errors(ctx.obj["debug"]):
        spec = load_spec(spec_path)
        _stop_on_signals()
        console.print(f"[bold]sweep[/] {spec.name}: objective {spec.objective}")
        try:
            result = launch_sweep(
                spec,
                storage=storage,
                ray_address=ray_address,
                on_start=_print_start(spec.parallelism),
                on_trial=_print_trial(spec.metric.name),
            )
        except RegistrationError as exc:
            result = getattr(exc, "result", None)
            if result is not None:
                _print_summary(result, spec.metric.name)
            raise
        _print_summary(result, spec.metric.name)
        if result.interrupted:
            sys.exit(RET_INTERRUPTED)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the sweep cleanly (running trials end KILLED), also when
    a shell started us in the background with SIGINT ignored."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _print_start(parallelism: int) -> Callable[..., None]:
    def on_start(storage: str, counts: Any, remaining: int | None) -> None:
        console.print(f"  store: {storage}")
        if counts.finished or counts.killed:
            console.print(f"  continuing: {counts.finished} trials already finished in this study")
        if remaining == 0:
            console.print("  the trial budget is already spent; nothing to run")
        else:
            todo = "until the timeout" if remaining is None else f"{remaining} trials"
            console.print(f"  running {todo} on {parallelism} Ray workers")

    return on_start


def _print_trial(metric: str) -> Callable[..., None]:
    def on_trial(outcome: Any, counts: Any) -> None:
        colour = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}[outcome.state]
        value = f"{metric}={outcome.value:.5g}" if outcome.value is not None else ""
        reason = f" ({escape(outcome.error)})" if outcome.error else ""
        console.print(
            f"  trial {outcome.number:>4} [{colour}]{outcome.state:<8}[/] {value}{reason}"
            f"  [dim]{outcome.duration_s:.1f}s · {counts.complete} complete, "
            f"{counts.pruned} pruned, {counts.failed} failed[/]",
            soft_wrap=True,
        )

    return on_trial


def _print_summary(result: Any, metric: str) -> None:
    table = Table(title=f"sweep {result.name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    c = result.counts
    table.add_row(
        "trials",
        f"{c.complete} complete, {c.pruned} pruned, {c.failed} failed"
        + (f", {c.killed} killed" if c.killed else ""),
    )
    table.add_row("this launch", f"{result.trials_this_launch} trials in {result.elapsed_s:.1f}s")
    if result.best_value is not None:
        table.add_row(
            "best", f"trial {result.best_trial_number}: {metric} = {result.best_value:.6g}"
        )
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in result.best_params.items())
        table.add_row("best params", params)
    table.add_row("experiment", result.experiment)
    table.add_row("parent run", result.parent_run_id)
    table.add_row("store", result.storage)
    if result.model_version is not None:
        mv = result.model_version
        aliases = " ".join(f"@{a}" for a in mv.aliases)
        table.add_row("model", f"models:/{mv.model_name}/{mv.version} {aliases}")
    elif result.registration:
        table.add_row("model", escape(result.registration))
    if result.interrupted:
        table.add_row(
            "status",
            "[yellow]interrupted: running trials were killed; "
            "launch the same spec again to continue[/]",
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.pass_context
def validate(ctx: click.Context, spec_path: str) -> None:
    """Check SPEC (keys, types, ranges, objective import) without running it."""
    from sweep.spec import load_spec

    with _errors(ctx.obj["debug"]):
        spec = load_spec(spec_path)
        console.print(
            f"{spec_path}: ok — sweep {spec.name!r}, {len(spec.parameters)} declared parameters, "
            f"objective {spec.objective}"
        )


@cli.group()
def db() -> None:
    """Manage the store's schema."""


@db.command("upgrade")
@click.option("--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db.")
@click.pass_context
def db_upgrade(ctx: click.Context, storage: str | None) -> None:
    """Create or upgrade sweep's tables to this version's schema."""
    from sweep.storage import Database, resolve_storage_url

    with _errors(ctx.obj["debug"]):
        database = Database(resolve_storage_url(storage))
        database.upgrade()
        console.print(f"{database.display_url}: schema at {database.schema_revision()}")


# -- runs -----------------------------------------------------------------------------

_storage_option = click.option(
    "--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class _DefaultListGroup(click.Group):
    """`sweep runs NAME` means `sweep runs list NAME`; `sweep runs show ID` stays."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _tracking(storage: str | None) -> Any:
    from sweep.storage import Database, resolve_storage_url
    from sweep.tracking import TrackingStore

    database = Database(resolve_storage_url(storage))
    database.ensure_schema()
    return TrackingStore(database)


@cli.group(cls=_DefaultListGroup)
def runs() -> None:
    """Tracked runs: `sweep runs NAME` lists the trial runs of sweep NAME (or every run
    of experiment NAME); `show RUN_ID` prints one; `describe RUN_ID TEXT` sets its note."""


@runs.command("list")
@click.argument("name")
@_storage_option
@_json_option
@click.pass_context
def runs_list(ctx: click.Context, name: str, storage: str | None, as_json: bool) -> None:
    """List the trial runs of sweep NAME, or every run of experiment NAME."""
    from sweep.study import get_sweep_record

    with _errors(ctx.obj["debug"]):
        tracking = _tracking(storage)
        record = get_sweep_record(tracking.db, name)
        if record is not None:
            found = tracking.list_runs(parent_run_id=record.parent_run_id)
        else:
            experiment = tracking.find_experiment(name)
            if experiment is None:
                raise NotFoundError(f"no sweep or experiment called {name!r}")
            found = tracking.list_runs(experiment_id=experiment.experiment_id)
        if as_json:
            _print_json(found)
            return
        table = Table("run", "name", "status", "state", "metrics", "params")
        for run in found:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items()))
            params = ", ".join(f"{k}={v}" for k, v in sorted(run.params.items()))
            table.add_row(
                run.run_id,
                run.name,
                run.status.value,
                run.tags.get("sweep.state", ""),
                escape(metrics),
                escape(params),
            )
        console.print(table)


@runs.command("show")
@click.argument("run_id")
@_storage_option
@_json_option
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, storage: str | None, as_json: bool) -> None:
    """Print a run: status, params, latest metrics, tags (lineage) and artifacts."""
    with _errors(ctx.obj["debug"]):
        tracking = _tracking(storage)
        run = tracking.get_run(run_id)
        artifacts = tracking.list_artifacts(run_id)
        if as_json:
            _print_json({"run": run, "artifacts": artifacts})
            return
        console.print(f"[bold]{run.name}[/] {run.run_id}  {run.status.value}")
        if run.parent_run_id:
            console.print(f"  parent run: {run.parent_run_id}")
        console.print(
            f"  started {_when(run.start_time)}"
            + (f", ended {_when(run.end_time)}" if run.end_time else "")
        )
        if run.description:
            console.print(f"  note: {escape(run.description)}")
        for title, values in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
            if values:
                console.print(f"  {title}:")
                for key, value in sorted(values.items()):
                    console.print(f"    {escape(key)} = {escape(str(value))}", soft_wrap=True)
        if artifacts:
            console.print(f"  artifacts ({run.artifact_uri}):")
            for artifact in artifacts:
                console.print(f"    {escape(artifact.path)} [{artifact.kind}, {artifact.size} B]")


@runs.command("describe")
@click.argument("run_id")
@click.argument("text")
@_storage_option
@click.pass_context
def runs_describe(ctx: click.Context, run_id: str, text: str, storage: str | None) -> None:
    """Set a run's note (the hypothesis, the outcome); replaces the previous one."""
    with _errors(ctx.obj["debug"]):
        _tracking(storage).set_description(run_id, text)
        console.print(f"{run_id}: note saved")


# -- models -------------------------------------------------------------------------


def _registry(storage: str | None) -> Any:
    from sweep.registry import ModelRegistry
    from sweep.storage import Database, resolve_storage_url

    database = Database(resolve_storage_url(storage))
    database.ensure_schema()
    return ModelRegistry(database)


def _print_json(value: Any) -> None:
    import dataclasses
    import json

    def encode(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        raise TypeError(type(obj).__name__)

    click.echo(json.dumps(value, default=encode, indent=2))


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


@cli.group()
def models() -> None:
    """Registered models: versions, aliases, promotion and its audit log."""


@models.command("list")
@_storage_option
@_json_option
@click.pass_context
def models_list(ctx: click.Context, storage: str | None, as_json: bool) -> None:
    """List registered models with their latest version and aliases."""
    with _errors(ctx.obj["debug"]):
        found = _registry(storage).list_models()
        if as_json:
            _print_json(found)
            return
        table = Table("model", "latest", "aliases", "created")
        for m in found:
            aliases = " ".join(f"@{a}={v}" for a, v in sorted(m.aliases.items()))
            table.add_row(m.name, str(m.latest_version or "-"), aliases, _when(m.created_at))
        console.print(table)


@models.command("show")
@click.argument("name")
@_storage_option
@_json_option
@click.pass_context
def models_show(ctx: click.Context, name: str, storage: str | None, as_json: bool) -> None:
    """Show a model's versions with their aliases, source run, sweep and trial."""

    with _errors(ctx.obj["debug"]):
        versions = _registry(storage).list_versions(name)
        if not versions:
            raise NotFoundError(f"no registered model {name!r}; list them with: sweep models list")
        if as_json:
            _print_json(versions)
            return
        table = Table("version", "aliases", "metric", "sweep / trial", "run", "created")
        for v in versions:
            metric = f"{v.metric_name}={v.metric_value:.6g}" if v.metric_value is not None else ""
            origin = f"{v.sweep_name} / {v.trial_number}" if v.sweep_name else ""
            table.add_row(
                str(v.version),
                " ".join(f"@{a}" for a in v.aliases),
                metric,
                origin,
                v.run_id or "",
                _when(v.created_at),
            )
        console.print(table)


@models.command("promote")
@click.argument("name")
@click.option("--reason", help="Why; kept in the audit log.")
@_storage_option
@click.pass_context
def models_promote(ctx: click.Context, name: str, reason: str | None, storage: str | None) -> None:
    """Move @challenger to @champion; the old champion becomes @rollback."""
    with _errors(ctx.obj["debug"]):
        version = _registry(storage).promote(name, reason=reason)
        console.print(f"{name} version {version.version} is now @champion")


@models.command("rollback")
@click.argument("name")
@click.option("--reason", help="Why; kept in the audit log.")
@_storage_option
@click.pass_context
def models_rollback(ctx: click.Context, name: str, reason: str | None, storage: str | None) -> None:
    """Put the @rollback version back as @champion."""
    with _errors(ctx.obj["debug"]):
        version = _registry(storage).rollback(name, reason=reason)
        console.print(f"{name} version {version.version} is @champion again")


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int)
@click.option("--reason", help="Why; kept in the audit log.")
@_storage_option
@click.pass_context
def models_alias(
    ctx: click.Context, name: str, alias: str, version: int, reason: str | None, storage: str | None
) -> None:
    """Point ALIAS of model NAME at VERSION."""
    with _errors(ctx.obj["debug"]):
        _registry(storage).set_alias(name, alias, version, reason=reason)
        console.print(f"{name} @{alias} -> version {version}")


@models.command("history")
@click.argument("name")
@_storage_option
@_json_option
@click.pass_context
def models_history(ctx: click.Context, name: str, storage: str | None, as_json: bool) -> None:
    """The audit log: every registration and alias change, who made it and why."""
    with _errors(ctx.obj["debug"]):
        events = _registry(storage).history(name)
        if as_json:
            _print_json(events)
            return
        table = Table("when", "what", "alias", "from", "to", "who", "reason")
        for e in events:
            table.add_row(
                _when(e.at),
                e.action,
                e.alias or "",
                str(e.from_version or "-"),
                str(e.to_version or "-"),
                f"{e.user}@{e.host}",
                escape(e.reason or ""),
            )
        console.print(table)


def main() -> None:
    cli(prog_name="sweep")


if __name__ == "__main__":
    main()
