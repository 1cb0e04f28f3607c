"""The tracking store: experiments, runs (nested through ``parent_run_id``), params,
step-indexed metrics, tags and artifact records, in the same database as the study.

Contract: every method is safe to call from several threads and processes at once;
a finished run's status is only changed by :meth:`TrackingStore.end_run` with
``force=True``. Methods raise :class:`~sweep.errors.NotFoundError` for unknown ids and
:class:`~sweep.errors.StorageError` when the database fails.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, StorageError
from sweep.storage import Database
from sweep.storage._schema import (
    ArtifactRow,
    ExperimentRow,
    LatestMetricRow,
    MetricRow,
    ParamRow,
    RunRow,
    TagRow,
)
from sweep.tracking._entities import ArtifactInfo, Experiment, MetricPoint, Run, RunStatus

#: Longest param or tag value kept; longer values are cut with a marker so logging never fails.
MAX_VALUE_LENGTH = 8000


def now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    text = str(value)
    if len(text) > MAX_VALUE_LENGTH:
        return text[: MAX_VALUE_LENGTH - 15] + "...[truncated]"
    return text


def _number(value: Any) -> float | None:
    """``value`` as a finite float when it is a number (or a numeric string), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _param_rows(run_id: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "key": str(k), "value": _text(v), "value_num": _number(v)}
        for k, v in params.items()
    ]


def _tag_rows(run_id: str, tags: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "key": str(k), "value": _text(v)} for k, v in tags.items()]


def _upsert(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    keys: Sequence[str],
    *,
    only_if_step_not_lower: bool = False,
) -> None:
    """Insert ``rows``, replacing the non-key columns of rows whose ``keys`` exist.

    With ``only_if_step_not_lower`` an existing row is replaced only by a point of the
    same or a higher step (the latest-metric rule)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    columns = [c for c in rows[0] if c not in keys]
    where = table.c.step <= stmt.excluded.step if only_if_step_not_lower else None
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: stmt.excluded[c] for c in columns},
        where=where,
    )
    session.execute(stmt, rows)


class TrackingStore:
    """Reads and writes runs in one :class:`~sweep.storage.Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- experiments ------------------------------------------------------------------

    def get_or_create_experiment(self, name: str, artifact_root: str | Path) -> Experiment:
        """The experiment called ``name``; created with ``artifact_root`` if new."""
        existing = self.find_experiment(name)
        if existing is not None:
            return existing
        try:
            with self.db.session() as session:
                row = ExperimentRow(
                    name=name, artifact_root=str(artifact_root), created_at=now_ms()
                )
                session.add(row)
                session.flush()
                return _experiment(row)
        except StorageError as exc:
            # Another process created it between our read and our insert.
            if isinstance(exc.__cause__, IntegrityError):
                found = self.find_experiment(name)
                if found is not None:
                    return found
            raise

    def find_experiment(self, name: str) -> Experiment | None:
        with self.db.session() as session:
            row = session.scalar(select(ExperimentRow).where(ExperimentRow.name == name))
            return _experiment(row) if row is not None else None

    def get_experiment(self, experiment_id: int) -> Experiment:
        with self.db.session() as session:
            row = session.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"no experiment with id {experiment_id}")
            return _experiment(row)

    # -- runs -------------------------------------------------------------------------

    def create_run(
        self,
        experiment: Experiment,
        name: str,
        *,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Run:
        """Open a RUNNING run, with its params and tags, in one transaction."""
        run_id = uuid.uuid4().hex
        artifact_uri = str(Path(experiment.artifact_root) / str(experiment.experiment_id) / run_id)
        started = now_ms()
        with self.db.session() as session:
            session.add(
                RunRow(
                    run_id=run_id,
                    experiment_id=experiment.experiment_id,
                    parent_run_id=parent_run_id,
                    name=name,
                    status=RunStatus.RUNNING.value,
                    start_time=started,
                    artifact_uri=artifact_uri,
                )
            )
            # Flush the run first: params and tags reference it.
            session.flush()
            if params:
                session.execute(ParamRow.__table__.insert(), _param_rows(run_id, params))
            if tags:
                session.execute(TagRow.__table__.insert(), _tag_rows(run_id, tags))
        return Run(
            run_id=run_id,
            experiment_id=experiment.experiment_id,
            parent_run_id=parent_run_id,
            name=name,
            status=RunStatus.RUNNING,
            start_time=started,
            end_time=None,
            artifact_uri=artifact_uri,
            params={k: _text(v) for k, v in (params or {}).items()},
            tags={k: _text(v) for k, v in (tags or {}).items()},
        )

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Record params; a param already set to another value is overwritten."""
        if params:
            with self.db.session() as session:
                _upsert(session, ParamRow.__table__, _param_rows(run_id, params), ("run_id", "key"))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        if tags:
            with self.db.session() as session:
                _upsert(session, TagRow.__table__, _tag_rows(run_id, tags), ("run_id", "key"))

    def log_metrics(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        """Append metric points in one batched insert and move each key's latest point
        (highest step; the last logged among equal steps) forward."""
        if not points:
            return
        rows = [
            {
                "run_id": run_id,
                "key": p.key,
                "value": float(p.value),
                "step": int(p.step),
                "timestamp": int(p.timestamp),
            }
            for p in points
        ]
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            seen = latest.get(row["key"])
            if seen is None or row["step"] >= seen["step"]:
                latest[row["key"]] = row
        with self.db.session() as session:
            session.execute(MetricRow.__table__.insert(), rows)
            _upsert(
                session,
                LatestMetricRow.__table__,
                sorted(latest.values(), key=lambda r: r["key"]),  # one lock order for all
                ("run_id", "key"),
                only_if_step_not_lower=True,
            )

    def record_artifact(self, run_id: str, path: str, kind: str, size: int) -> None:
        with self.db.session() as session:
            session.merge(
                ArtifactRow(run_id=run_id, path=path, kind=kind, size=size, created_at=now_ms())
            )

    def set_description(self, run_id: str, description: str | None) -> None:
        with self.db.session() as session:
            self._require_run(session, run_id).description = description

    def end_run(self, run_id: str, status: RunStatus, *, force: bool = False) -> bool:
        """Close a run. Returns False (and changes nothing) when it had already ended,
        unless ``force``: a sweep resumed after a stop reopens its parent run."""
        stmt = update(RunRow).where(RunRow.run_id == run_id)
        if not force:
            stmt = stmt.where(RunRow.status == RunStatus.RUNNING.value)
        end_time = None if status is RunStatus.RUNNING else now_ms()
        with self.db.session() as session:
            result = session.execute(stmt.values(status=status.value, end_time=end_time))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def end_running_children(self, parent_run_id: str, status: RunStatus) -> int:
        """Close every child run still RUNNING (for example KILLED on Ctrl-C)."""
        with self.db.session() as session:
            result = session.execute(
                update(RunRow)
                .where(
                    RunRow.parent_run_id == parent_run_id,
                    RunRow.status == RunStatus.RUNNING.value,
                )
                .values(status=status.value, end_time=now_ms())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def get_run(self, run_id: str) -> Run:
        with self.db.session() as session:
            row = self._require_run(session, run_id)
            return self._load_runs(session, [row])[0]

    def list_runs(
        self,
        *,
        experiment_id: int | None = None,
        parent_run_id: str | None = None,
        statuses: Iterable[RunStatus] | None = None,
    ) -> list[Run]:
        """Runs in start order, narrowed by experiment, parent and status."""
        stmt = select(RunRow).order_by(RunRow.start_time, RunRow.run_id)
        if experiment_id is not None:
            stmt = stmt.where(RunRow.experiment_id == experiment_id)
        if parent_run_id is not None:
            stmt = stmt.where(RunRow.parent_run_id == parent_run_id)
        if statuses is not None:
            stmt = stmt.where(RunRow.status.in_([s.value for s in statuses]))
        with self.db.session() as session:
            return self._load_runs(session, list(session.scalars(stmt)))

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        with self.db.session() as session:
            rows = session.scalars(
                select(MetricRow)
                .where(MetricRow.run_id == run_id, MetricRow.key == key)
                .order_by(MetricRow.step, MetricRow.id)
            )
            return [MetricPoint(r.key, r.value, r.step, r.timestamp) for r in rows]

    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]:
        with self.db.session() as session:
            rows = session.scalars(
                select(ArtifactRow).where(ArtifactRow.run_id == run_id).order_by(ArtifactRow.path)
            )
            return [ArtifactInfo(r.path, r.kind, r.size) for r in rows]

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _require_run(session: Session, run_id: str) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            raise NotFoundError(f"no run with id {run_id!r}; list runs with: sweep runs <sweep>")
        return row

    @staticmethod
    def _load_runs(session: Session, rows: list[RunRow]) -> list[Run]:
        ids = [r.run_id for r in rows]
        if not ids:
            return []
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        # Chunk the IN lists: SQLite limits the number of bound parameters.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for p in session.scalars(select(ParamRow).where(ParamRow.run_id.in_(chunk))):
                params[p.run_id][p.key] = p.value
            for t in session.scalars(select(TagRow).where(TagRow.run_id.in_(chunk))):
                tags[t.run_id][t.key] = t.value
            for m in session.scalars(
                select(LatestMetricRow).where(LatestMetricRow.run_id.in_(chunk))
            ):
                metrics[m.run_id][m.key] = m.value
        return [
            Run(
                run_id=r.run_id,
                experiment_id=r.experiment_id,
                parent_run_id=r.parent_run_id,
                name=r.name,
                status=RunStatus(r.status),
                start_time=r.start_time,
                end_time=r.end_time,
                artifact_uri=r.artifact_uri,
                description=r.description,
                params=params[r.run_id],
                tags=tags[r.run_id],
                metrics=metrics[r.run_id],
            )
            for r in rows
        ]


def _experiment(row: ExperimentRow) -> Experiment:
    return Experiment(row.experiment_id, row.name, row.artifact_root, row.created_at)
