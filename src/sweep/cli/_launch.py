"""`sweep launch`, `sweep validate`, `sweep db upgrade`: run a sweep from its spec."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweep.cli import (
    RET_INTERRUPTED,
    _errors,
    _stop_on_signals,
    _storage_option,
    cli,
    console,
    err_console,
)
from sweep.errors import RegistrationError

if TYPE_CHECKING:  # the CLI imports these lazily: they pull in SQLAlchemy, Ray
    from sweep.cli._progress import LaunchProgress
    from sweep.controller import SweepResult
    from sweep.pareto import FrontTrial
    from sweep.spec import SweepSpec
    from sweep.trial import TrialOutcome
    from sweep.trial_counts import TrialCounts


_set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override a key of the spec, e.g. --set sampler.seed=3 (VALUE read as YAML); "
    "repeatable, validated like the file.",
)
_n_trials_option = click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    help="The trial budget (same as --set budget.n_trials=N).",
)
_spec_storage_option = click.option(
    "--storage",
    envvar=None,
    help="Database URL (overrides the spec and SWEEP_DATABASE_URL), e.g. "
    "postgresql+psycopg://user@host/db.",
)


def _load(
    spec_path: str, overrides: tuple[str, ...], n_trials: int | None, out: Console = console
) -> SweepSpec:
    """The spec with its overrides (--n-trials last), checked as launch needs it."""
    from sweep.spec import check_launchable, load_spec

    texts = [*overrides, *([f"budget.n_trials={n_trials}"] if n_trials is not None else [])]
    spec = load_spec(spec_path, overrides=texts)
    _say_dialect(spec_path, spec, out)
    check_launchable(spec)  # before anything is created
    return spec


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@_spec_storage_option
@click.option(
    "--ray-address", help="Run the trials on this Ray cluster instead of on this machine."
)
@click.option(
    "--follow",
    is_flag=True,
    help="Stream command-mode trials' output here, each line prefixed with its trial.",
)
@_n_trials_option
@_set_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the resolved spec and the first params its sampler draws; run nothing, "
    "write nothing.",
)
@click.pass_context
def launch(
    ctx: click.Context,
    spec_path: str,
    storage: str | None,
    ray_address: str | None,
    follow: bool,
    n_trials: int | None,
    overrides: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Run the sweep in SPEC (or continue it, if its study exists) to the end of its budget."""
    with _errors(ctx.obj["debug"]):
        from sweep.executor import executor_for, warm_from_file, warm_local_workers

        # The local workers' fork server imports the trial code on another core while
        # this process validates the spec, imports the controller's code and prepares
        # the store: started on a first look at the file, else once the spec is known.
        warmed = not dry_run and warm_from_file(spec_path, ray_address, overrides)
        spec = _load(spec_path, overrides, n_trials)
        if dry_run:
            _print_dry_run(spec)
            return
        if not warmed and executor_for(spec, ray_address) == "local":
            warm_local_workers(spec)
        from sweep.controller import launch as launch_sweep

        if follow:
            spec = spec.model_copy(update={"follow": True})
        _stop_on_signals()
        console.print(f"[bold]sweep[/] {spec.name}: {escape(spec.runs)}")
        on_start, on_trial = _print_start(spec.parallelism), _print_trial(spec.metric_names)
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


def _print_trial(metrics: list[str]) -> Callable[..., None]:
    def on_trial(outcome: TrialOutcome, counts: TrialCounts) -> None:
        colour = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}[outcome.state]
        values = outcome.values or []
        value = " ".join(f"{m}={v:.5g}" for m, v in zip(metrics, values, strict=False))
        reason = f" ({escape(outcome.error)})" if outcome.error else ""
        console.print(
            f"  trial {outcome.number:>4} [{colour}]{outcome.state:<8}[/] {value}{reason}"
            f"  [dim]{outcome.duration_s:.1f}s · {counts.complete} complete, "
            f"{counts.pruned} pruned, {counts.failed} failed[/]",
            soft_wrap=True,
        )

    return on_trial


def front_text(front: Sequence[FrontTrial]) -> str:
    """The Pareto front in a line: each trial's number and values."""
    return "; ".join(
        f"trial {t.number}: " + ", ".join(f"{k}={v:.5g}" for k, v in t.values.items())
        for t in front
    )


def _print_summary(result: SweepResult, metric: str) -> None:
    table = Table(title=f"sweep {result.name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    c = result.counts
    table.add_row(
        "trials",
        f"{c.complete} complete, {c.pruned} pruned, {c.failed} failed"
        + (f", {c.killed} killed" if c.killed else "")
        + (f" ({c.retried} lost and retried)" if c.retried else "")
        + (f"; {c.seeded} seeded by warm_start" if c.seeded else ""),
    )
    table.add_row("this launch", f"{result.trials_this_launch} trials in {result.elapsed_s:.1f}s")
    if result.best_value is not None:
        table.add_row(
            "best", f"trial {result.best_trial_number}: {metric} = {result.best_value:.6g}"
        )
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in result.best_params.items())
        table.add_row("best params", params)
    if result.pareto_front:
        table.add_row("pareto front", escape(front_text(result.pareto_front)))
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
    elif result.stopped_by:
        table.add_row("status", f"{result.state.lower()}: {escape(result.stopped_by)}")
    elif result.state in ("STOPPED", "CANCELLED"):
        table.add_row(
            "status",
            f"[yellow]{result.state.lower()}: `sweep resume {result.name}` continues it[/]",
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_dry_run(spec: SweepSpec, n: int = 3) -> None:
    from sweep.dryrun import dry_run

    preview = dry_run(spec, n)
    note = " (with " + " ".join(f"--set {o}" for o in preview.overrides) + ")"
    console.print(f"# sweep {spec.name}: the resolved spec{note if preview.overrides else ''}")
    console.print(escape(preview.spec_yaml), end="", soft_wrap=True)
    if not spec.parameters:
        console.print("# no declared parameters: the objective suggests its own when it runs")
        return
    console.print(f"# the first {len(preview.samples)} trials' declared parameters:")
    for number, params in enumerate(preview.samples):
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        console.print(f"#   trial {number}: {escape(shown)}", soft_wrap=True)
    if not spec.is_command:
        console.print("# parameters the objective suggests itself are sampled when it runs")
    console.print("# dry run: nothing was written and no trial ran")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@_spec_storage_option
@_n_trials_option
@_set_option
@click.pass_context
def create(
    ctx: click.Context,
    spec_path: str,
    storage: str | None,
    n_trials: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Record the sweep in SPEC without running it, and print its name.

    Agents then run its trials (`sweep agent NAME`, on any node); `sweep launch SPEC`
    adds a controller with Ray workers. A sweep the store holds is left as it is."""
    from sweep.create import create as create_sweep

    with _errors(ctx.obj["debug"]):
        # stdout holds the name alone: NAME=$(sweep create spec.yaml)
        spec = _load(spec_path, overrides, n_trials, out=err_console)
        created = create_sweep(spec, storage=storage)
        if created.created:
            err_console.print(
                f"created sweep {created.name} in {created.storage} (parent run "
                f"{created.parent_run_id}); start agents with `sweep agent {created.name}`",
                soft_wrap=True,
            )
        else:
            c = created.counts
            err_console.print(
                f"sweep {created.name} already exists in {created.storage} "
                f"({c.finished} trials finished, {c.running} running); left as it is: "
                f"`sweep agent {created.name}` joins it, `sweep launch {spec_path}` "
                "continues it with this spec",
                soft_wrap=True,
            )
        click.echo(created.name)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@_set_option
@click.pass_context
def validate(ctx: click.Context, spec_path: str, overrides: tuple[str, ...]) -> None:
    """Check SPEC (keys, types, ranges, objective import) without running it.

    A W&B sweep config is accepted as it is; `sweep convert SPEC` shows the native spec."""
    from sweep.spec import load_spec

    with _errors(ctx.obj["debug"]):
        spec = load_spec(spec_path, overrides=overrides)
        _say_dialect(spec_path, spec)
        console.print(
            f"{spec_path}: ok — sweep {spec.name!r}, {len(spec.parameters)} declared parameters, "
            f"{escape(spec.runs)}",
            soft_wrap=True,
        )


def _say_dialect(spec_path: str, spec: SweepSpec, out: Console = console) -> None:
    from sweep.spec import WANDB

    if spec.dialect == WANDB:
        out.print(
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
