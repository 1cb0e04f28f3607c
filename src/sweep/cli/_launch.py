"""`sweep launch`, `sweep validate`, `sweep db upgrade`: run a sweep from its spec."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from sweep.cli import (
    RET_INTERRUPTED,
    _errors,
    _stop_on_signals,
    _storage_option,
    cli,
    console,
)
from sweep.errors import RegistrationError

if TYPE_CHECKING:  # the CLI imports these lazily: they pull in SQLAlchemy, Ray
    from sweep.cli._progress import LaunchProgress
    from sweep.controller import SweepResult
    from sweep.spec import SweepSpec
    from sweep.study import TrialCounts
    from sweep.trial import TrialOutcome


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--storage",
    envvar=None,
    help="Database URL (overrides the spec and SWEEP_DATABASE_URL), e.g. "
    "postgresql+psycopg://user@host/db.",
)
@click.option(
    "--ray-address", help="Run the trials on this Ray cluster instead of on this machine."
)
@click.option(
    "--follow",
    is_flag=True,
    help="Stream command-mode trials' output here, each line prefixed with its trial.",
)
@click.pass_context
def launch(
    ctx: click.Context,
    spec_path: str,
    storage: str | None,
    ray_address: str | None,
    follow: bool,
) -> None:
    """Run the sweep in SPEC (or continue it, if its study exists) to the end of its budget."""
    from sweep.controller import launch as launch_sweep
    from sweep.spec import check_launchable, load_spec

    with _errors(ctx.obj["debug"]):
        spec = load_spec(spec_path)
        _say_dialect(spec_path, spec)
        check_launchable(spec)  # before anything is created
        if follow:
            spec = spec.model_copy(update={"follow": True})
        _stop_on_signals()
        console.print(f"[bold]sweep[/] {spec.name}: {escape(spec.runs)}")
        on_start, on_trial = _print_start(spec.parallelism), _print_trial(spec.metric.name)
        progress = _live_progress(spec, storage)
        if progress is not None:
            on_start = _both(on_start, progress.on_start)
            on_trial = _both(on_trial, progress.on_trial)
        try:
            result = launch_sweep(
                spec, storage=storage, ray_address=ray_address, on_start=on_start, on_trial=on_trial
            )
        except RegistrationError as exc:
            # The controller attaches the finished sweep's result, when it has one.
            partial = getattr(exc, "result", None)
            if partial is not None:
                _print_summary(partial, spec.metric.name)
            raise
        finally:
            if progress is not None:
                progress.close()
        _print_summary(result, spec.metric.name)
        if result.interrupted:
            sys.exit(RET_INTERRUPTED)


def _live_progress(spec: SweepSpec, storage: str | None) -> LaunchProgress | None:
    """The live display on a terminal (None when output goes to a file or a CI log)."""
    if not console.is_terminal:
        return None
    from sweep.cli._progress import LaunchProgress
    from sweep.storage import resolve_storage_url

    return LaunchProgress(
        console,
        name=spec.name,
        url=resolve_storage_url(storage, spec.storage),
        metric=spec.metric.name,
        direction=spec.metric.direction,
    )


def _both(first: Callable[..., None], second: Callable[..., None]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        first(*args)
        second(*args)

    return call


def _print_start(parallelism: int) -> Callable[..., None]:
    def on_start(storage: str, counts: TrialCounts, remaining: int | None) -> None:
        console.print(f"  store: {storage}")
        if counts.finished or counts.killed:
            console.print(f"  continuing: {counts.finished} trials already finished in this study")
        if remaining == 0:
            console.print("  the trial budget is already spent; nothing to run")
        else:
            todo = "until the timeout" if remaining is None else f"{remaining} trials"
            console.print(f"  running {todo} on {parallelism} workers")

    return on_start


def _print_trial(metric: str) -> Callable[..., None]:
    def on_trial(outcome: TrialOutcome, counts: TrialCounts) -> None:
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


def _print_summary(result: SweepResult, metric: str) -> None:
    table = Table(title=f"sweep {result.name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    c = result.counts
    table.add_row(
        "trials",
        f"{c.complete} complete, {c.pruned} pruned, {c.failed} failed"
        + (f", {c.killed} killed" if c.killed else "")
        + (f" ({c.retried} lost and retried)" if c.retried else ""),
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
    elif result.state in ("STOPPED", "CANCELLED"):
        table.add_row(
            "status",
            f"[yellow]{result.state.lower()}: `sweep resume {result.name}` continues it[/]",
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.pass_context
def validate(ctx: click.Context, spec_path: str) -> None:
    """Check SPEC (keys, types, ranges, objective import) without running it.

    A W&B sweep config is accepted as it is; `sweep convert SPEC` shows the native spec."""
    from sweep.spec import load_spec

    with _errors(ctx.obj["debug"]):
        spec = load_spec(spec_path)
        _say_dialect(spec_path, spec)
        console.print(
            f"{spec_path}: ok — sweep {spec.name!r}, {len(spec.parameters)} declared parameters, "
            f"{escape(spec.runs)}",
            soft_wrap=True,
        )


def _say_dialect(spec_path: str, spec: SweepSpec) -> None:
    from sweep.spec import WANDB

    if spec.dialect == WANDB:
        console.print(
            f"{spec_path}: read as a W&B sweep config (`sweep convert {spec_path}` shows the "
            "native spec)",
            soft_wrap=True,
        )


@cli.group()
def db() -> None:
    """Manage the store's schema."""


@db.command("upgrade")
@_storage_option
@click.pass_context
def db_upgrade(ctx: click.Context, storage: str | None) -> None:
    """Create or upgrade sweep's tables to this version's schema."""
    from sweep.storage import Database, resolve_storage_url

    with _errors(ctx.obj["debug"]):
        database = Database(resolve_storage_url(storage))
        database.upgrade()
        console.print(f"{database.display_url}: schema at {database.schema_revision()}")
