"""`sweep export`: copy a sweep into another tool (MLflow)."""

from __future__ import annotations

import click

from sweep.cli import _errors, _storage_option, cli, console


@cli.group()
def export() -> None:
    """Copy a sweep's runs and models into another tool."""


@export.command("mlflow")
@click.argument("name")
@click.option(
    "--tracking-uri", required=True, help="MLflow tracking URI, e.g. sqlite:///mlflow.db."
)
@click.option("--registry", is_flag=True, help="Copy the sweep's registered versions too.")
@click.option("--registry-uri", help="MLflow registry URI; default: the tracking URI.")
@click.option("--experiment", help="MLflow experiment; default: the sweep's name.")
@click.option("--artifact-location", help="Artifact location of a new MLflow experiment.")
@_storage_option
@click.pass_context
def export_mlflow(
    ctx: click.Context,
    name: str,
    tracking_uri: str,
    registry: bool,
    registry_uri: str | None,
    experiment: str | None,
    artifact_location: str | None,
    storage: str | None,
) -> None:
    """Copy sweep NAME into MLflow: the parent run, each finished trial as a nested run
    (params, every metric point, tags, artifacts) and, with --registry, its registered
    versions and aliases. Run it again to add new trials; nothing is copied twice."""
    from sweep.export import export_to_mlflow

    with _errors(ctx.obj["debug"]):
        report = export_to_mlflow(
            name,
            tracking_uri,
            storage=storage,
            registry=registry,
            registry_uri=registry_uri,
            experiment_name=experiment,
            artifact_location=artifact_location,
        )
        console.print(
            f"exported {name} to MLflow experiment {report.experiment_id} (parent run "
            f"{report.parent_run_id}): {report.runs_added} runs added, {report.runs_skipped} "
            f"already there, {report.metric_points} metric points, {report.artifacts} "
            f"artifacts, {report.model_versions} model versions, {report.aliases} aliases",
            soft_wrap=True,
        )
