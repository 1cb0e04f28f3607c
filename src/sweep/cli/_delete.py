"""`sweep delete NAME`: remove a sweep, its study, runs and artifacts."""

from __future__ import annotations

import click

from sweep.cli import _errors, _storage_option, cli, console


@cli.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_storage_option
@click.pass_context
def delete(ctx: click.Context, name: str, yes: bool, storage: str | None) -> None:
    """Delete sweep NAME: its Optuna study, its runs and their artifacts. Registered
    versions stay (with their run and model files), tagged sweep.deleted_sweep."""
    from sweep.delete import delete_sweep

    with _errors(ctx.obj["debug"]):
        plan = delete_sweep(name, storage=storage, dry_run=True)
        kept = f"; keeps {', '.join(plan.kept_versions)}" if plan.kept_versions else ""
        what = f"{'its study, ' if plan.study else ''}{plan.runs} runs and their artifacts"
        if not yes and not click.confirm(f"delete sweep {name}: {what}{kept}?", default=False):
            console.print("nothing deleted")
            ctx.exit(1)
        done = delete_sweep(name, storage=storage)
        console.print(f"{name}: deleted {what}{kept}")
        if done.kept_versions:
            console.print("  kept versions are tagged sweep.deleted_sweep")
