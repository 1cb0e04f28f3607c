"""How the tracking store reads runs back: many runs with their params, tags and
latest metrics in a statement per table (chunked for SQLite's bound-parameter limit),
a run's datasets, an experiment."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sweep.storage.schema import (
    ExperimentRow,
    LatestMetricRow,
    ParamRow,
    RunInputRow,
    RunRow,
    TagRow,
)
from sweep.tracking._entities import Experiment, Run, RunInput, RunStatus


def load_runs(session: Session, rows: list[RunRow]) -> list[Run]:
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


def run_inputs(session: Session, run_id: str) -> list[RunInput]:
    rows = session.scalars(
        select(RunInputRow)
        .where(RunInputRow.run_id == run_id)
        .order_by(RunInputRow.context, RunInputRow.name)
    )
    return [
        RunInput(r.name, r.context, r.digest, r.source, json.loads(r.profile or "{}")) for r in rows
    ]


def experiment_of(row: ExperimentRow) -> Experiment:
    return Experiment(row.experiment_id, row.name, row.artifact_root, row.created_at)
