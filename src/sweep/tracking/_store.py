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
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sweep.errors import NotFoundError, StorageError
from sweep.storage import Database
from sweep.storage.schema import (
    ArtifactRow,
    ExperimentRow,
    LatestMetricRow,
    MetricRow,
    ParamRow,
    RunInputRow,
    RunRow,
    TagRow,
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
from sweep.tracking._search import (
    build_search,
    check_max_results,
    search_timeout_s,
    statement_deadline,
)
from sweep.tracking.artifacts import join_location

# The tables written through Core statements. DeclarativeBase types ``__table__`` as any
# FromClause (a model may map a join); each of these models maps one Table.
_RUN_TABLE = cast(Table, RunRow.__table__)
_PARAM_TABLE = cast(Table, ParamRow.__table__)
_TAG_TABLE = cast(Table, TagRow.__table__)
_METRIC_TABLE = cast(Table, MetricRow.__table__)
_LATEST_METRIC_TABLE = cast(Table, LatestMetricRow.__table__)
_RUN_INPUT_TABLE = cast(Table, RunInputRow.__table__)

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


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run to open: where, under which parent, with which params and tags."""

    experiment_id: int
    artifact_root: str
    name: str
    run_id: str
    parent_run_id: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def artifact_uri(self) -> str:
        return join_location(self.artifact_root, str(self.experiment_id), self.run_id)


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """How a run ends: its status, and the params, tags and metric points to write with
    it (picklable: a Ray worker hands its trial's run end to the controller)."""

    run_id: str
    status: RunStatus
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    points: Sequence[PointTuple] = ()


def _upsert_latest(session: Session, rows: list[dict[str, Any]]) -> None:
    """Keep each (run, key)'s latest point: replaced only by the same or a higher step."""
    upsert(session, _LATEST_METRIC_TABLE, rows, ("run_id", "key"), only_if_step_not_lower=True)


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
            params={k: _text(v) for k, v in record.params.items()},
            tags={k: _text(v) for k, v in record.tags.items()},
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
            _RUN_TABLE,
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
        params = [row for r in records for row in _param_rows(r.run_id, r.params)]
        if params:
            insert_rows(session, _PARAM_TABLE, params)
        tags = [row for r in records for row in _tag_rows(r.run_id, r.tags)]
        if tags:
            insert_rows(session, _TAG_TABLE, tags)
        return started

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Record params; a param already set to another value is overwritten."""
        if params:
            with self.db.session() as session:
                upsert(session, _PARAM_TABLE, _param_rows(run_id, params), ("run_id", "key"))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        if tags:
            with self.db.session() as session:
                upsert(session, _TAG_TABLE, _tag_rows(run_id, tags), ("run_id", "key"))

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
        _upsert_latest(session, point_rows(run_id, latest_points(points)))

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
            upsert(session, _RUN_INPUT_TABLE, [row], ("run_id", "name", "context"))

    def list_inputs(self, run_id: str) -> list[RunInput]:
        with self.db.session() as session:
            return _inputs(session, run_id)

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
                    update(RunRow)
                    .where(RunRow.run_id.in_(ids), RunRow.status == RunStatus.RUNNING.value)
                    .values(status=status.value, end_time=ended_at)
                    .returning(RunRow.run_id)
                ).scalars()
            )
        ends = [end for end in ends if end.run_id in closed]
        params = [row for end in ends for row in _param_rows(end.run_id, end.params)]
        upsert(session, _PARAM_TABLE, params, ("run_id", "key"))
        tags = [row for end in ends for row in _tag_rows(end.run_id, end.tags)]
        upsert(session, _TAG_TABLE, tags, ("run_id", "key"))
        few: list[dict[str, Any]] = []
        latest: list[dict[str, Any]] = []
        for end in ends:
            if len(end.points) >= COPY_THRESHOLD:
                insert_points(session, end.run_id, end.points)
            else:
                few.extend(point_rows(end.run_id, end.points))
            latest.extend(point_rows(end.run_id, latest_points(end.points)))
        if few:
            insert_rows(session, _METRIC_TABLE, few)
        latest.sort(key=lambda row: (row["run_id"], row["key"]))  # one lock order
        _upsert_latest(session, latest)
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
            run = self._load_runs(session, [row])[0]
            return dataclasses.replace(run, inputs=tuple(_inputs(session, run_id)))

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
        # Chunk the IN lists: SQLite limits the number of bound parameters. Plain column
        # tuples, not ORM objects: a page of 1000 runs has some 30,000 of them.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            sources: list[tuple[Any, dict[str, dict[str, Any]]]] = [
                (ParamRow, params),
                (TagRow, tags),
                (LatestMetricRow, metrics),
            ]
            for table, into in sources:
                query = select(table.run_id, table.key, table.value).where(table.run_id.in_(chunk))
                for run_id, key, value in session.execute(query):
                    into[run_id][key] = value
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


def _inputs(session: Session, run_id: str) -> list[RunInput]:
    rows = session.scalars(
        select(RunInputRow)
        .where(RunInputRow.run_id == run_id)
        .order_by(RunInputRow.context, RunInputRow.name)
    )
    return [
        RunInput(r.name, r.context, r.digest, r.source, json.loads(r.profile or "{}")) for r in rows
    ]


def _experiment(row: ExperimentRow) -> Experiment:
    return Experiment(row.experiment_id, row.name, row.artifact_root, row.created_at)
