"""The ``sweep`` command: a thin layer over the Python API.

Exit codes: 0 success; 1 unexpected error; 2 bad usage, invalid spec or malformed run
filter; 3 store
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
    FilterError,
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
    (FilterError, RET_SPEC),
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


# -- agents and control ---------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db.")
@click.option(
    "--gpus",
    help="One worker per GPU, CUDA_VISIBLE_DEVICES pinned: '0,1,3' or 'all'. "
    "Default: one worker, no GPU.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many trials.")
@click.option(
    "--code-dir",
    type=click.Path(file_okay=False, exists=True),
    help="Where the objective's code is on this node (default: the controller's code_dir "
    "if it exists here, else the current directory).",
)
@click.pass_context
def agent(
    ctx: click.Context,
    name: str,
    storage: str | None,
    gpus: str | None,
    count: int | None,
    code_dir: str | None,
) -> None:
    """Join the running sweep NAME through the database and run its trials here."""
    from sweep.agent import parse_gpus, run_agent

    with _errors(ctx.obj["debug"]):
        gpu_list = parse_gpus(gpus)
        _stop_on_signals()
        where = f"GPUs {','.join(gpu_list)}" if gpu_list else "1 worker, no GPU"
        console.print(f"[bold]sweep agent[/] joining {name} ({where})")

        def on_trial(outcome: Any) -> None:
            colour = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}[outcome.state]
            value = f" {outcome.value:.5g}" if outcome.value is not None else ""
            reason = f" ({escape(outcome.error)})" if outcome.error else ""
            console.print(
                f"  trial {outcome.number:>4} [{colour}]{outcome.state:<8}[/]{value}{reason}",
                soft_wrap=True,
            )

        result = run_agent(
            name, storage=storage, gpus=gpu_list, count=count, code_dir=code_dir, on_trial=on_trial
        )
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items()))
        console.print(f"agent done: {result.trials} trials ({states or 'none'})")
        if result.interrupted:
            sys.exit(RET_INTERRUPTED)


@cli.command()
@click.argument("name", required=False)
@click.option("--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def status(ctx: click.Context, name: str | None, storage: str | None, as_json: bool) -> None:
    """Sweeps with their state, trial counts, best value and attached workers."""
    import dataclasses

    from sweep.control import sweep_status

    with _errors(ctx.obj["debug"]):
        statuses = sweep_status(name, storage=storage)
        if as_json:
            _print_json(
                [
                    {
                        **dataclasses.asdict(st),
                        "workers": [
                            {**dataclasses.asdict(w), "alive": st.alive(w)} for w in st.workers
                        ],
                    }
                    for st in statuses
                ]
            )
            return
        if not statuses:
            console.print("no sweeps in this store; start one with `sweep launch SPEC`")
        for st in statuses:
            c = st.counts
            budget = f"/{st.n_trials}" if st.n_trials else ""
            best = (
                f"best {st.best_value:.6g} (trial {st.best_trial}, {st.direction})"
                if st.best_value is not None
                else "no complete trial yet"
            )
            console.print(
                f"[bold]{st.name}[/] {st.state}: {c.finished}{budget} finished "
                f"({c.complete} complete, {c.pruned} pruned, {c.failed} failed), "
                f"{c.running} running, {c.waiting} waiting"
                + (f", {c.retried} retried" if c.retried else "")
                + (f", {c.killed} killed" if c.killed else "")
                + f"; {best}",
                soft_wrap=True,
            )
            alive = [w for w in st.workers if st.alive(w)]
            if alive:
                table = Table("worker", "kind", "host", "pid", "gpus", "last heartbeat")
                for w in alive:
                    table.add_row(
                        w.worker_id[:8],
                        w.kind,
                        w.host,
                        str(w.pid),
                        w.gpus or "",
                        _when(w.heartbeat_at),
                    )
                console.print(table)


def _control_command(action: str, doc: str) -> None:
    @cli.command(action, help=doc)
    @click.argument("name")
    @click.option("--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db.")
    @click.pass_context
    def command(ctx: click.Context, name: str, storage: str | None) -> None:
        from sweep import control

        with _errors(ctx.obj["debug"]):
            getattr(control, action)(name, storage=storage)
            console.print(f"{name}: {action} requested; workers act on it at their next heartbeat")


_control_command("stop", "Start no new trials of sweep NAME; let running trials finish.")
_control_command("cancel", "Kill the running trials of sweep NAME (runs end KILLED) and stop.")
_control_command("pause", "Start no new trials of sweep NAME until `sweep resume`.")


@cli.command()
@click.argument("name")
@click.option("--storage", help="Database URL; default: SWEEP_DATABASE_URL or .sweep/sweep.db.")
@click.option("--ray-address", help="Join this Ray cluster instead of starting a local Ray.")
@click.pass_context
def resume(ctx: click.Context, name: str, storage: str | None, ray_address: str | None) -> None:
    """Continue sweep NAME: un-pause it, or, if its controller is gone (crashed, stopped,
    cancelled), become its controller and finish the remaining budget."""
    from sweep import control

    with _errors(ctx.obj["debug"]):
        _stop_on_signals()
        result = control.resume(name, storage=storage, ray_address=ray_address)
        if result is None:
            console.print(f"{name}: resumed; its controller claims trials again")
            return
        _print_summary(result, "value")
        if result.interrupted:
            sys.exit(RET_INTERRUPTED)


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
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Return at most this many runs.",
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
    storage: str | None,
    as_json: bool,
) -> None:
    """List the trial runs of sweep NAME, or every run of experiment NAME, optionally
    filtered and sorted."""
    from sweep.tracking import search_runs

    with _errors(ctx.obj["debug"]):
        # One more than asked tells whether there are more to say so.
        found = search_runs(
            name, filter_, list(order_by), storage=storage, max_results=max_results + 1
        )
        if len(found) > max_results:
            found = found[:max_results]
            err_console.print(
                f"[yellow]showing the first {max_results} runs; raise --max-results to see more[/]"
            )
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
    """Print a run: status, params, latest metrics, tags (lineage), datasets, artifacts."""
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
    """Registered models: versions, aliases, tags and descriptions, lineage, promotion
    and its audit log."""


def _iso(ms: int) -> str:
    """An audit time as ISO 8601 with the local UTC offset, to the second."""
    import datetime

    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.astimezone().isoformat(timespec="seconds")


_reason_option = click.option("--reason", help="Why; kept in the audit log.")


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
        table = Table("model", "latest", "aliases", "created", "description")
        for m in found:
            aliases = " ".join(f"@{a}={v}" for a, v in sorted(m.aliases.items()))
            table.add_row(
                m.name,
                str(m.latest_version or "-"),
                aliases,
                _when(m.created_at),
                escape(m.description or ""),
            )
        console.print(table)


@models.command("show")
@click.argument("name")
@_storage_option
@_json_option
@click.pass_context
def models_show(ctx: click.Context, name: str, storage: str | None, as_json: bool) -> None:
    """Show model NAME: each version with its aliases, tags, description and lineage
    (sweep, trial, run, params, metric, git commit, datasets)."""
    import dataclasses

    with _errors(ctx.obj["debug"]):
        registry = _registry(storage)
        model = registry.get_model(name)
        versions = registry.list_versions(name)
        lineages = {lineage.version: lineage for lineage in registry.lineages(name)}
        if as_json:
            _print_json(
                {
                    **dataclasses.asdict(model),
                    "versions": [
                        {**dataclasses.asdict(v), "lineage": _lineage_json(lineages[v.version])}
                        for v in versions
                    ],
                }
            )
            return
        aliases = " ".join(f"@{a}={v}" for a, v in sorted(model.aliases.items()))
        console.print(
            f"[bold]{escape(model.name)}[/]  {len(versions)} versions"
            + (f"  {escape(aliases)}" if aliases else "")
            + f"  [dim]created {_when(model.created_at)}[/]",
            soft_wrap=True,
        )
        if model.description:
            console.print(f"  {escape(model.description)}", soft_wrap=True)
        for v in versions:
            _print_version(v, lineages[v.version])


def _lineage_json(lineage: Any) -> dict[str, Any]:
    import dataclasses

    data = dataclasses.asdict(lineage)
    del data["model_name"], data["version"]  # already on the version
    return data


def _print_version(v: Any, lineage: Any) -> None:
    def line(label: str, text: str) -> None:
        console.print(f"  [bold]{label:<11}[/] {text}", soft_wrap=True)

    console.print()
    metric = f"  {v.metric_name}={v.metric_value:.6g}" if v.metric_value is not None else ""
    aliases = "  " + " ".join(f"@{a}" for a in v.aliases) if v.aliases else ""
    console.print(
        f"[bold]version {v.version}[/][green]{aliases}[/]{escape(metric)}"
        f"  [dim]{_when(v.created_at)}[/]",
        soft_wrap=True,
    )
    if v.description:
        line("description", escape(v.description))
    if v.tags:
        line("tags", escape(", ".join(f"{k}={val}" for k, val in sorted(v.tags.items()))))
    line("source", escape(v.source))
    origin = []
    if lineage.sweep_name:
        origin.append(f"sweep {lineage.sweep_name}")
    if lineage.trial_number is not None:
        origin.append(f"trial {lineage.trial_number}")
    if lineage.run_id:
        origin.append(f"run {lineage.run_id}")
    if lineage.parent_run_id:
        origin.append(f"sweep run {lineage.parent_run_id}")
    line("lineage", escape(", ".join(origin)) if origin else "[dim]registered by hand[/]")
    if lineage.params:
        line("params", escape(", ".join(f"{k}={p}" for k, p in lineage.params.items())))
    if lineage.git_commit:
        dirty = " [yellow](uncommitted changes)[/]" if lineage.git_dirty else ""
        branch = f" on {escape(lineage.git_branch)}" if lineage.git_branch else ""
        line("code", f"{escape(lineage.git_commit)}{branch}{dirty}")
    elif lineage.run_id:
        line("code", "[dim]not in a git repository[/]")
    for data in lineage.datasets:
        source = f" from {data.source}" if data.source else ""
        line("data", escape(f"{data.name} ({data.context}) {data.digest}{source}"))
    if lineage.run_id and not lineage.datasets:
        line("data", "[dim]no datasets logged[/]")


@models.command("promote")
@click.argument("name")
@_reason_option
@_storage_option
@click.pass_context
def models_promote(ctx: click.Context, name: str, reason: str | None, storage: str | None) -> None:
    """Move @challenger to @champion; the old champion becomes @rollback."""
    with _errors(ctx.obj["debug"]):
        version = _registry(storage).promote(name, reason=reason)
        console.print(f"{name} version {version.version} is now @champion")


@models.command("rollback")
@click.argument("name")
@_reason_option
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
@_reason_option
@_storage_option
@click.pass_context
def models_alias(
    ctx: click.Context, name: str, alias: str, version: int, reason: str | None, storage: str | None
) -> None:
    """Point ALIAS of model NAME at VERSION (set it, or move it from another version)."""
    with _errors(ctx.obj["debug"]):
        _registry(storage).set_alias(name, alias, version, reason=reason)
        console.print(f"{name} @{alias} -> version {version}")


@models.command("unalias")
@click.argument("name")
@click.argument("alias")
@_reason_option
@_storage_option
@click.pass_context
def models_unalias(
    ctx: click.Context, name: str, alias: str, reason: str | None, storage: str | None
) -> None:
    """Delete ALIAS of model NAME."""
    with _errors(ctx.obj["debug"]):
        _registry(storage).delete_alias(name, alias, reason=reason)
        console.print(f"{name} @{alias} deleted")


@models.command("tag")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("key")
@click.argument("value")
@_reason_option
@_storage_option
@click.pass_context
def models_tag(
    ctx: click.Context,
    name: str,
    version: int,
    key: str,
    value: str,
    reason: str | None,
    storage: str | None,
) -> None:
    """Set tag KEY of VERSION of model NAME to VALUE."""
    with _errors(ctx.obj["debug"]):
        _registry(storage).set_version_tag(name, version, key, value, reason=reason)
        console.print(f"{name} version {version}: {escape(key)}={escape(value)}")


@models.command("untag")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("key")
@_reason_option
@_storage_option
@click.pass_context
def models_untag(
    ctx: click.Context, name: str, version: int, key: str, reason: str | None, storage: str | None
) -> None:
    """Remove tag KEY from VERSION of model NAME."""
    with _errors(ctx.obj["debug"]):
        _registry(storage).delete_version_tag(name, version, key, reason=reason)
        console.print(f"{name} version {version}: tag {escape(key)} removed")


@models.command("describe")
@click.argument("name")
@click.argument("version_and_text", metavar="[VERSION] TEXT", nargs=-1, required=True)
@_reason_option
@_storage_option
@click.pass_context
def models_describe(
    ctx: click.Context,
    name: str,
    version_and_text: tuple[str, ...],
    reason: str | None,
    storage: str | None,
) -> None:
    """Set the description of model NAME, or of its VERSION; an empty TEXT removes it."""
    if len(version_and_text) > 2:
        raise click.UsageError("expected NAME [VERSION] TEXT; quote TEXT if it has spaces")
    version: int | None = None
    if len(version_and_text) == 2:
        try:
            version = int(version_and_text[0])
        except ValueError:
            raise click.BadParameter(
                f"{version_and_text[0]!r} is not a version number", param_hint="VERSION"
            ) from None
    text = version_and_text[-1]
    with _errors(ctx.obj["debug"]):
        registry = _registry(storage)
        if version is None:
            registry.set_model_description(name, text, reason=reason)
            console.print(f"{name}: description {'saved' if text else 'removed'}")
        else:
            registry.set_version_description(name, version, text, reason=reason)
            console.print(f"{name} version {version}: description {'saved' if text else 'removed'}")


@models.command("history")
@click.argument("name")
@_storage_option
@_json_option
@click.pass_context
def models_history(ctx: click.Context, name: str, storage: str | None, as_json: bool) -> None:
    """The audit log of model NAME: every registration, alias move, tag and description
    change, when, by whom (user@host), from which version to which, and why."""
    import dataclasses

    with _errors(ctx.obj["debug"]):
        events = _registry(storage).history(name)
        if as_json:
            _print_json(
                [{**dataclasses.asdict(e), "time": _iso(e.at), "what": _what(e)} for e in events]
            )
            return
        # One line per event (not a table): nothing is cut off in a narrow terminal or
        # a pipe, and the lines grep well.
        rows = [(_iso(e.at), f"{e.user}@{e.host}", e.action, _what(e), e.reason) for e in events]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
        for row in rows:
            text = "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            reason = f"  [dim]reason:[/] {escape(row[4])}" if row[4] else ""
            console.print(escape(text.rstrip() if not reason else text) + reason, soft_wrap=True)


def _what(event: Any) -> str:
    """One audit event in words: what changed, from which version to which."""
    version = "model" if event.to_version is None else f"version {event.to_version}"
    if event.action == "register":
        return f"version {event.to_version} registered"
    if event.action in ("set_alias", "delete_alias"):
        before = "none" if event.from_version is None else event.from_version
        after = "none" if event.to_version is None else event.to_version
        return f"@{event.alias} {before} -> {after}"
    if event.action == "set_tag":
        return f"{version} tag {event.tag} set"
    if event.action == "delete_tag":
        return f"{version} tag {event.tag} removed"
    if event.action == "set_description":
        return f"{version} description set"
    return event.action


def main() -> None:
    cli(prog_name="sweep")


if __name__ == "__main__":
    main()
