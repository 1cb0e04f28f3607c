"""How `sweep models` prints a version (its lineage) and the audit log's events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from sweep.cli import _when, console

if TYPE_CHECKING:
    from sweep.registry import ModelVersion, RegistryEvent, VersionLineage


def iso_time(ms: int) -> str:
    """An audit time as ISO 8601 with the local UTC offset, to the second."""
    import datetime

    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.astimezone().isoformat(timespec="seconds")


def lineage_json(lineage: VersionLineage) -> dict[str, Any]:
    import dataclasses

    data = dataclasses.asdict(lineage)
    del data["model_name"], data["version"]  # already on the version
    return data


def print_version(v: ModelVersion, lineage: VersionLineage) -> None:
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


def event_in_words(event: RegistryEvent) -> str:
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
