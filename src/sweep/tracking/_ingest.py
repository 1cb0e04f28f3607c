"""Bulk writing of metric points into ``sweep_metrics``.

On PostgreSQL with psycopg 3 a batch of ``COPY_THRESHOLD`` points or more goes through
``COPY ... FROM STDIN`` on the session's own connection, so they commit (or roll back)
together with whatever else the session writes (the latest-metric upsert). A smaller
batch, or any on another backend, is one ``INSERT`` (:func:`sweep.storage.sql.insert_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from sweep.storage.schema import MetricRow
from sweep.storage.sql import insert_rows

#: A metric point as the ingest path carries it: (key, value, step, timestamp ms).
PointTuple = tuple[str, float, int, int]

_COPY = 'COPY sweep_metrics (run_id, key, value, step, "timestamp") FROM STDIN'
#: Points formatted per COPY write: the server ingests one chunk while we format the next.
_COPY_CHUNK = 20_000
#: Fewer points than this go in one INSERT: COPY costs an extra round trip to start.
COPY_THRESHOLD = 64
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def latest_points(points: Sequence[PointTuple]) -> list[PointTuple]:
    """Each key's latest point: the highest step, the last logged among equal steps;
    sorted by key so that concurrent writers lock rows in one order."""
    latest: dict[str, PointTuple] = {}
    for point in points:
        seen = latest.get(point[0])
        if seen is None or point[2] >= seen[2]:
            latest[point[0]] = point
    return [latest[key] for key in sorted(latest)]


def point_rows(run_id: str, points: Iterable[PointTuple]) -> list[dict[str, Any]]:
    """``points`` as rows of the metric tables."""
    return [
        {"run_id": run_id, "key": k, "value": v, "step": s, "timestamp": t} for k, v, s, t in points
    ]


def insert_points(session: Session, run_id: str, points: Sequence[PointTuple]) -> None:
    """Append ``points`` to ``sweep_metrics`` inside ``session``'s transaction."""
    if not points:
        return
    copy = _copier(session) if len(points) >= COPY_THRESHOLD else None
    if copy is not None:
        copy(run_id, points)
        return
    insert_rows(session, cast(Table, MetricRow.__table__), point_rows(run_id, points))


def _copier(session: Session) -> Any:
    """A function writing points with COPY on the session's connection, or None when
    the database or its driver cannot (SQLite, a driver other than psycopg 3)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return None
    driver = connection.connection.driver_connection
    cursor = driver.cursor() if driver is not None else None
    if cursor is None or not hasattr(cursor, "copy"):
        return None

    def copy(run_id: str, points: Sequence[PointTuple]) -> None:
        prefixes = {key: f"{run_id}\t{key.translate(_ESCAPES)}\t" for key in {p[0] for p in points}}
        with cursor, cursor.copy(_COPY) as stream:
            for start in range(0, len(points), _COPY_CHUNK):
                chunk = points[start : start + _COPY_CHUNK]
                stream.write("".join([f"{prefixes[k]}{v!r}\t{s}\t{t}\n" for k, v, s, t in chunk]))

    return copy
