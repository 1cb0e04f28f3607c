"""`sweep delete NAME`: remove a sweep, its Optuna study, its runs and their artifacts.

The registry keeps every version a sweep registered: the run that produced a version
(and its artifacts, which hold the model) stays, detached from the deleted parent run,
and the version gets the tag ``sweep.deleted_sweep`` saying when its sweep went.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from sqlalchemy import delete, or_, select, update

from sweep.errors import NotFoundError
from sweep.registry import ModelRegistry
from sweep.storage import Database, resolve_storage_url
from sweep.storage.schema import (
    ArtifactRow,
    LatestMetricRow,
    MetricRow,
    ModelVersionRow,
    ParamRow,
    RunInputRow,
    RunRow,
    StudySlotsRow,
    SweepRow,
    TagRow,
    TrialLeaseRow,
    WorkerRow,
)
from sweep.study import get_sweep_record
from sweep.tracking.artifacts import filesystem, local_path
from sweep.trials import find_study

#: The version tag marking versions whose sweep was deleted.
DELETED_TAG = "sweep.deleted_sweep"
_CHUNK = 500


@dataclass(frozen=True)
class Deletion:
    """What ``delete_sweep`` removed (or, with ``dry_run``, would remove)."""

    name: str
    study: bool
    runs: int
    kept_runs: list[str]
    kept_versions: list[str]  # models:/name/version


def delete_sweep(name: str, *, storage: str | None = None, dry_run: bool = False) -> Deletion:
    """Delete sweep ``name`` (or a bare Optuna study of that name). Raises
    :class:`~sweep.errors.NotFoundError` when the store has neither."""
    db = Database(resolve_storage_url(storage))
    try:
        db.ensure_schema()
        return _delete(db, name, dry_run)
    finally:
        db.dispose()


def _delete(db: Database, name: str, dry_run: bool) -> Deletion:
    record = get_sweep_record(db, name)
    study = find_study(db, record.study_name if record else name)
    if record is None and study is None:
        raise NotFoundError(
            f"no sweep or study called {name!r} in {db.display_url}; see `sweep status`"
        )
    run_ids: list[str] = []
    versions: list[tuple[str, int, str | None]] = []
    if record is not None:
        with db.session() as session:
            run_ids = list(
                session.scalars(
                    select(RunRow.run_id).where(
                        or_(
                            RunRow.parent_run_id == record.parent_run_id,
                            RunRow.run_id == record.parent_run_id,
                        )
                    )
                )
            )
            versions = [
                (m, v, r)
                for chunk in _chunks(run_ids)
                for m, v, r in session.execute(
                    select(
                        ModelVersionRow.model_name, ModelVersionRow.version, ModelVersionRow.run_id
                    ).where(ModelVersionRow.run_id.in_(chunk))
                )
            ]
    kept = sorted({r for _, _, r in versions if r is not None})
    result = Deletion(
        name,
        study is not None,
        len(run_ids) - len(kept),
        kept,
        [f"models:/{m}/{v}" for m, v, _ in versions],
    )
    if dry_run:
        return result
    if record is not None:
        _keep_versions(db, name, versions)
        gone = [r for r in run_ids if r not in set(kept)]
        _remove_artifacts(db, gone)
        _remove_rows(db, name, record.parent_run_id, gone, kept)
    if study is not None:
        optuna.delete_study(study_name=study.name, storage=db.optuna_storage())
        with db.session() as session:
            session.execute(delete(StudySlotsRow).where(StudySlotsRow.study_id == study.study_id))
    return result


def _keep_versions(
    db: Database, name: str, versions: Sequence[tuple[str, int, str | None]]
) -> None:
    when = datetime.datetime.now().isoformat(timespec="seconds")
    registry = ModelRegistry(db)
    for model, version, _run in versions:
        registry.set_version_tag(
            model, version, DELETED_TAG, f"{name} (deleted {when})", reason="sweep delete"
        )


def _remove_artifacts(db: Database, run_ids: Sequence[str]) -> None:
    """Delete the artifact folders of ``run_ids`` (local folders or object-store URLs)."""
    with db.session() as session:
        uris = [
            uri
            for chunk in _chunks(run_ids)
            for uri in session.scalars(select(RunRow.artifact_uri).where(RunRow.run_id.in_(chunk)))
        ]
    for uri in uris:
        local = local_path(uri)
        if local is not None:
            shutil.rmtree(local, ignore_errors=True)
            continue
        fs, path = filesystem(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _remove_rows(
    db: Database, name: str, parent_run_id: str, gone: Sequence[str], kept: Sequence[str]
) -> None:
    """One transaction: the sweep's row, workers and leases, and its runs' rows; the
    runs kept for the registry are detached from the parent run."""
    with db.session() as session:
        session.execute(delete(SweepRow).where(SweepRow.name == name))
        session.execute(delete(WorkerRow).where(WorkerRow.sweep_name == name))
        session.execute(delete(TrialLeaseRow).where(TrialLeaseRow.sweep_name == name))
        for chunk in _chunks(kept):
            session.execute(
                update(RunRow).where(RunRow.run_id.in_(chunk)).values(parent_run_id=None)
            )
        children = [r for r in gone if r != parent_run_id]
        for chunk in [*_chunks(children), [parent_run_id] if parent_run_id in gone else []]:
            if not chunk:
                continue
            for table in (MetricRow, LatestMetricRow, ParamRow, TagRow, RunInputRow, ArtifactRow):
                session.execute(delete(table).where(table.run_id.in_(chunk)))
            session.execute(delete(RunRow).where(RunRow.run_id.in_(chunk)))


def _chunks(items: Sequence[str]) -> list[list[str]]:
    return [list(items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]
