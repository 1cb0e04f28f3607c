"""A sweep as MLflow runs: the parent run, each finished trial as a nested run with its
params, every metric point, its tags and artifacts.

MLflow cannot open sweep's database (Optuna's ``alembic_version`` row clashes with
MLflow's migrations), so sweep copies into a tracking store MLflow owns. Export is
idempotent: each MLflow run carries the tag ``sweep.run_id``; a run already exported is
not copied again, trials that finished since are added, and the parent's status and
tags are brought up to date. Runs still running are left for a later export.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sweep.errors import MlflowExportError
from sweep.flavors import require
from sweep.storage import Database, resolve_storage_url
from sweep.study import get_sweep_record, sweep_not_found
from sweep.tracking import Run, RunStatus, TrackingStore
from sweep.tracking.artifacts import artifact_location, filesystem, local_path

#: The MLflow tag holding the id of the sweep run an MLflow run was copied from.
SOURCE_TAG = "sweep.run_id"
#: MLflow's limits per ``log_batch`` call, and on the length of a param and tag value.
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}
_PARAM_LENGTH, _TAG_LENGTH = 6000, 8000


@dataclass(frozen=True)
class ExportReport:
    """What one export did. ``run_ids`` maps sweep run ids to MLflow run ids."""

    experiment_id: str
    parent_run_id: str
    runs_added: int
    runs_skipped: int
    metric_points: int
    artifacts: int
    run_ids: dict[str, str]
    model_versions: int = 0
    aliases: int = 0


def export_to_mlflow(
    sweep_name: str,
    tracking_uri: str,
    *,
    storage: str | None = None,
    registry: bool = False,
    registry_uri: str | None = None,
    experiment_name: str | None = None,
    artifact_location: str | None = None,
) -> ExportReport:
    """Copy sweep ``sweep_name`` into the MLflow tracking store at ``tracking_uri``
    (e.g. ``sqlite:///mlflow.db`` or an MLflow server's URL), into the experiment
    ``experiment_name`` (default: the sweep's name), created with ``artifact_location``
    if new. With ``registry``, the registered versions that came from the sweep and
    their aliases are copied too (into ``registry_uri``, default ``tracking_uri``)."""
    mlflow = require("mlflow", "mlflow-skinny", what="sweep export mlflow")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        record = get_sweep_record(db, sweep_name)
        if record is None:
            raise sweep_not_found(sweep_name, db.display_url)
        tracking = TrackingStore(db)
        exporter = _RunExporter(client, tracking)
        report = exporter.export(
            tracking.get_run(record.parent_run_id),
            experiment_name or sweep_name,
            artifact_location,
        )
        if registry:
            from sweep.export._mlflow_registry import export_versions

            versions, aliases = export_versions(client, db, sweep_name, report.run_ids)
            report = replace(report, model_versions=versions, aliases=aliases)
        return report
    finally:
        db.dispose()


class _RunExporter:
    def __init__(self, client: Any, tracking: TrackingStore) -> None:
        self.client = client
        self.tracking = tracking
        self.points = 0
        self.artifacts = 0

    def export(self, parent: Run, experiment: str, location: str | None) -> ExportReport:
        experiment_id = self._experiment(experiment, location)
        done = self._exported(experiment_id)
        parent_id = done.get(parent.run_id) or self._create(parent, experiment_id, None)
        children = [
            run
            for run in self.tracking.list_runs(parent_run_id=parent.run_id)
            if run.status.is_finished
        ]
        added = 0
        for run in children:
            if run.run_id not in done:
                done[run.run_id] = self._create(run, experiment_id, parent_id)
                added += 1
        self._update_parent(parent, parent_id)
        return ExportReport(
            experiment_id=experiment_id,
            parent_run_id=parent_id,
            runs_added=added,
            runs_skipped=len(children) - added,
            metric_points=self.points,
            artifacts=self.artifacts,
            run_ids=dict(done),
        )

    def _experiment(self, name: str, location: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=location))

    def _exported(self, experiment_id: str) -> dict[str, str]:
        """Sweep run id -> MLflow run id of the runs an earlier export copied."""
        found: dict[str, str] = {}
        token = None
        while True:
            page = self.client.search_runs([experiment_id], max_results=1000, page_token=token)
            for run in page:
                if SOURCE_TAG in run.data.tags:
                    found[run.data.tags[SOURCE_TAG]] = run.info.run_id
            token = page.token
            if not token:
                return found

    def _create(self, run: Run, experiment_id: str, parent_id: str | None) -> str:
        """Copy ``run`` (params, metric history, tags, artifacts, end) into MLflow."""
        tags = {**_fit(run.tags, _TAG_LENGTH), SOURCE_TAG: run.run_id, "mlflow.runName": run.name}
        if parent_id is not None:
            tags["mlflow.parentRunId"] = parent_id
        if run.description:
            tags["mlflow.note.content"] = run.description
        created = self.client.create_run(
            experiment_id, start_time=run.start_time, tags=tags, run_name=run.name
        )
        mlflow_id = str(created.info.run_id)
        try:
            self._log_data(run, mlflow_id)
            self._log_artifacts(run, mlflow_id)
        except Exception as exc:
            # Half a run would be taken as exported next time: remove it.
            self.client.delete_run(mlflow_id)
            raise MlflowExportError(
                f"MLflow refused run {run.run_id} ({run.name}): {exc}; nothing of it was "
                "kept, run the export again once the cause is fixed"
            ) from exc
        if run.status.is_finished:
            self.client.set_terminated(mlflow_id, run.status.value, end_time=run.end_time)
        return mlflow_id

    def _log_data(self, run: Run, mlflow_id: str) -> None:
        from mlflow.entities import Metric, Param

        metrics = [
            Metric(p.key, p.value, p.timestamp, p.step)
            for key in sorted(run.metrics)
            for p in self.tracking.metric_history(run.run_id, key)
        ]
        params = [Param(k, v) for k, v in sorted(_fit(run.params, _PARAM_LENGTH).items())]
        for chunk in _chunks(metrics, _BATCH["metrics"]):
            self.client.log_batch(mlflow_id, metrics=chunk)
        for chunk in _chunks(params, _BATCH["params"]):
            self.client.log_batch(mlflow_id, params=chunk)
        self.points += len(metrics)

    def _log_artifacts(self, run: Run, mlflow_id: str) -> None:
        for artifact in self.tracking.list_artifacts(run.run_id):
            location = artifact_location(run.artifact_uri, artifact.path)
            with _local_copy(location) as source:
                parent = str(Path(artifact.path).parent)
                target = None if parent == "." else parent
                if source.is_dir():
                    self.client.log_artifacts(mlflow_id, str(source), artifact.path)
                else:
                    self.client.log_artifact(mlflow_id, str(source), target)
            self.artifacts += 1

    def _update_parent(self, parent: Run, mlflow_id: str) -> None:
        from mlflow.entities import RunTag

        tags = [RunTag(k, v) for k, v in sorted(_fit(parent.tags, _TAG_LENGTH).items())]
        for chunk in _chunks(tags, _BATCH["tags"]):
            self.client.log_batch(mlflow_id, tags=chunk)
        if parent.status is not RunStatus.RUNNING:
            self.client.set_terminated(mlflow_id, parent.status.value, end_time=parent.end_time)


def _fit(values: dict[str, str], length: int) -> dict[str, str]:
    """``values`` with each value cut to MLflow's ``length`` (marked with an ellipsis);
    the full text stays in sweep's store."""
    return {k: v if len(v) <= length else v[: length - 3] + "..." for k, v in values.items()}


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@contextmanager
def _local_copy(location: str) -> Iterator[Path]:
    """The local path of an artifact: itself when local, else a temporary download."""
    local = local_path(location)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="sweep-export-") as temp:
        fs, path = filesystem(location)
        target = Path(temp) / Path(path).name
        fs.get(path, str(target), recursive=fs.isdir(path))
        yield target
