"""`sweep ui` and `sweep report`: see a sweep in a browser, or in one HTML file."""

from __future__ import annotations

import os

import click

from sweep.cli import _errors, _storage_option, cli, console
from sweep.errors import SweepError


def _need_ui_extra() -> None:
    try:
        import jinja2  # noqa: F401
        import plotly  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise SweepError(
            f"`sweep ui` needs the ui extra ({exc.name} is missing): pip install 'sweep[ui]'"
        ) from exc


@cli.command()
@_storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--write-token",
    envvar="SWEEP_UI_TOKEN",
    help="Enable writes (pause/resume/stop/cancel, promote, rollback, alias moves) for whoever "
    "types this token; default: SWEEP_UI_TOKEN, else read-only.",
)
@click.pass_context
def ui(
    ctx: click.Context, storage: str | None, host: str, port: int, write_token: str | None
) -> None:
    """Serve a web UI over the store: sweeps, trials, runs, metrics and the registry."""
    with _errors(ctx.obj["debug"]):
        _need_ui_extra()
        import uvicorn

        from sweep.ui import create_app

        app = create_app(storage, write_token=write_token)
        mode = "writes enabled with the token" if write_token else "read-only"
        console.print(
            f"[bold]sweep ui[/] on http://{host}:{port} over {app.state.ui.db.display_url} ({mode})"
        )
        if host not in ("127.0.0.1", "localhost", "::1"):
            console.print(
                f"[yellow]listening on {host}: anyone who reaches it can read the store[/]"
            )
        uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.command()
@click.argument("name")
@click.option(
    "-o", "--output", default=None, help="HTML file to write (default: NAME-report.html)."
)
@_storage_option
@click.pass_context
def report(ctx: click.Context, name: str, output: str | None, storage: str | None) -> None:
    """Write one self-contained HTML report of sweep NAME (opens offline)."""
    with _errors(ctx.obj["debug"]):
        _need_ui_extra()
        from sweep.report import write_report

        path = write_report(name, output or f"{name}-report.html", storage=storage)
        size = os.path.getsize(path) / 1e6
        console.print(f"{path}: report of sweep {name} ({size:.1f} MB, self-contained)")
