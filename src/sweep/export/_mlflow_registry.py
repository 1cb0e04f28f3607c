"""Registered versions that came from a sweep, and their aliases, as MLflow model
versions. Each MLflow version carries the tag ``sweep.version`` (its number in sweep's
registry; MLflow numbers its own), so an export run again adds only new versions;
aliases are set to where they point now."""

from __future__ import annotations

from typing import Any

from sweep.registry import ModelRegistry, ModelVersion
from sweep.storage import Database
from sweep.tracking import TrackingStore

VERSION_TAG = "sweep.version"


def export_versions(
    client: Any, db: Database, sweep_name: str, run_ids: dict[str, str]
) -> tuple[int, int]:
    """Copy the versions of every model whose versions came from ``sweep_name`` (or
    from one of its exported runs); returns (versions added, aliases set)."""
    registry = ModelRegistry(db)
    added = aliases = 0
    for model in registry.list_models():
        versions = [
            v
            for v in registry.list_versions(model.name)
            if v.sweep_name == sweep_name or (v.run_id is not None and v.run_id in run_ids)
        ]
        if not versions:
            continue
        _ensure_model(client, model.name, model.description)
        numbers = _exported_versions(client, model.name)
        for version in versions:
            if version.version not in numbers:
                numbers[version.version] = _create(client, db, version, run_ids)
                added += 1
        for alias, number in model.aliases.items():
            if number in numbers:
                client.set_registered_model_alias(model.name, alias, numbers[number])
                aliases += 1
    return added, aliases


def _ensure_model(client: Any, name: str, description: str | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)


def _exported_versions(client: Any, name: str) -> dict[int, str]:
    """sweep version number -> MLflow version number, for versions already exported."""
    found: dict[int, str] = {}
    for mv in client.search_model_versions(f"name = '{name}'"):
        tag = mv.tags.get(VERSION_TAG)
        if tag is not None and tag.isdigit():
            found[int(tag)] = str(mv.version)
    return found


def _create(client: Any, db: Database, version: ModelVersion, run_ids: dict[str, str]) -> str:
    """One MLflow version: its source is the model's copy in the MLflow run when the run
    was exported, else sweep's own location."""
    source, run_id = version.source, None
    if version.run_id is not None and version.run_id in run_ids:
        run_id = run_ids[version.run_id]
        ours = TrackingStore(db).get_run(version.run_id).artifact_uri.rstrip("/")
        if version.source.startswith(ours + "/"):
            relative = version.source[len(ours) + 1 :]
            source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{relative}"
    tags = {**version.tags, VERSION_TAG: str(version.version)}
    if version.metric_name is not None and version.metric_value is not None:
        tags.setdefault(version.metric_name, str(version.metric_value))
    created = client.create_model_version(
        version.model_name,
        source,
        run_id=run_id,
        tags=tags,
        description=version.description,
    )
    return str(created.version)
