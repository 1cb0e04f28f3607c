"""`sweep convert`: print the native spec that a W&B sweep config is read as."""

from __future__ import annotations

import click

from sweep.cli import _errors, cli


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.pass_context
def convert(ctx: click.Context, spec_path: str) -> None:
    """Print SPEC (a W&B sweep config) as the native YAML spec sweep reads it as.

    The output is validated: launching it runs the same sweep. A native spec is printed
    as it is."""
    from sweep.spec import native_yaml

    with _errors(ctx.obj["debug"]):
        text, _ = native_yaml(spec_path)
        click.echo(text, nl=False)
