"""`sweep runs`: list, search, show and annotate tracked runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from sweep.cli import (
    _errors,
    _json_option,
    _print_json,
    _storage_option,
    _when,
    cli,
    console,
    err_console,
)

if TYPE_CHECKING:  # the CLI imports these lazily: they pull in SQLAlchemy, Ray
    from sweep.tracking import Run, TrackingStore

# -- runs -----------------------------------------------------------------------------


class _DefaultListGroup(click.Group):
    """`sweep runs NAME` means `sweep runs list NAME`; `sweep runs show ID` stays."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _tracking(storage: str | None) -> TrackingStore:
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
@click.option(
    "--filter",
    "filter_",
    metavar="EXPR",
    help='Only runs matching EXPR, e.g. "params.lr < 0.01 and metrics.val_acc > 0.9 and '
    "tags.model_type = 'sgd'\" (see the README's Search section).",
)
@click.option(
    "--order-by",
    "order_by",
    metavar="KEY[ desc]",
    multiple=True,
    help="Sort by KEY, e.g. 'metrics.val_acc desc'; repeatable. Runs without KEY come last; "
    "default: start time.",
)
@click.option(
    "--max-results",
    # One below the database's 64-bit LIMIT: one more run is asked for (below).
    type=click.IntRange(min=1, max=2**63 - 2),
    default=1000,
    show_default=True,
    help="Return at most this many runs.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True, max=10**7),
    default=None,
    metavar="SECONDS",
    help="Cancel the search in the database after this long; default: SWEEP_SEARCH_TIMEOUT or 30.",
)
@click.option(
    "--pareto",
    is_flag=True,
    help="Only the runs of the trials on sweep NAME's Pareto front (several objectives; "
    "with one, its best trials).",
)
@_storage_option
@_json_option
@click.pass_context
def runs_list(
    ctx: click.Context,
    name: str,
    filter_: str | None,
    order_by: tuple[str, ...],
    max_results: int,
    timeout_s: float | None,
    pareto: bool,
    storage: str | None,
    as_json: bool,
) -> None:
    """List the trial runs of sweep NAME, or every run of experiment NAME, optionally
    filtered and sorted."""
    from sweep.tracking import search_runs

    with _errors(ctx.obj["debug"]):
        if pareto and not (filter_ or order_by):
            # The front's runs by trial number, however many runs the sweep has.
            from sweep.pareto import pareto_front

            tracking = _tracking(storage)
            front = [t.run_id for t in pareto_front(name, storage=storage) if t.run_id]
            _print_runs([tracking.get_run(run_id) for run_id in front], as_json)
            return
        # One more than asked tells whether there are more to say so.
        found = search_runs(
            name,
            filter_,
            list(order_by),
            storage=storage,
            max_results=max_results + 1,
            timeout_s=timeout_s,
        )
        if len(found) > max_results:
            found = found[:max_results]
            err_console.print(
                f"[yellow]showing the first {max_results} runs; raise --max-results to see more[/]"
            )
        found = _with_live_params(found, storage)
        if pareto:
            from sweep.pareto import pareto_front

            on_front = {t.run_id for t in pareto_front(name, storage=storage)}
            found = [run for run in found if run.run_id in on_front]
        _print_runs(found, as_json)


def _print_runs(found: list[Run], as_json: bool) -> None:
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


def _with_live_params(found: list[Run], storage: str | None) -> list[Run]:
    """Running trials' params, from Optuna's tables (their runs get them at the end)."""
    from sweep.storage import Database, resolve_storage_url
    from sweep.trials import with_live_params

    if not any(r.status.value == "RUNNING" for r in found):
        return found
    database = Database(resolve_storage_url(storage))
    try:
        return with_live_params(database, found)
    finally:
        database.dispose()


@runs.command("show")
@click.argument("run_id")
@click.option(
    "--metric", "metric", metavar="NAME", help="Print metric NAME's history, with a sparkline."
)
@_storage_option
@_json_option
@click.pass_context
def runs_show(
    ctx: click.Context, run_id: str, metric: str | None, storage: str | None, as_json: bool
) -> None:
    """Print a run: status, params, latest metrics, tags (lineage), datasets, artifacts;
    with --metric NAME, that metric's history instead."""
    with _errors(ctx.obj["debug"]):
        tracking = _tracking(storage)
        if metric is not None:
            from sweep.cli._history import print_history

            print_history(tracking, run_id, metric, as_json=as_json)
            return
        run = _with_live_params([tracking.get_run(run_id)], storage)[0]
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
        if run.inputs:
            console.print("  datasets:")
            for data in run.inputs:
                source = f"  {escape(data.source)}" if data.source else ""
                console.print(
                    f"    {escape(data.name)} ({escape(data.context)}) {data.digest[:19]}{source}",
                    soft_wrap=True,
                )
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
