"""The tracking store: experiments, runs (nested through ``parent_run_id``), params,
step-indexed metrics, tags and artifact records, in the same database as the study.

Contract: every method is safe to call from several threads and processes at once;
a finished run's status is only changed by :meth:`TrackingStore.end_run` with
``force=True``. Methods raise :class:`~sweep.errors.NotFoundError` for unknown ids and
:class:`~sweep.errors.StorageError` when the database fails.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, StorageError
from sweep.storage import Database
from sweep.storage.schema import (
    ArtifactRow,
    ExperimentRow,
    MetricRow,
    RunRow,
)
from sweep.storage.sql import insert_rows, upsert
from sweep.tracking._entities import (
    ArtifactInfo,
    Experiment,
    MetricPoint,
    Run,
    RunInput,
    RunStatus,
)
from sweep.tracking._filter import parse_filter, parse_order_by
from sweep.tracking._ingest import (
    COPY_THRESHOLD,
    PointTuple,
    insert_points,
    latest_points,
    point_rows,
)
from sweep.tracking._rows import (
    METRIC_TABLE,
    PARAM_TABLE,
    RUN_INPUT_TABLE,
    RUN_TABLE,
    TAG_TABLE,
    RunEnd,
    RunRecord,
    now_ms,
    param_rows,
    tag_rows,
    text_value,
    upsert_latest,
)
from sweep.tracking._run_reads import experiment_of, load_runs, run_inputs
from sweep.tracking._search import (
    build_search,
    check_max_results,
    search_timeout_s,
    statement_deadline,
)

#: Runs still RUNNING ended with a status: every trial's end runs it, so it is built
#: once, on the table (an ORM statement costs several times more to build and run).
_FINISH = (
    update(RUN_TABLE)
    .where(
        RUN_TABLE.c.run_id.in_(bindparam("run_ids", expanding=True)),
        RUN_TABLE.c.status == RunStatus.RUNNING.value,
    )
    .values(status=bindparam("end_status"), end_time=bindparam("ended_at"))
    .returning(RUN_TABLE.c.run_id)
)


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
                return experiment_of(row)
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
            return experiment_of(row) if row is not None else None

    def get_experiment(self, experiment_id: int) -> Experiment:
        with self.db.session() as session:
            row = session.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"no experiment with id {experiment_id}")
            return experiment_of(row)

    # -- runs -------------------------------------------------------------------------

    def create_run(
        self,
        experiment: Experiment,
        name: str,
        *,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Open a RUNNING run, with its params and tags, in one transaction. ``run_id``
        may be chosen beforehand (a trial records it before its run exists)."""
        record = RunRecord(
            experiment.experiment_id,
            experiment.artifact_root,
            name,
            run_id or uuid.uuid4().hex,
            parent_run_id,
            params or {},
            tags or {},
        )
        with self.db.session() as session:
            started = self.insert_runs(session, [record])
        return Run(
            run_id=record.run_id,
            experiment_id=record.experiment_id,
            parent_run_id=parent_run_id,
            name=name,
            status=RunStatus.RUNNING,
            start_time=started,
            end_time=None,
            artifact_uri=record.artifact_uri,
            params={k: text_value(v) for k, v in record.params.items()},
            tags={k: text_value(v) for k, v in record.tags.items()},
        )

    @staticmethod
    def insert_runs(session: Session, records: Sequence[RunRecord]) -> int:
        """Open RUNNING runs in ``session``'s transaction, a statement per table however
        many (the claim of a batch of trials opens their runs); returns their start."""
        started = now_ms()
        if not records:
            return started
        # Core inserts, not the ORM: a nested run is created in about a millisecond.
        insert_rows(
            session,
            RUN_TABLE,
            [
                {
                    "run_id": r.run_id,
                    "experiment_id": r.experiment_id,
                    "parent_run_id": r.parent_run_id,
                    "name": r.name,
                    "status": RunStatus.RUNNING.value,
                    "start_time": started,
                    "artifact_uri": r.artifact_uri,
                }
                for r in records
            ],
        )
        params = [row for r in records for row in param_rows(r.run_id, r.params)]
        if params:
            insert_rows(session, PARAM_TABLE, params)
        tags = [row for r in records for row in tag_rows(r.run_id, r.tags)]
        if tags:
            insert_rows(session, TAG_TABLE, tags)
        return started

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Record params; a param already set to another value is overwritten."""
        if params:
            with self.db.session() as session:
                upsert(session, PARAM_TABLE, param_rows(run_id, params), ("run_id", "key"))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        if tags:
            with self.db.session() as session:
                upsert(session, TAG_TABLE, tag_rows(run_id, tags), ("run_id", "key"))

    def log_metrics(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        """Append metric points in one transaction (``COPY`` on PostgreSQL) and move each
        key's latest point (highest step; the last logged among equal steps) forward."""
        self.write_points(
            run_id, [(p.key, float(p.value), int(p.step), int(p.timestamp)) for p in points]
        )

    def write_points(self, run_id: str, points: Sequence[PointTuple]) -> None:
        """:meth:`log_metrics` for ``(key, value, step, timestamp)`` tuples, the form the
        logging buffer keeps (cheaper to build than :class:`MetricPoint`)."""
        if points:
            with self.db.session() as session:
                self._write_points(session, run_id, points)

    @staticmethod
    def _write_points(session: Session, run_id: str, points: Sequence[PointTuple]) -> None:
        if not points:
            return
        insert_points(session, run_id, points)
        upsert_latest(session, point_rows(run_id, latest_points(points)))

    def log_input(
        self,
        run_id: str,
        name: str,
        *,
        context: str,
        digest: str,
        source: str | None = None,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a dataset the run used; the same name and context again replaces it."""
        row = {
            "run_id": run_id,
            "name": name,
            "context": context,
            "digest": digest,
            "source": source,
            "profile": json.dumps(dict(profile or {}), sort_keys=True),
            "created_at": now_ms(),
        }
        with self.db.session() as session:
            upsert(session, RUN_INPUT_TABLE, [row], ("run_id", "name", "context"))

    def list_inputs(self, run_id: str) -> list[RunInput]:
        with self.db.session() as session:
            return run_inputs(session, run_id)

    def record_artifact(self, run_id: str, path: str, kind: str, size: int) -> None:
        with self.db.session() as session:
            session.merge(
                ArtifactRow(run_id=run_id, path=path, kind=kind, size=size, created_at=now_ms())
            )

    def set_description(self, run_id: str, description: str | None) -> None:
        with self.db.session() as session:
            self._require_run(session, run_id).description = description

    def end_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        force: bool = False,
        points: Sequence[PointTuple] = (),
    ) -> bool:
        """Close a run, writing its last metric ``points`` (as for :meth:`write_points`)
        in the same transaction. Returns False (and changes nothing but the points) when
        it had already ended, unless ``force``: a resumed sweep reopens its parent run."""
        stmt = update(RunRow).where(RunRow.run_id == run_id)
        if not force:
            stmt = stmt.where(RunRow.status == RunStatus.RUNNING.value)
        end_time = None if status is RunStatus.RUNNING else now_ms()
        with self.db.session() as session:
            self._write_points(session, run_id, points)
            result = session.execute(stmt.values(status=status.value, end_time=end_time))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def finish_runs(self, session: Session, ends: Sequence[RunEnd]) -> set[str]:
        """Close runs with their last params, tags and metric points, in ``session``'s
        transaction (a trial's end writes its run with its study rows; the controller
        ends many trials at once). Runs that had already ended are left as they are;
        returns the ids of the runs closed."""
        closed: set[str] = set()
        ended_at = now_ms()
        for status in {end.status for end in ends}:
            ids = [end.run_id for end in ends if end.status is status]
            closed.update(
                session.execute(
                    _FINISH, {"run_ids": ids, "end_status": status.value, "ended_at": ended_at}
                ).scalars()
            )
        ends = [end for end in ends if end.run_id in closed]
        params = [row for end in ends for row in param_rows(end.run_id, end.params)]
        upsert(session, PARAM_TABLE, params, ("run_id", "key"))
        tags = [row for end in ends for row in tag_rows(end.run_id, end.tags)]
        upsert(session, TAG_TABLE, tags, ("run_id", "key"))
        few: list[dict[str, Any]] = []
        latest: list[dict[str, Any]] = []
        for end in ends:
            if len(end.points) >= COPY_THRESHOLD:
                insert_points(session, end.run_id, end.points)
            else:
                few.extend(point_rows(end.run_id, end.points))
            latest.extend(point_rows(end.run_id, latest_points(end.points)))
        if few:
            insert_rows(session, METRIC_TABLE, few)
        latest.sort(key=lambda row: (row["run_id"], row["key"]))  # one lock order
        upsert_latest(session, latest)
        return closed

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

    def run_exists(self, run_id: str) -> bool:
        with self.db.session() as session:
            return session.get(RunRow, run_id) is not None

    def get_run(self, run_id: str) -> Run:
        """The run with its params, latest metrics, tags and datasets (``inputs``)."""
        with self.db.session() as session:
            row = self._require_run(session, run_id)
            run = load_runs(session, [row])[0]
            return dataclasses.replace(run, inputs=tuple(run_inputs(session, run_id)))

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
            return load_runs(session, list(session.scalars(stmt)))

    def search_runs(
        self,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        *,
        experiment_ids: Sequence[int] | None = None,
        parent_run_id: str | None = None,
        max_results: int = 1000,
        timeout_s: float | None = None,
    ) -> list[Run]:
        """Runs matching ``filter``, sorted by ``order_by``, at most ``max_results``.

        ``filter`` is like ``params.lr < 0.01 and metrics.val_acc > 0.9 and
        tags.model_type = 'sgd'``; ``order_by`` like ``["metrics.val_acc desc"]`` (runs
        lacking a key sort last; ties go by start time, then run id). The grammar is in
        :mod:`sweep.tracking._filter`. Raises :class:`~sweep.errors.FilterError` for a
        malformed filter or order-by, before touching the database;
        :class:`~sweep.errors.InvalidValueError` for ``max_results`` outside 1 to 2**63-1;
        :class:`~sweep.errors.SearchTimeoutError` when the database spends more than
        ``timeout_s`` seconds on it (default ``SWEEP_SEARCH_TIMEOUT``, else 30 s).
        """
        check_max_results(max_results)
        timeout = search_timeout_s(timeout_s)
        stmt = build_search(
            parse_filter(filter),
            parse_order_by(order_by),
            dialect=self.db.engine.dialect.name,
            experiment_ids=experiment_ids,
            parent_run_id=parent_run_id,
            max_results=max_results,
        )
        with self.db.session() as session, statement_deadline(session, timeout):
            return load_runs(session, list(session.scalars(stmt)))

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
