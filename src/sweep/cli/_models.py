"""`sweep models`: registered models, versions, aliases, promotion and the audit log."""

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
)
from sweep.cli._model_views import event_in_words, iso_time, lineage_json, print_version

if TYPE_CHECKING:  # the CLI imports these lazily: they pull in SQLAlchemy, Ray
    from sweep.registry import ModelRegistry


# -- models -------------------------------------------------------------------------


def _registry(storage: str | None) -> ModelRegistry:
    from sweep.registry import ModelRegistry
    from sweep.storage import Database, resolve_storage_url

    database = Database(resolve_storage_url(storage))
    database.ensure_schema()
    return ModelRegistry(database)


@cli.group()
def models() -> None:
    """Registered models: versions, aliases, tags and descriptions, lineage, promotion
    and its audit log."""


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
                        {**dataclasses.asdict(v), "lineage": lineage_json(lineages[v.version])}
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
            print_version(v, lineages[v.version])


@models.command("promote")
@click.argument("name")
@_reason_option
@_storage_option
@click.pass_context
def models_promote(ctx: click.Context, name: str, reason: str | None, storage: str | None) -> None:
    """Move @challenger to @champion; the old champion becomes @rollback. Promoting a
    challenger that is already champion changes nothing and succeeds (exit 0)."""
    from sweep.registry import AlreadyPromotedError

    with _errors(ctx.obj["debug"]):
        try:
            version = _registry(storage).promote(name, reason=reason)
        except AlreadyPromotedError as exc:
            console.print(escape(str(exc)))
            return
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
                [
                    {**dataclasses.asdict(e), "time": iso_time(e.at), "what": event_in_words(e)}
                    for e in events
                ]
            )
            return
        # One line per event (not a table): nothing is cut off in a narrow terminal or
        # a pipe, and the lines grep well.
        rows = [
            (iso_time(e.at), f"{e.user}@{e.host}", e.action, event_in_words(e), e.reason)
            for e in events
        ]
        widths = [max((len(row[i] or "") for row in rows), default=0) for i in range(4)]
        for row in rows:
            cells = zip(row[:4], widths, strict=True)
            text = "  ".join((cell or "").ljust(width) for cell, width in cells)
            reason = f"  [dim]reason:[/] {escape(row[4])}" if row[4] else ""
            console.print(escape(text.rstrip() if not reason else text) + reason, soft_wrap=True)


# -- files in and out ------------------------------------------------------------------


def _model_uri(text: str) -> str:
    """``NAME@ALIAS``, ``NAME/VERSION`` or a full ``models:/`` URI, as a URI."""
    return text if text.startswith("models:/") else f"models:/{text}"


@models.command("register")
@click.argument("name")
@click.argument("source", metavar="PATH_OR_RUN_ARTIFACT")
@click.option("--alias", help="Point this alias at the new version.")
@click.option("--flavor", help="The model's flavor (default: detected; see sweep.flavors).")
@click.option(
    "--artifact-root", help="Where a local PATH is copied to; default: SWEEP_ARTIFACT_ROOT."
)
@_reason_option
@_storage_option
@click.pass_context
def models_register(
    ctx: click.Context,
    name: str,
    source: str,
    alias: str | None,
    flavor: str | None,
    artifact_root: str | None,
    reason: str | None,
    storage: str | None,
) -> None:
    """Register PATH_OR_RUN_ARTIFACT as the next version of model NAME: a file or
    directory here (copied into the artifact store), or a run's artifact as
    runs:/RUN_ID/ARTIFACT_PATH (registered where it is, with the run as its lineage)."""
    from sweep.registry import register_model

    with _errors(ctx.obj["debug"]):
        version = register_model(
            _registry(storage),
            name,
            source,
            alias=alias,
            flavor=flavor,
            artifact_root=artifact_root,
            reason=reason,
        )
        aliases = "".join(f" @{a}" for a in version.aliases)
        console.print(f"registered {name} version {version.version}{aliases}", soft_wrap=True)
        console.print(f"  source {escape(version.source)}", soft_wrap=True)


@models.command("download")
@click.argument("model", metavar="NAME@ALIAS|NAME/VERSION")
@click.argument("directory", type=click.Path(file_okay=False))
@_storage_option
@click.pass_context
def models_download(ctx: click.Context, model: str, directory: str, storage: str | None) -> None:
    """Copy the files of a registered model version into DIRECTORY (any flavor; each
    file checked against its SHA-256), for serving code with a loader of its own."""
    from sweep.registry import download_model

    with _errors(ctx.obj["debug"]):
        path = download_model(_model_uri(model), directory, storage=storage)
        console.print(f"{escape(model)} -> {escape(str(path))}", soft_wrap=True)
