"""`sweep agent`, `sweep status` and the control commands (pause, resume, stop, cancel)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from sweep.cli import (
    RET_INTERRUPTED,
    _errors,
    _json_option,
    _print_json,
    _stop_on_signals,
    _storage_option,
    _when,
    cli,
    console,
)
from sweep.cli._launch import _print_summary

if TYPE_CHECKING:  # the CLI imports these lazily: they pull in SQLAlchemy, Ray
    from sweep.pareto import FrontTrial
    from sweep.trial import TrialOutcome

# -- agents and control ---------------------------------------------------------------


@cli.command()
@click.argument("name")
@_storage_option
@click.option(
    "--gpus",
    help="One worker per GPU, CUDA_VISIBLE_DEVICES pinned: '0,1,3' or 'all'. "
    "Default: one worker, no GPU.",
)
@click.option(
    "--count", type=click.IntRange(min=1, max=2**31 - 1), help="Stop after this many trials."
)
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

        def on_trial(outcome: TrialOutcome) -> None:
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
@_storage_option
@_json_option
@click.pass_context
def status(ctx: click.Context, name: str | None, storage: str | None, as_json: bool) -> None:
    """Sweeps with their state, trial counts, best value and attached workers."""
    import dataclasses

    from sweep.control import STUDY_DELETED, sweep_status

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
            if st.state == STUDY_DELETED:
                console.print(
                    f"[bold]{st.name}[/] [red]{st.state}[/]: its Optuna study is gone; "
                    f"`sweep delete {st.name}` removes the rest",
                    soft_wrap=True,
                )
                continue
            c = st.counts
            budget = f"/{st.n_trials}" if st.n_trials else ""
            best = (
                f"best {st.best_value:.6g} (trial {st.best_trial}, {st.direction})"
                if st.best_value is not None
                else f"Pareto front of {len(st.pareto_front)} trials"
                if st.pareto_front
                else "no complete trial yet"
            )
            console.print(
                f"[bold]{st.name}[/] {st.state}: {c.finished}{budget} finished "
                f"({c.complete} complete, {c.pruned} pruned, {c.failed} failed), "
                f"{c.running} running, {c.waiting} waiting"
                + (f", {c.retried} retried" if c.retried else "")
                + (f", {c.killed} killed" if c.killed else "")
                + (f", {c.seeded} seeded by warm_start" if c.seeded else "")
                + f"; {best}",
                soft_wrap=True,
            )
            if st.pareto_front:
                _print_front(st.metrics, st.direction.split(","), st.pareto_front)
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


def _print_front(metrics: list[str], directions: list[str], front: list[FrontTrial]) -> None:
    """The Pareto front as a table: a trial per row, an objective per column."""
    table = Table(
        "trial",
        *(f"{m} ({d[:3]})" for m, d in zip(metrics, directions, strict=False)),
        "run",
        title="Pareto front",
        title_justify="left",
    )
    for t in front:
        table.add_row(str(t.number), *(f"{t.values[m]:.6g}" for m in metrics), t.run_id or "")
    console.print(table)


def _control_command(action: str, doc: str) -> None:
    @cli.command(action, help=doc)
    @click.argument("name")
    @_storage_option
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
@_storage_option
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
